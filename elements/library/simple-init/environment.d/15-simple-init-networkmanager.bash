# NetworkManager is the default where the distribution has nothing else
# (DIB's rule); elsewhere the distribution's classic configuration.
if [[ ${DISTRO_NAME:-} =~ ^(almalinux|centos|fedora|rocky)$ ]]; then
    export DIB_SIMPLE_INIT_NETWORKMANAGER=${DIB_SIMPLE_INIT_NETWORKMANAGER:-1}
else
    export DIB_SIMPLE_INIT_NETWORKMANAGER=${DIB_SIMPLE_INIT_NETWORKMANAGER:-0}
fi
if [[ ${DIB_SIMPLE_INIT_NETWORKMANAGER} == 0 ]]; then
    if [[ ${DISTRO_NAME:-} == fedora ]] || { [[ ${DISTRO_NAME:-} =~ ^(almalinux|rocky)$ ]] && [[ ${DIB_RELEASE%%[.-]*} -gt 7 ]]; } ||
        { [[ ${DISTRO_NAME:-} == centos ]] && [[ ${DIB_RELEASE%%[.-]*} -ge 9 ]]; }; then
        echo "simple-init: DIB_SIMPLE_INIT_NETWORKMANAGER=0 is not possible on $DISTRO_NAME $DIB_RELEASE (no network-scripts); only NetworkManager" >&2
        exit 1
    fi
fi
