package sbom

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"builder/internal/testreq"
)

var scratch string

func TestMain(m *testing.M) {
	var err error
	if scratch, err = os.MkdirTemp("", "builder-sbom-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(scratch)
	os.Exit(code)
}

func testCache() string {
	if c := os.Getenv("BUILDER_TEST_CACHE"); c != "" {
		return c
	}
	return "/var/tmp/builder-test-cache"
}

var (
	debianOnce sync.Once
	debianDir  string
	debianErr  error
)

// debianTree is a real Debian root filesystem: the minbase the rootfs tests
// keep in the test cache (mmdebstrap --variant=minbase bookworm; made here
// when it is not there yet), extracted once per test run with its owners
// and device nodes.
func debianTree(t *testing.T) string {
	t.Helper()
	testreq.Short(t, "extracts a Debian minbase (170 MB): skipped with -short")
	testreq.Root(t, "extracting a root filesystem with its owners and device nodes")
	debianOnce.Do(func() {
		tar := filepath.Join(testCache(), "rootfs-test-minbase.tar")
		if _, err := os.Stat(tar); err != nil {
			if _, err := exec.LookPath("mmdebstrap"); err != nil {
				debianErr = fmt.Errorf("%s is missing and mmdebstrap is not installed (apt-get install mmdebstrap)", tar)
				return
			}
			os.MkdirAll(testCache(), 0o755)
			if out, err := exec.Command("mmdebstrap", "--variant=minbase", "--format=tar", "bookworm", tar+".tmp").CombinedOutput(); err != nil {
				debianErr = fmt.Errorf("mmdebstrap: %v\n%s", err, out)
				return
			}
			if debianErr = os.Rename(tar+".tmp", tar); debianErr != nil {
				return
			}
		}
		debianDir = filepath.Join(scratch, "debian")
		os.MkdirAll(debianDir, 0o755)
		if out, err := exec.Command("tar", "--numeric-owner", "-xpf", tar, "-C", debianDir).CombinedOutput(); err != nil {
			debianErr = fmt.Errorf("extract %s: %v\n%s", tar, err, out)
		}
	})
	if debianErr != nil {
		t.Fatal(debianErr)
	}
	return debianDir
}

// debSpec is a test package: its control fields, files and, when set, a
// copyright file.
type debSpec struct {
	Name, Version, Arch, Source string
	Files                       map[string]string
	Copyright                   string
}

// makeDeb builds a real .deb with dpkg-deb.
func makeDeb(t *testing.T, s debSpec) string {
	t.Helper()
	testreq.Tool(t, "dpkg-deb", "dpkg")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755)
	ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Builder Tests <tests@example.org>\nHomepage: https://example.org/%s\n", s.Name, s.Version, s.Arch, s.Name)
	if s.Source != "" {
		ctl += "Source: " + s.Source + "\n"
	}
	ctl += "Description: builder's SBOM test package\n"
	os.WriteFile(filepath.Join(tree, "DEBIAN/control"), []byte(ctl), 0o644)
	files := map[string]string{}
	for k, v := range s.Files {
		files[k] = v
	}
	if s.Copyright != "" {
		files["usr/share/doc/"+s.Name+"/copyright"] = s.Copyright
	}
	for p, content := range files {
		full := filepath.Join(tree, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, s.Name+".deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", tree, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

// dpkgTree makes a root filesystem with an empty dpkg database and
// installs the packages into it with dpkg --root.
func dpkgTree(t *testing.T, dir string, debs ...string) string {
	t.Helper()
	testreq.Root(t, "dpkg --root installs as root")
	testreq.Tool(t, "dpkg", "dpkg")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "etc/os-release"), []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"), 0o644)
	if len(debs) > 0 {
		args := append([]string{"--root=" + dir, "--log=/dev/null", "-i"}, debs...)
		if out, err := exec.Command("dpkg", args...).CombinedOutput(); err != nil {
			t.Fatalf("dpkg -i: %v\n%s", err, out)
		}
	}
	return dir
}

// probeCopyright is a DEP-5 copyright file.
const probeCopyright = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: builder-probe

Files: *
Copyright: 2024 Builder Tests
License: GPL-2+ or Artistic

Files: debian/*
Copyright: 2024 Builder Tests
License: Expat

Files: data/*
Copyright: none
License: public-domain
 Written by nobody in particular.

License: Expat
 Permission is hereby granted...
`

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// setDiff returns what a has and b has not.
func setDiff(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}
