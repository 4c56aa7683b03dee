package imagebuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"builder/elements"
	"builder/rootfs"
)

// packagesPhase is builder's own phase for -p packages, run like the others
// (through dib-run-parts, environment.d sourced) after install.d.
const packagesPhase = "builder-packages.d"

// walkTree hashes a directory's paths, modes, symlink targets and contents,
// skipping top-level entries for which skip returns true, and hands each
// regular file's path (relative to dir) and content to content (when not
// nil).
func walkTree(dir string, skip func(top string) bool, content func(rel string, data []byte)) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		top, _, _ := strings.Cut(rel, string(filepath.Separator))
		if skip != nil && skip(top) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", rel, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "->%s\x00", t)
		case info.Mode().IsRegular():
			if content != nil {
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				h.Write(data)
				content(filepath.ToSlash(rel), data)
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash hooks tree: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// otherPhase says whether a top-level entry of the hooks tree is another
// phase's script directory: what a phase's hooks can see is all of the tree
// except those, so editing a finalise.d script does not invalidate install.d.
func otherPhase(phase string) func(top string) bool {
	phaseDirs := map[string]bool{packagesPhase: true}
	for _, p := range elements.Phases {
		phaseDirs[p.Name] = true
	}
	return func(top string) bool { return phaseDirs[top] && top != phase }
}

// phaseTreeInfo hashes what a phase's hooks can see of the hooks tree and
// collects the shell-variable-like words in it: a hook can only read a
// variable whose name appears in a file it can see (its script, an
// environment.d file, a tool it calls from the tree).
//
// builder's own runtime in the tree is its code, not the elements': the
// tools on the hooks' PATH read only builder's variables, and the words of
// a $_LIB file count only for phases whose files source it (directly or
// through another $_LIB file).
func phaseTreeInfo(dir, phase string) (string, map[string]bool, error) {
	libNames := runtimeLibNames()
	idents := map[string]bool{}
	libIdents := map[string]map[string]bool{} // $_LIB file -> its words
	libRefs := map[string][]string{}          // $_LIB file -> $_LIB files it names
	var used []string                         // $_LIB files the phase's own files name
	sum, err := walkTree(dir, otherPhase(phase), func(rel string, data []byte) {
		switch {
		case strings.HasPrefix(rel, runtimeBinDir+"/"):
		case strings.HasPrefix(rel, runtimeLibDir+"/"):
			name := strings.TrimPrefix(rel, runtimeLibDir+"/")
			words := map[string]bool{}
			addIdents(words, data)
			libIdents[name] = words
			libRefs[name] = namedFiles(data, libNames)
		default:
			addIdents(idents, data)
			used = append(used, namedFiles(data, libNames)...)
		}
	})
	if idents["_LIB"] {
		seen := map[string]bool{}
		for len(used) > 0 {
			name := used[0]
			used = used[1:]
			if seen[name] {
				continue
			}
			seen[name] = true
			for k := range libIdents[name] {
				idents[k] = true
			}
			used = append(used, libRefs[name]...)
		}
	}
	return sum, idents, err
}

// runtimeLibNames lists the files of $_LIB.
func runtimeLibNames() []string {
	ents, _ := runtimeFS.ReadDir("runtime/lib")
	names := []string{rootfs.RunPartsName}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// namedFiles returns which of names appear in data as whole words (a file
// name such as img-functions, not part of img-functions-extra).
func namedFiles(data []byte, names []string) []string {
	var out []string
	isWord := func(c byte) bool {
		return c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
	}
	for _, n := range names {
		for i := 0; ; {
			j := bytes.Index(data[i:], []byte(n))
			if j < 0 {
				break
			}
			start, end := i+j, i+j+len(n)
			if (start == 0 || !isWord(data[start-1]) || data[start-1] == '/') && (end == len(data) || !isWord(data[end])) {
				out = append(out, n)
				break
			}
			i = end
		}
	}
	return out
}

// addIdents adds every [A-Za-z_][A-Za-z0-9_]* word of data to set.
func addIdents(set map[string]bool, data []byte) {
	start := -1
	for i := 0; i <= len(data); i++ {
		word := i < len(data) && (data[i] == '_' || data[i] >= 'A' && data[i] <= 'Z' || data[i] >= 'a' && data[i] <= 'z' || start >= 0 && data[i] >= '0' && data[i] <= '9')
		switch {
		case word && start < 0:
			start = i
		case !word && start >= 0:
			set[string(data[start:i])] = true
			start = -1
		}
	}
}

// writePackageInstalls writes the resolved package list the
// package-installs element's hooks read: "PHASE ACTION ELEMENT PKG...".
func writePackageInstalls(hooksDir string, pis []elements.PackageInstall, maps map[string]*elements.PkgMap, distro, release string) error {
	var lines []string
	for _, pi := range pis {
		names := []string{pi.Package}
		if m := maps[pi.Element]; m != nil {
			if mapped, ok := m.Lookup(pi.Package, distro, release); ok {
				names = mapped
			}
		}
		if len(names) == 0 {
			continue // mapped to "": nothing to install on this distribution
		}
		action := "install"
		if pi.Uninstall {
			action = "uninstall"
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s", pi.Phase, action, pi.Element, strings.Join(names, " ")))
	}
	dir := filepath.Join(hooksDir, "builder")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data := strings.Join(lines, "\n")
	if data != "" {
		data += "\n"
	}
	return os.WriteFile(filepath.Join(dir, "package-installs"), []byte(data), 0o644)
}

// writePkgMaps writes each element's pkg-map, resolved for this image, as
// "name<TAB>mapped names" lines for the in-image pkg-map command.
func writePkgMaps(hooksDir string, maps map[string]*elements.PkgMap, distro, release string) error {
	dir := filepath.Join(hooksDir, "builder", "pkg-map")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for el, m := range maps {
		flat := m.Flatten(distro, release)
		names := make([]string, 0, len(flat))
		for n := range flat {
			names = append(names, n)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "%s\t%s\n", n, flat[n])
		}
		if err := os.WriteFile(filepath.Join(dir, el), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writePackagesPhase makes builder's -p phase: one hook that installs the
// packages given on the command line.
func writePackagesPhase(hooksDir string, pkgs []string) error {
	dir := filepath.Join(hooksDir, packagesPhase)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	quoted := make([]string, len(pkgs))
	for i, p := range pkgs {
		quoted[i] = shellQuote(p)
	}
	script := "#!/bin/bash\nset -eu\nset -o pipefail\ninstall-packages " + strings.Join(quoted, " ") + "\n"
	return os.WriteFile(filepath.Join(dir, "50-install-packages"), []byte(script), 0o755)
}
