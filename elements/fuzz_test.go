package elements

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Fuzzing the parsers of element files (hack/test.sh runs each for a
// fixed time; `go test` runs the seeds): they must never panic or hang,
// and what they accept must be self-consistent.

// addSeeds adds every file matching the globs (the library's and the
// tests' fixtures) to the corpus.
func addSeeds(f *testing.F, globs ...string) {
	n := 0
	for _, g := range globs {
		files, err := filepath.Glob(g)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files match %v", globs)
	}
}

func FuzzParsePackageInstalls(f *testing.F) {
	addSeeds(f, "library/*/package-installs.yaml", "testdata/pkginstalls/*/package-installs.*")
	f.Add([]byte("vim:\n  when:\n    - DIB_X = 1\n    - DIB_Y != 2\n  arch: amd64, arm64\n"))
	f.Add([]byte("a: &x {phase: pre-install.d}\nb: *x\n"))
	env := map[string]string{"ARCH": "amd64", "DIB_PYTHON_VERSION": "3"}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parsePackageInstalls("el", "package-installs.yaml", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error on more than one line: %q", err)
			}
			return
		}
		for _, en := range entries {
			if en.pkg == "" || en.element != "el" || en.line < 1 {
				t.Errorf("entry %+v: no package, element or line", en)
			}
			if !slices.Contains(packageInstallPhases, en.phase) {
				t.Errorf("entry %+v: phase %q has no runner", en, en.phase)
			}
			if !en.install && !en.remove {
				t.Errorf("entry %+v neither installs nor removes", en)
			}
			if en.arch != nil && en.notArch != nil {
				t.Errorf("entry %+v has arch and not-arch", en)
			}
			for _, w := range en.when {
				if !whenRE.MatchString(w) {
					t.Errorf("entry %+v: when %q was accepted but does not parse", en, w)
				}
			}
			// Evaluating it must not panic, whatever the environment
			// lacks (an unset variable is an error, not a crash).
			_, _ = en.applies(env)
			_, _ = en.applies(map[string]string{})
		}
	})
}

func FuzzParsePkgMap(f *testing.F) {
	addSeeds(f, "library/*/pkg-map", "testdata/pkgmap/*/pkg-map")
	f.Add([]byte(`{"release": {"centos": {"9-stream": {"a": "b c"}}}, "default": {"x": null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParsePkgMap("el", "pkg-map", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error on more than one line: %q", err)
			}
			return
		}
		// Round trip: what was read, written as a pkg-map, reads the same.
		out, err := json.Marshal(map[string]any{"default": m.Default, "family": m.Family, "distro": m.Distro, "release": m.Release})
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParsePkgMap("el", "pkg-map", out)
		if err != nil {
			t.Fatalf("the map written back does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(nilIfEmpty(m), nilIfEmpty(again)) {
			t.Errorf("round trip changed the map:\n%+v\n%+v", m, again)
		}
		// Every name the map knows is found for some distro and release.
		distros := []string{"debian", "ubuntu", "centos", "fedora", "opensuse", "gentoo", ""}
		for d := range m.Distro {
			distros = append(distros, d)
		}
		for d := range m.Release {
			distros = append(distros, d)
		}
		for _, name := range m.Names() {
			found := false
			for _, d := range distros {
				releases := []string{""}
				for r := range m.Release[d] {
					releases = append(releases, r)
				}
				for _, r := range releases {
					mapped, ok := m.Lookup(name, d, r)
					for _, p := range mapped {
						if p == "" || strings.ContainsAny(p, " \t\n") {
							t.Errorf("%s maps to the malformed package %q", name, p)
						}
					}
					found = found || ok
				}
			}
			if !found {
				t.Errorf("Names() lists %q, but no lookup finds it", name)
			}
		}
	})
}

// nilIfEmpty compares maps without caring whether an empty one is nil.
func nilIfEmpty(m *PkgMap) [4]any {
	norm := func(v any) any {
		if reflect.ValueOf(v).Len() == 0 {
			return nil
		}
		return v
	}
	return [4]any{norm(m.Default), norm(m.Family), norm(m.Distro), norm(m.Release)}
}

func FuzzParseNameList(f *testing.F) {
	addSeeds(f, "library/*/element-deps", "library/*/element-provides", "testdata/resolve/*/*/element-deps")
	f.Add([]byte("a\r\nb\rc\n\n  d  \na\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names := parseNameList(data)
		if !slices.IsSorted(names) {
			t.Errorf("not sorted: %q", names)
		}
		for i, n := range names {
			if n == "" || n != strings.TrimSpace(n) || strings.ContainsAny(n, "\r\n") {
				t.Errorf("malformed name %q", n)
			}
			if i > 0 && names[i-1] == n {
				t.Errorf("%q twice", n)
			}
		}
		// Written one per line, the names read the same.
		if again := parseNameList([]byte(strings.Join(names, "\n"))); !slices.Equal(again, names) {
			t.Errorf("round trip: %q, then %q", names, again)
		}
	})
}
