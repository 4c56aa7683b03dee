package elements

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Element is one element directory as DIB sees it.
type Element struct {
	Name     string   // basename of realpath(dir), as DIB: a symlinked element takes the target's name
	Dir      string   // absolute, symlinks resolved
	Builtin  bool     // found in the embedded library rather than on ELEMENTS_PATH
	Origin   Origin   // where it was found
	Provides []string // element-provides, sorted
	Deps     []string // element-deps, sorted
	Shadows  []string // dirs of same-named elements this one overrides, in search order
}

// Origin says which part of the search path an element came from.
type Origin int

const (
	// OriginPath: an ELEMENTS_PATH entry.
	OriginPath Origin = iota
	// OriginBuiltin: builder's own library, embedded in the binary.
	OriginBuiltin
	// OriginDIB: diskimage-builder's own library, searched last as DIB
	// appends it, for the elements builder does not ship.
	OriginDIB
)

func (o Origin) String() string {
	switch o {
	case OriginBuiltin:
		return "builtin"
	case OriginDIB:
		return "diskimage-builder"
	default:
		return "ELEMENTS_PATH"
	}
}

// Library is every element visible through ELEMENTS_PATH and the builtin
// library, after overrides.
type Library struct {
	elements map[string]*Element
	searched []string // for error messages: ELEMENTS_PATH entries, then "builtin"
}

// InvalidPathError reports an ELEMENTS_PATH entry that cannot be scanned
// (DIB's InvalidElementDir).
type InvalidPathError struct {
	Path string
	Err  error // the underlying stat error, nil if it is simply not a directory
}

func (e *InvalidPathError) Error() string {
	if errors.Is(e.Err, fs.ErrNotExist) {
		return fmt.Sprintf("ELEMENTS_PATH entry %q is not a directory (it does not exist): fix or remove it in ELEMENTS_PATH", e.Path)
	}
	return fmt.Sprintf("ELEMENTS_PATH entry %q is not a directory: fix or remove it in ELEMENTS_PATH", e.Path)
}

func (e *InvalidPathError) Unwrap() error { return e.Err }

