package parttable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// ErrNoTable is the error Read returns (wrapped) for a disk without a
// partition table: no 0x55AA signature in sector 0, or not even one sector.
var ErrNoTable = errors.New("no partition table (no 0x55AA signature in sector 0)")

// ErrTruncated is wrapped by Read's error when the table runs past what r
// holds: the GPT entries, or an EBR of the MBR's chain of logical
// partitions, lie beyond its end. Callers that read only the first sectors
// of a disk (publish reads the first MiB of a qcow2) can tell this from a
// damaged table; for an MBR, Read then also returns the partitions it
// found before the end.
var ErrTruncated = errors.New("the partition table continues beyond the data read")

// Read reads the partition table of a disk of size bytes through r: the
// GPT (header and entry array CRCs checked, as firmware does) or,
// without a protective MBR, the MBR and the logical partitions of its EBR
// chain. Partitions are in table order (GPT entry, MBR slot, then the EBR
// chain); unused entries (GPT: nil type; MBR: type 0 or no sectors) and
// the extended partition itself are left out, so a table WriteTo wrote
// reads back equal. When the primary GPT is damaged, the backup in the
// last LBA is read instead, as firmware, the kernel and sfdisk do.
//
// It returns an error wrapping ErrNoTable when sector 0 holds no table,
// and one wrapping ErrTruncated (with the MBR partitions read so far) when
// r ends before the table does.
func Read(r io.ReaderAt, size int64) (Table, error) {
	sector0 := make([]byte, SectorSize)
	if _, err := r.ReadAt(sector0, 0); err != nil {
		if isEOF(err) {
			return Table{}, fmt.Errorf("the disk is shorter than one sector: %w", ErrNoTable)
		}
		return Table{}, fmt.Errorf("read sector 0: %w", err)
	}
	if sector0[0x1fe] != 0x55 || sector0[0x1ff] != 0xAA {
		return Table{}, ErrNoTable
	}
	t := Table{DiskSizeBytes: size}
	if !hasProtectiveEntry(sector0) {
		t.Kind = MBR
		t.DiskGUID = fmt.Sprintf("%08X", binary.LittleEndian.Uint32(sector0[0x1b8:]))
		extLBA := int64(-1)
		for i := range 4 {
			e := sector0[0x1be+16*i:]
			switch e[4] {
			case 0:
				continue
			case mbrExtendedCHS, mbrExtendedLBA, mbrExtendedLinux:
				if extLBA < 0 {
					extLBA = int64(binary.LittleEndian.Uint32(e[8:]))
				}
				continue
			}
			if p, ok := mbrEntry(e, i+1, 0); ok {
				t.Partitions = append(t.Partitions, p)
			}
		}
		if extLBA >= 0 {
			logical, err := readEBRChain(r, extLBA)
			t.Partitions = append(t.Partitions, logical...)
			if err != nil {
				if errors.Is(err, ErrTruncated) {
					return t, err
				}
				return Table{}, err
			}
		}
		return t, nil
	}
	return readGPT(r, t)
}

// hasProtectiveEntry reports whether any of the four MBR slots is a GPT
// protective (0xEE) entry, which is how sfdisk and the kernel tell a GPT
// disk (hybrid MBRs keep other entries beside it).
func hasProtectiveEntry(sector0 []byte) bool {
	for i := range 4 {
		if sector0[0x1be+16*i+4] == MBRProtective {
			return true
		}
	}
	return false
}

// mbrEntry decodes a 16-byte MBR or EBR entry whose start is relative to
// baseLBA; ok is false for an unused one.
func mbrEntry(e []byte, number int, baseLBA int64) (Partition, bool) {
	start := int64(binary.LittleEndian.Uint32(e[8:]))
	sectors := int64(binary.LittleEndian.Uint32(e[12:]))
	if e[4] == 0 || sectors == 0 {
		return Partition{}, false
	}
	return Partition{
		Number:     number,
		MBRType:    e[4],
		Bootable:   e[0] == 0x80,
		StartBytes: (baseLBA + start) * SectorSize,
		SizeBytes:  sectors * SectorSize,
	}, true
}

