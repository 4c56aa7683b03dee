package assemble

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MergeRoot applies the image-wide root filesystem options to the mkfs
// entry named mkfs_root, for each key its YAML did not set, as DIB does at
// "dib-block-device init": fsType is FS_TYPE ("" = ext4), label is
// --root-label ("" = cloudimg-rootfs, or img-rootfs for xfs), opts is
// --mkfs-options. Other filesystems are left alone (DIB passes these
// options to mkfs_root only). Labels are checked again.
func (l *Layout) MergeRoot(fsType, label string, opts []string) error {
	labels := map[string]string{}
	for i := range l.Filesystems {
		fs := &l.Filesystems[i]
		mergeRoot(fs, fsType, label, opts)
		if err := checkFSType(*fs); err != nil {
			return fmt.Errorf("%s: %w (FS_TYPE)", l.Source, err)
		}
		if err := checkLabel(*fs, labels); err != nil {
			return fmt.Errorf("%s: %w", l.Source, err)
		}
		labels[fs.Label] = fs.Name
	}
	return nil
}

// checkVolumes checks what the graph does not: every volume holds one
// thing, and filesystems and PVs sit on volumes that exist.
func (l *Layout) checkVolumes() error {
	users := map[string]string{}
	use := func(vol, user string) error {
		if other, ok := users[vol]; ok {
			return fmt.Errorf("%s is used by both %s and %s: a partition or logical volume holds one filesystem or physical volume", vol, other, user)
		}
		users[vol] = user
		return nil
	}
	if l.LVM != nil {
		if l.Partitioning == nil {
			return errors.New("lvm needs a partitioning entry for its physical volumes")
		}
		for _, pv := range l.LVM.PVs {
			if !slices.ContainsFunc(l.Partitioning.Partitions, func(p PartitionSpec) bool { return p.Name == pv.Base }) {
				return fmt.Errorf("pv %s: base %s is not a partition", pv.Name, pv.Base)
			}
			if err := use(pv.Base, "pv "+pv.Name); err != nil {
				return err
			}
		}
	}
	for _, fs := range l.Filesystems {
		if l.volumeKind(fs.Base) == "" {
			return fmt.Errorf("mkfs %s: base %s is not a partition, logical volume or image", fs.Name, fs.Base)
		}
		if err := use(fs.Base, "mkfs "+fs.Name); err != nil {
			return err
		}
	}
	if l.Partitioning != nil && l.Partitioning.Base != l.Image.Name {
		return fmt.Errorf("partitioning base %s is not the local_loop image %s", l.Partitioning.Base, l.Image.Name)
	}
	return nil
}

// volumeKind says what a volume name is: "partition", "lv", "image" or "".
func (l *Layout) volumeKind(name string) string {
	if l.Partitioning != nil {
		for _, p := range l.Partitioning.Partitions {
			if p.Name == name {
				return "partition"
			}
		}
	}
	if l.LVM != nil {
		for _, lv := range l.LVM.LVs {
			if lv.Name == name {
				return "lv"
			}
		}
	}
	if name == l.Image.Name && name != "" {
		return "image"
	}
	return ""
}

// AssignIDs fills every identifier the YAML left open, derived from seed
// so that the same seed gives the same image: filesystem UUIDs, FAT
// volume ids (as XXXX-XXXX), the GPT disk GUID or MBR signature, and GPT
// partition GUIDs. A seed of "" picks random identifiers.
func (l *Layout) AssignIDs(seed string) {
	if seed == "" {
		seed, _ = randomUUID() // crypto/rand does not fail on Linux
	}
	for i := range l.Filesystems {
		fs := &l.Filesystems[i]
		if fs.UUID != "" {
			continue
		}
		if fs.Type == "vfat" {
			fs.UUID = FATVolumeID(derivedUint32(seed, "fat/"+fs.Name))
		} else {
			fs.UUID = strings.ToLower(derivedGUID(seed, "fs/"+fs.Name))
		}
	}
	if p := l.Partitioning; p != nil {
		if p.DiskGUID == "" {
			if p.Label == GPT {
				p.DiskGUID = derivedGUID(seed, "disk")
			} else {
				p.DiskGUID = fmt.Sprintf("%08X", derivedUint32(seed, "mbr"))
			}
		}
		if p.Label == GPT {
			for i := range p.Partitions {
				if p.Partitions[i].GUID == "" {
					p.Partitions[i].GUID = derivedGUID(seed, "partition/"+p.Partitions[i].Name)
				}
			}
		}
	}
}

// Clone returns a deep copy, so a caller's Layout is never changed by
// PlanDisk.
func (l *Layout) Clone() *Layout {
	c := *l
	c.Warnings = slices.Clone(l.Warnings)
	if l.Partitioning != nil {
		p := *l.Partitioning
		p.Partitions = slices.Clone(p.Partitions)
		c.Partitioning = &p
	}
	if l.LVM != nil {
		v := *l.LVM
		v.PVs = slices.Clone(v.PVs)
		v.VGs = slices.Clone(v.VGs)
		v.LVs = slices.Clone(v.LVs)
		c.LVM = &v
	}
	c.Filesystems = slices.Clone(l.Filesystems)
	for i := range c.Filesystems {
		fs := &c.Filesystems[i]
		fs.Opts = slices.Clone(fs.Opts)
		if fs.Mount != nil {
			m := *fs.Mount
			if m.Fstab != nil {
				f := *m.Fstab
				m.Fstab = &f
			}
			fs.Mount = &m
		}
	}
	return &c
}

