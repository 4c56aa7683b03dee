# dracut cmdline hook (sourced): the ramdisk never mounts a root
# filesystem; any value dracut accepts will do.
[ -z "$root" ] && root=ramdisk
rootok=1
