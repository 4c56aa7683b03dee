package publish

import (
	"encoding/binary"
	"testing"
)

// gptHead builds the first sectors of a GPT disk with partitions of the
// given type GUIDs (already in on-disk byte order is not needed: the test
// writes the GUID fields the way ParsePartitionTable reads them).
func gptHead(bootCode bool, types ...[16]byte) []byte {
	b := make([]byte, 34*512)
	if bootCode {
		b[0] = 0xeb
	}
	b[446+4] = 0xee
	binary.LittleEndian.PutUint32(b[446+8:], 1)
	binary.LittleEndian.PutUint32(b[446+12:], 0xffffffff)
	b[510], b[511] = 0x55, 0xaa
	h := b[512:]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)
	for i, t := range types {
		e := b[1024+128*i:]
		copy(e, t[:])
		binary.LittleEndian.PutUint64(e[32:], uint64(2048*(i+1)))
		binary.LittleEndian.PutUint64(e[40:], uint64(2048*(i+2)-1))
	}
	return b
}

// guidBytes encodes a GUID string in GPT's mixed-endian layout.
func guidBytes(s string) [16]byte {
	var g [16]byte
	var raw [16]byte
	j := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			continue
		}
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c-'a') + 10
			}
		}
		raw[j] = v
		j++
		i++
	}
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
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
