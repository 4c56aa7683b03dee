#!/bin/sh
# dracut pre-mount hook: the network is up (rd.neednet). Report readiness,
# run the elements' init.d fragments (DIB's ramdisk init), then reboot as
# DIB's ramdisk does when it is done; "troubleshoot" on the kernel command
# line gives a shell instead.
[ -f /etc/builder-ramdisk.conf ] && . /etc/builder-ramdisk.conf
/usr/local/sbin/builder-ramdisk-ready "${READY_TIMEOUT:-300}" > /dev/console 2>&1
if [ -x /usr/local/lib/builder-ramdisk/init.d ]; then
    /usr/local/lib/builder-ramdisk/init.d
fi
if getargbool 0 troubleshoot; then
    emergency_shell -n builder-ramdisk "troubleshoot requested"
fi
echo "builder-ramdisk: done; rebooting" > /dev/console
reboot -f
