package sbom

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// paragraph is one deb822 stanza (dpkg's status file, a DEP-5 copyright
// file): field names as written, values with continuation lines joined by
// "\n" and their leading space removed.
type paragraph struct {
	keys   []string
	fields map[string]string
}

func (p paragraph) get(name string) string {
	for _, k := range p.keys {
		if strings.EqualFold(k, name) {
			return p.fields[k]
		}
	}
	return ""
}

func (p paragraph) has(name string) bool {
	for _, k := range p.keys {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// parseDeb822 reads stanzas separated by blank lines. Comment lines (#)
// are allowed in copyright files and skipped.
func parseDeb822(r io.Reader) ([]paragraph, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []paragraph
	cur := paragraph{fields: map[string]string{}}
	last := ""
	flush := func() {
		if len(cur.keys) > 0 {
			out = append(out, cur)
		}
		cur = paragraph{fields: map[string]string{}}
		last = ""
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last != "" {
				cur.fields[last] += "\n" + strings.TrimSpace(line)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			// Not a field: tolerated in hand-written copyright files.
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := cur.fields[k]; !dup {
			cur.keys = append(cur.keys, k)
		}
		cur.fields[k] = strings.TrimSpace(v)
		last = k
	}
	flush()
	return out, sc.Err()
}

// installedStates are dpkg states in which the package's files are on
// disk. config-files (removed, conffiles kept) and not-installed are not:
// the SBOM lists what the image runs, not what it once had.
var installedStates = map[string]bool{
	"installed": true, "half-configured": true, "unpacked": true,
	"half-installed": true, "triggers-awaited": true, "triggers-pending": true,
}

// dpkgPackages reads the image's dpkg database (var/lib/dpkg/status) and
// each package's copyright file for its licence.
func dpkgPackages(root string, osr osRelease) ([]Package, error) {
	statusPath, err := inRoot(root, "var/lib/dpkg/status")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(statusPath)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dpkg database: %w", err)
	}
	defer f.Close()
	paras, err := parseDeb822(f)
	if err != nil {
		return nil, fmt.Errorf("dpkg database %s: %w", statusPath, err)
	}
	var out []Package
	for _, p := range paras {
		name := p.get("Package")
		status := strings.Fields(p.get("Status"))
		if name == "" || len(status) != 3 || !installedStates[status[2]] {
			continue
		}
		pkg := Package{
			Manager:    "deb",
			Name:       name,
			Version:    p.get("Version"),
			Arch:       p.get("Architecture"),
			Maintainer: p.get("Maintainer"),
			Homepage:   p.get("Homepage"),
			Distro:     osr,
		}
		// Source: NAME or NAME (VERSION) when it differs from the binary's.
		pkg.Source, pkg.SourceVersion = name, pkg.Version
		if src := p.get("Source"); src != "" {
			n, v, ok := strings.Cut(src, " ")
			pkg.Source = n
			if ok {
				pkg.SourceVersion = strings.Trim(strings.TrimSpace(v), "()")
			}
		}
		pkg.License, pkg.licenseRefs = debLicense(root, name)
		out = append(out, pkg)
	}
	return out, nil
}

// debLicense reads usr/share/doc/NAME/copyright when it is in Debian's
// machine-readable format (DEP-5) and returns the licences of its Files
// paragraphs as one SPDX expression (AND), with the LicenseRef- names it
// made for licences that have no SPDX identifier. Anything else (a free
// text copyright file, none at all) is NOASSERTION.
func debLicense(root, name string) (string, []licenseRef) {
	p, err := inRoot(root, path.Join("usr/share/doc", name, "copyright"))
	if err != nil {
		return noAssertion, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return noAssertion, nil
	}
	return dep5License(data)
}

// dep5License reads a DEP-5 file's License short names ("GPL-2+ or
// Artistic", "GPL-1+ or Artistic, and Expat", "GPL-2 with
// Linux-syscall-note exception").
func dep5License(data []byte) (string, []licenseRef) {
	paras, err := parseDeb822(bytes.NewReader(data))
	if err != nil || len(paras) == 0 {
		return noAssertion, nil
	}
	format := paras[0].get("Format")
	if format == "" {
		format = paras[0].get("Format-Specification") // early DEP-5 drafts
	}
	if !strings.Contains(format, "copyright-format") && !strings.Contains(strings.ToLower(format), "dep5") {
		return noAssertion, nil
	}
	var exprs []string
	seen := map[string]bool{}
	var refs []licenseRef
	for _, para := range paras[1:] {
		if !para.has("Files") {
			continue
		}
		short, _, _ := strings.Cut(para.get("License"), "\n")
		short = strings.TrimSpace(short)
		if short == "" {
			continue
		}
		e, r := licenseExpression(short)
		if e == "" || seen[e] {
			continue
		}
		seen[e] = true
		exprs = append(exprs, e)
		refs = append(refs, r...)
	}
	if len(exprs) == 0 {
		return noAssertion, nil
	}
	return joinExpressions(exprs, "AND"), refs
}
