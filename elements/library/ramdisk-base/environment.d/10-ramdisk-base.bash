# What builder makes NAME.initramfs from (README.md): the directory of the
# image that becomes the ramdisk's root, the paths left out of it and the
# compression. The ramdisk element (whole root filesystem) and
# dracut-ramdisk set their own defaults before this file is read.
export DIB_RAMDISK_ROOT=${DIB_RAMDISK_ROOT:-/}
export DIB_RAMDISK_EXCLUDE=${DIB_RAMDISK_EXCLUDE-}
export DIB_RAMDISK_COMPRESS=${DIB_RAMDISK_COMPRESS:-gzip}
# Seconds the ramdisk waits for an IPv4 address before it reports that its
# network did not come up.
export DIB_RAMDISK_READY_TIMEOUT=${DIB_RAMDISK_READY_TIMEOUT:-300}
