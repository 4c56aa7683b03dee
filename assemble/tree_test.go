package assemble

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"builder/internal/testreq"
)

func mustWrite(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func TestMeasureTree(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "a.txt"), make([]byte, 5000), 0o644)               // 2 blocks
	mustWrite(t, filepath.Join(dir, "empty"), nil, 0o644)                              // 0 blocks
	mustWrite(t, filepath.Join(dir, "hl1"), []byte(strings.Repeat("x", 10000)), 0o644) // 3 blocks, once
	if err := os.Link(filepath.Join(dir, "hl1"), filepath.Join(dir, "hl2")); err != nil {
		t.Fatal(err)
	}
	// Sparse: 10 MiB apparent, one 4 KiB block of data.
	sp, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.WriteAt(make([]byte, 4096), MiB); err != nil {
		t.Fatal(err)
	}
	if err := sp.Truncate(10 * MiB); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if err := os.Symlink("a.txt", filepath.Join(dir, "link-short")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("long/", 20), filepath.Join(dir, "link-long")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "sub", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}

	u, err := MeasureTree(bg, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := TreeUsage{
		Files: 4, Dirs: 2, Symlinks: 2, Others: 1, Inodes: 9,
		DataBytes:     (2 + 0 + 3 + 1) * 4096,
		DirBytes:      2 * 4096,
		SymlinkBytes:  4096,
		HardLinks:     1,
		ApparentBytes: 5000 + 10000 + 10*MiB,
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "sparse"), &st); err == nil && st.Blocks*512 >= 10*MiB {
		testreq.Missing(t, "the temp filesystem does not keep holes")
	}
	if u.Files != want.Files || u.Dirs != want.Dirs || u.Symlinks != want.Symlinks || u.Others != want.Others ||
		u.Inodes != want.Inodes || u.DataBytes != want.DataBytes || u.DirBytes != want.DirBytes ||
		u.SymlinkBytes != want.SymlinkBytes || u.HardLinks != want.HardLinks || u.ApparentBytes != want.ApparentBytes {
		t.Errorf("MeasureTree:\n got %+v\nwant %+v", u, want)
	}
	if len(u.MountPoints) != 0 {
		t.Errorf("mount points %v in a plain tree", u.MountPoints)
	}

	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := MeasureTree(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("MeasureTree with a cancelled context: %v", err)
	}
	if _, err := MeasureTree(bg, filepath.Join(dir, "a.txt")); err == nil {
		t.Error("MeasureTree accepted a file")
	}
}

// A filesystem mounted inside the tree is reported and not descended into,
// and PlanDisk refuses the tree (mkfs.ext4 -d would copy it).
func TestMeasureTreeMountPoint(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "proc-like")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		testreq.Missing(t, "cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	mustWrite(t, filepath.Join(mnt, "inside"), []byte("x"), 0o644)

	u, err := MeasureTree(bg, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.MountPoints) != 1 || u.MountPoints[0] != "/proc-like" || u.Files != 0 {
		t.Errorf("mount points %v, files %d: want [/proc-like] and 0", u.MountPoints, u.Files)
	}
	_, err = PlanDisk(bg, DiskSpec{RootDir: dir, Layout: DefaultLayout()})
	if err == nil || !strings.Contains(err.Error(), "/proc-like") {
		t.Errorf("PlanDisk on a tree with a mount point: %v", err)
	}
}
