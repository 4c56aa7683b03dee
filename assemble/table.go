package assemble

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf16"
)

// SectorSize is the logical sector size of every image this package writes.
// 4Kn images are not supported: firmware and GRUB's boot.img assume 512.
const SectorSize = 512

// MiB is the alignment unit of every partition.
const MiB int64 = 1 << 20

// TableKind names a partition table format.
type TableKind string

// Partition table formats.
const (
	GPT TableKind = "gpt"
	MBR TableKind = "mbr"
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

// MBR partitions numbered 5 and up are logical partitions inside an
// extended partition, laid out as DIB's MBR writer does: the extended
// partition takes the first free primary slot and runs from the first
// logical partition's EBR to the end of the disk, and each logical
// partition's EBR (extended boot record) is the sector 1 MiB before the
// partition, so the gap the alignment leaves holds it.
const firstLogical = 5

// ebrGap is how far before a logical partition its EBR sits.
const ebrGap = MiB

// IsLogical reports whether p is an MBR logical partition.
func (p Partition) IsLogical() bool { return p.Number >= firstLogical }

// extentStart is the first byte p occupies, its EBR included.
func (p Partition) extentStart(kind TableKind) int64 {
	if kind == MBR && p.IsLogical() {
		return p.StartBytes - ebrGap
	}
	return p.StartBytes
}

// EndBytes is the first byte after the partition.
func (p Partition) EndBytes() int64 { return p.StartBytes + p.SizeBytes }

// Table is a whole-disk partition table.
type Table struct {
	Kind TableKind
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
		if _, err := parseGUID(t.DiskGUID); err != nil {
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
		if _, err := parseMBRSignature(t.DiskGUID); err != nil {
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
	guids := map[[16]byte]int{}
	bootable := 0
	for _, p := range t.Partitions {
		maxNum := gptEntries
		if t.Kind == MBR {
			maxNum = 4
			if p.IsLogical() {
				maxNum = firstLogical + 250 // far beyond what tools list (about 60)
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
		if p.extentStart(t.Kind) < first || p.EndBytes() > last {
			return fmt.Errorf("partition %d (%s) spans bytes %d..%d, outside the usable area %d..%d of a %d-byte disk",
				p.Number, p.Name, p.StartBytes, p.EndBytes(), first, last, t.DiskSizeBytes)
		}
		if t.Kind == GPT {
			if _, err := parseGUID(p.TypeGUID); err != nil {
				return fmt.Errorf("partition %d (%s) type: %w", p.Number, p.Name, err)
			}
			g, err := parseGUID(p.GUID)
			if err != nil {
				return fmt.Errorf("partition %d (%s) GUID: %w", p.Number, p.Name, err)
			}
			if g == ([16]byte{}) {
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
		if b.extentStart(t.Kind) < a.EndBytes() {
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
		next := firstLogical
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

// WriteTo writes the table into f, which must be exactly DiskSizeBytes long
// or shorter (it is then extended, sparsely). For GPT that is the protective
// MBR, the primary header and entries, the backup entries and header at the
// end of the disk, all with their CRC32s. The boot code area of sector 0
// (bytes 0..439) is kept, so a table may be rewritten after InstallBIOSBoot.
// Nothing is written if the table does not validate.
func (t Table) WriteTo(f *os.File) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("invalid %s partition table: %w", t.Kind, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("write partition table: %w", err)
	}
	switch {
	case st.Size() < t.DiskSizeBytes:
		if err := f.Truncate(t.DiskSizeBytes); err != nil {
			return fmt.Errorf("write partition table: extend %s: %w", f.Name(), err)
		}
	case st.Size() > t.DiskSizeBytes:
		return fmt.Errorf("write partition table: %s is %d bytes but the table describes a %d-byte disk; the backup GPT would not be at the end",
			f.Name(), st.Size(), t.DiskSizeBytes)
	}
	sector0 := make([]byte, SectorSize)
	if _, err := f.ReadAt(sector0, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("write partition table: read sector 0: %w", err)
	}
	if t.Kind == MBR {
		return t.writeMBR(f, sector0)
	}
	return t.writeGPT(f, sector0)
}

func (t Table) writeMBR(f *os.File, sector0 []byte) error {
	sig, _ := parseMBRSignature(t.DiskGUID) // validated
	binary.LittleEndian.PutUint32(sector0[0x1b8:], sig)
	sector0[0x1bc], sector0[0x1bd] = 0, 0
	clear(sector0[0x1be:0x1fe])
	var logical []Partition
	for _, p := range t.Partitions {
		if p.IsLogical() {
			logical = append(logical, p)
			continue
		}
		putMBREntry(sector0[0x1be+16*(p.Number-1):], p.Bootable, p.MBRType, p.StartBytes/SectorSize, p.StartBytes/SectorSize, p.SizeBytes/SectorSize)
	}
	sector0[0x1fe], sector0[0x1ff] = 0x55, 0xAA
	slices.SortFunc(logical, func(a, b Partition) int { return cmp.Compare(a.StartBytes, b.StartBytes) })
	var ebrs [][]byte
	if len(logical) > 0 {
		// The extended partition: from the first EBR to the end of the
		// disk, as far as 32-bit sector counts reach.
		extLBA := logical[0].extentStart(MBR) / SectorSize
		extLen := min(t.DiskSizeBytes/SectorSize, 1<<32-1) - extLBA
		putMBREntry(sector0[0x1be+16*(t.extendedSlot()-1):], false, mbrExtendedLBA, extLBA, extLBA, extLen)
		for i, p := range logical {
			ebr := make([]byte, SectorSize)
			ebrLBA := p.extentStart(MBR) / SectorSize
			putMBREntry(ebr[0x1be:], p.Bootable, p.MBRType, p.StartBytes/SectorSize, p.StartBytes/SectorSize-ebrLBA, p.SizeBytes/SectorSize)
			if i+1 < len(logical) {
				n := logical[i+1]
				nLBA := n.extentStart(MBR) / SectorSize
				putMBREntry(ebr[0x1be+16:], false, mbrExtendedCHS, nLBA, nLBA-extLBA, n.EndBytes()/SectorSize-nLBA)
			}
			ebr[0x1fe], ebr[0x1ff] = 0x55, 0xAA
			ebrs = append(ebrs, ebr)
		}
	}
	// EBRs first: sector 0 pointing at a half-written chain is worse
	// than a chain nothing points at.
	for i, p := range logical {
		if _, err := f.WriteAt(ebrs[i], p.extentStart(MBR)); err != nil {
			return fmt.Errorf("write EBR of partition %d: %w", p.Number, err)
		}
	}
	if _, err := f.WriteAt(sector0, 0); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	return nil
}

// putMBREntry writes a 16-byte partition entry for the sectors
// absLBA..absLBA+length-1. The LBA field holds stored, which EBR entries
// give relative to their EBR or to the extended partition; the CHS fields
// describe the absolute sectors.
func putMBREntry(e []byte, bootable bool, typ byte, absLBA, stored, length int64) {
	clear(e[:16])
	if bootable {
		e[0] = 0x80
	}
	copy(e[1:4], chs(absLBA))
	e[4] = typ
	copy(e[5:8], chs(absLBA+length-1))
	binary.LittleEndian.PutUint32(e[8:], uint32(stored))
	binary.LittleEndian.PutUint32(e[12:], uint32(length))
}

func (t Table) writeGPT(f *os.File, sector0 []byte) error {
	lastLBA := t.DiskSizeBytes/SectorSize - 1

	// Protective MBR: one 0xEE entry covering the disk (capped at 2^32-1).
	clear(sector0[0x1b8:0x1fe])
	e := sector0[0x1be:]
	if t.ProtectiveMBRBootable {
		e[0] = 0x80
	}
	copy(e[1:4], []byte{0x00, 0x02, 0x00})
	e[4] = MBRProtective
	copy(e[5:8], []byte{0xFE, 0xFF, 0xFF})
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(min(lastLBA, 0xFFFFFFFF)))
	sector0[0x1fe], sector0[0x1ff] = 0x55, 0xAA

	entries := make([]byte, gptEntries*gptEntrySize)
	for _, p := range t.Partitions {
		b := entries[(p.Number-1)*gptEntrySize:]
		typ, _ := parseGUID(p.TypeGUID)
		uniq, _ := parseGUID(p.GUID)
		copy(b[0:16], guidToDisk(typ))
		copy(b[16:32], guidToDisk(uniq))
		binary.LittleEndian.PutUint64(b[32:], uint64(p.StartBytes/SectorSize))
		binary.LittleEndian.PutUint64(b[40:], uint64(p.EndBytes()/SectorSize-1))
		if p.Bootable {
			binary.LittleEndian.PutUint64(b[48:], 1<<gptLegacyBootBit)
		}
		for i, u := range utf16.Encode([]rune(p.Name)) {
			binary.LittleEndian.PutUint16(b[56+2*i:], u)
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	diskGUID, _ := parseGUID(t.DiskGUID)

	header := func(my, alternate, entriesLBA int64) []byte {
		h := make([]byte, SectorSize)
		copy(h[0:8], "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
		binary.LittleEndian.PutUint64(h[24:], uint64(my))
		binary.LittleEndian.PutUint64(h[32:], uint64(alternate))
		binary.LittleEndian.PutUint64(h[40:], gptFirstUsable)
		binary.LittleEndian.PutUint64(h[48:], uint64(lastLBA-gptFirstUsable+1))
		copy(h[56:72], guidToDisk(diskGUID))
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(h[80:], gptEntries)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
		return h
	}
	backupEntriesLBA := lastLBA - gptEntrySectors
	writes := []struct {
		what string
		lba  int64
		data []byte
	}{
		// Backup first, primary last: a crash leaves at worst a stale
		// primary, which tools detect by its CRC, never a torn pair.
		{"backup GPT entries", backupEntriesLBA, entries},
		{"backup GPT header", lastLBA, header(lastLBA, 1, backupEntriesLBA)},
		{"GPT entries", 2, entries},
		{"GPT header", 1, header(1, lastLBA, 2)},
		{"protective MBR", 0, sector0},
	}
	for _, w := range writes {
		if _, err := f.WriteAt(w.data, w.lba*SectorSize); err != nil {
			return fmt.Errorf("write %s at LBA %d: %w", w.what, w.lba, err)
		}
	}
	return nil
}

// ReadTable reads the partition table of the disk image f: the primary GPT
// (header and entry CRCs checked) or, without a protective MBR, the MBR.
func ReadTable(f *os.File) (Table, error) {
	st, err := f.Stat()
	if err != nil {
		return Table{}, fmt.Errorf("read partition table: %w", err)
	}
	sector0 := make([]byte, SectorSize)
	if _, err := f.ReadAt(sector0, 0); err != nil {
		return Table{}, fmt.Errorf("read partition table of %s: %w", f.Name(), err)
	}
	if sector0[0x1fe] != 0x55 || sector0[0x1ff] != 0xAA {
		return Table{}, fmt.Errorf("%s has no partition table (no 0x55AA signature in sector 0)", f.Name())
	}
	t := Table{DiskSizeBytes: st.Size()}
	if sector0[0x1be+4] != MBRProtective {
		t.Kind = MBR
		t.DiskGUID = fmt.Sprintf("%08X", binary.LittleEndian.Uint32(sector0[0x1b8:]))
		extLBA := int64(-1)
		for i := range 4 {
			e := sector0[0x1be+16*i:]
			switch e[4] {
			case 0:
				continue
			case mbrExtendedCHS, mbrExtendedLBA, 0x85:
				extLBA = int64(binary.LittleEndian.Uint32(e[8:]))
				continue
			}
			t.Partitions = append(t.Partitions, Partition{
				Number:     i + 1,
				MBRType:    e[4],
				Bootable:   e[0] == 0x80,
				StartBytes: int64(binary.LittleEndian.Uint32(e[8:])) * SectorSize,
				SizeBytes:  int64(binary.LittleEndian.Uint32(e[12:])) * SectorSize,
			})
		}
		if extLBA >= 0 {
			logical, err := readEBRChain(f, extLBA)
			if err != nil {
				return Table{}, err
			}
			t.Partitions = append(t.Partitions, logical...)
		}
		return t, nil
	}
	t.Kind = GPT
	h := make([]byte, SectorSize)
	if _, err := f.ReadAt(h, SectorSize); err != nil {
		return Table{}, fmt.Errorf("read GPT header: %w", err)
	}
	if !bytes.Equal(h[0:8], []byte("EFI PART")) {
		return Table{}, fmt.Errorf("%s has a protective MBR but no GPT header at LBA 1", f.Name())
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < gptHeaderSize || hsize > SectorSize {
		return Table{}, fmt.Errorf("GPT header size %d is invalid", hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	hc := bytes.Clone(h[:hsize])
	binary.LittleEndian.PutUint32(hc[16:], 0)
	if got := crc32.ChecksumIEEE(hc); got != want {
		return Table{}, fmt.Errorf("GPT header CRC is %08x, expected %08x: the header is corrupt", got, want)
	}
	var dg [16]byte
	copy(dg[:], h[56:72])
	t.DiskGUID = formatGUID(guidFromDisk(dg[:]))
	entriesLBA := int64(binary.LittleEndian.Uint64(h[72:]))
	n := binary.LittleEndian.Uint32(h[80:])
	size := binary.LittleEndian.Uint32(h[84:])
	if size < gptEntrySize || n*size > 1<<20 {
		return Table{}, fmt.Errorf("GPT entry array of %d x %d bytes is invalid", n, size)
	}
	entries := make([]byte, n*size)
	if _, err := f.ReadAt(entries, entriesLBA*SectorSize); err != nil {
		return Table{}, fmt.Errorf("read GPT entries: %w", err)
	}
	if got, want := crc32.ChecksumIEEE(entries), binary.LittleEndian.Uint32(h[88:]); got != want {
		return Table{}, fmt.Errorf("GPT entry array CRC is %08x, expected %08x: the entries are corrupt", got, want)
	}
	for i := range int(n) {
		b := entries[i*int(size):]
		if bytes.Equal(b[0:16], make([]byte, 16)) {
			continue
		}
		var name []uint16
		for j := 0; j < 36; j++ {
			u := binary.LittleEndian.Uint16(b[56+2*j:])
			if u == 0 {
				break
			}
			name = append(name, u)
		}
		first := int64(binary.LittleEndian.Uint64(b[32:]))
		last := int64(binary.LittleEndian.Uint64(b[40:]))
		t.Partitions = append(t.Partitions, Partition{
			Number:     i + 1,
			Name:       string(utf16.Decode(name)),
			TypeGUID:   formatGUID(guidFromDisk(b[0:16])),
			GUID:       formatGUID(guidFromDisk(b[16:32])),
			StartBytes: first * SectorSize,
			SizeBytes:  (last - first + 1) * SectorSize,
			Bootable:   binary.LittleEndian.Uint64(b[48:])&(1<<gptLegacyBootBit) != 0,
		})
	}
	return t, nil
}

// readEBRChain reads the logical partitions of the extended partition
// starting at LBA extLBA.
func readEBRChain(f *os.File, extLBA int64) ([]Partition, error) {
	var out []Partition
	ebrLBA := extLBA
	for n := firstLogical; ; n++ {
		if n > firstLogical+1000 {
			return nil, fmt.Errorf("%s: the EBR chain has more than 1000 links: it loops", f.Name())
		}
		ebr := make([]byte, SectorSize)
		if _, err := f.ReadAt(ebr, ebrLBA*SectorSize); err != nil {
			return nil, fmt.Errorf("read EBR at LBA %d: %w", ebrLBA, err)
		}
		if ebr[0x1fe] != 0x55 || ebr[0x1ff] != 0xAA {
			return nil, fmt.Errorf("%s: no EBR signature at LBA %d", f.Name(), ebrLBA)
		}
		e := ebr[0x1be:]
		if e[4] != 0 {
			out = append(out, Partition{
				Number:     n,
				MBRType:    e[4],
				Bootable:   e[0] == 0x80,
				StartBytes: (ebrLBA + int64(binary.LittleEndian.Uint32(e[8:]))) * SectorSize,
				SizeBytes:  int64(binary.LittleEndian.Uint32(e[12:])) * SectorSize,
			})
		}
		link := ebr[0x1be+16:]
		if link[4] != mbrExtendedCHS && link[4] != mbrExtendedLBA {
			return out, nil
		}
		ebrLBA = extLBA + int64(binary.LittleEndian.Uint32(link[8:]))
	}
}

// chs encodes lba as an MBR cylinder/head/sector triple for the customary
// 255 heads x 63 sectors geometry, saturating at 1023/254/63 like fdisk.
func chs(lba int64) []byte {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	if c > 1023 {
		return []byte{0xFE, 0xFF, 0xFF}
	}
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

func parseMBRSignature(s string) (uint32, error) {
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
