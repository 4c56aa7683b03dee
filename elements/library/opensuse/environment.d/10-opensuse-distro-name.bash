export DISTRO_NAME=opensuse
export DIB_RELEASE=${DIB_RELEASE:-15.6}
export EFI_BOOT_DIR="EFI/opensuse"
export DIB_INIT_SYSTEM=systemd
export DIB_GRUB_FLAVOUR=grub2
export DIB_GRUB_CFG=/boot/grub2/grub.cfg
case ${DIB_RELEASE} in
    15.5|15.6) export OPENSUSE_REPO_DIR=openSUSE_Leap_${DIB_RELEASE} ;;
    *) echo "opensuse: DIB_RELEASE=${DIB_RELEASE} is not supported (15.5, 15.6)" >&2; exit 1 ;;
esac
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-https://download.opensuse.org}
export DIB_OPENSUSE_CONTAINER_IMAGE=${DIB_OPENSUSE_CONTAINER_IMAGE:-registry.opensuse.org/opensuse/leap:${DIB_RELEASE}}
