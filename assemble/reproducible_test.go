package assemble

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Two trees with the same content, made at different times (so their
// change and access times differ), give the same disk and the same qcow2,
// byte for byte, once their times are no later than the epoch: ext4 (hash
// seed, times mke2fs and debugfs take from the clock), the ESP (FAT times
// from mtools), GRUB's images and the partition table.
func TestBuildDiskReproducible(t *testing.T) {
	needTools(t, "mkfs.ext4", "debugfs", "dumpe2fs", "mkfs.vfat", "mmd", "mcopy", "grub-mkimage", "qemu-img")
	const epoch = 1700000000
	var raws, qcows []string
	for i := range 2 {
		tree := makeTree(t)
		clampTree(t, tree, epoch)
		d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, ESPVolumeID: 0x1234ABCD, Epoch: epoch,
			Layout: mustLayout(t, hybridGPTYAML)})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Files = append(d.Spec.Files, File{Path: "/boot/grub/grub.cfg", Data: []byte("set timeout=1\n")},
			File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
		out := t.TempDir()
		raw := filepath.Join(out, "disk.raw")
		if err := BuildDisk(bg, d, raw); err != nil {
			t.Fatal(err)
		}
		qcow := filepath.Join(out, "disk.qcow2")
		if err := Convert(bg, raw, qcow, QCOW2, ConvertOptions{Compress: true, Reproducible: true}); err != nil {
			t.Fatal(err)
		}
		raws, qcows = append(raws, fileSHA256(t, raw)), append(qcows, fileSHA256(t, qcow))
		if i == 0 {
			time.Sleep(1100 * time.Millisecond) // other change times for the second tree
		}
	}
	if raws[0] != raws[1] {
		t.Errorf("the same tree gave two raw disks: %s and %s", raws[0], raws[1])
	}
	if qcows[0] != qcows[1] {
		t.Errorf("the same disk gave two qcow2 files: %s and %s", qcows[0], qcows[1])
	}
}

func clampTree(t *testing.T, root string, epoch int64) {
	t.Helper()
	ts := []unix.Timespec{{Sec: epoch}, {Sec: epoch}}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The root last: setting its entries' times changed nothing, but be sure.
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, root, ts, 0); err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
