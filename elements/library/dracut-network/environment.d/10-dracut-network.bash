# The command line built into the initramfs: DHCP on every interface,
# and wait for it (dracut's rd.neednet).
export DIB_DRACUT_NETWORK_CMDLINE=${DIB_DRACUT_NETWORK_CMDLINE-rd.neednet=1 ip=dhcp}
