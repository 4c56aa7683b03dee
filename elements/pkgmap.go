package elements

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// PkgMap is one element's pkg-map file: generic package names mapped per
// distro family, distro and release. A mapping to "" means "skip".
type PkgMap struct {
	Element string
	Path    string
	Default map[string]string
	Family  map[string]map[string]string            // family -> name -> packages
	Distro  map[string]map[string]string            // distro -> name -> packages
	Release map[string]map[string]map[string]string // distro -> release -> name -> packages
}

// Family returns the pkg-map family of a DISTRO_NAME, "" if it has none
// (DIB HEAD's os_family).
func Family(distro string) string {
	switch distro {
	// centos7 and rhel7 as older DIB's os_family; scientific (Scientific
	// Linux, a RHEL rebuild) is builder's addition.
	case "almalinux", "fedora", "rhel", "centos", "openeuler", "rocky", "centos7", "rhel7", "scientific":
		return "redhat"
	case "debian", "ubuntu":
		return "debian"
	case "opensuse":
		return "suse"
	case "gentoo":
		return "gentoo"
	}
	return ""
}

// LoadPkgMaps reads the pkg-map file of every resolved element that has one.
func LoadPkgMaps(res *Resolution) (map[string]*PkgMap, error) {
	out := map[string]*PkgMap{}
	for _, e := range res.Elements {
		p := filepath.Join(e.Dir, "pkg-map")
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("element %s: read pkg-map: %w", e.Name, err)
		}
		m, err := ParsePkgMap(e.Name, p, data)
		if err != nil {
			return nil, err
		}
		out[e.Name] = m
	}
	return out, nil
}

var pkgMapKeys = []string{"default", "family", "distro", "release"}

// ParsePkgMap parses pkg-map JSON. Errors name path and the line and column.
// null values are accepted as "" (DIB's pkg-map skips them too).
func ParsePkgMap(element, path string, data []byte) (*PkgMap, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, jsonError(path, data, err)
	}
	for key := range top {
		if !slices.Contains(pkgMapKeys, key) {
			// DIB ignores it; a typo ("distros") would silently map nothing.
			return nil, fmt.Errorf("%s: unknown top-level key %q; known keys: %s (DIB ignores unknown keys, builder rejects them to catch typos)",
				path, key, strings.Join(pkgMapKeys, ", "))
		}
	}
	var v struct {
		Default map[string]string                       `json:"default"`
		Family  map[string]map[string]string            `json:"family"`
		Distro  map[string]map[string]string            `json:"distro"`
		Release map[string]map[string]map[string]string `json:"release"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			line, col := lineCol(data, int(te.Offset)-1)
			return nil, fmt.Errorf("%s: line %d, column %d: found %s in %q; a pkg-map maps names to strings",
				path, line, col, te.Value, te.Field)
		}
		return nil, jsonError(path, data, err)
	}
	// Entries that can never apply: DIB ignores them, and a typo
	// ("debain") would silently map nothing.
	for f := range v.Family {
		if !slices.Contains(pkgMapFamilies, f) {
			return nil, fmt.Errorf("%s: family %q is not a pkg-map family: use one of %s", path, f, strings.Join(pkgMapFamilies, ", "))
		}
	}
	for d, rs := range v.Release {
		for r := range rs {
			if d == "" || r == "" {
				return nil, fmt.Errorf("%s: release %q of distro %q: name both (e.g. \"release\": {\"centos\": {\"9\": {...}}})", path, r, d)
			}
		}
	}
	if _, ok := v.Distro[""]; ok {
		return nil, fmt.Errorf("%s: distro \"\" never applies: name the distro (DISTRO_NAME, e.g. debian)", path)
	}
	m := &PkgMap{Element: element, Path: path, Default: v.Default, Family: v.Family, Distro: v.Distro, Release: v.Release}
	return m, nil
}

// pkgMapFamilies are the families Family returns.
var pkgMapFamilies = []string{"debian", "gentoo", "redhat", "suse"}

func jsonError(path string, data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, int(se.Offset)-1) // Offset is just past the bad byte
		return fmt.Errorf("%s: line %d, column %d: invalid JSON: %w", path, line, col, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		line, col := lineCol(data, int(te.Offset)-1)
		return fmt.Errorf("%s: line %d, column %d: invalid pkg-map: expected a JSON object, found %s", path, line, col, te.Value)
	}
	return fmt.Errorf("%s: invalid JSON: %w", path, err)
}

// lineCol turns a byte offset into 1-based line and column.
func lineCol(data []byte, off int) (int, int) {
	if off > len(data) {
		off = len(data)
	}
	if off < 0 {
		off = 0
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

// releaseKey picks the release entry for distro: the release as given, else
// its "-stream" suffix stripped. DIB maps only "8-stream" to "8" and looks
// every other release up verbatim (DIB's own yum-minimal map has
// "9-stream" keys), so trying both covers both conventions.
func (m *PkgMap) releaseKey(distro, release string) (map[string]string, bool) {
	if release == "" {
		return nil, false
	}
	byRelease := m.Release[distro]
	if r, ok := byRelease[release]; ok {
		return r, true
	}
	if major, ok := strings.CutSuffix(release, "-stream"); ok {
		r, ok := byRelease[major]
		return r, ok
	}
	return nil, false
}

// Flatten merges the map for one distro and release, most specific last:
// default < family < distro < release. Values are space-separated package
// names; "" means skip the package.
func (m *PkgMap) Flatten(distro, release string) map[string]string {
	out := map[string]string{}
	add := func(src map[string]string) {
		for k, v := range src {
			out[k] = v
		}
	}
	add(m.Default)
	if f := Family(distro); f != "" {
		add(m.Family[f])
	}
	add(m.Distro[distro])
	if r, ok := m.releaseKey(distro, release); ok {
		add(r)
	}
	return out
}

// Lookup maps one generic name. found is false when the map has no entry
// (callers usually keep the name, as pkg-map --missing-ok does); found with
// an empty mapped means "skip this package".
func (m *PkgMap) Lookup(name, distro, release string) (mapped []string, found bool) {
	v, ok := m.Flatten(distro, release)[name]
	if !ok {
		return nil, false
	}
	if mapped = strings.Fields(v); len(mapped) == 0 {
		return nil, true
	}
	return mapped, true
}

// Names returns every generic name the map knows, sorted.
func (m *PkgMap) Names() []string {
	seen := map[string]bool{}
	for k := range m.Default {
		seen[k] = true
	}
	for _, mm := range []map[string]map[string]string{m.Family, m.Distro} {
		for _, inner := range mm {
			for k := range inner {
				seen[k] = true
			}
		}
	}
	for _, byRel := range m.Release {
		for _, inner := range byRel {
			for k := range inner {
				seen[k] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
