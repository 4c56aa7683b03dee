export DIB_BOOTLOADER_DEFAULT_CMDLINE=${DIB_BOOTLOADER_DEFAULT_CMDLINE:-"nofb nomodeset gfxpayload=text"}
# DIB's serial consoles: the PL011 on arm64 (ttyAMA0), hvc0 on Power.
case ${ARCH:-amd64} in
    arm64|aarch64) _serial=ttyAMA0,115200 ;;
    ppc64|ppc64le|ppc64el) _serial=hvc0 ;;
    *) _serial=ttyS0,115200 ;;
esac
export DIB_BOOTLOADER_SERIAL_CONSOLE=${DIB_BOOTLOADER_SERIAL_CONSOLE:-$_serial}
unset _serial
export DIB_BOOTLOADER_USE_SERIAL_CONSOLE=${DIB_BOOTLOADER_USE_SERIAL_CONSOLE:-True}
export DIB_BOOTLOADER_VIRTUAL_TERMINAL=${DIB_BOOTLOADER_VIRTUAL_TERMINAL-tty0}
export DIB_NO_TIMER_CHECK=${DIB_NO_TIMER_CHECK:-True}
export DIB_GRUB_TIMEOUT=${DIB_GRUB_TIMEOUT:-5}
# package-installs.yaml's condition needs it set; block-device-* elements
# (efi, gpt, mbr) set it after this file.
export DIB_BLOCK_DEVICE=${DIB_BLOCK_DEVICE-}
