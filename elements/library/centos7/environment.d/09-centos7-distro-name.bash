# DIB's old centos7 element: the centos element at release 7.
export DIB_RELEASE=7
export YUM=${YUM:-yum}
