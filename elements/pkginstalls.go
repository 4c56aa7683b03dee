package elements

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PackageInstall is one package to install or uninstall in a phase, on
// behalf of an element (whose pkg-map translates the name).
type PackageInstall struct {
	Element   string
	Package   string
	Phase     string // pre-install.d, install.d or post-install.d
	Uninstall bool
}

// The phases that have package-installs runners in DIB.
var packageInstallPhases = []string{"pre-install.d", "install.d", "post-install.d"}

var packageInstallKeys = []string{"arch", "build-only", "dib_python_version", "installtype", "not-arch", "phase", "uninstall", "when"}

// DIB: re.match(r"(?P<var>[\w]+)(\s*)(?P<op>=|!=)(\s*)(?P<val>.*)", s)
var whenRE = regexp.MustCompile(`^(\w+)\s*(=|!=)\s*(.*)`)

// piEntry is one parameter map of one package in one file.
type piEntry struct {
	file    string
	line    int
	element string
	pkg     string
	phase   string
	install bool // install in phase
	remove  bool // uninstall at the end of phase

	installtype, arch, notArch, pyVersion *string
	when                                  []string
}

// PackageInstalls evaluates the package-installs.yaml/.json files of the
// resolved elements and their deprecated package-installs-<element> files,
// like DIB's package-installs-squash. env is the environment the squash
// script would see in extra-data.d: the build's variables plus what the
// environment.d files export (ARCH, DIB_PYTHON_VERSION, DIB_INSTALLTYPE_*,
// the variables of `when:`).
//
// The result is sorted by phase order, installs before uninstalls, element
// and package, without duplicates. A package that some element installs
// without uninstalling in a phase is not uninstalled in that phase, whoever
// asks for it ("install beats uninstall"); build-only adds an install and an
// uninstall.
func PackageInstalls(res *Resolution, env map[string]string) ([]PackageInstall, error) {
	var entries []piEntry
	for _, e := range res.Elements {
		// DIB reads .json then .yaml, and both if both exist.
		for _, ext := range []string{"json", "yaml"} {
			p := filepath.Join(e.Dir, "package-installs."+ext)
			data, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("element %s: %w", e.Name, err)
			}
			es, err := parsePackageInstalls(e.Name, p, data)
			if err != nil {
				return nil, err
			}
			entries = append(entries, es...)
		}
		es, err := legacyPackageInstalls(e)
		if err != nil {
			return nil, err
		}
		entries = append(entries, es...)
	}

	var kept []piEntry
	plain := map[string]bool{} // phase + "\x00" + package installed without uninstall
	for _, en := range entries {
		ok, err := en.applies(env)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		kept = append(kept, en)
		if en.install && !en.remove {
			plain[en.phase+"\x00"+en.pkg] = true
		}
	}

	seen := map[PackageInstall]bool{}
	var out []PackageInstall
	add := func(pi PackageInstall) {
		if !seen[pi] {
			seen[pi] = true
			out = append(out, pi)
		}
	}
	for _, en := range kept {
		if en.install {
			add(PackageInstall{Element: en.element, Package: en.pkg, Phase: en.phase})
		}
		if en.remove && !plain[en.phase+"\x00"+en.pkg] {
			add(PackageInstall{Element: en.element, Package: en.pkg, Phase: en.phase, Uninstall: true})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if pa, pb := phaseIndex(a.Phase), phaseIndex(b.Phase); pa != pb {
			return pa < pb
		}
		if a.Uninstall != b.Uninstall {
			return !a.Uninstall
		}
		if a.Element != b.Element {
			return a.Element < b.Element
		}
		return a.Package < b.Package
	})
	return out, nil
}

