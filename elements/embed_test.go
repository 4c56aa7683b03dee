package elements

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

func TestExtractLibrary(t *testing.T) {
	fsys := fstest.MapFS{
		"e/install.d/10-hook":                  {Data: []byte("#!/bin/bash\n")},
		"e/install.d/e-source-install/10-hook": {Data: []byte("#!/bin/bash\n")},
		"e/install.d/package-installs-e":       {Data: []byte("pkg\n")},
		"e/environment.d/10-env.bash":          {Data: []byte("export X=1\n")},
		"e/bin/tool":                           {Data: []byte("#!/bin/sh\n")},
		"e/bin/package-installs-v2":            {Data: []byte("no shebang\n")},
		"e/static/etc/conf":                    {Data: []byte("x\n")},
		"e/static/usr/local/sbin/script":       {Data: []byte("#!/bin/sh\n")},
		"e/environment.d/20-shebang.bash":      {Data: []byte("#!/bin/bash\nexport Y=1\n")},
		"e/element-deps":                       {Data: []byte("f\n")},
		"e/finalise.d/99-last":                 {Data: []byte("#!/bin/bash\n")},
		"f/README.md":                          {Data: []byte("f\n")},
		"f/.hidden":                            {Data: []byte("h\n")},
	}
	dir := t.TempDir()
	got, err := extractLibrary(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(got) != dir {
		t.Errorf("extracted to %s, want below %s", got, dir)
	}
	for name, want := range map[string]fs.FileMode{
		"e/install.d/10-hook":                  0o755,
		"e/install.d/e-source-install/10-hook": 0o755,
		"e/install.d/package-installs-e":       0o644,
		"e/environment.d/10-env.bash":          0o644,
		"e/bin/tool":                           0o755,
		"e/bin/package-installs-v2":            0o755,
		"e/static/etc/conf":                    0o644,
		"e/static/usr/local/sbin/script":       0o755,
		"e/environment.d/20-shebang.bash":      0o644,
		"e/element-deps":                       0o644,
		"e/finalise.d/99-last":                 0o755,
		"f/.hidden":                            0o644,
	} {
		st, err := os.Stat(filepath.Join(got, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}

	// Idempotent: the same content is not rewritten.
	marker := filepath.Join(got, "e", "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := extractLibrary(fsys, dir)
	if err != nil || again != got {
		t.Fatalf("second extract = %s, %v", again, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("an up-to-date extraction was rewritten")
	}

	// New content goes to a new directory; the old one stays for builds
	// still using it.
	fsys["e/install.d/20-new"] = &fstest.MapFile{Data: []byte("#!/bin/bash\n")}
	third, err := extractLibrary(fsys, dir)
	if err != nil || third == got {
		t.Fatalf("changed library extracted to %s, %v", third, err)
	}

	// A damaged extraction (no stamp) is replaced.
	if err := os.Remove(filepath.Join(third, stampName)); err != nil {
		t.Fatal(err)
	}
	fourth, err := extractLibrary(fsys, dir)
	if err != nil || fourth != third {
		t.Fatalf("re-extract = %s, %v", fourth, err)
	}
	if !stampMatches(fourth, readStamp(t, fourth)) {
		t.Error("stamp missing after repair")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || strings.Contains(e.Name(), ".old-") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}

func readStamp(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, stampName))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestExtractLibraryConcurrent(t *testing.T) {
	fsys := fstest.MapFS{"e/install.d/10-hook": {Data: []byte("#!/bin/bash\n")}}
	dir := t.TempDir()
	var wg sync.WaitGroup
	results := make([]string, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = extractLibrary(fsys, dir)
		}()
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || results[i] != results[0] {
			t.Errorf("extract %d: %s, %v", i, results[i], errs[i])
		}
	}
}

// TestBuiltinLibrary extracts the real embedded library and loads it: every
// element must have a valid name and its hooks must be executable.
func TestBuiltinLibrary(t *testing.T) {
	dir, err := ExtractBuiltin(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lib, err := LoadLibrary(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range lib.All() {
		if !e.Builtin {
			t.Errorf("%s not marked builtin", e.Name)
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if want := executableInLibrary(filepath.ToSlash(rel), data); want != (st.Mode()&0o111 != 0) {
			t.Errorf("%s: mode %v", rel, st.Mode())
		}
		// The checkout keeps real modes: a file executable there must not
		// lose the bit in the image (embed drops modes).
		if src, err := os.Stat(filepath.Join("library", rel)); err == nil && src.Mode()&0o111 != 0 && st.Mode()&0o111 == 0 {
			t.Errorf("library/%s is executable but extracts as %v; give it a #! line or move it to bin/ or a phase", rel, st.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
