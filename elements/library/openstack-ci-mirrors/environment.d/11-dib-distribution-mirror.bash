# On an OpenStack CI node (zuul/nodepool), its mirror_info.sh says where the
# distribution mirrors are; elsewhere this does nothing. Outside the image
# the file is DIB_OPENSTACK_CI_MIRROR_INFO (default /etc/ci/mirror_info.sh),
# inside it is the copy extra-data.d/75-copy-mirror-info made. After the
# operating-system element's 10- files, which set DISTRO_NAME.
_ci_xtrace=$(set +o | grep xtrace)
set +o xtrace
_ci_info=""
if [ -f "${DIB_OPENSTACK_CI_MIRROR_INFO:-/etc/ci/mirror_info.sh}" ]; then
    _ci_info=${DIB_OPENSTACK_CI_MIRROR_INFO:-/etc/ci/mirror_info.sh}
elif [ -f /tmp/in_target.d/mirror_info.sh ]; then
    _ci_info=/tmp/in_target.d/mirror_info.sh
fi
if [ -n "$_ci_info" ]; then
    # shellcheck disable=SC1090
    source "$_ci_info"
    _ci_mirror=""
    case ${DISTRO_NAME:-} in
        ubuntu)
            case ${ARCH:-} in
                arm64) _ci_mirror=${NODEPOOL_UBUNTU_PORTS_MIRROR:-} ;;
                amd64) _ci_mirror=${NODEPOOL_UBUNTU_MIRROR:-} ;;
            esac
            export DIB_DEBOOTSTRAP_EXTRA_ARGS="${DIB_DEBOOTSTRAP_EXTRA_ARGS:-} --no-check-gpg"
            ;;
        debian)
            _ci_mirror=${NODEPOOL_DEBIAN_MIRROR:-}
            export DIB_DEBOOTSTRAP_EXTRA_ARGS="${DIB_DEBOOTSTRAP_EXTRA_ARGS:-} --no-check-gpg"
            ;;
        centos)
            if [ "${DIB_RELEASE:-}" = 9-stream ]; then
                _ci_mirror=${NODEPOOL_CENTOS_MIRROR:-}
                [ -z "${NODEPOOL_EPEL_MIRROR:-}" ] || export DIB_EPEL_MIRROR=$NODEPOOL_EPEL_MIRROR
            fi
            ;;
        opensuse)
            _ci_mirror=${NODEPOOL_OPENSUSE_MIRROR:-}
            ;;
        rocky)
            # Rocky's own primary, not its mirror list; dnf expands
            # $contentdir (pub/rocky) from /etc/dnf/vars.
            _ci_mirror='http://dl.rockylinux.org/$contentdir'
            ;;
    esac
    if [ -n "$_ci_mirror" ]; then
        # debian-minimal and ubuntu-minimal made their bootstrap sources
        # from the mirror in their 10- files: move those lines over too.
        if [ -n "${DIB_APT_SOURCES_CONF:-}" ] && [ -n "${DIB_DISTRIBUTION_MIRROR:-}" ] &&
            [ "$DIB_DISTRIBUTION_MIRROR" != "$_ci_mirror" ]; then
            export DIB_APT_SOURCES_CONF=${DIB_APT_SOURCES_CONF//"deb ${DIB_DISTRIBUTION_MIRROR} "/"deb ${_ci_mirror} "}
        fi
        export DIB_DISTRIBUTION_MIRROR=$_ci_mirror
    fi
    # The CI mirrors carry no universe/multiverse and are unsigned.
    export DIB_DISTRIBUTION_MIRROR_UBUNTU_IGNORE="(universe|multiverse)"
    export DIB_DISTRIBUTION_MIRROR_UBUNTU_INSECURE=1
    # Repository files CI prepares for the -minimal bootstraps.
    if [ -n "${DIB_OS_CI_YUM_REPOS:-}" ] && [ -d "${DIB_OS_CI_YUM_REPOS}" ]; then
        case ${DISTRO_NAME:-} in
            centos) export DIB_YUM_MINIMAL_BOOTSTRAP_REPOS=${DIB_OS_CI_YUM_REPOS}/centos-minimal/${DIB_RELEASE:-}/yum.repos.d ;;
            openeuler) export DIB_YUM_MINIMAL_BOOTSTRAP_REPOS=${DIB_OS_CI_YUM_REPOS}/openeuler-minimal/${DIB_RELEASE:-}/yum.repos.d ;;
        esac
    fi
    unset _ci_mirror
fi
unset _ci_info
eval "$_ci_xtrace"
unset _ci_xtrace
