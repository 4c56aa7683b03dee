package elements

import (
	"os"
	"path/filepath"
	"testing"
)

// DIB's library is a Python package: Python's bytecode cache beside its
// elements is not an element; an empty directory still is (as in DIB).
func TestLoadLibrarySkipsPythonCache(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"__pycache__/__init__.cpython-311.pyc", "cache/x.cpython-311.pyc", "real/element-deps"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "empty"), 0o755)
	paths, builtin := resolveFixture(t)
	lib, err := LoadLibrary(append([]string{dir}, paths...), builtin)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"__pycache__": false, "cache": false, "real": true, "empty": true} {
		if _, ok := lib.Get(name); ok != want {
			t.Errorf("%s is an element: %v, want %v", name, ok, want)
		}
	}
}
