package sbom

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two real trees (dpkg installs): one package upgraded, one removed, one
// added, one file's content changed and one file's mode, the dpkg database
// changed with them. Compare names exactly that, both ways.
func TestCompareTrees(t *testing.T) {
	probe1 := makeDeb(t, debSpec{Name: "builder-probe", Version: "1.0-1", Arch: "all", Copyright: probeCopyright, Files: map[string]string{"usr/share/builder-probe/version": "1.0\n"}})
	probe2 := makeDeb(t, debSpec{Name: "builder-probe", Version: "1.0-1+b1", Arch: "all", Copyright: probeCopyright, Files: map[string]string{"usr/share/builder-probe/version": "1.0+b1\n"}})
	gone := makeDeb(t, debSpec{Name: "builder-gone", Version: "2.0", Arch: "amd64", Files: map[string]string{"usr/share/builder-gone/x": "x\n"}})
	came := makeDeb(t, debSpec{Name: "builder-came", Version: "0.1", Arch: "amd64", Files: map[string]string{"usr/share/builder-came/y": "y\n"}})
	a := dpkgTree(t, filepath.Join(t.TempDir(), "a"), probe1, gone)
	b := dpkgTree(t, filepath.Join(t.TempDir(), "b"), probe2, came)
	for _, root := range []string{a, b} {
		os.WriteFile(filepath.Join(root, "etc/motd"), []byte("same\n"), 0o644)
	}
	os.Chmod(filepath.Join(b, "etc/motd"), 0o600)
	ctx := context.Background()
	da, err := Generate(ctx, a, testInputs("a"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := Generate(ctx, b, testInputs("b"))
	if err != nil {
		t.Fatal(err)
	}
	d := Compare(da, db)
	if len(d.Upgraded) != 1 || d.Upgraded[0] != (PackageChange{Manager: "deb", Name: "builder-probe", Arch: "all", Old: "1.0-1", New: "1.0-1+b1"}) {
		t.Errorf("upgraded %+v", d.Upgraded)
	}
	if len(d.Downgraded) != 0 || len(d.Added) != 1 || d.Added[0].Name != "builder-came" || len(d.Removed) != 1 || d.Removed[0].Name != "builder-gone" {
		t.Errorf("added %+v removed %+v downgraded %+v", d.Added, d.Removed, d.Downgraded)
	}
	if !d.FilesCompared || d.Equal() {
		t.Fatalf("files not compared or equal: %+v", d)
	}
	changed := map[string]string{}
	for _, c := range d.FilesChanged {
		changed[c.Path] = strings.Join(c.What, ",")
	}
	if changed["/usr/share/builder-probe/version"] != "content" || changed["/etc/motd"] != "mode" || changed["/var/lib/dpkg/status"] != "content" {
		t.Errorf("changed %v", changed)
	}
	for p := range changed {
		if p != "/usr/share/builder-probe/version" && p != "/etc/motd" && !strings.HasPrefix(p, "/var/lib/dpkg/") {
			t.Errorf("%s changed, but was not changed", p)
		}
	}
	paths := func(fs []File) string {
		var out []string
		for _, f := range fs {
			if !strings.HasPrefix(f.Path, "/var/lib/dpkg/") {
				out = append(out, f.Path)
			}
		}
		return strings.Join(out, " ")
	}
	if got := paths(d.FilesAdded); got != "/usr/share/builder-came /usr/share/builder-came/y" {
		t.Errorf("files added: %s", got)
	}
	if got := paths(d.FilesRemoved); got != "/usr/share/builder-gone /usr/share/builder-gone/x" {
		t.Errorf("files removed: %s", got)
	}

	back := Compare(db, da)
	if len(back.Downgraded) != 1 || back.Downgraded[0].Old != "1.0-1+b1" || len(back.Upgraded) != 0 {
		t.Errorf("the other way: %+v", back)
	}
	if same := Compare(da, da); !same.Equal() || !same.FilesCompared {
		t.Errorf("a document differs from itself: %+v", same)
	}
	da.Files, da.InventoryNote = nil, "no file inventory beside a.spdx.json"
	if d := Compare(da, db); d.FilesCompared || len(d.FilesChanged) != 0 || len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "a.spdx.json") {
		t.Errorf("without an inventory: %+v", d.Notes)
	}
}

// Bad inputs are refused with what to give instead; a tree without a
// package database has no packages, which is not an error.
func TestDocumentInputs(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644)
	s, err := ScanTree(context.Background(), root)
	if err != nil || len(s.Packages) != 0 || len(s.Files) != 2 {
		t.Fatalf("empty tree: %v %+v", err, s)
	}
	for _, c := range []struct {
		in   Inputs
		want string
	}{
		{Inputs{Created: created}, "Inputs.Name is empty"},
		{Inputs{Name: "x"}, "SOURCE_DATE_EPOCH"},
		{Inputs{Name: "x", Created: created, Elements: []Element{{Name: "e", Hash: "md5:abc"}}}, `element e: hash "md5:abc"`},
		{Inputs{Name: "x", Created: created, Outputs: []Output{{Path: "x.qcow2", SHA256: "zz"}}}, "output x.qcow2"},
	} {
		if _, err := s.Document(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.in, err, c.want)
		}
	}
	d, err := s.Document(Inputs{Name: "x", Created: time.Unix(0, 0)})
	if err != nil || !strings.Contains(d.SPDX.DocumentComment, "(none found)") {
		t.Errorf("%v %+v", err, d)
	}
	if _, err := ScanTree(context.Background(), filepath.Join(root, "hello")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as the tree: %v", err)
	}
}

// An element's digest follows its content and modes, not where it is or
// when its files were written.
func TestDirDigest(t *testing.T) {
	mk := func(dir string) string {
		os.MkdirAll(filepath.Join(dir, "install.d"), 0o755)
		os.WriteFile(filepath.Join(dir, "install.d/10-a"), []byte("#!/bin/sh\necho a\n"), 0o755)
		os.WriteFile(filepath.Join(dir, "README.md"), []byte("a\n"), 0o644)
		os.Symlink("README.md", filepath.Join(dir, "link"))
		return dir
	}
	a := mk(filepath.Join(t.TempDir(), "el"))
	time.Sleep(10 * time.Millisecond)
	b := mk(filepath.Join(t.TempDir(), "elsewhere", "el"))
	os.Chtimes(filepath.Join(b, "README.md"), time.Unix(1, 0), time.Unix(1, 0))
	da, err := DirDigest(a)
	if err != nil {
		t.Fatal(err)
	}
	if db, _ := DirDigest(b); db != da || !strings.HasPrefix(da, "sha256:") {
		t.Errorf("same content, digests %s and %s", da, db)
	}
	os.Chmod(filepath.Join(b, "install.d/10-a"), 0o644)
	if db, _ := DirDigest(b); db == da {
		t.Errorf("a mode change kept the digest")
	}
	os.Chmod(filepath.Join(b, "install.d/10-a"), 0o755)
	os.WriteFile(filepath.Join(b, "README.md"), []byte("b\n"), 0o644)
	if db, _ := DirDigest(b); db == da {
		t.Errorf("a content change kept the digest")
	}
	if _, err := DirDigest(filepath.Join(a, "missing")); err == nil {
		t.Errorf("a missing directory has a digest")
	}
}
