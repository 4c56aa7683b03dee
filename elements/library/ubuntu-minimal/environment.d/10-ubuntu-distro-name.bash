export DISTRO_NAME=ubuntu
export DIB_RELEASE=${DIB_RELEASE:-noble}
export DIB_INIT_SYSTEM=systemd
export EFI_BOOT_DIR="EFI/ubuntu"

case ${ARCH:-amd64} in
    amd64|i386) _mirror=http://archive.ubuntu.com/ubuntu ;;
    *) _mirror=http://ports.ubuntu.com/ubuntu-ports ;;
esac
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-$_mirror}
unset _mirror
export DIB_UBUNTU_SECURITY_MIRROR=${DIB_UBUNTU_SECURITY_MIRROR:-$DIB_DISTRIBUTION_MIRROR}
export DIB_UBUNTU_COMPONENTS=${DIB_UBUNTU_COMPONENTS:-main,universe}
DIB_UBUNTU_COMPONENTS_WS=${DIB_UBUNTU_COMPONENTS//,/ }
export DIB_UBUNTU_COMPONENTS_WS
# DIB's format: one "name:deb-line" per line.
_sources="default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE} ${DIB_UBUNTU_COMPONENTS_WS}
updates:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE}-updates ${DIB_UBUNTU_COMPONENTS_WS}
security:deb ${DIB_UBUNTU_SECURITY_MIRROR} ${DIB_RELEASE}-security ${DIB_UBUNTU_COMPONENTS_WS}"
export DIB_APT_SOURCES_CONF=${DIB_APT_SOURCES_CONF:-$_sources}
unset _sources
# DIB's ubuntu-minimal kernel: the virtual flavour, for virtual machines.
export DIB_UBUNTU_KERNEL=${DIB_UBUNTU_KERNEL:-linux-image-virtual}

# The base: bootstrapped from the mirror (default; the build host needs
# /usr/share/keyrings/ubuntu-archive-keyring.gpg), or a container image when
# DIB_UBUNTU_CONTAINER_IMAGE names one (e.g. docker.io/library/ubuntu:noble).
if [ -n "${DIB_UBUNTU_CONTAINER_IMAGE:-}" ]; then
    export DIB_UBUNTU_ROOTFS_METHOD=image
else
    export DIB_UBUNTU_ROOTFS_METHOD=mmdebstrap
fi
