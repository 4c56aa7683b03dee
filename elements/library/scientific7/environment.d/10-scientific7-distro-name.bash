# Scientific Linux 7: a rebuild of Red Hat Enterprise Linux 7 (Red Hat
# family for pkg-map). No base image is published any more: DIB_LOCAL_IMAGE.
export DISTRO_NAME=scientific
export DIB_RELEASE=7
export EFI_BOOT_DIR="EFI/scientific"
export YUM=yum
export DIB_INIT_SYSTEM=systemd
export DIB_GRUB_FLAVOUR=grub2
export DIB_GRUB_CFG=/boot/grub2/grub.cfg
export DIB_SCIENTIFIC_CONTAINER_IMAGE=${DIB_SCIENTIFIC_CONTAINER_IMAGE:-}
if [ -n "$DIB_SCIENTIFIC_CONTAINER_IMAGE" ]; then
    export DIB_SCIENTIFIC_ROOTFS_METHOD=image
else
    export DIB_SCIENTIFIC_ROOTFS_METHOD=local-image
fi
