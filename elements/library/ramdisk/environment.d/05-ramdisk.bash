# The whole root filesystem is the ramdisk (README.md). Left out: what a
# running ramdisk never reads and that only costs memory at every boot.
# A pattern with a slash matches the path from the root ("boot/*" keeps an
# empty /boot); one without matches names at any depth.
export DIB_RAMDISK_EXCLUDE=${DIB_RAMDISK_EXCLUDE-boot/* tmp/* var/tmp/* var/log/* var/cache/apt/* var/cache/dnf/* var/cache/yum/* var/cache/zypp/* var/lib/apt/lists/* usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* usr/include/* usr/src/* *.pyc *.pyo}
