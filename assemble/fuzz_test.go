package assemble

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzParseBlockDeviceConfig: DIB's block-device YAML (hack/test.sh fuzzes
// it for a fixed time; `go test` runs the seeds). The parser must never
// panic or hang, and a layout it accepts must be self-consistent: the same
// every time, unique names and mount points, absolute mount points (or
// none for swap), parents mounted first, and an fstab of one well-formed
// line per entry.
func FuzzParseBlockDeviceConfig(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "blockdevice", "*.yaml"))
	lib, _ := filepath.Glob(filepath.Join("..", "elements", "library", "*", "block-device-*.yaml"))
	for _, p := range append(seeds, lib...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Names, mount points and options a user might get wrong.
	f.Add([]byte("- local_loop:\n    name: image0\n- mkfs:\n    name: mkfs_root\n    base: image0\n    type: ext4\n    label: \"my label\"\n" +
		"    mount:\n      mount_point: \"/a b\"\n      fstab:\n        options: \"defaults,noatime\"\n        fsck-passno: 1\n"))
	f.Add([]byte("- local_loop: {name: image0}\n- mkfs: {name: mkfs_root, base: image0, type: vfat, mount: {mount_point: /boot/efi, fstab: {options: umask=0077}}}\n"))
	if len(seeds) == 0 || len(lib) == 0 {
		f.Fatal("no seed layouts")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseBlockDeviceConfigFrom("fuzz.yaml", data)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") {
				t.Errorf("error on more than one line: %q", msg)
			}
			return
		}
		again, err := ParseBlockDeviceConfigFrom("fuzz.yaml", data)
		if err != nil || !reflect.DeepEqual(l, again) {
			t.Fatalf("a second parse differs: %v", err)
		}
		if c := l.Clone(); !reflect.DeepEqual(c, l) {
			t.Errorf("Clone differs from the layout")
		}
		names := map[string]bool{}
		points := map[string]bool{}
		for _, fs := range l.Filesystems {
			if fs.Name == "" || names[fs.Name] {
				t.Errorf("filesystem name %q empty or twice", fs.Name)
			}
			names[fs.Name] = true
			if fs.Mount == nil {
				continue
			}
			mp := fs.Mount.MountPoint
			if mp != "none" && !strings.HasPrefix(mp, "/") {
				t.Errorf("mount point %q is not absolute", mp)
			}
			if mp != "none" && points[mp] {
				t.Errorf("mount point %q twice", mp)
			}
			points[mp] = true
		}
		if p := l.Partitioning; p != nil {
			seen := map[string]bool{}
			for _, part := range p.Partitions {
				if part.Name == "" || seen[part.Name] {
					t.Errorf("partition name %q empty or twice", part.Name)
				}
				seen[part.Name] = true
			}
		}
		mounts := l.Mounts()
		for i := range mounts {
			for j := i + 1; j < len(mounts); j++ {
				if isParentMount(mounts[j], mounts[i]) {
					t.Errorf("%s is mounted after %s, which is inside it", mounts[j], mounts[i])
				}
			}
		}
		// The root options merged as a build does; what it accepts has
		// known types and unique labels.
		m := l.Clone()
		if err := m.MergeRoot("", "", nil); err == nil {
			labels := map[string]bool{}
			for _, fs := range m.Filesystems {
				if !slices.Contains([]string{"ext2", "ext3", "ext4", "xfs", "vfat", "swap"}, fs.Type) {
					t.Errorf("filesystem %s has type %q", fs.Name, fs.Type)
				}
				if labels[fs.Label] {
					t.Errorf("label %q twice", fs.Label)
				}
				labels[fs.Label] = true
			}
			entries := 0
			for _, fs := range m.Filesystems {
				if fs.Mount != nil && fs.Mount.Fstab != nil {
					entries++
				}
			}
			fstab := m.Fstab()
			lines := strings.Split(strings.TrimSuffix(fstab, "\n"), "\n")
			if fstab == "" {
				lines = nil
			}
			if len(lines) != entries {
				t.Errorf("fstab has %d lines for %d entries:\n%s", len(lines), entries, fstab)
			}
			for _, line := range lines {
				if n := len(strings.Fields(line)); n != 6 {
					t.Errorf("fstab line %q has %d fields, want 6", line, n)
				}
			}
		}
	})
}