// readEBRChain reads the logical partitions of the extended partition
// starting at LBA extLBA. Each EBR's first entry is a logical partition
// (relative to the EBR), its second the link to the next EBR (relative to
// the extended partition). Logical partitions are numbered from 5 in chain
// order, skipping empty EBRs as the kernel does.
func readEBRChain(r io.ReaderAt, extLBA int64) ([]Partition, error) {
	var out []Partition
	ebrLBA := extLBA
	n := FirstLogical
	for links := 0; ; links++ {
		if links > 1000 {
			return nil, errors.New("the EBR chain has more than 1000 links: it loops")
		}
		ebr := make([]byte, SectorSize)
		if _, err := r.ReadAt(ebr, ebrLBA*SectorSize); err != nil {
			if isEOF(err) {
				return out, fmt.Errorf("EBR at LBA %d: %w", ebrLBA, ErrTruncated)
			}
			return nil, fmt.Errorf("read EBR at LBA %d: %w", ebrLBA, err)
		}
		if ebr[0x1fe] != 0x55 || ebr[0x1ff] != 0xAA {
			return nil, fmt.Errorf("no EBR signature at LBA %d", ebrLBA)
		}
		if p, ok := mbrEntry(ebr[0x1be:], n, ebrLBA); ok {
			out = append(out, p)
			n++
		}
		link := ebr[0x1be+16:]
		if link[4] != mbrExtendedCHS && link[4] != mbrExtendedLBA {
			return out, nil
		}
		ebrLBA = extLBA + int64(binary.LittleEndian.Uint32(link[8:]))
	}
}

// readGPT reads the GPT: the primary header at LBA 1 and its entry array,
// or, when those are damaged or missing, the backup header in the disk's
// last LBA and its array, as firmware, the kernel and sfdisk do. The
// error is the primary's when neither is good.
func readGPT(r io.ReaderAt, t Table) (Table, error) {
	t.Kind = GPT
	h, entries, err := readGPTHeader(r, 1)
	if last := t.DiskSizeBytes/SectorSize - 1; err != nil && last > 1 {
		if bh, be, berr := readGPTHeader(r, last); berr == nil {
			h, entries, err = bh, be, nil
		}
	}
	if err != nil {
		return Table{}, err
	}
	t.DiskGUID = FormatGUID(guidFromDisk(h[56:72]))
	size := int64(binary.LittleEndian.Uint32(h[84:]))
	for i := range int64(len(entries)) / size {
		b := entries[i*size:]
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
			Number:     int(i) + 1,
			Name:       string(utf16.Decode(name)),
			TypeGUID:   FormatGUID(guidFromDisk(b[0:16])),
			GUID:       FormatGUID(guidFromDisk(b[16:32])),
			StartBytes: first * SectorSize,
			SizeBytes:  (last - first + 1) * SectorSize,
			Bootable:   binary.LittleEndian.Uint64(b[48:])&(1<<gptLegacyBootBit) != 0,
		})
	}
	return t, nil
}

// readGPTHeader reads the GPT header at lba and its entry array, and
// checks both: signature, size, the header's own LBA and the CRCs.
func readGPTHeader(r io.ReaderAt, lba int64) (header, entries []byte, err error) {
	which := "GPT header"
	if lba != 1 {
		which = "backup GPT header"
	}
	h := make([]byte, SectorSize)
	if _, err := r.ReadAt(h, lba*SectorSize); err != nil {
		if isEOF(err) {
			return nil, nil, fmt.Errorf("%s at LBA %d: %w", which, lba, ErrTruncated)
		}
		return nil, nil, fmt.Errorf("read %s: %w", which, err)
	}
	if !bytes.Equal(h[0:8], []byte("EFI PART")) {
		if lba == 1 {
			return nil, nil, errors.New("a protective MBR but no GPT header at LBA 1")
		}
		return nil, nil, fmt.Errorf("no %s at LBA %d", which, lba)
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < gptHeaderSize || hsize > SectorSize {
		return nil, nil, fmt.Errorf("%s size %d is invalid", which, hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	hc := bytes.Clone(h[:hsize])
	binary.LittleEndian.PutUint32(hc[16:], 0)
	if got := crc32.ChecksumIEEE(hc); got != want {
		return nil, nil, fmt.Errorf("%s CRC is %08x, expected %08x: the header is corrupt", which, got, want)
	}
	if my := int64(binary.LittleEndian.Uint64(h[24:])); my != lba {
		return nil, nil, fmt.Errorf("%s at LBA %d says it is at LBA %d", which, lba, my)
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(h[72:]))
	n := int64(binary.LittleEndian.Uint32(h[80:]))
	size := int64(binary.LittleEndian.Uint32(h[84:]))
	if size < gptEntrySize || n*size > 1<<20 {
		return nil, nil, fmt.Errorf("GPT entry array of %d x %d bytes is invalid", n, size)
	}
	entries = make([]byte, n*size)
	if _, err := r.ReadAt(entries, entriesLBA*SectorSize); err != nil {
		if isEOF(err) {
			return nil, nil, fmt.Errorf("GPT entries at bytes %d..%d: %w", entriesLBA*SectorSize, entriesLBA*SectorSize+n*size, ErrTruncated)
		}
		return nil, nil, fmt.Errorf("read GPT entries: %w", err)
	}
	if got, want := crc32.ChecksumIEEE(entries), binary.LittleEndian.Uint32(h[88:]); got != want {
		return nil, nil, fmt.Errorf("GPT entry array CRC is %08x, expected %08x: the entries are corrupt", got, want)
	}
	return h, entries, nil
}

// isEOF reports a read that ran past the end of r.
func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }
