package parttable

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sfdiskImage makes a disk image of size bytes and partitions it with
// sfdisk from script, so the reader meets tables another tool wrote (odd
// sizes, gaps in the numbering, sfdisk's own EBR placement).
func sfdiskImage(t *testing.T, size int64, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	path, err := lookTool("sfdisk")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "-q", "--no-reread", "--no-tell-kernel", p)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return p
}

// matchesSfdisk reads img with Read and checks every field against
// sfdisk's view: the label and disk id, then each partition by number
// (sfdisk lists the MBR's extended partition too; Read leaves it out, so
// it is checked to hold every logical partition instead).
func matchesSfdisk(t *testing.T, img string) Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := readFile(f)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	j := readSfdisk(t, img).PartitionTable
	switch j.Label {
	case "gpt":
		if got.Kind != GPT || got.DiskGUID != j.ID {
			t.Errorf("Read: %s disk %s; sfdisk: gpt %s", got.Kind, got.DiskGUID, j.ID)
		}
	case "dos":
		if got.Kind != MBR || "0x"+strings.ToLower(got.DiskGUID) != j.ID {
			t.Errorf("Read: %s signature %s; sfdisk: dos %s", got.Kind, got.DiskGUID, j.ID)
		}
	default:
		t.Fatalf("sfdisk label %q", j.Label)
	}
	var want []Partition
	var extStart, extEnd int64 = -1, -1
	for _, s := range j.Partitions {
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(s.Node, img), "%d", &n); err != nil {
			t.Fatalf("sfdisk node %q", s.Node)
		}
		p := Partition{Number: n, StartBytes: s.Start * SectorSize, SizeBytes: s.Size * SectorSize}
		if j.Label == "gpt" {
			p.TypeGUID, p.GUID, p.Name = s.Type, s.UUID, s.Name
			p.Bootable = strings.Contains(s.Attrs, "LegacyBIOSBootable")
		} else {
			switch s.Type {
			case "5", "f", "85":
				extStart, extEnd = p.StartBytes, p.EndBytes()
				continue
			}
			var typ byte
			fmt.Sscanf(s.Type, "%x", &typ)
			p.MBRType, p.Bootable = typ, s.Bootable
		}
		want = append(want, p)
	}
	if len(got.Partitions) != len(want) {
		t.Fatalf("Read found %d partitions, sfdisk %d:\n%+v\n%+v", len(got.Partitions), len(want), got.Partitions, want)
	}
	for i := range want {
		if got.Partitions[i] != want[i] {
			t.Errorf("partition %d:\n Read   %+v\n sfdisk %+v", want[i].Number, got.Partitions[i], want[i])
		}
		if l := got.Partitions[i]; got.Kind == MBR && l.IsLogical() && (l.ExtentStart(MBR) < extStart || l.EndBytes() > extEnd) {
			t.Errorf("logical partition %d (%d..%d) is outside sfdisk's extended partition %d..%d", l.Number, l.StartBytes, l.EndBytes(), extStart, extEnd)
		}
	}
	st, _ := f.Stat()
	if got.DiskSizeBytes != st.Size() {
		t.Errorf("DiskSizeBytes %d, file %d", got.DiskSizeBytes, st.Size())
	}
	return got
}

// Tables sfdisk wrote read back as sfdisk reads them.
func TestReadSfdiskTables(t *testing.T) {
	needTools(t, "sfdisk")
	for _, c := range []struct {
		name, script string
		n            int
	}{
		{"gpt", `label: gpt
label-id: 8E0B6D5A-3C1F-4E2A-9B7C-1D2E3F405162
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios", uuid=11111111-2222-4333-8444-555555555501
start=4096, size=204800, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"
size=100000, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root ü", attrs="LegacyBIOSBootable"
/dev/x7: start=400000, size=4096, type=E6D6D379-F507-44C2-A23C-238F2A3DF928
`, 4},
		{"gpt, longest name", `label: gpt
size=8MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="` + strings.Repeat("n", 36) + `"
`, 1},
		{"mbr with logical partitions", `label: dos
label-id: 0x1a2b3c4d
start=2048, size=20480, type=ef
start=22528, size=40960, type=83, bootable
start=63488, type=5
size=20480, type=83
size=10240, type=82
size=30000, type=8e
`, 5},
		{"mbr, extended first", `label: dos
label-id: 0xdeadbeef
start=2048, type=f
size=4096, type=83, bootable
size=4096, type=83
`, 2},
		{"mbr, four primaries", `label: dos
size=2048, type=83
size=2048, type=82
size=2048, type=8e
size=2048, type=ef
`, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := matchesSfdisk(t, sfdiskImage(t, 300*MiB, c.script))
			if len(got.Partitions) != c.n {
				t.Errorf("%d partitions, want %d", len(got.Partitions), c.n)
			}
		})
	}
}

