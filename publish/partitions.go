package publish

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"builder/internal/parttable"
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
	gptRootARM64 = "b921b045-1df0-41c3-af44-4c6f280d3fae"
	gptLinuxData = "0fc63daf-8483-4772-8e79-3d69d8477de4"
)

// ParsePartitionTable reads a GPT or MBR from the first sectors of a raw
// disk (512-byte sectors) with builder's one partition table reader
// (internal/parttable), and gives publish's view of it. head must hold at
// least the GPT entry array for a GPT to be read; a short head gives an
// error. Logical partitions whose EBRs lie beyond head are not listed.
func ParsePartitionTable(head []byte) (PartitionTable, error) {
	var pt PartitionTable
	t, err := parttable.Read(bytes.NewReader(head), int64(len(head)))
	if errors.Is(err, parttable.ErrNoTable) {
		return pt, nil
	}
	pt.BootCode = !allZero(head[:440])
	switch {
	case errors.Is(err, parttable.ErrTruncated) && t.Kind == parttable.MBR:
		// The EBR chain goes on past the head: what it held is all
		// publish can see.
	case err != nil:
		return pt, err
	}
	pt.Kind = string(t.Kind)
	for _, p := range t.Partitions {
		typ := strings.ToLower(p.TypeGUID)
		if t.Kind == parttable.MBR {
			typ = fmt.Sprintf("mbr:%02x", p.MBRType)
		}
		pt.Partitions = append(pt.Partitions, Partition{
			Type:   typ,
			Name:   strings.TrimSpace(p.Name),
			Offset: p.StartBytes,
			Size:   p.SizeBytes,
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
		if p.Type == gptRootAMD64 || p.Type == gptRootARM64 {
			return p, true
		}
		if (p.Type == gptLinuxData || p.Type == "mbr:83") && p.Size > best.Size {
			best, found = p, true
		}
	}
	return best, found
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }
