export DISTRO_NAME=fedora
export DIB_RELEASE=${DIB_RELEASE:-41}
export EFI_BOOT_DIR="EFI/fedora"
export YUM=dnf
export DIB_INIT_SYSTEM=systemd
export DIB_GRUB_FLAVOUR=grub2
export DIB_GRUB_CFG=/boot/grub2/grub.cfg
export DIB_FEDORA_CONTAINER_IMAGE=${DIB_FEDORA_CONTAINER_IMAGE:-quay.io/fedora/fedora:${DIB_RELEASE}}
