package elements

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Hook is one script dib-run-parts would run.
type Hook struct {
	Phase   string // e.g. "install.d"
	Name    string // file name, e.g. "10-foo"
	Element string // element the file came from ("" if created after BuildTree by an unknown hook)
	Path    string // absolute path in the tree
}

// Warning is something a build should tell the user about.
type Warning struct {
	Element string
	Phase   string // phase or environment.d directory, "" if not about one
	Path    string // the file in its element directory when known, else in the tree
	Message string
}

func (w Warning) String() string {
	if w.Element != "" {
		return fmt.Sprintf("element %s: %s: %s", w.Element, w.Path, w.Message)
	}
	return fmt.Sprintf("%s: %s", w.Path, w.Message)
}

// Tree is the merged hooks directory DIB calls $TMP_HOOKS_PATH.
type Tree struct {
	Dir      string
	Hooks    map[string][]Hook // phase -> hooks in run order; legacy phases are left out
	Skipped  []Warning         // files in phase dirs that dib-run-parts silently skips
	EnvFiles []string          // environment.d files (absolute paths) in sourcing order
	Warnings []Warning         // legacy block-device.d hooks, absolute symlinks, likely typos...

	origin        map[string]origin // path relative to Dir -> where it was copied from
	buildWarnings []Warning         // found while merging; kept across Rescan
	elements      map[string]bool   // names of the merged elements
}

type origin struct {
	element string
	src     string
}

// DuplicateFileError: two elements bring the same file into the merged tree.
type DuplicateFileError struct {
	Path     string    // relative to the tree, e.g. "install.d/10-foo"
	Elements [2]string // the element already there, the element colliding
	Sources  [2]string // their files
}

func (e *DuplicateFileError) Error() string {
	what := "file"
	if strings.Count(e.Path, "/") == 1 {
		what = "hook" // DIB: "There is a duplicated hook in your elements"
	} else {
		// DIB silently overwrites below the first level; refuse instead, since
		// which element wins there depends on bash hash order.
		what = "file (collisions below a phase directory are refused too, DIB would overwrite silently)"
	}
	return fmt.Sprintf("duplicate %s %s: elements %q (%s) and %q (%s) both have it; rename one",
		what, e.Path, e.Elements[0], e.Sources[0], e.Elements[1], e.Sources[1])
}

// DanglingSymlinkError: a hook or environment file is a symlink to nothing.
type DanglingSymlinkError struct {
	Element string
	Path    string // in the element directory when known
	Target  string
}

func (e *DanglingSymlinkError) Error() string {
	return fmt.Sprintf("element %s: %s is a dangling symlink (-> %s); dib-run-parts would silently skip it: remove it or make it point at an existing file",
		e.Element, e.Path, e.Target)
}

// Subdirectories of an element that are never copied: DIB skips tests and
// __pycache__; test-elements only holds functional-test fixtures.
var excludedSubdirs = map[string]bool{"tests": true, "__pycache__": true, "test-elements": true}

// Per-element metadata every element may have at its top level. DIB copies
// top-level files into the tree and lets the last one win; for these names
// that is expected, for others (source-repository-*) it loses data, so warn.
var perElementFiles = map[string]bool{
	"README.rst": true, "README.md": true, "README": true, "element-deps": true,
	"element-provides": true, "pkg-map": true, "package-installs.yaml": true,
	"package-installs.json": true, "svc-map": true, "test-output-formats": true,
	"element-type": true, "__init__.py": true, "environment": true, "LICENSE": true,
}

// Directory names that look like a phase but never run.
var phaseTypos = map[string]string{
	"finalize.d":     "finalise.d",
	"pre-finalize.d": "pre-finalise.d",
}

