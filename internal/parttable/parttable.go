// Package parttable is the on-disk MBR and GPT partition table: the data
// (Table, Partition), its checks (Validate), the writer (WriteTo) and the one
// reader of the module (Read).
//
// It is a leaf package of its own, not part of assemble, because readers
// of finished images need it too: publish inspects an image before upload
// and rootfs looks for the root filesystem of a local image, and neither
// should depend on the disk assembler (and, through it, on the element
// library). assemble re-exports the types under their old names.
//
// Only 512-byte logical sectors are supported: firmware and GRUB's boot.img
// assume them, and a disk image file has no sector size of its own.
package parttable

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/google/uuid"
)

// SectorSize is the logical sector size of every table this package reads
// and writes.
const SectorSize = 512

// MiB is the alignment unit of every partition.
const MiB int64 = 1 << 20

// Kind names a partition table format.
type Kind string

// Partition table formats.
const (
	GPT Kind = "gpt"
	MBR Kind = "mbr"
)

// Well-known GPT partition type GUIDs (upper-case canonical form).
const (
	BIOSBoot        = "21686148-6449-6E6F-744E-656564454649"
	ESP             = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	LinuxRootX86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" // Discoverable Partitions root
	LinuxFilesystem = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// MBR partition type bytes.
const (
	MBRLinux      byte = 0x83
	MBRESP        byte = 0xEF
	MBRProtective byte = 0xEE
)

// MBR type bytes of extended partitions: the writer links EBRs with CHS
// entries and puts an LBA container in the MBR, as DIB's MBR writer does;
// the reader also follows Linux's 0x85.
const (
	mbrExtendedCHS   byte = 0x05
	mbrExtendedLBA   byte = 0x0F
	mbrExtendedLinux byte = 0x85
)

// GPT geometry fixed by this package: 128 entries of 128 bytes, i.e. 32
// sectors, which is what every tool and firmware expects.
const (
	gptEntries       = 128
	gptEntrySize     = 128
	gptHeaderSize    = 92
	gptEntrySectors  = gptEntries * gptEntrySize / SectorSize
	gptFirstUsable   = 2 + gptEntrySectors // LBA 34
	gptLegacyBootBit = 2                   // attribute bit "legacy BIOS bootable"
)

// MBR partitions numbered FirstLogical and up are logical partitions
// inside an extended partition, laid out as DIB's MBR writer does: the
// extended partition takes the first free primary slot and runs from the
// first logical partition's EBR to the end of the disk, and each logical
// partition's EBR (extended boot record) is the sector 1 MiB before the
// partition, so the gap the alignment leaves holds it.
const FirstLogical = 5

// ebrGap is how far before a logical partition its EBR sits.
const ebrGap = MiB

// Partition is one entry of a partition table. Offsets and sizes are bytes.
type Partition struct {
	Number     int    // 1-based
	Name       string // GPT partition name (at most 36 UTF-16 code units)
	TypeGUID   string // GPT type GUID (upper-case canonical), "" for MBR
	MBRType    byte   // MBR type byte (0x83 linux, 0xEF ESP); 0 for GPT
	GUID       string // GPT unique partition GUID
	StartBytes int64  // 1 MiB aligned
	SizeBytes  int64  // 1 MiB aligned
	// Bootable is the MBR active flag (legacy BIOS boot). On GPT it sets the
	// "legacy BIOS bootable" attribute (bit 2), which GRUB ignores but
	// syslinux-style loaders honour.
	Bootable bool
}

// IsLogical reports whether p is an MBR logical partition.
func (p Partition) IsLogical() bool { return p.Number >= FirstLogical }

// ExtentStart is the first byte p occupies on a table of kind: its start,
// or for an MBR logical partition its EBR's.
func (p Partition) ExtentStart(kind Kind) int64 {
	if kind == MBR && p.IsLogical() {
		return p.StartBytes - ebrGap
	}
	return p.StartBytes
}

// EndBytes is the first byte after the partition.
func (p Partition) EndBytes() int64 { return p.StartBytes + p.SizeBytes }

// Table is a whole-disk partition table.
type Table struct {
	Kind Kind
	// DiskGUID is the GPT disk GUID; for MBR the 32-bit disk signature as 8
	// hex digits ("" writes 0).
	DiskGUID      string
	DiskSizeBytes int64
	Partitions    []Partition
	// ProtectiveMBRBootable marks the GPT protective MBR entry active. The
	// UEFI spec wants it clear, but some legacy BIOSes only boot a GPT disk
	// when it is set (parted's pmbr_boot).
	ProtectiveMBRBootable bool
}

// Validate checks the table for everything WriteTo would otherwise write
// wrongly: kind, alignment, bounds, overlaps, duplicate numbers and GUIDs.
func (t Table) Validate() error {
	if t.DiskSizeBytes <= 0 || t.DiskSizeBytes%SectorSize != 0 {
		return fmt.Errorf("disk size %d bytes is not a positive multiple of %d", t.DiskSizeBytes, SectorSize)
	}
	var first, last int64 // usable byte range [first, last)
	switch t.Kind {
	case GPT:
		if _, err := ParseGUID(t.DiskGUID); err != nil {
			return fmt.Errorf("disk GUID: %w", err)
		}
		sectors := t.DiskSizeBytes / SectorSize
		if sectors < 2*gptFirstUsable+1 {
			return fmt.Errorf("disk of %d bytes is too small for a GPT", t.DiskSizeBytes)
		}
		first, last = gptFirstUsable*SectorSize, (sectors-gptFirstUsable+1)*SectorSize
		if len(t.Partitions) > gptEntries {
			return fmt.Errorf("%d partitions: GPT holds at most %d", len(t.Partitions), gptEntries)
		}
	case MBR:
		if _, err := ParseMBRSignature(t.DiskGUID); err != nil {
			return err
		}
		first, last = SectorSize, min(t.DiskSizeBytes, (1<<32)*SectorSize)
		primaries, logicals := 0, 0
		for _, p := range t.Partitions {
			if p.IsLogical() {
				logicals++
			} else {
				primaries++
			}
		}
		if logicals > 0 && primaries > 3 {
			return fmt.Errorf("%d primary partitions and logical ones: the extended partition needs one of the 4 MBR slots", primaries)
		}
	default:
		return fmt.Errorf("unknown partition table kind %q: use %q or %q", t.Kind, GPT, MBR)
	}
	numbers := map[int]bool{}
	guids := map[uuid.UUID]int{}
	bootable := 0
	for _, p := range t.Partitions {
		maxNum := gptEntries
		if t.Kind == MBR {
			maxNum = 4
			if p.IsLogical() {
				maxNum = FirstLogical + 250 // far beyond what tools list (about 60)
			}
		}
		if p.Number < 1 || p.Number > maxNum {
			return fmt.Errorf("partition %d (%s): number must be 1..%d", p.Number, p.Name, maxNum)
		}
		if numbers[p.Number] {
			return fmt.Errorf("partition number %d is used twice", p.Number)
		}
		numbers[p.Number] = true
		if p.SizeBytes <= 0 || p.StartBytes%MiB != 0 || p.SizeBytes%MiB != 0 {
			return fmt.Errorf("partition %d (%s): start %d and size %d bytes must be positive multiples of 1 MiB",
				p.Number, p.Name, p.StartBytes, p.SizeBytes)
		}
		if p.ExtentStart(t.Kind) < first || p.EndBytes() > last {
			return fmt.Errorf("partition %d (%s) spans bytes %d..%d, outside the usable area %d..%d of a %d-byte disk",
				p.Number, p.Name, p.StartBytes, p.EndBytes(), first, last, t.DiskSizeBytes)
		}
		if t.Kind == GPT {
			if _, err := ParseGUID(p.TypeGUID); err != nil {
				return fmt.Errorf("partition %d (%s) type: %w", p.Number, p.Name, err)
			}
			g, err := ParseGUID(p.GUID)
			if err != nil {
				return fmt.Errorf("partition %d (%s) GUID: %w", p.Number, p.Name, err)
			}
			if g == uuid.Nil {
				return fmt.Errorf("partition %d (%s) has the nil GUID: give it a unique one", p.Number, p.Name)
			}
			if other, dup := guids[g]; dup {
				return fmt.Errorf("partitions %d and %d have the same GUID %s", other, p.Number, p.GUID)
			}
			guids[g] = p.Number
			if n := len(utf16.Encode([]rune(p.Name))); n > 36 {
				return fmt.Errorf("partition %d name %q is %d UTF-16 units long: GPT allows 36", p.Number, p.Name, n)
			}
		} else {
			if p.MBRType == 0 {
				return fmt.Errorf("partition %d (%s) has MBR type 0 (empty): set MBRType, e.g. 0x83 for Linux", p.Number, p.Name)
			}
			if p.Bootable {
				bootable++
			}
		}
	}
	if bootable > 1 {
		return errors.New("more than one MBR partition is marked bootable: BIOSes boot only one")
	}
	sorted := slices.Clone(t.Partitions)
	slices.SortFunc(sorted, func(a, b Partition) int { return cmp.Compare(a.StartBytes, b.StartBytes) })
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if b.ExtentStart(t.Kind) < a.EndBytes() {
			what := ""
			if t.Kind == MBR && b.IsLogical() {
				what = fmt.Sprintf(" (with the EBR of %d in the MiB before it)", b.Number)
			}
			return fmt.Errorf("partitions %d (%s) and %d (%s) overlap: %d..%d and %d..%d%s",
				a.Number, a.Name, b.Number, b.Name, a.StartBytes, a.EndBytes(), b.StartBytes, b.EndBytes(), what)
		}
	}
	if t.Kind == MBR {
		// Logical partitions are numbered in disk order from 5, and every
		// primary comes before the extended partition (which runs to the
		// end of the disk).
		next := FirstLogical
		seenLogical := false
		for _, p := range sorted {
			if p.IsLogical() {
				if p.Number != next {
					return fmt.Errorf("logical partition %d (%s) must be number %d: logical partitions are numbered 5, 6, ... in disk order", p.Number, p.Name, next)
				}
				next++
				seenLogical = true
			} else if seenLogical {
				return fmt.Errorf("primary partition %d (%s) comes after a logical partition: give primary partitions first (as DIB requires)", p.Number, p.Name)
			}
		}
	}
	return nil
}

