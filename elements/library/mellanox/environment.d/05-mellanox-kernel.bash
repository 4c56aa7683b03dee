# Debian's cloud kernel (builder's default there) lacks the InfiniBand
# upper layers (ib_ipoib); the generic kernel has every Mellanox driver.
# Only debian-minimal reads this; its 10- file keeps a value set here.
export DIB_DEBIAN_KERNEL=${DIB_DEBIAN_KERNEL:-linux-image-${ARCH:-amd64}}
