export DISTRO_NAME=centos
export DIB_RELEASE=${DIB_RELEASE:-9-stream}
export EFI_BOOT_DIR="EFI/centos"

# Base container image per release; CentOS 6 has none any more.
case $DIB_RELEASE in
    6) _image="" ;;
    7) _image=docker.io/library/centos:7 ;;
    9-stream) _image=quay.io/centos/centos:stream9 ;;
    10-stream) _image=quay.io/centos/centos:stream10 ;;
    *)
        echo "centos: DIB_RELEASE=${DIB_RELEASE} is not supported (6, 7, 9-stream, 10-stream)" >&2
        exit 1
        ;;
esac
export DIB_CENTOS_CONTAINER_IMAGE=${DIB_CENTOS_CONTAINER_IMAGE:-$_image}
unset _image
if [ -n "$DIB_CENTOS_CONTAINER_IMAGE" ]; then
    export DIB_CENTOS_ROOTFS_METHOD=image
else
    export DIB_CENTOS_ROOTFS_METHOD=local-image
fi
export DIB_CENTOS_LOCAL_IMAGE_HINT="CentOS ${DIB_RELEASE} publishes no base image any more: set DIB_LOCAL_IMAGE to a CentOS ${DIB_RELEASE} cloud image (qcow2 or raw, e.g. CentOS-${DIB_RELEASE}-x86_64-GenericCloud.qcow2), a root filesystem tarball or an OCI archive"

case $DIB_RELEASE in
    6|7)
        export YUM=yum
        ;;
    *)
        export YUM=dnf
        ;;
esac
if [ "$DIB_RELEASE" = 6 ]; then
    # CentOS 6 boots with upstart and GRUB legacy (grub.conf).
    export DIB_INIT_SYSTEM=upstart
    export DIB_GRUB_FLAVOUR=grub-legacy
    export DIB_GRUB_CFG=/boot/grub/grub.cfg
else
    export DIB_INIT_SYSTEM=systemd
    export DIB_GRUB_FLAVOUR=grub2
    export DIB_GRUB_CFG=/boot/grub2/grub.cfg
fi
