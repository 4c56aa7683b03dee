export DIB_BLOCK_DEVICE=efi
