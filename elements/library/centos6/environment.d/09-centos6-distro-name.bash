# The centos element at release 6 (needs DIB_LOCAL_IMAGE: no base image
# is published for CentOS 6 any more).
export DIB_RELEASE=6
export YUM=${YUM:-yum}
