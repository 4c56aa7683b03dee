# The ramdisk is what dracut makes, not the image: post-install.d
# leaves dracut's tree here and builder packs it (ramdisk-base's README).
export DIB_RAMDISK_ROOT=${DIB_RAMDISK_ROOT:-/var/lib/dracut-ramdisk/root}
export DIB_RAMDISK_EXCLUDE=${DIB_RAMDISK_EXCLUDE-}
