package elements

import (
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// dibOrder is the order dib-run-parts was verified to use (dib-reference §1.4).
var dibOrder = []string{"-3-neg", "0-n", "00-zz", "foo", "01-x", "1-y", "5", "10-A", "10-a", "10-b", "10_a", "99-q", "100-z"}

func TestSortScripts(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		in := append([]string(nil), dibOrder...)
		r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		if got := SortScripts(in); !reflect.DeepEqual(got, dibOrder) {
			t.Fatalf("SortScripts(%q) = %q, want %q", in, got, dibOrder)
		}
	}
	// Beyond hook names: long numbers, decimals, negative order.
	in := []string{"99999999999999999999999-b", "1.5-x", "1.25-y", "-10", "-2", "2", "0.0"}
	want := []string{"-10", "-2", "0.0", "1.25-y", "1.5-x", "2", "99999999999999999999999-b"}
	if got := SortScripts(in); !reflect.DeepEqual(got, want) {
		t.Errorf("SortScripts(%q) = %q, want %q", in, got, want)
	}
}

// TestSortScriptsMatchesSort checks against GNU sort itself when present.
func TestSortScriptsMatchesSort(t *testing.T) {
	names := append([]string{"1.5-x", "1.25-y", "-10", "-2", "2", "0.0", "-0", "007", "7-a", "a-7", "_1", "Z9"}, dibOrder...)
	cmd := exec.Command("sort", "-n")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		testreq.Missing(t, "no sort: %v", err)
	}
	want := strings.Fields(string(out))
	if got := SortScripts(names); !reflect.DeepEqual(got, want) {
		t.Errorf("SortScripts = %q\nsort -n    = %q", got, want)
	}
}

