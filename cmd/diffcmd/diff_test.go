package diffcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builder/cmd/boottestcmd"
	"builder/cmd/imagecmd"
	"builder/internal/testreq"
	"builder/sbom"
)

// makeDeb builds a real .deb with dpkg-deb: one versioned file.
func makeDeb(t *testing.T, name, version string) string {
	t.Helper()
	testreq.Tool(t, "dpkg-deb", "dpkg")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(tree, "usr/share", name), 0o755)
	os.WriteFile(filepath.Join(tree, "DEBIAN/control"), []byte(fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: Builder Tests <tests@example.org>\nDescription: test\n", name, version)), 0o644)
	os.WriteFile(filepath.Join(tree, "usr/share", name, "version"), []byte(version+"\n"), 0o644)
	deb := filepath.Join(dir, name+".deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", tree, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

// image makes a tree with a real dpkg database (dpkg --root installs the
// packages), one configuration file, and writes its SBOM beside a stand-in
// NAME.qcow2 in out, as a build does.
func image(t *testing.T, out, name, conf string, debs ...string) string {
	t.Helper()
	testreq.Root(t, "dpkg --root installs as root")
	testreq.Tool(t, "dpkg", "dpkg")
	root := filepath.Join(t.TempDir(), name)
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/builder.conf"), []byte(conf), 0o644)
	args := append([]string{"--root=" + root, "--log=/dev/null", "-i"}, debs...)
	if out, err := exec.Command("dpkg", args...).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	qcow2 := filepath.Join(out, name+".qcow2")
	os.WriteFile(qcow2, []byte("a disk"), 0o644)
	doc, err := sbom.Generate(context.Background(), root, sbom.Inputs{Name: name, Created: time.Unix(1717243200, 0),
		Outputs: []sbom.Output{{Path: qcow2, SHA256: strings.Repeat("0", 64)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.WriteFile(filepath.Join(out, name+".spdx.json")); err != nil {
		t.Fatal(err)
	}
	return qcow2
}

// Two images that differ by one package's version and one file's content.
func twoImages(t *testing.T) (old, new string) {
	out := t.TempDir()
	old = image(t, out, "debian-2026.06.01-02.00.00", "a=1\n", makeDeb(t, "builder-probe", "1.0-1"), makeDeb(t, "builder-same", "3.0"))
	new = image(t, out, "debian", "a=2\n", makeDeb(t, "builder-probe", "1.0-1+deb12u1"), makeDeb(t, "builder-same", "3.0"))
	return old, new
}

func run(t *testing.T, o Options) (bool, string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	o.Out, o.Err = &out, &errOut
	equal, err := Run(context.Background(), &o)
	return equal, out.String(), errOut.String(), err
}

func TestDiffNamesThePackageAndTheFile(t *testing.T) {
	old, new := twoImages(t)
	equal, out, errOut, err := run(t, Options{Old: old, New: new})
	if err != nil || equal {
		t.Fatalf("equal %v, err %v\n%s%s", equal, err, out, errOut)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{
		"packages: 1 upgraded, 0 downgraded, 0 added, 0 removed (2 -> 2)\n",
		"  upgraded    builder-probe:amd64  1.0-1 -> 1.0-1+deb12u1\n",
		"  changed     /etc/builder.conf",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !lineWith(out, "  changed     /usr/share/builder-probe/version ", " content (6 -> 14 bytes)") || !lineWith(out, "  changed     /etc/builder.conf ", " content (4 -> 4 bytes)") {
		t.Errorf("the changed files are not named with how they changed")
	}
	if strings.Contains(out, "builder-same") || strings.Contains(out, "/usr/share/builder-same") || errOut != "" {
		t.Errorf("an unchanged package, or notes:\n%s%s", out, errOut)
	}
	// Every other changed path is the dpkg database's record of the upgrade.
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "changed" && f[1] != "/etc/builder.conf" && f[1] != "/usr/share/builder-probe/version" && !strings.HasPrefix(f[1], "/var/lib/dpkg/") {
			t.Errorf("unexpected change: %s", l)
		}
	}

	// The other way round it is a downgrade; the SBOM files work as well
	// as the images.
	_, out, _, err = run(t, Options{Old: strings.TrimSuffix(new, ".qcow2") + ".spdx.json", New: strings.TrimSuffix(old, ".qcow2") + ".spdx.json"})
	if err != nil || !strings.Contains(out, "  downgraded  builder-probe:amd64  1.0-1+deb12u1 -> 1.0-1\n") {
		t.Errorf("%v\n%s", err, out)
	}
}

func lineWith(out, prefix, suffix string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) && strings.HasSuffix(l, suffix) {
			return true
		}
	}
	return false
}

func TestDiffJSON(t *testing.T) {
	old, new := twoImages(t)
	equal, out, _, err := run(t, Options{Old: old, New: new, Format: "json"})
	if err != nil || equal {
		t.Fatalf("%v %v", equal, err)
	}
	var r Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Equal || r.Counts.PackagesUpgraded != 1 || r.Counts.PackagesAdded+r.Counts.PackagesRemoved+r.Counts.PackagesDowngraded != 0 ||
		r.Diff.Upgraded[0].Name != "builder-probe" || r.Diff.Upgraded[0].New != "1.0-1+deb12u1" || !r.Diff.FilesCompared {
		t.Errorf("report %+v", r)
	}
	found := false
	for _, c := range r.Diff.FilesChanged {
		if c.Path == "/etc/builder.conf" && strings.Join(c.What, ",") == "content" && c.Old.SHA256 != c.New.SHA256 {
			found = true
		}
	}
	if !found || r.Counts.FilesChanged != len(r.Diff.FilesChanged) {
		t.Errorf("files changed %+v", r.Diff.FilesChanged)
	}
}

func TestDiffSameImage(t *testing.T) {
	_, new := twoImages(t)
	equal, out, _, err := run(t, Options{Old: new, New: new})
	if err != nil || !equal || !strings.HasPrefix(out, "no differences: 2 packages, ") {
		t.Errorf("%v %v %q", equal, err, out)
	}
	// Without its inventory the files are not compared, and it says so.
	os.RemoveAll(strings.TrimSuffix(new, ".qcow2") + ".d")
	equal, out, errOut, err := run(t, Options{Old: new, New: new})
	if err != nil || !equal || !strings.Contains(out, "files not compared") || !strings.Contains(errOut, "note: files not compared: no file inventory beside debian.spdx.json") {
		t.Errorf("%v %v %q %q", equal, err, out, errOut)
	}
}

// Exit status as diff's: 0 equal, 1 different (printed, nothing more),
// 2 for bad input with one line naming the argument and the fix.
func TestDiffCommandExitAndBadInput(t *testing.T) {
	old, new := twoImages(t)
	dir := filepath.Dir(new)
	cmdRun := func(args ...string) (string, error) {
		c := NewCmdDiff()
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(args)
		c.SilenceUsage, c.SilenceErrors = true, true
		err := c.ExecuteContext(context.Background())
		return out.String(), err
	}
	if _, err := cmdRun(new, new); err != nil {
		t.Errorf("equal: %v", err)
	}
	var ee *boottestcmd.ExitError
	if _, err := cmdRun(old, new); !errors.As(err, &ee) || ee.Code != 1 {
		t.Errorf("different: %v", err)
	}

	noSBOM := filepath.Join(dir, "ubuntu.qcow2")
	os.WriteFile(noSBOM, []byte("x"), 0o644)
	notSPDX := filepath.Join(dir, "other.spdx.json")
	os.WriteFile(notSPDX, []byte(`{"hello": "world"}`), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{noSBOM, new}, noSBOM + ": no SBOM beside it (ubuntu.spdx.json); build it again"},
		{[]string{old, filepath.Join(dir, "missing.qcow2")}, "missing.qcow2: no such file; give an image"},
		{[]string{filepath.Join(dir, "nothing"), new}, "nothing: no such image or SBOM (looked for nothing.spdx.json too)"},
		{[]string{notSPDX, new}, "other.spdx.json: " + notSPDX + ": not an SPDX JSON document"},
		{[]string{"--format", "yaml", old, new}, `--format "yaml": use text or json`},
	} {
		_, err := cmdRun(c.args...)
		var ue *imagecmd.UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want a usage error with %q", c.args, err, c.want)
		}
	}
}
