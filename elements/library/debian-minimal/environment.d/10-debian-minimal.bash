export DISTRO_NAME=debian
export DIB_RELEASE=${DIB_RELEASE:-bookworm}
export DIB_INIT_SYSTEM=systemd
export EFI_BOOT_DIR="EFI/debian"

if [ -n "${DIB_DEBIAN_DISTRIBUTION_MIRROR:-}" ]; then
    DIB_DISTRIBUTION_MIRROR=$DIB_DEBIAN_DISTRIBUTION_MIRROR
fi
# builder passes the mirror the build host's apt uses, when it has one.
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-${BUILDER_HOST_DEBIAN_MIRROR:-http://deb.debian.org/debian}}
export DIB_DEBIAN_SECURITY_MIRROR=${DIB_DEBIAN_SECURITY_MIRROR:-${BUILDER_HOST_DEBIAN_SECURITY_MIRROR:-http://security.debian.org/debian-security}}
export DIB_DEBIAN_COMPONENTS=${DIB_DEBIAN_COMPONENTS:-main}
DIB_DEBIAN_COMPONENTS_WS=${DIB_DEBIAN_COMPONENTS//,/ }
export DIB_DEBIAN_COMPONENTS_WS

# DIB's format: one "name:deb-line" per line.
case $DIB_RELEASE in
    testing|unstable|sid)
        _sources="default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE} ${DIB_DEBIAN_COMPONENTS_WS}"
        ;;
    *)
        _sources="default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE} ${DIB_DEBIAN_COMPONENTS_WS}
updates:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE}-updates ${DIB_DEBIAN_COMPONENTS_WS}
security:deb ${DIB_DEBIAN_SECURITY_MIRROR} ${DIB_RELEASE}-security ${DIB_DEBIAN_COMPONENTS_WS}"
        ;;
esac
export DIB_APT_SOURCES_CONF=${DIB_APT_SOURCES_CONF:-$_sources}
unset _sources

# The cloud kernel flavour carries the drivers virtual machines need and is a
# third of the generic one (faster to build, smaller image); Debian's own cloud
# images use it. DIB_DEBIAN_KERNEL=linux-image-amd64 gives DIB's choice.
case ${ARCH:-amd64} in
    amd64|arm64) _kernel=linux-image-cloud-${ARCH:-amd64} ;;
    *) _kernel=linux-image-${ARCH} ;;
esac
export DIB_DEBIAN_KERNEL=${DIB_DEBIAN_KERNEL:-$_kernel}
unset _kernel

# The base: bootstrapped from the mirror (default), or a container image
# from a registry when DIB_DEBIAN_CONTAINER_IMAGE names one (e.g.
# docker.io/library/debian:bookworm); the packages below are then
# installed by package-installs.
if [ -n "${DIB_DEBIAN_CONTAINER_IMAGE:-}" ]; then
    export DIB_DEBIAN_ROOTFS_METHOD=image
else
    export DIB_DEBIAN_ROOTFS_METHOD=mmdebstrap
fi