// LoadLibrary scans each entry of paths (ELEMENTS_PATH order, the first entry
// wins like $PATH), then builtinDir (skipped when empty), then the fallback
// directories (diskimage-builder's own library, when installed). An element
// found again later is recorded in the winner's Shadows, the way DIB warns
// "Element <a> overrides <b>".
func LoadLibrary(paths []string, builtinDir string, fallback ...string) (*Library, error) {
	l := &Library{elements: map[string]*Element{}}
	type source struct {
		dir    string
		origin Origin
	}
	var sources []source
	for _, p := range paths {
		sources = append(sources, source{p, OriginPath})
		l.searched = append(l.searched, p)
	}
	if builtinDir != "" {
		sources = append(sources, source{builtinDir, OriginBuiltin})
		l.searched = append(l.searched, "builtin")
	}
	for _, f := range fallback {
		if f != "" {
			sources = append(sources, source{f, OriginDIB})
			l.searched = append(l.searched, f)
		}
	}
	for _, s := range sources {
		found, err := scanElementsDir(s.dir)
		if err != nil {
			return nil, err
		}
		for _, e := range found {
			if prev, ok := l.elements[e.Name]; ok {
				// The same directory twice (a:a) overrides nothing; that
				// builder's own version of an element wins over DIB's is
				// the point of shipping it, not news.
				if s.origin == OriginDIB && prev.Origin == OriginBuiltin {
					continue
				}
				if e.Dir != prev.Dir && !slices.Contains(prev.Shadows, e.Dir) {
					prev.Shadows = append(prev.Shadows, e.Dir)
				}
				continue
			}
			e.Origin = s.origin
			e.Builtin = s.origin == OriginBuiltin
			l.elements[e.Name] = e
		}
	}
	// Only winners are read: a shadowed element's files can never matter.
	for _, e := range l.elements {
		var err error
		if e.Provides, err = readNameList(filepath.Join(e.Dir, "element-provides")); err != nil {
			return nil, err
		}
		if e.Deps, err = readNameList(filepath.Join(e.Dir, "element-deps")); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// scanElementsDir returns the elements directly inside dir, sorted by name.
func scanElementsDir(dir string) ([]*Element, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, &InvalidPathError{Path: dir, Err: err}
	}
	if !st.IsDir() {
		return nil, &InvalidPathError{Path: dir}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("ELEMENTS_PATH entry %q: %w", dir, err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		cause := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		return nil, fmt.Errorf("ELEMENTS_PATH entry %q cannot be read: %w; make it readable or remove it from ELEMENTS_PATH", dir, cause)
	}
	byName := map[string]*Element{}
	for _, ent := range entries {
		if strings.HasPrefix(ent.Name(), ".") {
			continue // .git and friends are not elements
		}
		full := filepath.Join(abs, ent.Name())
		// os.Stat follows symlinks: DIB's os.path.isdir does too, and a
		// dangling symlink is silently not an element.
		if st, err := os.Stat(full); err != nil || !st.IsDir() || pythonCache(full) {
			continue
		}
		real, err := filepath.EvalSymlinks(full)
		if err != nil {
			return nil, fmt.Errorf("element %s: %w", full, err)
		}
		name := filepath.Base(real)
		if err := checkElementName(name); err != nil {
			return nil, fmt.Errorf("element %s: %w", full, err)
		}
		if prev, ok := byName[name]; ok {
			if prev.Dir == real {
				continue // two links to the same element
			}
			return nil, fmt.Errorf("ELEMENTS_PATH entry %q: %s and %s are both element %q; remove one", dir, prev.Dir, real, name)
		}
		byName[name] = &Element{Name: name, Dir: real}
	}
	out := make([]*Element, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// pythonCache reports a directory that does not look like an element:
// Python's bytecode cache (__pycache__, or nothing but .pyc files). DIB's
// own library is a Python package and has one beside its elements.
func pythonCache(dir string) bool {
	if filepath.Base(dir) == "__pycache__" {
		return true
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return false
	}
	for _, e := range ents {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".pyc") || strings.HasSuffix(e.Name(), ".pyo")) {
			return false
		}
	}
	return true
}

// checkElementName rejects names that would escape the directories builder
// builds from them (/usr/share/pkg-map/<name>, DIB_INSTALLTYPE_<name>, ...).
func checkElementName(name string) error {
	if name == "" || name == "." || name == "/" || strings.Contains(name, "/") || strings.Contains(name, "..") {
		return fmt.Errorf("invalid element name %q: rename the directory (an element's name has no '/' and no '..')", name)
	}
	return nil
}

// readNameList reads element-deps or element-provides like DIB: one name per
// line, surrounding whitespace stripped, blank lines skipped, no comments. A
// missing file is an empty list. The result is de-duplicated and sorted (DIB
// keeps a set).
func readNameList(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		cause := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		return nil, fmt.Errorf("%s cannot be read: %w; make it readable", path, cause)
	}
	return parseNameList(data), nil
}

// parseNameList is readNameList's parser: one name per line.
func parseNameList(data []byte) []string {
	seen := map[string]bool{}
	var out []string
	// Python's text mode reads \n, \r\n and \r as line ends.
	for _, line := range strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' || r == '\r' }) {
		line = strings.TrimSpace(line)
		if line == "" || seen[line] {
			continue
		}
		seen[line] = true
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

// Get returns the element called name, if any.
func (l *Library) Get(name string) (*Element, bool) {
	e, ok := l.elements[name]
	return e, ok
}

// All returns every element, sorted by name.
func (l *Library) All() []*Element {
	out := make([]*Element, 0, len(l.elements))
	for _, e := range l.elements {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// providersOf lists the elements of the library that provide name, sorted.
func (l *Library) providersOf(name string) []string {
	var out []string
	for _, e := range l.elements {
		for _, p := range e.Provides {
			if p == name {
				out = append(out, e.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
