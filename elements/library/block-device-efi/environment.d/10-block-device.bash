# DIB's arch gate: Power machines boot from a PReP partition, not an ESP.
case ${ARCH:-amd64} in
    ppc64|ppc64le|ppc64el)
        echo "block-device-efi is not supported on Power; use block-device-gpt or block-device-mbr" >&2
        exit 1
        ;;
esac

export DIB_BLOCK_DEVICE=efi
