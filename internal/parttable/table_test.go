package parttable

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sampleGPT() Table {
	return Table{
		Kind:          GPT,
		DiskGUID:      "8E0B6D5A-3C1F-4E2A-9B7C-1D2E3F405162",
		DiskSizeBytes: 300 * MiB,
		Partitions: []Partition{
			{Number: 1, Name: "bios", TypeGUID: BIOSBoot, GUID: "11111111-2222-4333-8444-555555555501", StartBytes: 1 * MiB, SizeBytes: 1 * MiB},
			{Number: 2, Name: "esp", TypeGUID: ESP, GUID: "11111111-2222-4333-8444-555555555502", StartBytes: 2 * MiB, SizeBytes: 100 * MiB},
			{Number: 3, Name: "root-ü", TypeGUID: LinuxRootX86_64, GUID: "11111111-2222-4333-8444-555555555503", StartBytes: 102 * MiB, SizeBytes: 197 * MiB, Bootable: true},
		},
	}
}

func writeTable(t *testing.T, tab Table) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tab.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return p
}

// The GPT we write is what sfdisk reads back, field by field, and passes
// sfdisk --verify; the backup header sits in the last LBA.
func TestGPTMatchesSfdisk(t *testing.T) {
	needTools(t, "sfdisk")
	tab := sampleGPT()
	p := writeTable(t, tab)
	verifySfdisk(t, p)

	j := readSfdisk(t, p).PartitionTable
	if j.Label != "gpt" || j.ID != tab.DiskGUID || j.FirstLBA != 34 || j.LastLBA != tab.DiskSizeBytes/512-34 {
		t.Errorf("sfdisk header: label %s id %s firstlba %d lastlba %d", j.Label, j.ID, j.FirstLBA, j.LastLBA)
	}
	if len(j.Partitions) != len(tab.Partitions) {
		t.Fatalf("sfdisk sees %d partitions, want %d", len(j.Partitions), len(tab.Partitions))
	}
	for i, want := range tab.Partitions {
		got := j.Partitions[i]
		if got.Node != fmt.Sprintf("%s%d", p, want.Number) || got.Start*512 != want.StartBytes || got.Size*512 != want.SizeBytes ||
			got.Type != want.TypeGUID || got.UUID != want.GUID || got.Name != want.Name {
			t.Errorf("partition %d: sfdisk %+v, want %+v", want.Number, got, want)
		}
	}
	// Attribute bit 2 (legacy BIOS bootable) on partition 3.
	if dump := tool(t, "sfdisk", "--dump", p); !strings.Contains(dump, "attrs=\"LegacyBIOSBootable\"") {
		t.Errorf("sfdisk --dump shows no LegacyBIOSBootable attribute:\n%s", dump)
	}

	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(len(raw)) - 512
	if !bytes.Equal(raw[last:last+8], []byte("EFI PART")) {
		t.Fatalf("no backup GPT header in the last LBA")
	}
	if my := binary.LittleEndian.Uint64(raw[last+24:]); int64(my) != last/512 {
		t.Errorf("backup header MyLBA %d, want %d", my, last/512)
	}
	if alt := binary.LittleEndian.Uint64(raw[512+32:]); int64(alt) != last/512 {
		t.Errorf("primary header AlternateLBA %d, want %d", alt, last/512)
	}
	if raw[0x1c2] != 0xEE || raw[0x1fe] != 0x55 || raw[0x1ff] != 0xAA {
		t.Errorf("protective MBR missing")
	}

	// And our own reader agrees.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := readFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, tab) {
		t.Errorf("Read:\n got %+v\nwant %+v", back, tab)
	}
}

