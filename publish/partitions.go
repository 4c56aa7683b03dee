package publish

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"
)

// Partition is one entry of a disk's partition table.
type Partition struct {
	Type   string // GPT type GUID (lower case) or "mbr:XX"
	Name   string // GPT partition name
	Offset int64  // bytes from the start of the disk
	Size   int64  // bytes
}

// PartitionTable is what the first sectors of a disk say about booting.
type PartitionTable struct {
	Kind       string // "gpt", "mbr" or "" (none found)
	Partitions []Partition
	// BootCode is true when the MBR's code area is not empty: a BIOS
	// boot loader (GRUB's boot.img) is installed.
	BootCode bool
}

// Partition type GUIDs that matter for booting and for finding the root.
const (
	gptESP       = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	gptBIOSBoot  = "21686148-6449-6e6f-744e-656564454649"
	gptRootAMD64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
	gptLinuxData = "0fc63daf-8483-4772-8e79-3d69d8477de4"
)

// ParsePartitionTable reads a GPT or MBR from the first sectors of a raw
// disk (512-byte sectors). head must hold at least the GPT entry array for
// a GPT to be read; a short head gives an error.
func ParsePartitionTable(head []byte) (PartitionTable, error) {
	var pt PartitionTable
	if len(head) < 512 || head[510] != 0x55 || head[511] != 0xaa {
		return pt, nil
	}
	pt.BootCode = !allZero(head[:440])
	var mbr []Partition
	protective := false
	for i := 0; i < 4; i++ {
		e := head[446+16*i : 446+16*(i+1)]
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:12]))
		n := int64(binary.LittleEndian.Uint32(e[12:16]))
		if typ == 0 || n == 0 {
			continue
		}
		if typ == 0xee {
			protective = true
		}
		mbr = append(mbr, Partition{Type: fmt.Sprintf("mbr:%02x", typ), Offset: start * 512, Size: n * 512})
	}
	if !protective {
		pt.Kind = "mbr"
		pt.Partitions = mbr
		return pt, nil
	}
	if len(head) < 1024 || string(head[512:520]) != "EFI PART" {
		return pt, fmt.Errorf("protective MBR without a GPT header at LBA 1")
	}
	h := head[512:1024]
	entriesLBA := int64(binary.LittleEndian.Uint64(h[72:80]))
	count := int64(binary.LittleEndian.Uint32(h[80:84]))
	size := int64(binary.LittleEndian.Uint32(h[84:88]))
	if size < 128 || count > 1024 {
		return pt, fmt.Errorf("GPT header has implausible entries (%d of %d bytes)", count, size)
	}
	end := entriesLBA*512 + count*size
	if end > int64(len(head)) {
		return pt, fmt.Errorf("GPT entries end at byte %d, beyond the %d bytes read", end, len(head))
	}
	pt.Kind = "gpt"
	for i := int64(0); i < count; i++ {
		e := head[entriesLBA*512+i*size : entriesLBA*512+(i+1)*size]
		if allZero(e[:16]) {
			continue
		}
		first := int64(binary.LittleEndian.Uint64(e[32:40]))
		last := int64(binary.LittleEndian.Uint64(e[40:48]))
		pt.Partitions = append(pt.Partitions, Partition{
			Type:   guid(e[:16]),
			Name:   utf16Name(e[56:128]),
			Offset: first * 512,
			Size:   (last - first + 1) * 512,
		})
	}
	return pt, nil
}

// Firmware says how the disk can boot: "uefi" (only UEFI), "bios" (only
// BIOS), "bios+uefi", or "" when the table says nothing.
func (pt PartitionTable) Firmware() string {
	esp, biosBoot := false, false
	for _, p := range pt.Partitions {
		switch p.Type {
		case gptESP, "mbr:ef":
			esp = true
		case gptBIOSBoot:
			biosBoot = true
		}
	}
	switch pt.Kind {
	case "gpt":
		// GRUB for BIOS on GPT needs its boot partition for core.img; a
		// boot sector alone cannot boot.
		switch {
		case esp && (biosBoot || pt.BootCode):
			return "bios+uefi"
		case esp:
			return "uefi"
		default:
			return "bios"
		}
	case "mbr":
		if esp && !pt.BootCode {
			return "uefi"
		}
		if esp {
			return "bios+uefi"
		}
		return "bios"
	}
	return ""
}

// Root guesses the root filesystem's partition: the discoverable-partitions
// root type, else the largest Linux partition.
func (pt PartitionTable) Root() (Partition, bool) {
	var best Partition
	found := false
	for _, p := range pt.Partitions {
		if p.Type == gptRootAMD64 {
			return p, true
		}
		if (p.Type == gptLinuxData || p.Type == "mbr:83") && p.Size > best.Size {
			best, found = p, true
		}
	}
	return best, found
}

// guid formats a GPT GUID: the first three fields are little-endian.
func guid(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]), binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return strings.TrimSpace(string(utf16.Decode(u)))
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }
