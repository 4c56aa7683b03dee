# dnf is yum's replacement (Fedora 22+, CentOS/RHEL 8+): yum's
# install-packages and hooks use it through YUM, as in DIB.
export YUM=dnf
