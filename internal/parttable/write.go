package parttable

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"unicode/utf16"
)

// WriteTo writes the table into f, which must be exactly DiskSizeBytes long
// or shorter (it is then extended, sparsely). For GPT that is the protective
// MBR, the primary header and entries, the backup entries and header at the
// end of the disk, all with their CRC32s. The boot code area of sector 0
// (bytes 0..439) is kept, so a table may be rewritten after a boot loader
// was installed. Nothing is written if the table does not validate.
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
	sig, _ := ParseMBRSignature(t.DiskGUID) // validated
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
		extLBA := logical[0].ExtentStart(MBR) / SectorSize
		extLen := min(t.DiskSizeBytes/SectorSize, 1<<32-1) - extLBA
		putMBREntry(sector0[0x1be+16*(t.extendedSlot()-1):], false, mbrExtendedLBA, extLBA, extLBA, extLen)
		for i, p := range logical {
			ebr := make([]byte, SectorSize)
			ebrLBA := p.ExtentStart(MBR) / SectorSize
			putMBREntry(ebr[0x1be:], p.Bootable, p.MBRType, p.StartBytes/SectorSize, p.StartBytes/SectorSize-ebrLBA, p.SizeBytes/SectorSize)
			if i+1 < len(logical) {
				n := logical[i+1]
				nLBA := n.ExtentStart(MBR) / SectorSize
				putMBREntry(ebr[0x1be+16:], false, mbrExtendedCHS, nLBA, nLBA-extLBA, n.EndBytes()/SectorSize-nLBA)
			}
			ebr[0x1fe], ebr[0x1ff] = 0x55, 0xAA
			ebrs = append(ebrs, ebr)
		}
	}
	// EBRs first: sector 0 pointing at a half-written chain is worse
	// than a chain nothing points at.
	for i, p := range logical {
		if _, err := f.WriteAt(ebrs[i], p.ExtentStart(MBR)); err != nil {
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
		typ, _ := ParseGUID(p.TypeGUID)
		uniq, _ := ParseGUID(p.GUID)
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
	diskGUID, _ := ParseGUID(t.DiskGUID)

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
