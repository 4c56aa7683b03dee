package publish

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"builder/internal/parttable"
)

// gptHead builds the first sectors of a GPT disk with partitions of the
// given type GUIDs (in GPT's on-disk byte order), with the header size and
// CRCs a reader checks.
func gptHead(bootCode bool, types ...[16]byte) []byte {
	b := make([]byte, 34*512)
	if bootCode {
		b[0] = 0xeb
	}
	b[446+4] = 0xee
	binary.LittleEndian.PutUint32(b[446+8:], 1)
	binary.LittleEndian.PutUint32(b[446+12:], 0xffffffff)
	b[510], b[511] = 0x55, 0xaa
	h := b[512:1024]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], 1) // its own LBA
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)
	for i, t := range types {
		e := b[1024+128*i:]
		copy(e, t[:])
		binary.LittleEndian.PutUint64(e[32:], uint64(2048*(i+1)))
		binary.LittleEndian.PutUint64(e[40:], uint64(2048*(i+2)-1))
	}
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[1024:1024+128*128]))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	return b
}

// guidBytes encodes a GUID string in GPT's mixed-endian layout: the first
// three fields little-endian, the rest as written.
func guidBytes(s string) [16]byte {
	u := uuid.MustParse(s)
	g := u
	g[0], g[1], g[2], g[3] = u[3], u[2], u[1], u[0]
	g[4], g[5] = u[5], u[4]
	g[6], g[7] = u[7], u[6]
	return g
}

func TestFirmwareFromPartitions(t *testing.T) {
	esp, bios, root := guidBytes(gptESP), guidBytes(gptBIOSBoot), guidBytes(gptRootAMD64)
	for _, c := range []struct {
		name string
		head []byte
		want string
	}{
		{"hybrid", gptHead(true, bios, esp, root), "bios+uefi"},
		{"uefi only", gptHead(false, esp, root), "uefi"},
		{"bios only", gptHead(true, bios, root), "bios"},
		{"nothing", make([]byte, 4096), ""},
	} {
		pt, err := ParsePartitionTable(c.head)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := pt.Firmware(); got != c.want {
			t.Errorf("%s: firmware %q, want %q", c.name, got, c.want)
		}
	}
	pt, _ := ParsePartitionTable(gptHead(false, esp, root))
	r, ok := pt.Root()
	if !ok || r.Offset != 2*2048*512 || r.Size != 2048*512 {
		t.Errorf("root %+v %v", r, ok)
	}
}

func TestMBRFirmware(t *testing.T) {
	b := make([]byte, 512)
	b[0] = 0xeb
	b[446+4] = 0x83
	binary.LittleEndian.PutUint32(b[446+8:], 2048)
	binary.LittleEndian.PutUint32(b[446+12:], 4096)
	b[510], b[511] = 0x55, 0xaa
	pt, err := ParsePartitionTable(b)
	if err != nil || pt.Kind != "mbr" || pt.Firmware() != "bios" {
		t.Fatalf("%+v %v", pt, err)
	}
	if r, ok := pt.Root(); !ok || r.Offset != 2048*512 {
		t.Errorf("root %+v", r)
	}
}

// An MBR whose logical partitions' EBRs lie past the first MiB (DIB's MBR
// layouts with logical partitions): the primaries are read, the rest is
// out of sight, and that is no error.
func TestMBRLogicalBeyondHead(t *testing.T) {
	const mib = parttable.MiB
	tab := parttable.Table{Kind: parttable.MBR, DiskSizeBytes: 16 * mib, Partitions: []parttable.Partition{
		{Number: 1, MBRType: parttable.MBRESP, StartBytes: mib, SizeBytes: 8 * mib},
		{Number: 5, MBRType: parttable.MBRLinux, StartBytes: 10 * mib, SizeBytes: 5 * mib, Bootable: true},
	}}
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tab.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, mib)
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	pt, err := ParsePartitionTable(head)
	if err != nil || pt.Kind != "mbr" || len(pt.Partitions) != 1 || pt.Partitions[0].Type != "mbr:ef" || pt.Firmware() != "uefi" {
		t.Fatalf("%+v %v", pt, err)
	}
	// With the whole disk, the logical root is there too.
	whole := make([]byte, 16*mib)
	if _, err := f.ReadAt(whole, 0); err != nil {
		t.Fatal(err)
	}
	pt, err = ParsePartitionTable(whole)
	if r, ok := pt.Root(); err != nil || !ok || r.Offset != 10*mib || r.Type != "mbr:83" {
		t.Errorf("root %+v %v %v", r, ok, err)
	}
}
