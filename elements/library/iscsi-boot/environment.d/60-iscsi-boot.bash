# dracut distributions find iBFT targets from the initramfs when the kernel
# command line says so. Sorted after bootloader's 10-bootloader-default-cmdline
# so that its default is kept; the check keeps repeated sourcing idempotent.
case ${DISTRO_NAME:-} in
    centos|fedora|rhel|rocky|almalinux|scientific|openeuler|opensuse|sles)
        if [[ " ${DIB_BOOTLOADER_DEFAULT_CMDLINE:-} " != *" rd.iscsi.firmware=1 "* ]]; then
            export DIB_BOOTLOADER_DEFAULT_CMDLINE="${DIB_BOOTLOADER_DEFAULT_CMDLINE:+$DIB_BOOTLOADER_DEFAULT_CMDLINE }rd.iscsi.firmware=1"
        fi
        ;;
esac
