# DIB's arch gate: this layout boots through a BIOS, which arm64 machines
# do not have.
case ${ARCH:-amd64} in
    arm64|aarch64)
        echo "block-device-mbr is not supported on AARCH64; use block-device-efi" >&2
        exit 1
        ;;
esac

export DIB_BLOCK_DEVICE=mbr
