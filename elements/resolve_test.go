package elements

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// resolveFixture returns the ELEMENTS_PATH entries and builtin dir of
// testdata/resolve, absolute so that they can be handed to DIB too.
func resolveFixture(t *testing.T) (paths []string, builtin string) {
	t.Helper()
	base, err := filepath.Abs("testdata/resolve")
	if err != nil {
		t.Fatal(err)
	}
	return []string{filepath.Join(base, "p1"), filepath.Join(base, "p2")}, filepath.Join(base, "builtin")
}

func loadFixture(t *testing.T) *Library {
	t.Helper()
	paths, builtin := resolveFixture(t)
	lib, err := LoadLibrary(paths, builtin)
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

func TestResolve(t *testing.T) {
	lib := loadFixture(t)
	tests := []struct {
		name      string
		request   []string
		want      []string
		os        string
		providers map[string]string
	}{
		{"deps expand, blank lines and spaces trimmed", []string{"app", "tiny-os"},
			[]string{"app", "lib-a", "lib-b", "tiny-os"}, "tiny-os", map[string]string{"operating-system": "tiny-os"}},
		{"cycles and self-deps are harmless", []string{"lib-b", "self-dep", "debian"},
			[]string{"debian", "lib-a", "lib-b", "self-dep"}, "debian", nil},
		{"virtual name satisfied by a provider", []string{"vm", "bd-mbr", "ubuntu"},
			[]string{"bd-mbr", "ubuntu", "vm"}, "ubuntu", map[string]string{"block-device": "bd-mbr", "operating-system": "ubuntu"}},
		// DIB quirk: x pulls in "virt", a real element, but vp provides
		// "virt" before it is dequeued, so the real one is dropped while
		// nothing of it is looked at.
		{"provided name is never looked up", []string{"x", "vp", "tiny-os"},
			[]string{"tiny-os", "vp", "x"}, "tiny-os", nil},
		{"first ELEMENTS_PATH entry wins", []string{"shadowed", "tiny-os"},
			[]string{"from-p1", "shadowed", "tiny-os"}, "tiny-os", nil},
		{"duplicate request is tolerated", []string{"debian", "debian"},
			[]string{"debian"}, "debian", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := lib.Resolve(tt.request)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Names(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("elements = %v, want %v", got, tt.want)
			}
			if res.OS == nil || res.OS.Name != tt.os {
				t.Errorf("OS = %v, want %s", res.OS, tt.os)
			}
			for k, v := range tt.providers {
				if res.ProvidedBy[k] != v {
					t.Errorf("ProvidedBy[%s] = %q, want %q", k, res.ProvidedBy[k], v)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	lib := loadFixture(t)
	paths, _ := resolveFixture(t)
	tests := []struct {
		name    string
		request []string
		check   func(t *testing.T, err error)
		text    string
	}{
		{"missing element names who needs it and where it looked", []string{"needs-missing", "tiny-os"},
			func(t *testing.T, err error) {
				var me *MissingElementError
				if !errors.As(err, &me) || me.Name != "no-such-element" || me.RequiredBy != "needs-missing" {
					t.Fatalf("err = %#v", err)
				}
			},
			`element "no-such-element" not found (required by "needs-missing"); check ELEMENTS_PATH (searched: ` +
				paths[0] + ", " + paths[1] + ", builtin)"},
		{"requested element missing", []string{"nope", "tiny-os"}, nil,
			`element "nope" not found (requested); check ELEMENTS_PATH`},
		{"element-deps has no comments", []string{"comment-dep"},
			func(t *testing.T, err error) {
				var me *MissingElementError
				if !errors.As(err, &me) || me.Name != "# a comment" {
					t.Fatalf("err = %#v", err)
				}
			}, `element "# a comment" not found (required by "comment-dep")`},
		{"virtual name without provider names the candidates", []string{"vm", "tiny-os"}, nil,
			`element "block-device" not found (required by "vm"); it is provided by bd-mbr: add one of them`},
		{"provider pulled in too late", []string{"vm", "tiny-os", "pulls-bd"}, nil,
			`element "block-device" not found (required by "vm"); it is provided by "bd-mbr", which the breadth-first resolution reaches only later: request "bd-mbr" explicitly`},
		{"two providers", []string{"tiny-os", "tiny-os-2"},
			func(t *testing.T, err error) {
				var ap *AlreadyProvidedError
				if !errors.As(err, &ap) || ap.Name != "operating-system" || !reflect.DeepEqual(ap.Providers, []string{"tiny-os", "tiny-os-2"}) {
					t.Fatalf("err = %#v", err)
				}
			}, `"operating-system" is provided by both "tiny-os" and "tiny-os-2"; use only one of them`},
		{"requested name provided by another element", []string{"app", "provides-app", "tiny-os"},
			func(t *testing.T, err error) {
				var ap *AlreadyProvidedError
				if !errors.As(err, &ap) || ap.Name != "app" || !ap.Requested {
					t.Fatalf("err = %#v", err)
				}
			}, `"app" was requested but is provided by "provides-app"`},
		{"no operating system", []string{"app"},
			func(t *testing.T, err error) {
				var mo *MissingOSError
				if !errors.As(err, &mo) {
					t.Fatalf("err = %#v", err)
				}
			}, "no operating-system element: add one of debian, tiny-os, tiny-os-2, ubuntu (elements that provide operating-system in the library)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lib.Resolve(tt.request)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.check != nil {
				tt.check(t, err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.text)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadLibraryOverrides(t *testing.T) {
	paths, builtin := resolveFixture(t)
	lib := loadFixture(t)
	e, ok := lib.Get("shadowed")
	if !ok {
		t.Fatal("shadowed not found")
	}
	wantShadows := []string{filepath.Join(paths[1], "shadowed"), filepath.Join(builtin, "shadowed")}
	if e.Dir != filepath.Join(paths[0], "shadowed") || e.Builtin || !reflect.DeepEqual(e.Shadows, wantShadows) {
		t.Errorf("shadowed = %+v, want dir in p1 shadowing %v", e, wantShadows)
	}
	if !reflect.DeepEqual(e.Deps, []string{"from-p1"}) {
		t.Errorf("deps = %v", e.Deps)
	}
	if d, _ := lib.Get("debian"); d == nil || !d.Builtin {
		t.Errorf("debian should be builtin: %+v", d)
	}
	if a, _ := lib.Get("app"); !reflect.DeepEqual(a.Deps, []string{"lib-a", "lib-b"}) {
		t.Errorf("app deps = %q", a.Deps)
	}
	res, err := lib.Resolve([]string{"shadowed", "tiny-os"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"element shadowed from " + e.Dir + " overrides " + wantShadows[0],
		"element shadowed from " + e.Dir + " overrides " + wantShadows[1],
	}
	if !reflect.DeepEqual(res.Overrides, want) {
		t.Errorf("overrides = %q, want %q", res.Overrides, want)
	}
	var names []string
	for _, e := range lib.All() {
		names = append(names, e.Name)
	}
	if !sort.StringsAreSorted(names) || len(names) != 20 {
		t.Errorf("All() = %v (%d)", names, len(names))
	}
}

func TestLoadLibrarySymlinkTakesTargetName(t *testing.T) {
	target, err := filepath.Abs("testdata/resolve/targets/real-name")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(target, filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	paths, builtin := resolveFixture(t)
	lib, err := LoadLibrary(append([]string{dir}, paths...), builtin)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lib.Get("alias"); ok {
		t.Error("a symlinked element must take the target's name, not the link's")
	}
	e, ok := lib.Get("real-name")
	if !ok || e.Dir != target {
		t.Fatalf("real-name = %+v", e)
	}
	if _, ok := lib.Get("dangling"); ok {
		t.Error("a dangling symlink is not an element")
	}
	res, err := lib.Resolve([]string{"real-name"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Names(); !reflect.DeepEqual(got, []string{"real-name", "tiny-os"}) {
		t.Errorf("got %v", got)
	}
}

func TestLoadLibraryInvalidPath(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/does/not/exist", file} {
		_, err := LoadLibrary([]string{p}, "")
		var ip *InvalidPathError
		if !errors.As(err, &ip) || ip.Path != p {
			t.Fatalf("%s: err = %v", p, err)
		}
		if want := `ELEMENTS_PATH entry "` + p + `" is not a directory`; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "fix or remove it in ELEMENTS_PATH") {
			t.Errorf("error %q, want %q", err, want)
		}
	}
}

func TestLoadLibraryBadName(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bad..name"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadLibrary([]string{dir}, ""); err == nil || !strings.Contains(err.Error(), `invalid element name "bad..name"`) {
		t.Errorf("err = %v", err)
	}
	// The same entry twice overrides nothing.
	paths, _ := resolveFixture(t)
	lib, err := LoadLibrary([]string{paths[0], paths[0]}, "")
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := lib.Get("app"); len(e.Shadows) != 0 {
		t.Errorf("shadows = %v", e.Shadows)
	}
}

func TestDefaultBlockDevice(t *testing.T) {
	tests := []struct {
		args []string
		arch string
		want []string
	}{
		{[]string{"ubuntu", "vm"}, "amd64", []string{"ubuntu", "vm", "block-device-mbr"}},
		{[]string{"ubuntu", "vm"}, "arm64", []string{"ubuntu", "vm", "block-device-efi"}},
		{[]string{"ubuntu", "vm"}, "aarch64", []string{"ubuntu", "vm", "block-device-efi"}},
		{[]string{"ubuntu", "vm", "block-device-gpt"}, "amd64", []string{"ubuntu", "vm", "block-device-gpt"}},
		{[]string{"ubuntu"}, "amd64", []string{"ubuntu"}},
		{[]string{"ubuntu", "vm-extra"}, "amd64", []string{"ubuntu", "vm-extra"}},
		// DIB's unanchored =~ would pick efi for ARCH "arm"; we do not.
		{[]string{"vm"}, "arm", []string{"vm", "block-device-mbr"}},
	}
	for _, tt := range tests {
		in := append([]string(nil), tt.args...)
		if got := DefaultBlockDevice(tt.args, tt.arch); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("DefaultBlockDevice(%v, %s) = %v, want %v", tt.args, tt.arch, got, tt.want)
		}
		if !reflect.DeepEqual(in, tt.args) {
			t.Errorf("args modified")
		}
	}
	if got := DefaultBlockDeviceNamed([]string{"vm"}, "arm64", "disk-default", ""); !reflect.DeepEqual(got, []string{"vm", "disk-default"}) {
		t.Errorf("named: %v", got)
	}
}

// dibElementInfo finds DIB's element-info.py and a python3 that can run it.
func dibElementInfo(t *testing.T) (python, script string) {
	t.Helper()
	script = "/usr/lib/python3/dist-packages/diskimage_builder/lib/element-info.py"
	if _, err := os.Stat(script); err != nil {
		testreq.Missing(t, "diskimage-builder is not installed")
	}
	// A pyenv shim on PATH may not see the Debian package; prefer the system python.
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import diskimage_builder.element_dependencies").Run() == nil {
			return p, script
		}
	}
	testreq.Missing(t, "no python3 that can import diskimage_builder")
	return "", ""
}

// DIB's get_image_element_array prints [name]=path pairs.
var dibArrayItem = regexp.MustCompile(`\[([^\]]+)\]=(\S+)`)

// TestResolveMatchesDIB runs DIB's own resolver on the same fixtures and
// compares the element names and directories (so overrides too) and whether
// it fails.
func TestResolveMatchesDIB(t *testing.T) {
	python, script := dibElementInfo(t)
	paths, builtin := resolveFixture(t)
	// A first entry holding a symlinked element, to compare naming too.
	links := t.TempDir()
	target, err := filepath.Abs("testdata/resolve/targets/real-name")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(links, "alias")); err != nil {
		t.Fatal(err)
	}
	paths = append([]string{links}, paths...)
	lib, err := LoadLibrary(paths, builtin)
	if err != nil {
		t.Fatal(err)
	}
	for _, request := range [][]string{
		{"real-name"},
		{"app", "tiny-os"},
		{"lib-b", "self-dep", "debian"},
		{"vm", "bd-mbr", "ubuntu"},
		{"x", "vp", "tiny-os"},
		{"shadowed", "tiny-os"},
		{"only-p2", "comment-dep", "ubuntu"}, // error: "# a comment"
		{"tiny-os", "tiny-os-2"},             // error: two providers
		{"app", "provides-app", "tiny-os"},   // error: requested and provided
		{"app"},                              // error: no OS
		{"vm", "tiny-os", "pulls-bd"},        // error: block-device looked up before bd-mbr is processed
		{"vm", "tiny-os", "pulls-bd", "bd-mbr"},
	} {
		t.Run(strings.Join(request, "+"), func(t *testing.T) {
			cmd := exec.Command(python, append([]string{script, "--env"}, request...)...)
			cmd.Env = append(os.Environ(), "ELEMENTS_PATH="+strings.Join(append(paths, builtin), ":"))
			out, dibErr := cmd.Output()
			res, err := lib.Resolve(request)
			if (dibErr != nil) != (err != nil) {
				t.Fatalf("DIB error %v, ours %v", dibErr, err)
			}
			if err != nil {
				return
			}
			dib := map[string]string{}
			for _, m := range dibArrayItem.FindAllStringSubmatch(string(out), -1) {
				dib[m[1]] = m[2]
			}
			ours := map[string]string{}
			for _, e := range res.Elements {
				ours[e.Name] = e.Dir
			}
			if !reflect.DeepEqual(dib, ours) {
				t.Errorf("DIB: %v\nours: %v", dib, ours)
			}
		})
	}
}
