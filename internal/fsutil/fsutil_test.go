package fsutil

import (
	"os"
	"path/filepath"
	"testing"

	"builder/internal/testreq"
	"golang.org/x/sys/unix"
)

func TestDetachMountsDeepestFirst(t *testing.T) {
	testreq.Root(t, "mounting a tmpfs needs root")
	dir := t.TempDir()
	outer := filepath.Join(dir, "a")
	inner := filepath.Join(outer, "b")
	if err := os.MkdirAll(outer, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", outer, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(outer, unix.MNT_DETACH) })
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(inner, unix.MNT_DETACH) })
	left, err := DetachMounts(dir)
	if err != nil || len(left) != 0 {
		t.Fatalf("DetachMounts = %v, %v; want nothing left", left, err)
	}
	if _, err := os.Stat(inner); !os.IsNotExist(err) {
		t.Errorf("%s still reachable after detaching (err %v): the outer tmpfs stayed", inner, err)
	}
}