// applies evaluates the filters in DIB's order: installtype, arch, python
// version, when. when is evaluated last, so an unset variable only matters
// for an entry the other filters keep.
func (en *piEntry) applies(env map[string]string) (bool, error) {
	where := fmt.Sprintf("%s (line %d, package %q)", en.file, en.line, en.pkg)
	if en.installtype != nil {
		want, ok := env["DIB_INSTALLTYPE_"+strings.ReplaceAll(en.element, "-", "_")]
		if !ok {
			want, ok = env["DIB_DEFAULT_INSTALLTYPE"]
			if !ok {
				want = "source"
			}
		}
		if *en.installtype != want {
			return false, nil
		}
	}
	if en.arch != nil || en.notArch != nil {
		arch, ok := env["ARCH"]
		if !ok {
			return false, fmt.Errorf("%s: arch/not-arch needs ARCH, which is not set", where)
		}
		if en.arch != nil && !inCommaList(*en.arch, arch) {
			return false, nil
		}
		if en.notArch != nil && inCommaList(*en.notArch, arch) {
			return false, nil
		}
	}
	if en.pyVersion != nil && *en.pyVersion != env["DIB_PYTHON_VERSION"] {
		return false, nil
	}
	result := true
	for _, s := range en.when {
		m := whenRE.FindStringSubmatch(s) // validated when parsed
		val, ok := env[m[1]]
		if !ok {
			return false, fmt.Errorf("%s: when %q: variable %s is not set (DIB raises too; give it a default in an environment.d file)", where, s, m[1])
		}
		if (m[2] == "=") != (val == m[3]) {
			result = false
		}
	}
	return result, nil
}

// inCommaList: DIB splits on "," without stripping (a lazy map() that never
// runs), so "ppc64, ppc64le" does not contain "ppc64le" there. Here items
// are trimmed, as the package-installs README's own example expects.
func inCommaList(list, item string) bool {
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == item {
			return true
		}
	}
	return false
}

func parsePackageInstalls(element, path string, data []byte) ([]piEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(path, data, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s (line %d): must be a mapping of package names to parameters", path, root.Line)
	}
	var out []piEntry
	keyLines := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := deref(root.Content[i]), deref(root.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return nil, fmt.Errorf("%s (line %d): package names must be non-empty strings", path, k.Line)
		}
		if prev, ok := keyLines[k.Value]; ok {
			// PyYAML keeps the last silently; one of them is surely a mistake.
			return nil, fmt.Errorf("%s (line %d): package %q is listed twice (also line %d); DIB would silently keep only the last, merge them into a list of parameter maps",
				path, k.Line, k.Value, prev)
		}
		keyLines[k.Value] = k.Line
		base := piEntry{file: path, line: k.Line, element: element, pkg: k.Value}
		var params []*yaml.Node
		switch {
		case isNull(v):
		case v.Kind == yaml.MappingNode:
			params = []*yaml.Node{v}
		case v.Kind == yaml.SequenceNode:
			for _, item := range v.Content {
				params = append(params, deref(item))
			}
		default:
			return nil, fmt.Errorf("%s (line %d): package %q: parameters must be a mapping, a list of mappings or empty", path, v.Line, k.Value)
		}
		if len(params) == 0 {
			params = []*yaml.Node{nil} // `pkg:`, `pkg: {}` or `pkg: []`: install in install.d
		}
		for _, p := range params {
			en, err := parseParams(base, p)
			if err != nil {
				return nil, err
			}
			out = append(out, en)
		}
	}
	return out, nil
}

