package elements

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"builder/internal/testreq"
)

func piLibrary(t *testing.T) *Library {
	t.Helper()
	lib, err := LoadLibrary([]string{"testdata/pkginstalls"}, "")
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

var piEnv = map[string]string{
	"ARCH":                   "amd64",
	"DIB_PYTHON_VERSION":     "3",
	"DIB_FEATURE":            "1",
	"DIB_INSTALLTYPE_pi_all": "package",
}

// piStrings renders installs compactly: "phase +pkg@element" or "-pkg".
func piStrings(pis []PackageInstall) []string {
	var out []string
	for _, p := range pis {
		op := "+"
		if p.Uninstall {
			op = "-"
		}
		out = append(out, fmt.Sprintf("%s %s%s@%s", p.Phase, op, p.Package, p.Element))
	}
	return out
}

func TestPackageInstalls(t *testing.T) {
	lib := piLibrary(t)
	tests := []struct {
		name  string
		elems []string
		env   map[string]string
		want  []string
	}{
		{"every key", []string{"pi-all"}, piEnv, []string{
			"pre-install.d +pre@pi-all",
			"install.d +alternatives@pi-all", // the when: alternative
			"install.d +amd64-only@pi-all",
			"install.d +both-true@pi-all",
			"install.d +empty-map@pi-all",
			"install.d +feature-on@pi-all",
			"install.d +feature-tight@pi-all",
			"install.d +from-package@pi-all",
			"install.d +multi-arch@pi-all",
			"install.d +not-s390x@pi-all",
			"install.d +plain@pi-all",
			"install.d +py3@pi-all",
			"install.d +tool-chain@pi-all",
			"install.d -gone@pi-all",
			"install.d -tool-chain@pi-all",
			"post-install.d +alternatives@pi-all", // the not-arch: arm64 alternative
			"post-install.d +post@pi-all",
		}},
		{"arm64, installtype default", []string{"pi-all"},
			map[string]string{"ARCH": "arm64", "DIB_PYTHON_VERSION": "2", "DIB_FEATURE": "0"}, []string{
				"pre-install.d +alternatives@pi-all",
				"pre-install.d +pre@pi-all",
				"install.d +arm64-only@pi-all",
				"install.d +empty-map@pi-all",
				"install.d +feature-off@pi-all",
				"install.d +from-source@pi-all",
				"install.d +multi-arch@pi-all",
				"install.d +not-amd64@pi-all",
				"install.d +not-s390x@pi-all",
				"install.d +plain@pi-all",
				"install.d +py2@pi-all",
				"install.d +tool-chain@pi-all",
				"install.d -gone@pi-all",
				"install.d -tool-chain@pi-all",
				"post-install.d +post@pi-all",
			}},
		{"DIB_DEFAULT_INSTALLTYPE", []string{"pi-all"},
			map[string]string{"ARCH": "s390x", "DIB_FEATURE": "0", "DIB_DEFAULT_INSTALLTYPE": "package"}, []string{
				"pre-install.d +pre@pi-all",
				"install.d +empty-map@pi-all",
				"install.d +feature-off@pi-all",
				"install.d +from-package@pi-all",
				"install.d +not-amd64@pi-all",
				"install.d +plain@pi-all",
				"install.d +tool-chain@pi-all",
				"install.d -gone@pi-all",
				"install.d -tool-chain@pi-all",
				"post-install.d +alternatives@pi-all",
				"post-install.d +post@pi-all",
			}},
		{"json", []string{"pi-json"}, piEnv, []string{
			"pre-install.d +json-pre@pi-json",
			"install.d +json-plain@pi-json",
			"install.d -json-gone@pi-json",
		}},
		// pi-other installs gone and tool-chain plainly and uninstalls
		// plain, which pi-all installs: install beats uninstall both ways;
		// build-only alone still uninstalls.
		{"install beats uninstall", []string{"pi-all", "pi-other"}, piEnv, []string{
			"pre-install.d +pre@pi-all",
			"install.d +alternatives@pi-all",
			"install.d +amd64-only@pi-all",
			"install.d +both-true@pi-all",
			"install.d +empty-map@pi-all",
			"install.d +feature-on@pi-all",
			"install.d +feature-tight@pi-all",
			"install.d +from-package@pi-all",
			"install.d +multi-arch@pi-all",
			"install.d +not-s390x@pi-all",
			"install.d +plain@pi-all",
			"install.d +py3@pi-all",
			"install.d +tool-chain@pi-all",
			"install.d +gone@pi-other",
			"install.d +shared-build-only@pi-other",
			"install.d +tool-chain@pi-other",
			"install.d -only-removed-here@pi-other",
			"install.d -shared-build-only@pi-other",
			"post-install.d +alternatives@pi-all",
			"post-install.d +post@pi-all",
		}},
		{"legacy package-installs-<element> files", []string{"pi-legacy"}, nil, []string{
			"install.d +legacy-one@pi-legacy",
			"install.d +legacy-temp@pi-legacy",
			"install.d +legacy-three@pi-legacy",
			"install.d +legacy-two@pi-legacy",
			"install.d -legacy-temp@pi-legacy",
			"post-install.d +legacy-post@pi-legacy",
		}},
		// DIB would not match ppc64le in "ppc64, ppc64le" (no strip).
		{"arch list with spaces", []string{"pi-dash-arch"}, map[string]string{"ARCH": "ppc64le"}, []string{
			"install.d +lshw@pi-dash-arch",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PackageInstalls(resolutionOf(t, lib, tt.elems...), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if g := piStrings(got); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(g, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestPackageInstallsErrors(t *testing.T) {
	lib := piLibrary(t)
	file := func(e string) string {
		return filepath.Join(lib.elements[e].Dir, "package-installs.yaml")
	}
	tests := []struct {
		elem string
		env  map[string]string
		want string
	}{
		{"bad-unknown", nil, `unknown key "uninstal" in ` + file("bad-unknown") +
			` (line 5); known keys: arch, build-only, dib_python_version, installtype, not-arch, phase, uninstall, when (DIB silently ignores unknown keys`},
		{"bad-when-unset", map[string]string{}, file("bad-when-unset") +
			` (line 1, package "needs-var"): when "DIB_NOT_SET_ANYWHERE = 1": variable DIB_NOT_SET_ANYWHERE is not set`},
		{"bad-both-arch", nil, file("bad-both-arch") + ` (line 1): package "confused": arch and not-arch are both given`},
		{"bad-yaml", nil, file("bad-yaml") + ": line 2: invalid YAML: did not find expected ',' or '}'"},
		{"bad-phase", nil, file("bad-phase") + ` (line 1): package "late": phase "finalise.d" has no package-installs runner`},
		{"bad-uninstall-false", nil, `package "keep-me": uninstall: false would still mean uninstall to DIB`},
		{"bad-dup", nil, file("bad-dup") + ` (line 2): package "twice" is listed twice (also line 1)`},
		{"pi-all", map[string]string{"DIB_FEATURE": "1"}, `arch/not-arch needs ARCH, which is not set`},
	}
	for _, tt := range tests {
		t.Run(tt.elem, func(t *testing.T) {
			_, err := PackageInstalls(resolutionOf(t, lib, tt.elem), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant %q", err, tt.want)
			}
		})
	}
}

// TestPackageInstallsMatchDIBSquash runs the installed DIB's
// package-installs-squash on fixtures without cross-element conflicts (3.13
// predates "install beats uninstall") and compares.
func TestPackageInstallsMatchDIBSquash(t *testing.T) {
	squash := "/usr/lib/python3/dist-packages/diskimage_builder/elements/package-installs/bin/package-installs-squash"
	if _, err := os.Stat(squash); err != nil {
		testreq.Missing(t, "diskimage-builder is not installed")
	}
	python := "/usr/bin/python3"
	if exec.Command(python, "-c", "import diskimage_builder, yaml").Run() != nil {
		testreq.Missing(t, "no python3 with diskimage_builder")
	}
	lib := piLibrary(t)
	for _, env := range []map[string]string{
		piEnv,
		{"ARCH": "arm64", "DIB_PYTHON_VERSION": "2", "DIB_FEATURE": "0"},
	} {
		out := filepath.Join(t.TempDir(), "out.json")
		dir, _ := filepath.Abs("testdata/pkginstalls")
		cmd := exec.Command(python, squash, "--elements=pi-all pi-json", "--path="+dir, out)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("squash: %v\n%s", err, b)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var dib map[string]map[string][][2]string
		if err := json.Unmarshal(data, &dib); err != nil {
			t.Fatal(err)
		}
		var want []string
		for phase, kinds := range dib {
			for kind, list := range kinds {
				op := map[string]string{"install": "+", "uninstall": "-"}[kind]
				for _, pe := range list {
					want = append(want, fmt.Sprintf("%s %s%s@%s", phase, op, pe[0], pe[1]))
				}
			}
		}
		got, err := PackageInstalls(resolutionOf(t, lib, "pi-all", "pi-json"), env)
		if err != nil {
			t.Fatal(err)
		}
		g := piStrings(got)
		sort.Strings(g)
		sort.Strings(want)
		if !reflect.DeepEqual(g, want) {
			t.Errorf("env %v\nours %q\nDIB  %q", env, g, want)
		}
	}
}
