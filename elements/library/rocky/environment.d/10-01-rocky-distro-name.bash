export DISTRO_NAME=rocky
export DIB_RELEASE=${DIB_RELEASE:-9}
export EFI_BOOT_DIR="EFI/rocky"
export YUM=dnf
export DIB_INIT_SYSTEM=systemd
export DIB_GRUB_FLAVOUR=grub2
export DIB_GRUB_CFG=/boot/grub2/grub.cfg
export DIB_ROCKY_CONTAINER_IMAGE=${DIB_ROCKY_CONTAINER_IMAGE:-docker.io/rockylinux/rockylinux:${DIB_RELEASE}}
