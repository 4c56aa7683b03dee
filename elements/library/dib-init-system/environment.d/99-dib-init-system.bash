# Runs last so that DIB_INIT_SYSTEM is set by the operating-system element.
if [ -z "${DIB_INIT_SYSTEM:-}" ]; then
    echo "DIB_INIT_SYSTEM is not set: the operating-system element must export it" >&2
    exit 1
fi
case $DIB_INIT_SYSTEM in
    upstart|openrc|systemd|sysv) ;;
    *)
        echo "Unrecognised init system: ${DIB_INIT_SYSTEM} (known: systemd upstart openrc sysv)" >&2
        exit 1
        ;;
esac