// extendedSlot is the MBR slot (1-4) of the extended partition: the first
// one no primary partition uses, or 0 without logical partitions.
func (t Table) extendedSlot() int {
	used := map[int]bool{}
	logical := false
	for _, p := range t.Partitions {
		used[p.Number] = true
		logical = logical || p.IsLogical()
	}
	if !logical {
		return 0
	}
	for n := 1; n <= 4; n++ {
		if !used[n] {
			return n
		}
	}
	return 0
}

// ParseGUID parses the canonical 8-4-4-4-12 form, in either case, into its
// 16 bytes in string order (big-endian fields, as for RFC 4122 UUIDs).
// uuid.Parse also takes braces, "urn:uuid:" and bare hex; GPT tools and
// the kernel command line write only this form, so only it is accepted.
func ParseGUID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, fmt.Errorf("%q is not a GUID of the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", s)
	}
	g, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%q is not a GUID of the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX: %w", s, err)
	}
	return g, nil
}

// FormatGUID returns the upper-case canonical form, as GPT tools print it.
func FormatGUID(g uuid.UUID) string { return strings.ToUpper(g.String()) }

// guidToDisk converts to GPT's on-disk layout, which uuid does not do: the
// first three fields are little-endian, the last two are stored as in the
// string.
func guidToDisk(g uuid.UUID) []byte {
	d := make([]byte, 16)
	binary.LittleEndian.PutUint32(d[0:], binary.BigEndian.Uint32(g[0:]))
	binary.LittleEndian.PutUint16(d[4:], binary.BigEndian.Uint16(g[4:]))
	binary.LittleEndian.PutUint16(d[6:], binary.BigEndian.Uint16(g[6:]))
	copy(d[8:], g[8:])
	return d
}

// guidFromDisk is guidToDisk's inverse.
func guidFromDisk(d []byte) uuid.UUID {
	var g uuid.UUID
	binary.BigEndian.PutUint32(g[0:], binary.LittleEndian.Uint32(d[0:]))
	binary.BigEndian.PutUint16(g[4:], binary.LittleEndian.Uint16(d[4:]))
	binary.BigEndian.PutUint16(g[6:], binary.LittleEndian.Uint16(d[6:]))
	copy(g[8:], d[8:16])
	return g
}

// ParseMBRSignature reads an MBR disk signature: 8 hex digits, with or
// without 0x; "" is 0.
func ParseMBRSignature(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	var v uint32
	s = strings.TrimPrefix(strings.ToLower(s), "0x")
	if len(s) != 8 {
		return 0, fmt.Errorf("MBR disk signature %q must be 8 hex digits", s)
	}
	if _, err := fmt.Sscanf(s, "%08x", &v); err != nil {
		return 0, fmt.Errorf("MBR disk signature %q must be 8 hex digits", s)
	}
	return v, nil
}
