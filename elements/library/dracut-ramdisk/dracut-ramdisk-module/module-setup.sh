# dracut module 90builder-ramdisk (sourced by dracut): the ramdisk's own
# boot, in dracut's pre-mount hook once the network is up.

check() {
    return 0
}

depends() {
    echo network
    return 0
}

install() {
    local b
    inst_multiple ip sleep head
    inst_script /usr/local/sbin/builder-ramdisk-ready /usr/local/sbin/builder-ramdisk-ready
    [ -f /etc/builder-ramdisk.conf ] && inst_simple /etc/builder-ramdisk.conf
    # DIB's binary-deps.d: the commands the elements' init.d fragments use.
    if [ -s /etc/dib_binary_deps ]; then
        for b in $(cat /etc/dib_binary_deps); do
            inst_multiple "$b"
        done
    fi
    inst_hook cmdline 80 "$moddir/builder-ramdisk-cmdline.sh"
    inst_hook pre-mount 50 "$moddir/builder-ramdisk-init.sh"
}
