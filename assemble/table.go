package assemble

import "builder/internal/parttable"

// The partition table (types, Validate, WriteTo and the reader) lives in
// builder/internal/parttable, which readers of finished images (publish,
// rootfs) share without depending on assembly; these are its names as
// assemble has always exported them.

// SectorSize is the logical sector size of every image this package writes.
// 4Kn images are not supported: firmware and GRUB's boot.img assume 512.
const SectorSize = parttable.SectorSize

// MiB is the alignment unit of every partition.
const MiB = parttable.MiB

// TableKind names a partition table format.
type TableKind = parttable.Kind

// Partition table formats.
const (
	GPT = parttable.GPT
	MBR = parttable.MBR
)

// Well-known GPT partition type GUIDs (upper-case canonical form).
const (
	BIOSBoot        = parttable.BIOSBoot
	ESP             = parttable.ESP
	LinuxRootX86_64 = parttable.LinuxRootX86_64 // Discoverable Partitions root
	LinuxFilesystem = parttable.LinuxFilesystem
)

// MBR partition type bytes.
const (
	MBRLinux      = parttable.MBRLinux
	MBRESP        = parttable.MBRESP
	MBRProtective = parttable.MBRProtective
)

// Partition is one entry of a partition table. Offsets and sizes are bytes.
type Partition = parttable.Partition

// Table is a whole-disk partition table; Table.WriteTo writes it.
type Table = parttable.Table
