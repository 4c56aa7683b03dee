package units

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"20G": 20 << 30, "512M": 512 << 20, "1.5GiB": 3 << 29, "100": 100, "2 t": 2 << 40, "0": 0, "64KB": 64 << 10} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "ten", "1.2.3M"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
	if Format(3<<29) != "1.50 GiB" || Format(176<<20) != "176 MiB" || Format(12<<10) != "12 KiB" {
		t.Errorf("Format: %s %s %s", Format(3<<29), Format(176<<20), Format(12<<10))
	}
}
