package elements

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"builder/internal/testreq"
)

func TestFamily(t *testing.T) {
	for distro, want := range map[string]string{
		"almalinux": "redhat", "fedora": "redhat", "rhel": "redhat", "centos": "redhat",
		"openeuler": "redhat", "rocky": "redhat", "debian": "debian", "ubuntu": "debian",
		"opensuse": "suse", "gentoo": "gentoo", "arch": "", "": "",
	} {
		if got := Family(distro); got != want {
			t.Errorf("Family(%q) = %q, want %q", distro, got, want)
		}
	}
}

func loadPkgMap(t *testing.T, elem string) (*PkgMap, error) {
	t.Helper()
	lib, err := LoadLibrary([]string{"testdata/pkgmap"}, "")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := LoadPkgMaps(resolutionOf(t, lib, elem))
	if err != nil {
		return nil, err
	}
	return maps[elem], nil
}

func TestPkgMapLookup(t *testing.T) {
	m, err := loadPkgMap(t, "pm")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, pkg, distro, release string
		want                       []string
		found                      bool
	}{
		{"default", "dhcp-client", "debian", "bookworm", []string{"isc-dhcp-client"}, true},
		{"family beats default", "dhcp-client", "rocky", "9", []string{"dhclient"}, true},
		{"distro beats family", "dhcp-client", "fedora", "40", []string{"dhcpcd"}, true},
		{"release beats distro", "dhcp-client", "centos", "9", []string{"dhcp-client-9"}, true},
		{"9-stream reads release 9", "dhcp-client", "centos", "9-stream", []string{"dhcp-client-9"}, true},
		{"literal -stream release key", "dhcp-client", "centos", "10-stream", []string{"dhcpcd-10"}, true},
		{"unknown release falls back", "dhcp-client", "centos", "8", []string{"dhclient"}, true},
		{"multi-name value", "tools", "centos", "9", []string{"ed", "patch", "which"}, true},
		{"empty value skips", "python-dev", "opensuse", "15.5", nil, true},
		{"distro skip", "tools", "ubuntu", "jammy", nil, true},
		{"release un-skips", "tools", "ubuntu", "noble", []string{"ed"}, true},
		{"no family", "python-dev", "arch", "", []string{"python3-dev"}, true},
		{"only default", "only-default", "centos", "9", []string{"od"}, true},
		{"missing", "nope", "debian", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := m.Lookup(tt.pkg, tt.distro, tt.release)
			if found != tt.found || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Lookup(%s, %s, %s) = %q, %v; want %q, %v", tt.pkg, tt.distro, tt.release, got, found, tt.want, tt.found)
			}
		})
	}
	flat := m.Flatten("ubuntu", "noble")
	want := map[string]string{"dhcp-client": "isc-dhcp-client", "python-dev": "python3-dev", "tools": "ed", "only-default": "od"}
	if !reflect.DeepEqual(flat, want) {
		t.Errorf("Flatten = %v, want %v", flat, want)
	}
	if names := m.Names(); !reflect.DeepEqual(names, []string{"dhcp-client", "only-default", "python-dev", "tools"}) {
		t.Errorf("Names = %v", names)
	}
}

func TestPkgMapErrors(t *testing.T) {
	for elem, want := range map[string]string{
		"bad-json": "bad-json/pkg-map: line 4, column 3: invalid JSON",
		"bad-type": `bad-type/pkg-map: line 3, column 10: found array in "default"; a pkg-map maps names to strings`,
		"bad-key":  `bad-key/pkg-map: unknown top-level key "distros"; known keys: default, family, distro, release`,
	} {
		t.Run(elem, func(t *testing.T) {
			_, err := loadPkgMap(t, elem)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant %q", err, want)
			}
		})
	}
}

func TestPkgMapNullIsSkip(t *testing.T) {
	m, err := ParsePkgMap("e", "f", []byte(`{"default": {"a": null, "b": "c"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, found := m.Lookup("a", "debian", ""); !found || got != nil {
		t.Errorf("null: %q %v", got, found)
	}
}

// TestPkgMapMatchesDIB runs the installed DIB's pkg-map with --pkg-map on
// the fixture for cases where DIB 3.13 and HEAD agree.
func TestPkgMapMatchesDIB(t *testing.T) {
	script := "/usr/lib/python3/dist-packages/diskimage_builder/elements/pkg-map/bin/pkg-map"
	if _, err := os.Stat(script); err != nil {
		testreq.Missing(t, "diskimage-builder is not installed")
	}
	m, err := loadPkgMap(t, "pm")
	if err != nil {
		t.Fatal(err)
	}
	file, _ := filepath.Abs("testdata/pkgmap/pm/pkg-map")
	names := []string{"dhcp-client", "python-dev", "tools", "only-default", "nope"}
	for _, dr := range [][2]string{{"debian", "bookworm"}, {"fedora", "40"}, {"centos", "9"}, {"centos", "10-stream"}, {"opensuse", "15.5"}, {"ubuntu", "jammy"}, {"ubuntu", "noble"}} {
		cmd := exec.Command("/usr/bin/python3", append([]string{script, "--pkg-map", file, "--distro", dr[0], "--release", dr[1], "--missing-ok", "--prefix", "+"}, names...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pkg-map %v: %v", dr, err)
		}
		var dib []string
		for _, l := range strings.Split(string(out), "\n") {
			if rest, ok := strings.CutPrefix(l, "+"); ok {
				dib = append(dib, strings.Fields(rest)...)
			}
		}
		var ours []string
		for _, n := range names {
			got, found := m.Lookup(n, dr[0], dr[1])
			if !found {
				got = []string{n} // --missing-ok passes it through
			}
			ours = append(ours, got...)
		}
		if !reflect.DeepEqual(dib, ours) {
			t.Errorf("%v: DIB %q, ours %q", dr, dib, ours)
		}
	}
}
