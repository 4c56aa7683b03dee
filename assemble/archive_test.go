package assemble

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// Tree outputs list the tree's files with the tools consumers use, keep
// numeric owners, and leave nothing behind on failure.
func TestWriteTree(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("x\n"), 0o644)
	os.WriteFile(filepath.Join(root, "owned"), []byte("y"), 0o600)
	if os.Geteuid() == 0 {
		os.Chown(filepath.Join(root, "owned"), 1234, 5678)
	}
	out := t.TempDir()
	ctx := context.Background()
	for _, c := range []struct {
		f    TreeFormat
		list []string
	}{
		{Tar, []string{"tar", "-tvf"}},
		{TarGz, []string{"tar", "-tzvf"}},
		{Squashfs, []string{"unsquashfs", "-lls"}},
	} {
		if _, err := exec.LookPath(c.list[0]); err != nil {
			testreq.Missing(t, "%s not installed", c.list[0])
		}
		dst := filepath.Join(out, "img."+string(c.f))
		if err := WriteTree(ctx, root, dst, c.f, 0); err != nil {
			t.Fatalf("%s: %v", c.f, err)
		}
		listing, err := exec.Command(c.list[0], append(c.list[1:], dst)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", c.list[0], dst, err, listing)
		}
		for _, want := range []string{"etc/hostname", "owned"} {
			if !strings.Contains(string(listing), want) {
				t.Errorf("%s lacks %s:\n%s", c.f, want, listing)
			}
		}
		if os.Geteuid() == 0 && c.f != Squashfs && !strings.Contains(string(listing), "1234/5678") {
			t.Errorf("%s lost the numeric owner:\n%s", c.f, listing)
		}
	}
	if err := WriteTree(ctx, "/nonexistent-tree", filepath.Join(out, "bad.tar"), Tar, 0); err == nil {
		t.Errorf("a missing tree gave no error")
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || e.Name() == "bad.tar" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