func TestMBRMatchesSfdisk(t *testing.T) {
	needTools(t, "sfdisk")
	tab := Table{
		Kind: MBR, DiskGUID: "1A2B3C4D", DiskSizeBytes: 200 * MiB,
		Partitions: []Partition{
			{Number: 1, MBRType: MBRESP, StartBytes: 1 * MiB, SizeBytes: 64 * MiB},
			{Number: 2, MBRType: MBRLinux, StartBytes: 65 * MiB, SizeBytes: 135 * MiB, Bootable: true},
		},
	}
	p := writeTable(t, tab)
	verifySfdisk(t, p)
	j := readSfdisk(t, p).PartitionTable
	if j.Label != "dos" || j.ID != "0x1a2b3c4d" {
		t.Errorf("sfdisk: label %s id %s", j.Label, j.ID)
	}
	want := []struct {
		typ      string
		bootable bool
	}{{"ef", false}, {"83", true}}
	for i, w := range want {
		got := j.Partitions[i]
		if got.Type != w.typ || got.Bootable != w.bootable || got.Start*512 != tab.Partitions[i].StartBytes || got.Size*512 != tab.Partitions[i].SizeBytes {
			t.Errorf("partition %d: sfdisk %+v, want type %s bootable %v", i+1, got, w.typ, w.bootable)
		}
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := readFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, tab) {
		t.Errorf("Read:\n got %+v\nwant %+v", back, tab)
	}
}

// Rewriting the table keeps the boot code in sector 0 and the file size.
func TestWriteToKeepsBootCode(t *testing.T) {
	tab := sampleGPT()
	p := writeTable(t, tab)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := bytes.Repeat([]byte{0xAB}, 440)
	if _, err := f.WriteAt(code, 0); err != nil {
		t.Fatal(err)
	}
	tab.Partitions[2].Name = "renamed"
	if err := tab.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 440)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, code) {
		t.Error("WriteTo overwrote the boot code")
	}
	// A file longer than the table's disk is refused: the backup GPT
	// would not be at the end.
	if err := f.Truncate(tab.DiskSizeBytes + MiB); err != nil {
		t.Fatal(err)
	}
	if err := tab.WriteTo(f); err == nil || !strings.Contains(err.Error(), "backup GPT") {
		t.Errorf("WriteTo on a longer file: %v", err)
	}
}

// Invalid tables are refused before anything is written, with the
// culprit named.
func TestTableValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Table)
		want   string
	}{
		{"overlap", func(t *Table) { t.Partitions[2].StartBytes = 101 * MiB }, "overlap"},
		{"unaligned", func(t *Table) { t.Partitions[1].SizeBytes = 100*MiB + 512 }, "multiples of 1 MiB"},
		{"past the end", func(t *Table) { t.Partitions[2].SizeBytes = 198 * MiB }, "outside the usable area"},
		{"duplicate number", func(t *Table) { t.Partitions[2].Number = 2 }, "used twice"},
		{"duplicate GUID", func(t *Table) { t.Partitions[2].GUID = t.Partitions[1].GUID }, "same GUID"},
		{"bad type", func(t *Table) { t.Partitions[0].TypeGUID = "bios" }, "partition 1 (bios) type"},
		{"bad disk GUID", func(t *Table) { t.DiskGUID = "" }, "disk GUID"},
		{"long name", func(t *Table) { t.Partitions[0].Name = strings.Repeat("x", 37) }, "36"},
		{"odd disk size", func(t *Table) { t.DiskSizeBytes += 100 }, "multiple of 512"},
		{"kind", func(t *Table) { t.Kind = "apm" }, "unknown partition table kind"},
		{"mbr type 0", func(t *Table) {
			t.Kind, t.DiskGUID = MBR, ""
			t.Partitions = t.Partitions[1:]
			t.Partitions[0].Number, t.Partitions[1].Number = 1, 2
		}, "MBR type 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab := sampleGPT()
			c.mutate(&tab)
			p := filepath.Join(t.TempDir(), "disk.raw")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = tab.WriteTo(f)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("WriteTo error %v, want one containing %q", err, c.want)
			}
			if st, _ := f.Stat(); st.Size() != 0 {
				t.Errorf("WriteTo wrote %d bytes despite the invalid table", st.Size())
			}
		})
	}
}
