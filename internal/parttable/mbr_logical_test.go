package parttable

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// mbrTable is DIB's test_mbr layout: primaries of 10 MiB, then logical
// partitions of 10 MiB, each 1 MiB after the previous one's end (its EBR).
func mbrTable(primaries, logicals int) Table {
	t := Table{Kind: MBR, DiskGUID: "0BADCAFE", DiskSizeBytes: 1 << 30}
	start := MiB
	for i := range primaries {
		t.Partitions = append(t.Partitions, Partition{Number: i + 1, MBRType: MBRLinux, StartBytes: start, SizeBytes: 10 * MiB})
		start += 10 * MiB
	}
	for i := range logicals {
		start += ebrGap
		t.Partitions = append(t.Partitions, Partition{Number: FirstLogical + i, MBRType: MBRLinux, StartBytes: start, SizeBytes: 10 * MiB})
		start += 10 * MiB
	}
	return t
}

func partx(t *testing.T, img string) string {
	t.Helper()
	return tool(t, "partx", "--raw", "--output", "NR,START,END,TYPE,FLAGS,SCHEME", "-g", "-b", "-", img)
}

// Logical partitions come out as DIB's MBR writer makes them, checked by
// partx with DIB's own expectations (test_mbr.py), and read back by
// Read.
func TestMBRLogicalPartitionsMatchDIB(t *testing.T) {
	needTools(t, "partx", "sfdisk")
	for _, c := range []struct {
		name                string
		primaries, logicals int
		want                string
	}{
		{"one logical", 0, 1, "1 2048 2097151 0xf 0x0 dos\n5 4096 24575 0x83 0x0 dos\n"},
		{"one primary", 1, 0, "1 2048 22527 0x83 0x0 dos\n"},
		{"three primaries", 3, 0, "1 2048 22527 0x83 0x0 dos\n2 22528 43007 0x83 0x0 dos\n3 43008 63487 0x83 0x0 dos\n"},
		{"primaries and logicals", 3, 7, "1 2048 22527 0x83 0x0 dos\n" +
			"2 22528 43007 0x83 0x0 dos\n" +
			"3 43008 63487 0x83 0x0 dos\n" +
			"4 63488 2097151 0xf 0x0 dos\n" +
			"5 65536 86015 0x83 0x0 dos\n" +
			"6 88064 108543 0x83 0x0 dos\n" +
			"7 110592 131071 0x83 0x0 dos\n" +
			"8 133120 153599 0x83 0x0 dos\n" +
			"9 155648 176127 0x83 0x0 dos\n" +
			"10 178176 198655 0x83 0x0 dos\n" +
			"11 200704 221183 0x83 0x0 dos\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := mbrTable(c.primaries, c.logicals)
			img := writeTable(t, tab)
			if got := partx(t, img); got != c.want {
				t.Errorf("partx:\n%s\nwant (DIB's test_mbr):\n%s", got, c.want)
			}
			verifySfdisk(t, img)
			f, err := os.Open(img)
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
		})
	}
	// DIB's test_many_ext_partitions: 64 logical partitions, 22528
	// sectors apart.
	img := writeTable(t, mbrTable(0, 64))
	lines := strings.Split(strings.TrimSpace(partx(t, img)), "\n")
	if len(lines) != 65 || lines[0] != "1 2048 2097151 0xf 0x0 dos" {
		t.Fatalf("partx lists %d lines, first %q", len(lines), lines[0])
	}
	for i := 1; i <= 64; i++ {
		start := 4096 + int64(i-1)*22528
		if want := fmt.Sprintf("%d %d %d 0x83 0x0 dos", i+4, start, start+10*MiB/512-1); lines[i] != want {
			t.Errorf("line %d: %q, want %q", i, lines[i], want)
		}
	}
}

func TestMBRLogicalValidate(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*Table)
		want   string
	}{
		{"four primaries and a logical", func(t *Table) {
			*t = mbrTable(4, 1)
		}, "extended partition needs one of the 4"},
		{"EBR overlaps", func(t *Table) { t.Partitions[1].StartBytes -= MiB }, "overlap"},
		{"numbering", func(t *Table) { t.Partitions[2].Number = 7 }, "must be number 6"},
		{"primary after logical", func(t *Table) {
			t.Partitions = append(t.Partitions, Partition{Number: 2, MBRType: MBRLinux, StartBytes: 500 * MiB, SizeBytes: MiB})
		}, "after a logical"},
	} {
		tab := mbrTable(1, 2)
		c.mutate(&tab)
		if err := tab.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