// BuildTree merges the subdirectories of every resolved element into dst
// (which must not exist or be empty), as DIB's generate_hooks does, and lists
// the hooks of every phase in dib-run-parts order.
//
// Every subdirectory except tests, __pycache__ and test-elements is merged
// into dst/<subdir>/, copying files with their modes and symlinks as symlinks
// (a symlinked subdirectory itself is followed, like DIB's find -follow). A
// file present in two elements is a *DuplicateFileError, at any depth.
// Top-level files are copied to dst/ as DIB does (source-repositories reads
// dst/source-repository-*); the element later in name order wins a collision.
// Elements are processed in name order, so the result is deterministic. On
// error dst is left as it is; the caller owns and removes it.
func BuildTree(res *Resolution, dst string) (*Tree, error) {
	abs, err := filepath.Abs(dst)
	if err != nil {
		return nil, fmt.Errorf("hooks tree: %w", err)
	}
	if err := makeEmptyDir(abs); err != nil {
		return nil, err
	}
	b := &treeBuilder{t: &Tree{Dir: abs, origin: map[string]origin{}, elements: map[string]bool{}}, dirModes: map[string]fs.FileMode{}}
	for _, e := range res.Elements {
		b.t.elements[e.Name] = true
		if err := b.addElement(e); err != nil {
			return nil, err
		}
	}
	if err := b.applyDirModes(); err != nil {
		return nil, err
	}
	b.t.buildWarnings = b.warnings
	if err := b.t.Rescan(); err != nil {
		return nil, err
	}
	return b.t, nil
}