// treeLibrary loads testdata/tree (or a copy of it) as the only
// ELEMENTS_PATH entry.
func treeLibrary(t *testing.T, dir string) *Library {
	t.Helper()
	lib, err := LoadLibrary([]string{dir}, "")
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// resolutionOf builds a Resolution by hand: tree tests need no OS element.
func resolutionOf(t *testing.T, lib *Library, names ...string) *Resolution {
	t.Helper()
	res := &Resolution{Requested: names}
	for _, n := range names {
		e, ok := lib.Get(n)
		if !ok {
			t.Fatalf("no element %s", n)
		}
		res.Elements = append(res.Elements, e)
	}
	return res
}

func hookNames(hooks []Hook) (names, elems []string) {
	for _, h := range hooks {
		names = append(names, h.Name)
		elems = append(elems, h.Element)
	}
	return
}

func TestBuildTree(t *testing.T) {
	lib := treeLibrary(t, "testdata/tree")
	dst := filepath.Join(t.TempDir(), "hooks")
	tree, err := BuildTree(resolutionOf(t, lib, "alpha", "beta"), dst)
	if err != nil {
		t.Fatal(err)
	}

	// One phase, two elements, DIB's order.
	names, elems := hookNames(tree.Hooks["install.d"])
	if !reflect.DeepEqual(names, dibOrder) {
		t.Errorf("install.d = %q\nwant %q", names, dibOrder)
	}
	alpha := map[string]bool{"-3-neg": true, "00-zz": true, "01-x": true, "10-A": true, "10_a": true, "100-z": true}
	for i, n := range names {
		if want := map[bool]string{true: "alpha", false: "beta"}[alpha[n]]; elems[i] != want {
			t.Errorf("%s from %s, want %s", n, elems[i], want)
		}
	}
	if h := tree.Hooks["install.d"][0]; h.Path != filepath.Join(tree.Dir, "install.d", "-3-neg") || h.Phase != "install.d" {
		t.Errorf("hook = %+v", h)
	}
	if names, _ := hookNames(tree.Hooks["finalise.d"]); !reflect.DeepEqual(names, []string{"50-beta"}) {
		t.Errorf("finalise.d = %q", names)
	}
	if _, ok := tree.Hooks["block-device.d"]; ok {
		t.Error("legacy block-device.d hooks must not be listed to run")
	}

	// Skipped: bad name, not executable; data in a subdirectory is not a hook.
	skipped := map[string]string{}
	for _, w := range tree.Skipped {
		skipped[filepath.Base(w.Path)] = w.Element + ": " + w.Message
	}
	for name, want := range map[string]string{
		"10-foo.sh":         "alpha: dib-run-parts skips it: name does not match",
		"20-not-executable": "alpha: dib-run-parts skips it: not executable",
		"dhcp.conf":         "alpha: dib-run-parts skips it: not executable; name does not match",
		"bad~name":          "alpha: never sourced",
	} {
		if !strings.HasPrefix(skipped[name], want) {
			t.Errorf("skipped[%s] = %q, want prefix %q", name, skipped[name], want)
		}
	}
	if len(skipped) != 4 {
		t.Errorf("skipped = %v", skipped)
	}
	for _, w := range tree.Skipped {
		if w.Path == filepath.Join(tree.Dir, "install.d", "10-foo.sh") || !strings.HasPrefix(w.Path, lib.elements["alpha"].Dir) {
			t.Errorf("warning should name the element's file, not the tree's: %s", w.Path)
		}
	}

	// environment.d: byte order, not numeric.
	var env []string
	for _, p := range tree.EnvFiles {
		env = append(env, filepath.Base(p))
	}
	if want := []string{"02-a.bash", "100-x", "11-y", "9-z"}; !reflect.DeepEqual(env, want) {
		t.Errorf("EnvFiles = %q, want %q", env, want)
	}

	// Legacy phase warning.
	var legacy bool
	for _, w := range tree.Warnings {
		if w.Phase == "block-device.d" && w.Element == "alpha" && strings.Contains(w.Message, "legacy") {
			legacy = true
		}
	}
	if !legacy {
		t.Errorf("no legacy warning in %v", tree.Warnings)
	}

	// static/ merged from both, modes kept, tests/ not copied, top-level
	// files copied, subdirectories of phases copied.
	for rel, mode := range map[string]os.FileMode{
		"static/etc/alpha.conf":                         0o644,
		"static/etc/beta.conf":                          0o644,
		"static/usr/local/bin/beta-tool":                0o755,
		"bin/alpha-tool":                                0o755,
		"install.d/alpha-source-install/10-from-source": 0o755,
		"source-repository-alpha":                       0o644,
	} {
		st, err := os.Lstat(filepath.Join(tree.Dir, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", rel, st.Mode().Perm(), mode)
		}
	}
	// Element metadata (README, element-deps, package-installs.yaml) is
	// read from the elements, not copied into the shared tree.
	for _, rel := range []string{"tests", "alpha", "beta", "README.rst", "element-deps"} {
		if _, err := os.Lstat(filepath.Join(tree.Dir, rel)); err == nil {
			t.Errorf("%s should not be in the tree", rel)
		}
	}
}

func TestBuildTreeErrors(t *testing.T) {
	lib := treeLibrary(t, "testdata/tree")
	tests := []struct {
		elems []string
		path  string
		pair  [2]string
		text  string
	}{
		{[]string{"beta", "dup-hook"}, "install.d/10-a", [2]string{"beta", "dup-hook"}, "duplicate hook install.d/10-a: elements \"beta\""},
		{[]string{"alpha", "deep-dup"}, "static/etc/alpha.conf", [2]string{"alpha", "deep-dup"}, "DIB would overwrite silently"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := BuildTree(resolutionOf(t, lib, tt.elems...), t.TempDir())
			var de *DuplicateFileError
			if !errors.As(err, &de) || de.Path != tt.path || de.Elements != tt.pair {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(err.Error(), tt.text) || !strings.Contains(err.Error(), filepath.Join(lib.elements[tt.pair[1]].Dir, tt.path)) {
				t.Errorf("error %q lacks %q or the file", err, tt.text)
			}
		})
	}
	t.Run("not empty", func(t *testing.T) {
		dst := t.TempDir()
		os.WriteFile(filepath.Join(dst, "x"), nil, 0o644)
		if _, err := BuildTree(resolutionOf(t, lib, "beta"), dst); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestBuildTreeWarnings(t *testing.T) {
	lib := treeLibrary(t, "testdata/tree")
	tree, err := BuildTree(resolutionOf(t, lib, "shared-top-a", "shared-top-b", "typo"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, w := range tree.Warnings {
		msgs = append(msgs, w.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"element shared-top-b: " + filepath.Join(lib.elements["shared-top-b"].Dir, "source-repository-shared") + ": top-level file source-repository-shared overwrites the one from element shared-top-a",
		"finalize.d is not a phase and never runs; did you mean finalise.d?",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings:\n%s\nlack %q", all, want)
		}
	}
	data, _ := os.ReadFile(filepath.Join(tree.Dir, "source-repository-shared"))
	if string(data) != "b\n" {
		t.Errorf("later element should win like DIB: %q", data)
	}
}

// copyDir copies a fixture so a test can add symlinks and modes git cannot
// be trusted with.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBuildTreeSymlinks(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, "testdata/tree/beta", filepath.Join(dir, "beta"))
	beta := filepath.Join(dir, "beta")
	// A hook linking to a file of its element (merged bin/), a link to a
	// script in a subdirectory (what install-types does), a symlinked
	// subdirectory, and a read-only directory.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(beta, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(beta, "bin", "beta-run"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Symlink("../bin/beta-run", filepath.Join(beta, "install.d", "60-linked")))
	must(os.MkdirAll(filepath.Join(dir, "elsewhere", "root.d"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "elsewhere", "root.d", "10-elsewhere"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Symlink(filepath.Join(dir, "elsewhere", "root.d"), filepath.Join(beta, "root.d")))
	must(os.Chmod(filepath.Join(beta, "static", "etc"), 0o700))
	lib := treeLibrary(t, dir)

	tree, err := BuildTree(resolutionOf(t, lib, "beta"), filepath.Join(t.TempDir(), "hooks"))
	if err != nil {
		t.Fatal(err)
	}
	names, _ := hookNames(tree.Hooks["install.d"])
	if !reflect.DeepEqual(names, []string{"0-n", "foo", "1-y", "5", "10-a", "10-b", "60-linked", "99-q"}) {
		t.Errorf("install.d = %q", names)
	}
	if l, err := os.Readlink(filepath.Join(tree.Dir, "install.d", "60-linked")); err != nil || l != "../bin/beta-run" {
		t.Errorf("symlink not preserved: %q %v", l, err)
	}
	if names, elems := hookNames(tree.Hooks["root.d"]); !reflect.DeepEqual(names, []string{"10-elsewhere"}) || elems[0] != "beta" {
		t.Errorf("symlinked root.d = %q %q", names, elems)
	}
	if st, err := os.Stat(filepath.Join(tree.Dir, "static", "etc")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode not kept: %v %v", st.Mode(), err)
	}

	// install-types adds links after the tree is built; Rescan sees them.
	must(os.MkdirAll(filepath.Join(tree.Dir, "install.d", "beta-source-install"), 0o755))
	must(os.WriteFile(filepath.Join(tree.Dir, "install.d", "beta-source-install", "70-src"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Symlink("beta-source-install/70-src", filepath.Join(tree.Dir, "install.d", "70-src")))
	must(tree.Rescan())
	if names, _ := hookNames(tree.Hooks["install.d"]); len(names) != 9 || names[7] != "70-src" {
		t.Errorf("after rescan install.d = %q", names)
	}

	// A dangling hook is an error naming it.
	must(os.Symlink("../nowhere", filepath.Join(beta, "install.d", "80-dangling")))
	_, err = BuildTree(resolutionOf(t, lib, "beta"), t.TempDir())
	var ds *DanglingSymlinkError
	if !errors.As(err, &ds) || ds.Element != "beta" || ds.Path != filepath.Join(beta, "install.d", "80-dangling") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "80-dangling is a dangling symlink (-> ../nowhere)") {
		t.Errorf("error %q", err)
	}
}

func TestBuildTreeAbsoluteSymlinkInside(t *testing.T) {
	dir := t.TempDir()
	e := filepath.Join(dir, "abs", "install.d")
	if err := os.MkdirAll(e, 0o755); err != nil {
		t.Fatal(err)
	}
	// Resolved inside the image when the phase runs, so not checked here.
	if err := os.Symlink("/usr/share/nowhere-on-host/script", filepath.Join(e, "10-abs")); err != nil {
		t.Fatal(err)
	}
	lib := treeLibrary(t, dir)
	tree, err := BuildTree(resolutionOf(t, lib, "abs"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if names, _ := hookNames(tree.Hooks["install.d"]); !reflect.DeepEqual(names, []string{"10-abs"}) {
		t.Errorf("install.d = %q", names)
	}
	if len(tree.Warnings) != 1 || !strings.Contains(tree.Warnings[0].Message, "absolute symlink") {
		t.Errorf("warnings = %v", tree.Warnings)
	}
}

// TestHooksMatchDIBRunParts lists the built tree with DIB's own
// dib-run-parts --list and compares.
func TestHooksMatchDIBRunParts(t *testing.T) {
	runParts := "/usr/lib/python3/dist-packages/diskimage_builder/lib/dib-run-parts"
	if _, err := os.Stat(runParts); err != nil {
		testreq.Missing(t, "diskimage-builder is not installed")
	}
	lib := treeLibrary(t, "testdata/tree")
	tree, err := BuildTree(resolutionOf(t, lib, "alpha", "beta"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"install.d", "root.d", "finalise.d"} {
		cmd := exec.Command("bash", runParts, "--list", filepath.Join(tree.Dir, phase))
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dib-run-parts: %v", err)
		}
		var ours []string
		for _, h := range tree.Hooks[phase] {
			ours = append(ours, h.Path)
		}
		if dib := strings.Fields(string(out)); !reflect.DeepEqual(dib, ours) {
			t.Errorf("%s: dib-run-parts %q\nours %q", phase, dib, ours)
		}
	}
}

func TestEnableInstallTypes(t *testing.T) {
	lib := treeLibrary(t, "testdata/tree")
	tests := []struct {
		name  string
		elems []string
		env   map[string]string
		want  map[string]string // hook -> link target
	}{
		{"default source", []string{"install-types", "nova", "glance-api"}, map[string]string{},
			map[string]string{"74-nova": "nova-source-install/74-nova", "75-glance": "glance-api-source-install/75-glance"}},
		{"per element", []string{"install-types", "nova", "glance-api"}, map[string]string{"DIB_INSTALLTYPE_nova": "package", "DIB_INSTALLTYPE_glance_api": "source"},
			map[string]string{"74-nova": "nova-package-install/74-nova", "76-nova-package-extra": "nova-package-install/76-nova-package-extra", "75-glance": "glance-api-source-install/75-glance"}},
		{"default package", []string{"install-types", "nova", "glance-api"}, map[string]string{"DIB_DEFAULT_INSTALLTYPE": "package", "DIB_INSTALLTYPE_glance_api": "source"},
			map[string]string{"74-nova": "nova-package-install/74-nova", "76-nova-package-extra": "nova-package-install/76-nova-package-extra", "75-glance": "glance-api-source-install/75-glance"}},
		{"without install-types nothing is linked", []string{"nova"}, map[string]string{}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree, err := BuildTree(resolutionOf(t, lib, tt.elems...), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := tree.EnableInstallTypes(tt.env); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, h := range tree.Hooks["install.d"] {
				if l, err := os.Readlink(h.Path); err == nil {
					got[h.Name] = l
					if !strings.HasPrefix(l, h.Element+"-") {
						t.Errorf("%s attributed to %q", h.Name, h.Element)
					}
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("links = %v, want %v", got, tt.want)
			}
			if err := tree.EnableInstallTypes(tt.env); err != nil {
				t.Errorf("not idempotent: %v", err)
			}
			runDIBInstallTypes(t, lib, tt.elems, tt.env, got)
		})
	}
}

// runDIBInstallTypes runs DIB's own 99-enable-install-types on a fresh tree
// and compares the links it makes with ours.
func runDIBInstallTypes(t *testing.T, lib *Library, elems []string, env map[string]string, ours map[string]string) {
	t.Helper()
	script := "/usr/lib/python3/dist-packages/diskimage_builder/elements/install-types/extra-data.d/99-enable-install-types"
	if _, err := os.Stat(script); err != nil {
		return
	}
	if elems[0] != "install-types" {
		return // DIB runs it only as part of the install-types element
	}
	tree, err := BuildTree(resolutionOf(t, lib, elems...), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TMP_HOOKS_PATH=" + tree.Dir, "DIB_DEBUG_TRACE=0", "DIB_DEFAULT_INSTALLTYPE=source"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("DIB install-types: %v\n%s", err, out)
	}
	dib := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(tree.Dir, "install.d"))
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(tree.Dir, "install.d", e.Name())); err == nil {
			dib[e.Name()] = l
		}
	}
	if !reflect.DeepEqual(dib, ours) {
		t.Errorf("DIB links %v, ours %v", dib, ours)
	}
}
