package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bootTest runs builder boot-test and returns its report.
func bootTest(t *testing.T, img string, args ...string) bootReport {
	t.Helper()
	report := filepath.Join(t.TempDir(), "boot.json")
	var env []string
	if _, own := ownLaneTests.Load(t.Name()); own {
		// QEMU's files (its command line) in an own root: the shared
		// lane's check for leftover guests passes this one by.
		dir := t.TempDir()
		ownRoot(dir)
		env = append(env, "TMPDIR="+dir)
	}
	r := runBuilder(t, withTimeout(t, 20*time.Minute), env, append([]string{"boot-test", img, "--report", report, "--timeout", "15m"}, args...)...)
	return readBootReport(t, report, r.code)
}

// Layouts that must boot: the default (BIOS and UEFI hybrid) under UEFI,
// block-device-mbr under BIOS, and a DIB YAML layout with separate /boot
// and /var under BIOS.
func TestLayoutsBoot(t *testing.T) {
	needE2E(t)
	yaml := filepath.Join(t.TempDir(), "layout.yaml")
	os.WriteFile(yaml, []byte(`- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: boot
        type: '8300'
        size: 300MiB
        mkfs:
          type: ext4
          label: boot
          mount:
            mount_point: /boot
            fstab:
              options: defaults
              fsck-passno: 2
      - name: var
        type: '8300'
        size: 512MiB
        mkfs:
          type: ext4
          label: var
          mount:
            mount_point: /var
            fstab:
              options: defaults
              fsck-passno: 2
      - name: root
        type: '8300'
        size: 100%
        mkfs:
          name: mkfs_root
          mount:
            mount_point: /
            fstab:
              options: defaults
              fsck-passno: 1
`), 0o644)
	cases := []struct {
		name     string
		elements []string
		env      []string
		firmware string
		table    string
	}{
		{"default-uefi", []string{"debian-minimal", "vm"}, nil, "uefi", "gpt"},
		{"mbr-bios", []string{"debian-minimal", "vm", "block-device-mbr"}, nil, "bios", "dos"},
		{"boot-var-yaml-bios", []string{"debian-minimal", "vm"}, []string{"DIB_BLOCK_DEVICE_CONFIG=file://" + yaml}, "bios", "gpt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, tmp := t.TempDir(), t.TempDir()
			img := filepath.Join(out, c.name+".qcow2")
			args := append([]string{"image", "-o", img, "--image-cache", cacheDir}, c.elements...)
			r := runBuilder(t, withTimeout(t, 30*time.Minute), append([]string{"TMP_DIR=" + tmp}, c.env...), args...)
			if r.code != 0 {
				t.Fatalf("build failed")
			}
			raw := filepath.Join(t.TempDir(), "d.raw")
			if out, err := exec.Command("qemu-img", "convert", "-O", "raw", img, raw).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			dump, _ := exec.Command("sfdisk", "-d", raw).Output()
			if !strings.Contains(string(dump), "label: "+c.table) {
				t.Errorf("partition table:\n%s\nwant label %s", dump, c.table)
			}
			rep := bootTest(t, img, "--firmware", c.firmware)
			t.Logf("%s booted in %.0f s (%s, %s)", c.name, rep.Seconds, rep.Accel, c.firmware)
			if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
				t.Errorf("left behind: %v", l)
			}
		})
	}
}
