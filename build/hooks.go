package build

import (
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
)

// packagesPhase is builder's own phase for -p packages, run like the others
// (through dib-run-parts, environment.d sourced) after install.d.
const packagesPhase = "builder-packages.d"

// hashTree hashes a directory's paths, modes, symlink targets and contents,
// skipping top-level entries for which skip returns true.
func hashTree(dir string, skip func(top string) bool) (string, error) {
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

// phaseTreeHash hashes what a phase's hooks can see of the hooks tree.
func phaseTreeHash(dir, phase string) (string, error) {
	return hashTree(dir, otherPhase(phase))
}

// phaseMentions reports which of words appear in any file a phase's hooks
// can see (scripts, environment.d, helpers they may source).
func phaseMentions(dir, phase string, words []string) (map[string]bool, error) {
	found := map[string]bool{}
	skip := otherPhase(phase)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		top, _, _ := strings.Cut(rel, string(filepath.Separator))
		if rel != "." && skip(top) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, w := range words {
			if !found[w] && strings.Contains(string(data), w) {
				found[w] = true
			}
		}
		return nil
	})
	return found, err
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
