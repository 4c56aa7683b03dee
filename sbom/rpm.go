package sbom

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"builder/internal/fsutil"
)

// rpmDBDirs are where rpm distributions keep their database: the new place
// (Fedora 36+, RHEL 10) and the classic one (often a link to the new).
var rpmDBDirs = []string{"usr/lib/sysimage/rpm", "var/lib/rpm"}

// rpmBackends maps a database's main file to rpm's backend name.
var rpmBackends = []struct{ file, backend string }{
	{"rpmdb.sqlite", "sqlite"}, // Fedora 33+, RHEL 9
	{"Packages", "bdb_ro"},     // Berkeley DB: CentOS 7, RHEL 8
	{"Packages.db", "ndb"},     // openSUSE
}

// findRPMDB returns the image's rpm database directory (host path) and its
// backend, or "" when the image has none.
func findRPMDB(root string) (dir, backend string, err error) {
	for _, d := range rpmDBDirs {
		p, err := inRoot(root, d)
		if err != nil {
			return "", "", err
		}
		for _, b := range rpmBackends {
			if fi, err := os.Stat(filepath.Join(p, b.file)); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
				return p, b.backend, nil
			}
		}
	}
	return "", "", nil
}

// rpmQueryFormat is one line per package, tab separated.
const rpmQueryFormat = `%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\t%{LICENSE}\t%{VENDOR}\t%{URL}\n`

// rpmPackages lists the image's rpm database with the host's rpm. The
// database is copied first: rpm's sqlite backend cannot open a database in
// a read-only tree without its -shm file, and a query must not write the
// image.
func rpmPackages(ctx context.Context, root string, osr osRelease) ([]Package, error) {
	dir, backend, err := findRPMDB(root)
	if err != nil || dir == "" {
		return nil, err
	}
	rpmBin, err := exec.LookPath("rpm")
	if err != nil {
		return nil, fmt.Errorf("the image has an rpm database (%s) but this host has no rpm to read it: install rpm (apt-get install rpm), or build with --sbom=false", dir)
	}
	tmp, err := os.MkdirTemp("", "builder-sbom-rpmdb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := fsutil.CopyFile(filepath.Join(dir, e.Name()), filepath.Join(tmp, e.Name()), 0o600); err != nil {
				return nil, fmt.Errorf("copy the rpm database: %w", err)
			}
		}
	}
	cmd := exec.CommandContext(ctx, rpmBin, "--dbpath", tmp, "--define", "_db_backend "+backend, "-qa", "--queryformat", rpmQueryFormat)
	// HOME: no caller's ~/.rpmmacros (Debian's rpm keeps its own
	// database path there).
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + tmp, "LC_ALL=C"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if backend == "ndb" {
			msg += " (this host's rpm may not read ndb databases; `rpm --showrc | grep backends` lists what it reads)"
		}
		return nil, fmt.Errorf("read the image's rpm database %s with rpm: %v: %s", dir, err, msg)
	}
	var pkgs []Package
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 9 {
			return nil, fmt.Errorf("rpm query: unexpected line %q", line)
		}
		p := Package{Manager: "rpm", Name: f[0], Arch: none(f[4]), Homepage: none(f[8]), Distro: osr}
		p.Epoch = none(f[1])
		p.Version = f[2] + "-" + f[3]
		if p.Epoch != "" {
			p.Version = p.Epoch + ":" + p.Version
		}
		p.Source, p.SourceVersion = splitSourceRPM(none(f[5]))
		if v := none(f[7]); v != "" {
			p.Maintainer = v
		}
		p.License, p.licenseRefs = rpmLicense(f[6])
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

func none(s string) string {
	if s == "(none)" {
		return ""
	}
	return s
}

// splitSourceRPM splits "bash-5.1.8-6.el9.src.rpm" into bash and 5.1.8-6.el9.
func splitSourceRPM(s string) (name, version string) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, ".rpm"), ".src")
	s = strings.TrimSuffix(s, ".nosrc")
	i := strings.LastIndex(s, "-")
	if i <= 0 {
		return s, ""
	}
	j := strings.LastIndex(s[:i], "-")
	if j <= 0 {
		return s, ""
	}
	return s[:j], s[j+1:]
}