func makeEmptyDir(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("hooks tree: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("hooks tree: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("hooks tree %s exists and is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("hooks tree: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("hooks tree %s exists and is not empty", dir)
	}
	return nil
}

type treeBuilder struct {
	t        *Tree
	dirModes map[string]fs.FileMode // created dirs -> mode to set once filled
	warnings []Warning
}

func (b *treeBuilder) addElement(e *Element) error {
	entries, err := os.ReadDir(e.Dir)
	if err != nil {
		return fmt.Errorf("element %s: %w", e.Name, err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(e.Dir, name)
		st, err := os.Stat(full)
		if err != nil {
			if _, lerr := os.Lstat(full); lerr == nil {
				// find -follow ignores a dangling top-level symlink; say so.
				b.warnings = append(b.warnings, Warning{Element: e.Name, Path: full, Message: "dangling symlink, ignored"})
				continue
			}
			return fmt.Errorf("element %s: %w", e.Name, err)
		}
		switch {
		case st.IsDir():
			if excludedSubdirs[name] {
				continue
			}
			if good, ok := phaseTypos[name]; ok {
				b.warnings = append(b.warnings, Warning{Element: e.Name, Path: full,
					Message: fmt.Sprintf("%s is not a phase and never runs; did you mean %s?", name, good)})
			}
			if err := b.mergeDir(e, full, name, st.Mode()); err != nil {
				return err
			}
		case st.Mode().IsRegular():
			// Per-element metadata stays out of the tree: builder reads it
			// from the element, and DIB's last-one-wins copy of it is noise
			// that would make every step's key depend on the element set.
			if strings.HasSuffix(name, ".pyc") || perElementFiles[name] {
				continue
			}
			if err := b.copyTopFile(e, full, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// mergeDir merges the directory src of element e into rel (relative to the
// tree). Below the first level nothing is followed: symlinks are copied.
func (b *treeBuilder) mergeDir(e *Element, src, rel string, mode fs.FileMode) error {
	dst := filepath.Join(b.t.Dir, rel)
	lst, err := os.Lstat(dst)
	switch {
	case err == nil && lst.IsDir():
		// merge into the directory another element created
	case err == nil:
		return b.duplicate(rel, e, src)
	case errors.Is(err, fs.ErrNotExist):
		// Writable while filling; the element's mode is applied at the end.
		if err := os.Mkdir(dst, 0o700); err != nil {
			return fmt.Errorf("hooks tree: %w", err)
		}
		b.dirModes[dst] = mode & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky)
		b.t.origin[rel] = origin{e.Name, src}
	default:
		return fmt.Errorf("hooks tree: %w", err)
	}

	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("element %s: %w", e.Name, err)
	}
	firstLevel := !strings.Contains(rel, "/")
	for _, ent := range entries {
		name := ent.Name()
		if firstLevel && strings.HasPrefix(name, ".") {
			continue // DIB lists phase directories with ls, which hides dot files
		}
		s := filepath.Join(src, name)
		r := filepath.Join(rel, name)
		lst, err := os.Lstat(s)
		if err != nil {
			return fmt.Errorf("element %s: %w", e.Name, err)
		}
		if lst.IsDir() {
			if err := b.mergeDir(e, s, r, lst.Mode()); err != nil {
				return err
			}
			continue
		}
		if _, err := os.Lstat(filepath.Join(b.t.Dir, r)); err == nil {
			return b.duplicate(r, e, s)
		}
		if err := copyEntry(s, filepath.Join(b.t.Dir, r), lst); err != nil {
			return fmt.Errorf("element %s: %w", e.Name, err)
		}
		b.t.origin[r] = origin{e.Name, s}
	}
	return nil
}

func (b *treeBuilder) duplicate(rel string, e *Element, src string) error {
	prev := b.t.origin[rel]
	return &DuplicateFileError{Path: rel, Elements: [2]string{prev.element, e.Name}, Sources: [2]string{prev.src, src}}
}

// copyTopFile copies a top-level file of an element to the tree root, as
// DIB's `cp -t $TMP_HOOKS_PATH -a` does, overwriting an earlier one.
func (b *treeBuilder) copyTopFile(e *Element, src, name string) error {
	dst := filepath.Join(b.t.Dir, name)
	if lst, err := os.Lstat(dst); err == nil {
		if lst.IsDir() {
			return b.duplicate(name, e, src)
		}
		if !perElementFiles[name] && !isBlockDeviceConfig(name) {
			prev := b.t.origin[name]
			b.warnings = append(b.warnings, Warning{Element: e.Name, Path: src,
				Message: fmt.Sprintf("top-level file %s overwrites the one from element %s (%s), as DIB does; give it a unique name", name, prev.element, prev.src)})
		}
		if err := os.Remove(dst); err != nil {
			return fmt.Errorf("hooks tree: %w", err)
		}
	}
	lst, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("element %s: %w", e.Name, err)
	}
	if err := copyEntry(src, dst, lst); err != nil {
		return fmt.Errorf("element %s: %w", e.Name, err)
	}
	b.t.origin[name] = origin{e.Name, src}
	return nil
}

func isBlockDeviceConfig(name string) bool {
	return strings.HasPrefix(name, "block-device-") && strings.HasSuffix(name, ".yaml")
}

// applyDirModes gives created directories their element's mode, deepest
// first so that a read-only directory does not block its children.
func (b *treeBuilder) applyDirModes() error {
	dirs := make([]string, 0, len(b.dirModes))
	for d := range b.dirModes {
		dirs = append(dirs, d)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if err := os.Chmod(d, b.dirModes[d]); err != nil {
			return fmt.Errorf("hooks tree: %w", err)
		}
	}
	return nil
}

// copyEntry copies one non-directory: symlinks as symlinks, regular files
// with their permission bits (umask does not apply, as with cp -a).
func copyEntry(src, dst string, lst fs.FileInfo) error {
	switch {
	case lst.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case lst.Mode().IsRegular():
		return copyFile(src, dst, lst.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	default:
		return fmt.Errorf("%s: unsupported file type %s", src, lst.Mode().Type())
	}
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// Rescan lists the hooks and environment files again. DIB's dib-run-parts
// lists a phase directory when the phase starts, and extra-data.d hooks may
// add hooks to later phases (source-repositories links
// install.d/<element>-source-install/* into install.d, as EnableInstallTypes
// does for install-types), so a runner must rescan after extra-data.d.
func (t *Tree) Rescan() error {
	t.Hooks = map[string][]Hook{}
	t.Skipped = nil
	t.EnvFiles = nil
	t.Warnings = append([]Warning(nil), t.buildWarnings...)
	for _, p := range Phases {
		hooks, skipped, warnings, err := t.scanPhase(p)
		if err != nil {
			return err
		}
		t.Skipped = append(t.Skipped, skipped...)
		t.Warnings = append(t.Warnings, warnings...)
		if p.Legacy {
			for _, h := range hooks {
				t.Warnings = append(t.Warnings, Warning{Element: h.Element, Phase: p.Name, Path: t.srcPath(filepath.Join(p.Name, h.Name)),
					Message: "block-device.d is a legacy phase that builder does not run; describe the disk with block-device YAML instead"})
			}
			continue
		}
		if len(hooks) > 0 {
			t.Hooks[p.Name] = hooks
		}
	}
	return t.scanEnv()
}

// fileStatus stats a phase or environment.d entry the way find -xtype f sees
// it. inImage reports an absolute symlink that only resolves inside the
// image (then st is nil).
func (t *Tree) fileStatus(rel string, resolvedInImage bool) (st fs.FileInfo, inImage bool, err error) {
	p := filepath.Join(t.Dir, rel)
	lst, err := os.Lstat(p)
	if err != nil {
		return nil, false, fmt.Errorf("hooks tree: %w", err)
	}
	if lst.Mode()&fs.ModeSymlink == 0 {
		return lst, false, nil
	}
	target, err := os.Readlink(p)
	if err != nil {
		return nil, false, fmt.Errorf("hooks tree: %w", err)
	}
	if filepath.IsAbs(target) && resolvedInImage {
		return nil, true, nil
	}
	if !filepath.IsAbs(target) {
		resolved := filepath.Join(filepath.Dir(p), target)
		if !strings.HasPrefix(resolved, t.Dir+string(filepath.Separator)) {
			return nil, false, fmt.Errorf("element %s: %s is a symlink to %s, outside the hooks tree; it cannot resolve where hooks run: copy the file into the element, or point the link inside it",
				t.elementOf(rel), t.srcPath(rel), target)
		}
	}
	st, err = os.Stat(p)
	if err != nil {
		return nil, false, &DanglingSymlinkError{Element: t.elementOf(rel), Path: t.srcPath(rel), Target: target}
	}
	return st, false, nil
}

func (t *Tree) scanPhase(p Phase) (hooks []Hook, skipped, warnings []Warning, err error) {
	entries, err := os.ReadDir(filepath.Join(t.Dir, p.Name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("hooks tree: %w", err)
	}
	byName := map[string]Hook{}
	var names []string
	for _, ent := range entries {
		name := ent.Name()
		rel := filepath.Join(p.Name, name)
		st, inImage, err := t.fileStatus(rel, p.Inside)
		if err != nil {
			return nil, nil, nil, err
		}
		elem := t.elementOf(rel)
		var reasons []string
		switch {
		case inImage:
			warnings = append(warnings, Warning{Element: elem, Phase: p.Name, Path: t.srcPath(rel),
				Message: "absolute symlink: it resolves inside the image when the phase runs, and runs only if its target exists there"})
		case st.IsDir():
			continue // data for hooks (install-types keeps <x>-source-install/ here)
		case !st.Mode().IsRegular():
			continue
		case st.Mode()&0o111 == 0:
			reasons = append(reasons, "not executable")
		}
		if !hookNameRE.MatchString(name) {
			reasons = append(reasons, fmt.Sprintf("name does not match %s (no dots: a .sh suffix is not allowed)", hookNameRE))
		}
		if len(reasons) > 0 {
			skipped = append(skipped, Warning{Element: elem, Phase: p.Name, Path: t.srcPath(rel),
				Message: "dib-run-parts skips it: " + strings.Join(reasons, "; ")})
			continue
		}
		names = append(names, name)
		byName[name] = Hook{Phase: p.Name, Name: name, Element: elem, Path: filepath.Join(t.Dir, rel)}
	}
	for _, n := range SortScripts(names) {
		hooks = append(hooks, byName[n])
	}
	return hooks, skipped, warnings, nil
}

// scanEnv lists environment.d in dib-run-parts' sourcing order: it pipes
// full paths through `sort -n`, where no path starts with a digit, so the
// order is plain byte order ("100-x" before "11-y" before "9-z").
func (t *Tree) scanEnv() error {
	entries, err := os.ReadDir(filepath.Join(t.Dir, EnvironmentDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hooks tree: %w", err)
	}
	var names []string
	for _, ent := range entries {
		name := ent.Name()
		rel := filepath.Join(EnvironmentDir, name)
		// Sourced both outside and inside: check it where builder sees it.
		st, _, err := t.fileStatus(rel, false)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			continue
		}
		if !envNameRE.MatchString(name) {
			t.Skipped = append(t.Skipped, Warning{Element: t.elementOf(rel), Phase: EnvironmentDir, Path: t.srcPath(rel),
				Message: fmt.Sprintf("never sourced: name does not match %s", envNameRE)})
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, n := range names {
		t.EnvFiles = append(t.EnvFiles, filepath.Join(t.Dir, EnvironmentDir, n))
	}
	return nil
}

// elementOf finds the element a tree path came from. Files created later
// (install-types' symlinks) are attributed through their link target.
func (t *Tree) elementOf(rel string) string {
	if o, ok := t.origin[rel]; ok {
		return o.element
	}
	p := filepath.Join(t.Dir, rel)
	if target, err := os.Readlink(p); err == nil && !filepath.IsAbs(target) {
		if r, err := filepath.Rel(t.Dir, filepath.Join(filepath.Dir(p), target)); err == nil {
			if o, ok := t.origin[r]; ok {
				return o.element
			}
		}
	}
	return ""
}

// Source says where a file of the tree (an absolute path in it) came
// from: its element and its path there; "" and path itself when unknown.
func (t *Tree) Source(path string) (element, src string) {
	rel, err := filepath.Rel(t.Dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", path
	}
	return t.elementOf(rel), t.srcPath(rel)
}

// srcPath is the path to show a user: the file in its element if known.
func (t *Tree) srcPath(rel string) string {
	if o, ok := t.origin[rel]; ok {
		return o.src
	}
	return filepath.Join(t.Dir, rel)
}

// EnableInstallTypes does what DIB's install-types element does in
// extra-data.d (99-enable-install-types), then rescans: for every
// DIB_INSTALLTYPE_<prefix>=<type> in env ("_" in prefix read as "-") it links
// the entries of install.d/<prefix>-<type>-install/ into install.d, and for
// every other install.d/<prefix>-<default>-install/ (DIB_DEFAULT_INSTALLTYPE,
// default "source") it links that one. Like DIB, it does nothing unless the
// install-types element is part of the tree. DIB's `ln -sf` replaces a hook
// of the same name silently; here that is a *DuplicateFileError.
func (t *Tree) EnableInstallTypes(env map[string]string) error {
	if !t.elements["install-types"] {
		return nil
	}
	installDir := filepath.Join(t.Dir, "install.d")
	isDir := func(name string) bool {
		st, err := os.Lstat(filepath.Join(installDir, name))
		return err == nil && st.IsDir()
	}
	var vars []string
	for k := range env {
		if strings.HasPrefix(k, "DIB_INSTALLTYPE_") {
			vars = append(vars, k)
		}
	}
	sort.Strings(vars)
	specified := map[string]bool{}
	var dirs []string
	for _, k := range vars {
		prefix := strings.ReplaceAll(strings.TrimPrefix(k, "DIB_INSTALLTYPE_"), "_", "-")
		specified[prefix] = true
		if d := prefix + "-" + env[k] + "-install"; isDir(d) {
			dirs = append(dirs, d)
		}
	}
	def, ok := env["DIB_DEFAULT_INSTALLTYPE"]
	if !ok {
		def = "source"
	}
	ents, err := os.ReadDir(installDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hooks tree: %w", err)
	}
	suffix := "-" + def + "-install"
	for _, ent := range ents {
		prefix, ok := strings.CutSuffix(ent.Name(), suffix)
		if ok && prefix != "" && !specified[prefix] && isDir(ent.Name()) {
			dirs = append(dirs, ent.Name())
		}
	}
	for _, d := range dirs {
		scripts, err := os.ReadDir(filepath.Join(installDir, d))
		if err != nil {
			return fmt.Errorf("hooks tree: %w", err)
		}
		for _, s := range scripts {
			if strings.HasPrefix(s.Name(), ".") {
				continue // not matched by the shell's *
			}
			target := d + "/" + s.Name()
			link := filepath.Join(installDir, s.Name())
			if cur, err := os.Readlink(link); err == nil && cur == target {
				continue // already enabled
			}
			if _, err := os.Lstat(link); err == nil {
				rel := filepath.Join("install.d", s.Name())
				return &DuplicateFileError{Path: rel, Elements: [2]string{t.elementOf(rel), t.elementOf(filepath.Join("install.d", target))},
					Sources: [2]string{t.srcPath(rel), t.srcPath(filepath.Join("install.d", target))}}
			}
			if err := os.Symlink(target, link); err != nil {
				return fmt.Errorf("hooks tree: enable install type: %w", err)
			}
		}
	}
	return t.Rescan()
}
