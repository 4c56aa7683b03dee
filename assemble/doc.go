// Package assemble lays a finished root filesystem tree onto a partitioned,
// bootable raw disk image and converts it to output formats.
//
// # Layouts
//
// The disk is described by a Layout: DIB's block-device configuration
// (block-device-default.yaml, DIB_BLOCK_DEVICE_CONFIG) as plain data.
// ParseBlockDeviceConfig reads DIB's tree and graph forms with DIB's
// checks and error messages (located by file and line); MergeRoot applies
// FS_TYPE, --root-label and --mkfs-options to mkfs_root as DIB does;
// AssignIDs derives every filesystem UUID, FAT volume id and partition
// GUID the YAML leaves open from a seed; Fstab and Mounts give DIB's
// /etc/fstab and mount order. DefaultLayout is block-device-efi's, read
// from that element's block-device-default.yaml in the embedded library.
//
// Sizes are DIB's: KiB..TiB are powers of 1024, K..T and KB..TB powers of
// 1000, N% is a share of the space still free at that point; GPT keeps
// 1 MiB free at each end and floors sizes to MiB, MBR partitions start
// where DIB's MBR writer starts them (logical partitions in an extended
// partition, each behind its EBR), LVM sizes are floored to 4 MiB.
//
// # Assembly
//
// PlanDisk measures the tree once, giving each filesystem the subtree at
// its mount point without the subtrees of the mount points below it, sizes
// the disk (automatically: the smallest on which every filesystem holds
// its part with its share of the headroom, rounded up to 64 MiB) and fails
// with a *TooSmallError before anything is written when a given size is
// too small. BuildDisk then writes the image in place:
//
//   - the partition table (Table.WriteTo: protective MBR and both GPTs, or
//     an MBR with its EBR chain; Table is builder/internal/parttable's,
//     which also holds the one partition table reader of the module);
//   - ext2/3/4 by `mkfs.ext4 -d TREE -E offset=N`, which copies the tree
//     with owners, modes, hard links, xattrs and holes straight into the
//     image; child mount points that hold files are hidden from it by
//     running mkfs in a private mount namespace (unshare --mount) where
//     empty directories, with the same owner and mode, are bind-mounted
//     over them. This needs root (or root of a user namespace), and only
//     when a mount point below a filesystem holds files;
//   - vfat by `mkfs.vfat --offset` and mtools, with GRUB as
//     EFI/BOOT/BOOTX64.EFI on the ESP (the vfat filesystem at /boot/efi);
//   - swap by writing mkswap's header;
//   - xfs on a loop device over its byte range, filled by cp -a through a
//     mount in a private mount namespace (xfsprogs 6.1 cannot populate
//     from a directory);
//   - LVM metadata by the lvm tools on a loop device over each physical
//     volume, with activation disabled (this kernel has no device-mapper,
//     and nothing then has to be deactivated); lvs says where each
//     logical volume lies, and its filesystem is made there like any
//     other;
//   - d.Spec.Files (grub.cfg, fstab) into the filesystems holding their
//     paths;
//   - GRUB for BIOS: boot.img in sector 0 and core.img in the BIOS boot
//     partition (or the post-MBR gap), patched as grub-bios-setup would.
//
// The loopless assembler (no xfs, no LVM) needs no loop device and no
// mount; the loop assembler is chosen when the layout needs it and needs
// root. Disk.Assembler and Disk.AssemblerReason say which ran and why.
// Both GRUB images embed every module they need and an early config that
// finds the filesystem holding /boot by UUID and sets the prefix to /grub
// (a separate /boot) or /boot/grub.
//
// Typical use:
//
//	l, err := assemble.ReadBlockDeviceConfig("elements/library/block-device-efi/block-device-default.yaml")
//	err = l.MergeRoot(fsType, rootLabel, mkfsOptions) // "" and nil for DIB's defaults
//	l.AssignIDs(seed)                                 // then l.Fstab() and the UUIDs are final
//	d, err := assemble.PlanDisk(ctx, assemble.DiskSpec{RootDir: tree, Layout: l, HeadroomBytes: h})
//	d.Spec.Files = append(d.Spec.Files,
//		assemble.File{Path: "/boot/grub/grub.cfg", Data: []byte(assemble.GrubConfig(assemble.GrubConfigSpec{RootUUID: l.Root().UUID, Serial: assemble.DefaultSerial}))},
//		assemble.File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
//	err = assemble.BuildDisk(ctx, d, "out/disk.raw")
//	err = assemble.Convert(ctx, "out/disk.raw", "out/disk.qcow2", assemble.QCOW2, assemble.ConvertOptions{Compress: true})
//
// # Files
//
// The layout and its YAML: layout.go (the types and the questions asked
// of them), size.go (DIB's sizes), blockdevice_yaml.go (DIB's tree and
// graph forms into graph entries), blockdevice_graph.go (the plugins'
// checks, the node graph and its order), blockdevice_lvm.go (the lvm
// entry), labels.go (filesystem types, labels and the mkfs_root merge),
// mounts.go (mount order, fstab), ids.go (UUIDs, GUIDs, volume ids),
// parttypes.go (partition type codes), defaultlayout.go. Planning:
// disk.go (DiskSpec, Disk, PlanDisk), plan.go (volume and filesystem
// sizes), tree.go, ext4size.go and fsmodels.go (what the tree takes).
// Writing: assembly.go (BuildDisk and each filesystem type), lvm.go,
// loop.go, grub.go, run.go (host tools). Other outputs: convert.go,
// archive.go, initramfs.go.
//
// Every output is written under a hidden temporary name in its directory
// and renamed when complete; on failure or cancellation the partial file,
// loop devices and mounts are gone.
package assemble
