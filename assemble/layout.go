package assemble

import (
	"slices"
	"strings"
)

// The layout's types, and the questions the rest of the package asks a
// layout: which filesystem is the root, the ESP, /boot, and which one
// holds a path. Reading the YAML into a Layout is blockdevice_yaml.go and
// blockdevice_graph.go.

// Layout is a DIB block-device configuration ("block-device-default.yaml",
// DIB_BLOCK_DEVICE_CONFIG) as plain data: one image, an optional partition
// table, optional LVM, and the filesystems with their mounts and fstab
// entries. ParseBlockDeviceConfig reads DIB's tree and graph forms alike;
// MergeRoot applies the image-wide root options as DIB's mkfs_root merge
// does; AssignIDs fills the identifiers the YAML leaves open. PlanDisk and
// BuildDisk lay a tree onto it.
type Layout struct {
	Source       string        // where the YAML came from, for messages
	Image        LoopImage     // the local_loop entry
	Partitioning *Partitioning // nil: filesystems sit on the whole image (DIB's fallback)
	LVM          *LVM          // nil without an lvm entry
	// Filesystems are the mkfs entries in the order DIB flattens the
	// config (children of a tree entry before the entry itself).
	Filesystems []Filesystem
	// Warnings name keys DIB would ignore (typos such as "fck-passno").
	Warnings []string
}

// LoopImage is DIB's local_loop entry: the disk image itself.
type LoopImage struct {
	Name      string // node name, usually image0
	SizeBytes int64  // local_loop "size"; 0 = not given (--image-size, else automatic)
	BlockSize int64  // logical sector size; only 512 is supported
}

// Partitioning is DIB's partitioning entry.
type Partitioning struct {
	Name       string    // the entry's name; DIB gives it no node of its own
	Base       string    // the image node
	Label      TableKind // MBR or GPT
	AlignBytes int64     // MBR partition alignment ("align"), default 1 MiB
	// DiskGUID is the GPT disk GUID, or for MBR the 32-bit disk signature
	// as 8 hex digits; AssignIDs fills it in.
	DiskGUID   string
	Partitions []PartitionSpec
}

// PartitionSpec is one item of "partitions".
type PartitionSpec struct {
	Name string // node name and GPT partition name
	Size Size
	// Boot sets the MBR active flag (GPT: ignored, as DIB's sgdisk call
	// ignores it). Primary makes an MBR primary partition; the others are
	// logical partitions in an extended partition, as DIB's MBR writer
	// lays them out.
	Boot, Primary bool
	Type          string // as written: MBR hex ("0x83"), GPT sgdisk code ("EF00") or GUID; "" = default
	MBRType       byte   // resolved MBR type (0 when Type does not fit in a byte)
	TypeGUID      string // resolved GPT type GUID
	GUID          string // GPT partition GUID; AssignIDs fills it in
}

// LVM is DIB's lvm entry.
type LVM struct {
	Name string
	PVs  []PhysicalVolume
	VGs  []VolumeGroup
	LVs  []LogicalVolume
}

// PhysicalVolume is a pvs item: a PV made on a partition.
type PhysicalVolume struct {
	Name, Base string
	Options    []string // passed to pvcreate
}

// VolumeGroup is a vgs item.
type VolumeGroup struct {
	Name    string
	Base    []string // PV names
	Options []string // passed to vgcreate
}

// LogicalVolume is an lvs item: exactly one of Size and Extents is set.
type LogicalVolume struct {
	Name, Base string // Base is the VG
	// Size is absolute; DIB floors it to 4 MiB and passes "-L <bytes>B".
	Size    Size
	Extents string // lvcreate -l: "N", "N%VG" or "N%FREE"
	// Type is "", "thin-pool" or "thin" (then ThinPool names the pool).
	Type, ThinPool string
	Options        []string // passed to lvcreate
}

// Filesystem is a mkfs entry with its mount and fstab entries.
type Filesystem struct {
	Name string // node name (mkfs_root, ...)
	Base string // the partition, LV or image it is made on
	Type string // ext2, ext3, ext4, xfs, vfat or swap
	// Label defaults to the node name (upper-cased for vfat); mkfs_root
	// gets cloudimg-rootfs (img-rootfs for xfs) from MergeRoot.
	Label string
	// UUID is the filesystem UUID (ext*, xfs, swap) or, for vfat, the
	// volume id as XXXX-XXXX. AssignIDs fills it in.
	UUID  string
	Opts  []string // extra mkfs options, as DIB's space-split "opts"
	Mount *Mount   // nil: made but not mounted (and not in fstab)

	// Which keys the YAML set: MergeRoot fills only the others.
	typeSet, labelSet, optsSet bool
}

// Mount is a mount entry: where the filesystem goes in the image's tree.
type Mount struct {
	Name       string
	MountPoint string      // absolute path, or "none" for swap
	Fstab      *FstabEntry // nil: no /etc/fstab line
}

// FstabEntry is an fstab entry.
type FstabEntry struct {
	Name       string
	Options    string // default "defaults" ("sw" for swap)
	DumpFreq   int    // default 0
	FsckPassno int    // default 2 (0 for swap)
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