// Tables WriteTo wrote, in the forms builder makes (GPT with a BIOS boot
// partition and an ESP, DIB's MBR with logical partitions), read back as
// sfdisk reads them.
func TestReadWrittenTablesMatchSfdisk(t *testing.T) {
	needTools(t, "sfdisk")
	// (sfdisk lists at most 60 partitions of an MBR.)
	for _, tab := range []Table{sampleGPT(), mbrTable(3, 7), mbrTable(0, 50)} {
		matchesSfdisk(t, writeTable(t, tab))
	}
}

// A damaged primary GPT: the backup is read instead, as sfdisk (and
// firmware, and the kernel) read it.
func TestReadDamagedPrimaryGPT(t *testing.T) {
	needTools(t, "sfdisk")
	for _, c := range []struct {
		name string
		at   int64
	}{
		{"header", SectorSize + 56},    // the disk GUID
		{"entries", 2*SectorSize + 60}, // a partition name
		{"signature", SectorSize},      // "EFI PART"
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := sampleGPT()
			img := writeTable(t, tab)
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			f.ReadAt(b, c.at)
			b[0] ^= 1
			if _, err := f.WriteAt(b, c.at); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if got := matchesSfdisk(t, img); !reflect.DeepEqual(got, tab) {
				t.Errorf("Read:\n got %+v\nwant %+v", got, tab)
			}
		})
	}
}

// A disk without a table, a damaged GPT of which only the start was read,
// and a table that continues beyond the data read.
func TestReadErrors(t *testing.T) {
	if _, err := Read(bytes.NewReader(make([]byte, 4096)), 4096); !errors.Is(err, ErrNoTable) {
		t.Errorf("zeroes: %v, want ErrNoTable", err)
	}
	if _, err := Read(bytes.NewReader(make([]byte, 100)), 100); !errors.Is(err, ErrNoTable) {
		t.Errorf("100 bytes: %v, want ErrNoTable", err)
	}

	// A flipped bit in the primary GPT, and no backup in the data read:
	// refused, with the primary's fault.
	tab := sampleGPT()
	gpt, err := os.Open(writeTable(t, tab))
	if err != nil {
		t.Fatal(err)
	}
	defer gpt.Close()
	head := make([]byte, MiB) // as publish reads a disk: its first MiB
	if _, err := gpt.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(head)
	bad[SectorSize+56] ^= 1 // the disk GUID
	if _, err := Read(bytes.NewReader(bad), tab.DiskSizeBytes); err == nil || !strings.Contains(err.Error(), "GPT header CRC") {
		t.Errorf("corrupt header: %v", err)
	}
	bad = bytes.Clone(head)
	bad[2*SectorSize+60] ^= 1 // a partition name
	if _, err := Read(bytes.NewReader(bad), tab.DiskSizeBytes); err == nil || !strings.Contains(err.Error(), "entry array CRC") {
		t.Errorf("corrupt entries: %v", err)
	}

	// The first MiB holds a whole GPT...
	if got, err := Read(bytes.NewReader(head), tab.DiskSizeBytes); err != nil || !reflect.DeepEqual(got, tab) {
		t.Errorf("GPT from its first MiB: %+v %v", got, err)
	}
	// ...but not the first sectors only.
	if _, err := Read(bytes.NewReader(head[:4*SectorSize]), tab.DiskSizeBytes); !errors.Is(err, ErrTruncated) {
		t.Errorf("GPT from 4 sectors: %v, want ErrTruncated", err)
	}
	// An MBR whose EBR chain starts past the data read: the primaries,
	// and ErrTruncated.
	mbr := writeTable(t, mbrTable(2, 3))
	f, err := os.Open(mbr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Read(io.NewSectionReader(f, 0, MiB), MiB)
	if !errors.Is(err, ErrTruncated) || got.Kind != MBR || len(got.Partitions) != 2 || got.Partitions[1].Number != 2 {
		t.Errorf("MBR from its first MiB: %+v %v, want 2 primaries and ErrTruncated", got, err)
	}
	// The whole file holds it all.
	whole, err := readFile(f)
	if err != nil || len(whole.Partitions) != 5 {
		t.Fatalf("whole MBR: %+v %v", whole, err)
	}
}