// mounted returns the mounted filesystems in mount order: parents before
// children, swap ("none") where the config put it.
func (l *Layout) mounted() []*Filesystem {
	var fss []*Filesystem
	for i := range l.Filesystems {
		if l.Filesystems[i].Mount != nil {
			fss = append(fss, &l.Filesystems[i])
		}
	}
	return sortMountPoints(fss, func(f *Filesystem) string { return f.Mount.MountPoint })
}

// Mounts returns the mount points in mount order (parents first), as
// DIB's mount_order; swap appears as "none".
func (l *Layout) Mounts() []string {
	var out []string
	for _, fs := range l.mounted() {
		out = append(out, fs.Mount.MountPoint)
	}
	return out
}

// Fstab returns /etc/fstab as DIB's writefstab makes it: one line per
// mount with an fstab entry, in mount order,
// "LABEL=<label> <mount point> <type> <options> <dump> <pass>".
func (l *Layout) Fstab() string {
	var b strings.Builder
	for _, fs := range l.mounted() {
		if f := fs.Mount.Fstab; f != nil {
			fmt.Fprintf(&b, "LABEL=%s %s %s %s %d %d\n", fstabEscape(fs.Label), fstabEscape(fs.Mount.MountPoint), fs.Type, f.Options, f.DumpFreq, f.FsckPassno)
		}
	}
	return b.String()
}

// fstabEscape writes spaces, tabs and backslashes as fstab's octal
// escapes (DIB writes them raw, which breaks the line: its own gpt_efi test
// config has a partition named "Root Part").
func fstabEscape(s string) string {
	return strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`).Replace(s)
}

// Root returns the filesystem mounted at /, or nil.
func (l *Layout) Root() *Filesystem { return l.FilesystemAt("/") }

// FilesystemAt returns the filesystem mounted exactly at mountPoint, or nil.
func (l *Layout) FilesystemAt(mountPoint string) *Filesystem {
	for i := range l.Filesystems {
		if m := l.Filesystems[i].Mount; m != nil && m.MountPoint == mountPoint {
			return &l.Filesystems[i]
		}
	}
	return nil
}

// PathOnFilesystem says which filesystem holds the image path p and where
// p is inside it: with a separate /boot, "/boot/vmlinuz-6.1" is
// "/vmlinuz-6.1" on the /boot filesystem. It returns nil when no mounted
// filesystem holds p.
func (l *Layout) PathOnFilesystem(p string) (*Filesystem, string) {
	var best *Filesystem
	for i := range l.Filesystems {
		fs := &l.Filesystems[i]
		if fs.Mount == nil || fs.Type == "swap" {
			continue
		}
		mp := fs.Mount.MountPoint
		if (mp == p || isParentMount(mp, p)) && (best == nil || len(mp) > len(best.Mount.MountPoint)) {
			best = fs
		}
	}
	if best == nil {
		return nil, ""
	}
	rel := strings.TrimPrefix(p, best.Mount.MountPoint)
	if !strings.HasPrefix(rel, "/") {
		rel = "/" + rel
	}
	return best, rel
}

// BootFilesystem is the filesystem GRUB reads its config and the kernel
// from: the one holding /boot.
func (l *Layout) BootFilesystem() *Filesystem {
	fs, _ := l.PathOnFilesystem("/boot")
	return fs
}

// GrubPrefix is GRUB's prefix on the boot filesystem: /grub when /boot is
// a filesystem of its own, /boot/grub otherwise.
func (l *Layout) GrubPrefix() string {
	_, rel := l.PathOnFilesystem("/boot/grub")
	return rel
}

// ESP returns the EFI system partition's filesystem: the vfat filesystem
// mounted at /boot/efi, or nil.
func (l *Layout) ESP() *Filesystem {
	fs := l.FilesystemAt("/boot/efi")
	if fs == nil || fs.Type != "vfat" {
		return nil
	}
	return fs
}

// DefaultLayout is block-device-efi's layout, DIB's default for vm
// images: GPT with an ESP (550 MiB, vfat at /boot/efi), a BIOS boot
// partition (8 MiB) and the root filesystem (ext4) filling the rest.
func DefaultLayout() *Layout {
	l, err := ParseBlockDeviceConfigFrom("block-device-efi", []byte(BlockDeviceEFIConfig))
	if err != nil {
		panic("assemble: built-in block-device-efi layout: " + err.Error())
	}
	return l
}

// BlockDeviceEFIConfig is the YAML of elements/library/block-device-efi
// (DIB's), kept here so that callers without the element get the same
// default.
const BlockDeviceEFIConfig = `- local_loop:
    name: image0

- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: ESP
        type: 'EF00'
        size: 550MiB
        mkfs:
          type: vfat
          mount:
            mount_point: /boot/efi
            fstab:
              options: "defaults"
              fsck-passno: 2
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: root
        type: '8300'
        size: 100%
        mkfs:
          type: ext4
          mount:
            mount_point: /
            fstab:
              options: "defaults"
              fsck-passno: 1
`
