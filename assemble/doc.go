// Package assemble lays a finished root filesystem tree onto a partitioned,
// bootable raw disk image and converts it to output formats, without loop
// devices, mounts or root-only tools ("path B" of
// docs/disk-assembly.md).
//
// The default "vm" layout is GPT with a 1 MiB BIOS boot partition at
// 1 MiB, a 100 MiB FAT32 ESP and an ext4 root filling the rest (MBR is
// available for BIOS-only or old consumers). The image file is written in
// place, in this order:
//
//   - the partition table, written by Table.WriteTo (protective MBR,
//     primary and backup GPT with their CRCs);
//   - the root filesystem by `mkfs.ext4 -d TREE -E offset=N`, which copies
//     the tree with its owners, modes, hard links, xattrs and holes, and
//     never writes to the tree; extra files (grub.cfg, fstab) are then put
//     in with debugfs;
//   - the ESP by `mkfs.vfat --offset` and mtools (`-i image@@offset`),
//     holding GRUB as EFI/BOOT/BOOTX64.EFI;
//   - GRUB for BIOS: boot.img in sector 0 and core.img in the BIOS boot
//     partition (or the post-MBR gap), patched as grub-bios-setup would,
//     because grub-install cannot work on a plain file.
//
// Both GRUB images embed every module they need and a two-line early config
// that finds the root by its filesystem UUID, so the image needs no
// /boot/grub/<platform> directory. The root filesystem is sized from the
// tree by a model of mke2fs's own layout (MinRootFSBytes), so images are as
// small as requested and a too-small size fails in PlanDisk, before any
// slow step.
//
// Typical use:
//
//	d, err := assemble.PlanDisk(ctx, assemble.DiskSpec{RootDir: tree, RootUUID: id, HeadroomBytes: h})
//	d.Spec.Files = append(d.Spec.Files,
//		assemble.File{Path: "/boot/grub/grub.cfg", Data: []byte(assemble.GrubConfig(assemble.GrubConfigSpec{RootUUID: id, Serial: assemble.DefaultSerial}))},
//		assemble.File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
//	err = assemble.BuildDisk(ctx, d, "out/disk.raw")
//	err = assemble.Convert(ctx, "out/disk.raw", "out/disk.qcow2", assemble.QCOW2, assemble.ConvertOptions{Compress: true})
//
// Every output is written under a hidden temporary name in its directory
// and renamed when complete; on failure the partial file is removed.
package assemble