// parseParams reads one parameter map (nil: none) of a package.
func parseParams(en piEntry, m *yaml.Node) (piEntry, error) {
	en.phase = "install.d"
	en.install = true
	if m == nil || isNull(m) {
		return en, nil
	}
	if m.Kind != yaml.MappingNode {
		return en, fmt.Errorf("%s (line %d): package %q: each parameter set must be a mapping", en.file, m.Line, en.pkg)
	}
	errf := func(n *yaml.Node, format string, args ...any) error {
		return fmt.Errorf("%s (line %d): package %q: %s", en.file, n.Line, en.pkg, fmt.Sprintf(format, args...))
	}
	var uninstall, buildOnly bool
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		key := k.Value
		if seen[key] {
			return en, errf(k, "key %q given twice", key)
		}
		seen[key] = true
		switch key {
		case "phase":
			if v.Kind != yaml.ScalarNode || isNull(v) || !slices.Contains(packageInstallPhases, v.Value) {
				return en, errf(v, "phase %q has no package-installs runner; use one of %s", v.Value, strings.Join(packageInstallPhases, ", "))
			}
			en.phase = v.Value
		case "uninstall", "build-only":
			// DIB tests only for the key's presence, so "uninstall: false"
			// uninstalls there; refuse the ambiguity.
			if isFalse(v) {
				return en, errf(v, "%s: %s would still mean %s to DIB, which only checks that the key is present; remove the key", key, v.Value, key)
			}
			if key == "uninstall" {
				uninstall = true
			} else {
				buildOnly = true
			}
		case "installtype", "arch", "not-arch", "dib_python_version":
			if isNull(v) {
				continue // DIB: param.get(key) is None, no filter
			}
			if v.Kind != yaml.ScalarNode {
				return en, errf(v, "%s must be a string", key)
			}
			s := v.Value
			switch key {
			case "installtype":
				en.installtype = &s
			case "arch":
				en.arch = &s
			case "not-arch":
				en.notArch = &s
			case "dib_python_version":
				en.pyVersion = &s
			}
			if (key == "arch" || key == "not-arch") && strings.TrimSpace(s) == "" {
				return en, errf(v, "%s is empty", key)
			}
		case "when":
			var stmts []*yaml.Node
			switch {
			case isNull(v):
			case v.Kind == yaml.ScalarNode:
				stmts = []*yaml.Node{v}
			case v.Kind == yaml.SequenceNode:
				for _, s := range v.Content {
					stmts = append(stmts, deref(s))
				}
			default:
				return en, errf(v, "when must be a string or a list of strings")
			}
			for _, s := range stmts {
				if s.Kind != yaml.ScalarNode || !whenRE.MatchString(s.Value) {
					return en, errf(s, "malformed when %q: want VAR = value or VAR != value", s.Value)
				}
				en.when = append(en.when, s.Value)
			}
		default:
			return en, fmt.Errorf("unknown key %q in %s (line %d); known keys: %s (DIB silently ignores unknown keys, builder rejects them to catch typos)",
				key, en.file, k.Line, strings.Join(packageInstallKeys, ", "))
		}
	}
	if en.arch != nil && en.notArch != nil {
		return en, errf(m, "arch and not-arch are both given; use one (DIB exits with an error too)")
	}
	switch {
	case buildOnly: // wins over uninstall, as in DIB
		en.install, en.remove = true, true
	case uninstall:
		en.install, en.remove = false, true
	}
	return en, nil
}

// legacyPackageInstalls reads the deprecated plain-text
// <phase>/package-installs-<element> files: one or more packages per line,
// '#' comments. DIB's package-installs script installs a "-pkg" line too
// (it strips the dash) and package-uninstalls removes it at the end of the
// phase, so a leading '-' means build-only. The element named by the file
// is the one whose pkg-map applies, as in DIB.
func legacyPackageInstalls(e *Element) ([]piEntry, error) {
	var out []piEntry
	for _, phase := range packageInstallPhases {
		dir := filepath.Join(e.Dir, phase)
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("element %s: %w", e.Name, err)
		}
		for _, ent := range ents {
			owner, ok := strings.CutPrefix(ent.Name(), "package-installs-")
			if !ok || owner == "" {
				continue
			}
			p := filepath.Join(dir, ent.Name())
			if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("element %s: %w", e.Name, err)
			}
			for i, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				remove := strings.HasPrefix(line, "-")
				for _, pkg := range strings.Fields(strings.TrimPrefix(line, "-")) {
					out = append(out, piEntry{file: p, line: i + 1, element: owner, pkg: pkg,
						phase: phase, install: true, remove: remove})
				}
			}
		}
	}
	return out, nil
}

var yamlErrorPrefix = regexp.MustCompile(`^yaml: (line \d+: )?`)

// yamlError reports a YAML syntax error with the right line. go-yaml prints
// the 0-based line of the construct being parsed for parser errors and no
// line when that is the first one, so find the first prefix of the file
// that fails with the same message instead.
func yamlError(path string, data []byte, err error) error {
	msg := yamlErrorPrefix.ReplaceAllString(err.Error(), "")
	lines := bytes.SplitAfter(data, []byte("\n"))
	for k := 1; k <= len(lines); k++ {
		var n yaml.Node
		e := yaml.Unmarshal(bytes.Join(lines[:k], nil), &n)
		if e != nil && yamlErrorPrefix.ReplaceAllString(e.Error(), "") == msg {
			return fmt.Errorf("%s: line %d: invalid YAML: %s", path, k, msg)
		}
	}
	return fmt.Errorf("%s: invalid YAML: %w", path, err)
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// isFalse recognises YAML 1.1 false values, which PyYAML reads as False.
func isFalse(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	switch strings.ToLower(n.Value) {
	case "false", "no", "off":
		return n.Tag == "!!bool" || n.Style == 0
	}
	return false
}
