package rootfs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"builder/internal/testreq"

	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"
)

// TestNormalizeTree: times later than the epoch are clamped (symlinks
// themselves, directories too) and earlier ones kept; an entry whose
// extended attributes were set out of name order lists them in order
// afterwards, with the same values. Found by the reproducibility test: a
// directory with two ACLs made a root and a rootless build differ by the
// order tar and mkfs.ext4 copied them in.
func TestNormalizeTree(t *testing.T) {
	root := t.TempDir()
	epoch := time.Now().Add(-time.Hour).Unix()
	old := time.Unix(epoch-100, 0)
	write := func(name string) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, x, y := write("a"), write("b"), write("x"), write("y")
	d := filepath.Join(root, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	l := filepath.Join(root, "l")
	if err := os.Symlink("b", l); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][3]string{{x, "user.b", "two"}, {x, "user.a", "one"}, {y, "user.a", "1"}, {y, "user.b", "2"}} {
		if err := unix.Lsetxattr(kv[0], kv[1], []byte(kv[2]), 0); err != nil {
			testreq.Missing(t, "user extended attributes on %s: %v", root, err)
		}
	}
	if names, _ := system.Llistxattr(x); slices.IsSorted(names) {
		testreq.Missing(t, "a filesystem that lists extended attributes in the order they were set (%s lists %v)", root, names)
	}
	for _, p := range []string{b, x, y} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}

	n, err := NormalizeTree(root, epoch)
	if err != nil {
		t.Fatal(err)
	}
	// a, d, l and root itself were later than the epoch.
	if n.Times != 4 || n.Xattrs != 1 {
		t.Errorf("normalized %+v, want 4 times and 1 entry's attributes", n)
	}
	for _, p := range []string{root, a, d, l} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mtim.Sec != epoch || st.Mtim.Nsec != 0 {
			t.Errorf("%s: mtime %d.%09d, want the epoch %d", p, st.Mtim.Sec, st.Mtim.Nsec, epoch)
		}
	}
	for _, p := range []string{b, x, y} {
		if st, err := os.Lstat(p); err != nil || !st.ModTime().Equal(old) {
			t.Errorf("%s: an earlier time was changed: %v %v", p, st.ModTime(), err)
		}
	}
	for _, c := range []struct {
		p      string
		values []string
	}{{x, []string{"one", "two"}}, {y, []string{"1", "2"}}} {
		names, err := system.Llistxattr(c.p)
		if err != nil || !slices.Equal(names, []string{"user.a", "user.b"}) {
			t.Errorf("%s lists %v (%v), want user.a user.b", c.p, names, err)
			continue
		}
		for i, name := range names {
			if v, err := system.Lgetxattr(c.p, name); err != nil || string(v) != c.values[i] {
				t.Errorf("%s %s = %q (%v), want %q", c.p, name, v, err, c.values[i])
			}
		}
	}
}
