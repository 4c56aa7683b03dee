// Package sbom is an image's bill of materials: an SPDX 2.3 JSON document
// (NAME.spdx.json, written with the SPDX project's tools-golang) listing
// every package of the image's own package database (dpkg, rpm) with its
// version, architecture, source package, licence and package URL, the
// elements the image was built from with a hash of each, its base and the
// digests of its outputs; and beside it a file inventory (NAME.d/files.json:
// every path with its type, mode, owner, size, link target and sha256).
// The same tree and inputs give the same bytes. Compare diffs two of them.
package sbom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/github/go-spdx/v2/spdxexp/spdxlicenses"
	"github.com/google/uuid"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
	"golang.org/x/sync/errgroup"

	"builder/internal/version"
)

// Element is an element the image was built from.
type Element struct {
	Name   string
	Hash   string // sha256:HEX of the element's files (bare HEX is accepted)
	Origin string // where it was found: builtin, an ELEMENTS_PATH directory, diskimage-builder
}

// Output is one file the build wrote.
type Output struct {
	Path   string // its base name is recorded
	SHA256 string // hex
}

// Inputs are what the tree cannot tell: how the image was made.
type Inputs struct {
	Name    string // the image's name (-o)
	Version string // the image's version, if it has one
	// Created is the document's creation time (SOURCE_DATE_EPOCH): the
	// only time in it, so that the same inputs give the same bytes.
	Created  time.Time
	Elements []Element
	// Base: a container image reference with its digest, a bootstrap
	// recipe and mirror, or a local image's hash.
	Base    string
	Outputs []Output
}

// Package is an installed package as the SBOM lists it.
type Package struct {
	Manager       string `json:"manager"` // deb or rpm
	Name          string `json:"name"`
	Version       string `json:"version"` // deb: [epoch:]upstream[-revision]; rpm: [epoch:]version-release
	Arch          string `json:"arch,omitempty"`
	Source        string `json:"source,omitempty"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	License       string `json:"license,omitempty"` // SPDX expression or NOASSERTION

	Epoch      string    `json:"-"` // rpm
	Maintainer string    `json:"-"` // deb Maintainer, rpm Vendor
	Homepage   string    `json:"-"`
	Distro     osRelease `json:"-"`

	licenseRefs []licenseRef
}

// key names a package regardless of its version.
func (p Package) key() string { return p.Manager + "/" + p.Name + ":" + p.Arch }

// Scan is what the tree holds: its packages and files.
type Scan struct {
	OS       osRelease
	Packages []Package
	Files    []File
}

// ScanTree reads the image's package databases and makes its file
// inventory, the two at once. root is the image's root filesystem (read
// only is enough).
func ScanTree(ctx context.Context, root string) (*Scan, error) {
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("sbom: %s is not a directory with the image's root filesystem", root)
	}
	s := &Scan{}
	var err error
	if s.OS, err = readOSRelease(root); err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		files, err := Inventory(gctx, root)
		s.Files = files
		return err
	})
	g.Go(func() error {
		deb, err := dpkgPackages(root, s.OS)
		if err != nil {
			return err
		}
		rpm, err := rpmPackages(gctx, root, s.OS)
		if err != nil {
			return err
		}
		s.Packages = append(deb, rpm...)
		sortPackages(s.Packages)
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return s, nil
}

// Generate scans root and makes its document: ScanTree, then Document.
func Generate(ctx context.Context, root string, in Inputs) (*Document, error) {
	s, err := ScanTree(ctx, root)
	if err != nil {
		return nil, err
	}
	return s.Document(in)
}

// Document is an SBOM: the SPDX document and, when known, the file
// inventory that goes beside it.
type Document struct {
	SPDX *spdx.Document
	// Files is the file inventory; nil when there is none (InventoryNote
	// says why).
	Files         []File
	InventoryNote string
	inventory     []byte // Files as written (files.json)
}

const (
	imageID       = "Image"
	baseID        = "Base"
	namespaceBase = "https://spdx.org/spdxdocs/builder/"
	// inventoryLine is the document comment's line that names the file
	// inventory and its digest: the SBOM's digest covers the inventory.
	inventoryLine = "File inventory: %s, sha256:%s, %d entries."
)

var inventoryRE = regexp.MustCompile(`File inventory: \S+, sha256:([0-9a-f]{64}),`)

// Document makes the SPDX document of the scanned tree with the build's
// inputs. It fails on inputs that cannot be recorded (no name, no creation
// time, a hash that is not hex).
func (s *Scan) Document(in Inputs) (*Document, error) {
	if in.Name == "" {
		return nil, errors.New("sbom: Inputs.Name is empty: give the image's name")
	}
	if in.Created.IsZero() {
		return nil, errors.New("sbom: Inputs.Created is not set: give SOURCE_DATE_EPOCH's time, so that the document is reproducible")
	}
	inv, err := marshalInventory(s.Files)
	if err != nil {
		return nil, err
	}
	invSum := sha256.Sum256(inv)
	ids := idSet{}
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      in.Name,
		DocumentNamespace: "",
		CreationInfo: &spdx.CreationInfo{
			Creators:           []common.Creator{{CreatorType: "Tool", Creator: "builder-" + version.Version()}},
			Created:            in.Created.UTC().Format("2006-01-02T15:04:05Z"),
			LicenseListVersion: spdxlicenses.LicenseListVersion(),
		},
		DocumentComment: fmt.Sprintf("Made by builder from the image's own package databases (%s). "+inventoryLine,
			managers(s.Packages), filepath.Base(in.Name)+".d/files.json", hex.EncodeToString(invSum[:]), len(s.Files)),
	}
	rel := func(a, typ, b string) {
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", a), RefB: common.MakeDocElementID("", b), Relationship: typ,
		})
	}
	image := &spdx.Package{
		PackageName:               in.Name,
		PackageSPDXIdentifier:     common.ElementID(ids.take(imageID)),
		PackageVersion:            in.Version,
		PackageDownloadLocation:   noAssertion,
		IsFilesAnalyzedTagPresent: true,
		// The JSON schema spells it with an underscore (tag-value: OPERATING-SYSTEM).
		PrimaryPackagePurpose:   "OPERATING_SYSTEM",
		PackageDescription:      s.OS.PrettyName,
		PackageLicenseConcluded: noAssertion,
		PackageLicenseDeclared:  noAssertion,
		PackageCopyrightText:    noAssertion,
	}
	doc.Packages = append(doc.Packages, image)
	rel("DOCUMENT", common.TypeRelationshipDescribe, imageID)

	if in.Base != "" {
		base := &spdx.Package{
			PackageName:               in.Base,
			PackageSPDXIdentifier:     common.ElementID(ids.take(baseID)),
			PackageDownloadLocation:   noAssertion,
			IsFilesAnalyzedTagPresent: true,
			PackageComment:            "the base the image was built on",
		}
		if m := digestRE.FindStringSubmatch(in.Base); m != nil {
			base.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: m[1]}}
		}
		doc.Packages = append(doc.Packages, base)
		rel(imageID, common.TypeRelationshipDescendantOf, string(base.PackageSPDXIdentifier))
	}
	for _, e := range in.Elements {
		sum, ok := sha256Hex(e.Hash)
		if !ok {
			return nil, fmt.Errorf("sbom: element %s: hash %q is not sha256:HEX", e.Name, e.Hash)
		}
		p := &spdx.Package{
			PackageName:               e.Name,
			PackageSPDXIdentifier:     common.ElementID(ids.take("Element-" + e.Name)),
			PackageDownloadLocation:   noAssertion,
			IsFilesAnalyzedTagPresent: true,
			PackageChecksums:          []common.Checksum{{Algorithm: common.SHA256, Value: sum}},
			PrimaryPackagePurpose:     "SOURCE",
			PackageComment:            "element, from " + cmpOr(e.Origin, "(unknown)"),
		}
		doc.Packages = append(doc.Packages, p)
		rel(imageID, common.TypeRelationshipGeneratedFrom, string(p.PackageSPDXIdentifier))
	}

	refs := map[string]*refUse{}
	for _, pk := range s.Packages {
		p := &spdx.Package{
			PackageName:               pk.Name,
			PackageSPDXIdentifier:     common.ElementID(ids.take("Package-" + pk.Manager + "-" + pk.Name + "-" + pk.Arch)),
			PackageVersion:            pk.Version,
			PackageSupplier:           supplier(pk),
			PackageDownloadLocation:   noAssertion,
			IsFilesAnalyzedTagPresent: true,
			PackageLicenseConcluded:   noAssertion,
			PackageLicenseDeclared:    cmpOr(pk.License, noAssertion),
			PackageCopyrightText:      noAssertion,
			PackageExternalReferences: []*spdx.PackageExternalReference{{
				Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: packagePurl(pk),
			}},
		}
		if strings.HasPrefix(pk.Homepage, "http://") || strings.HasPrefix(pk.Homepage, "https://") {
			p.PackageHomePage = pk.Homepage
		}
		if pk.Source != "" {
			kind := map[string]string{"deb": "source package", "rpm": "source rpm"}[pk.Manager]
			p.PackageSourceInfo = strings.TrimSpace("built from " + kind + " " + pk.Source + " " + pk.SourceVersion)
		}
		for _, r := range pk.licenseRefs {
			u := refs[r.ID]
			if u == nil {
				u = &refUse{names: map[string]bool{}, pkgs: map[string]bool{}}
				refs[r.ID] = u
			}
			u.names[r.Name] = true
			u.pkgs[pk.Name] = true
		}
		doc.Packages = append(doc.Packages, p)
		rel(imageID, common.TypeRelationshipContains, string(p.PackageSPDXIdentifier))
	}
	for _, id := range sortedKeys(refs) {
		u := refs[id]
		names := sortedKeys(u.names)
		doc.OtherLicenses = append(doc.OtherLicenses, &spdx.OtherLicense{
			LicenseIdentifier: id,
			LicenseName:       names[0],
			ExtractedText: fmt.Sprintf("The licence the packages' metadata names %q; its text is in each package's documentation in the image "+
				"(deb: /usr/share/doc/PACKAGE/copyright; rpm: /usr/share/licenses/PACKAGE).", strings.Join(names, `", "`)),
			LicenseComment: "Named by: " + strings.Join(sortedKeys(u.pkgs), ", ") + ".",
		})
	}

	for _, o := range in.Outputs {
		sum, ok := sha256Hex(o.SHA256)
		if !ok {
			return nil, fmt.Errorf("sbom: output %s: digest %q is not a sha256", o.Path, o.SHA256)
		}
		name := filepath.Base(o.Path)
		p := &spdx.Package{
			PackageName:               name,
			PackageSPDXIdentifier:     common.ElementID(ids.take("Output-" + name)),
			PackageFileName:           name,
			PackageDownloadLocation:   noAssertion,
			IsFilesAnalyzedTagPresent: true,
			PackageChecksums:          []common.Checksum{{Algorithm: common.SHA256, Value: sum}},
			PrimaryPackagePurpose:     "FILE",
			PackageComment:            "an output of the build",
		}
		doc.Packages = append(doc.Packages, p)
		rel(string(p.PackageSPDXIdentifier), common.TypeRelationshipGeneratedFrom, imageID)
	}

	// The namespace is named after the content: no random part, and two
	// different documents never share one.
	body, err := marshalSPDX(doc)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	doc.DocumentNamespace = namespaceBase + idPart(in.Name) + "-" + uuid.NewSHA1(uuid.NameSpaceURL, sum[:]).String()
	return &Document{SPDX: doc, Files: s.Files, inventory: inv}, nil
}

type refUse struct{ names, pkgs map[string]bool }

var digestRE = regexp.MustCompile(`sha256:([0-9a-f]{64})`)

func sha256Hex(s string) (string, bool) {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", false
	}
	return strings.ToLower(s), true
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func managers(pkgs []Package) string {
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[map[string]string{"deb": "dpkg", "rpm": "rpm"}[p.Manager]] = true
	}
	if len(seen) == 0 {
		return "none found"
	}
	return strings.Join(sortedKeys(seen), ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// supplier is the package's maintainer (deb) or vendor (rpm): "Name
// <mail>" becomes "Name (mail)"; teams and vendors are organizations.
func supplier(p Package) *common.Supplier {
	m := strings.TrimSpace(p.Maintainer)
	if m == "" {
		return nil
	}
	name, mail, ok := strings.Cut(m, "<")
	name = strings.TrimSpace(name)
	if ok {
		mail = strings.TrimSuffix(strings.TrimSpace(mail), ">")
		if name == "" {
			name = mail
		}
		name += " (" + mail + ")"
	}
	typ := "Person"
	if p.Manager == "rpm" {
		typ = "Organization"
	}
	who := strings.ToLower(strings.TrimSpace(strings.SplitN(m, "<", 2)[0]))
	for _, w := range []string{"team", "maintainers", "developers", "group", "project", "packagers", "packaging", "debian", "ubuntu"} {
		if strings.Contains(who, w) {
			typ = "Organization"
		}
	}
	return &common.Supplier{Supplier: name, SupplierType: typ}
}

// idSet hands out SPDX identifiers: the name made safe
// (SPDXRef-[A-Za-z0-9.-]+), with a hash of it appended should two names
// become the same.
type idSet map[string]bool

func (s idSet) take(name string) string {
	id := idPart(name)
	if s[id] {
		sum := sha256.Sum256([]byte(name))
		id += "-" + hex.EncodeToString(sum[:4])
	}
	for n := 2; s[id]; n++ {
		id = fmt.Sprintf("%s-%d", idPart(name), n)
	}
	s[id] = true
	return id
}

func idPart(name string) string {
	var b strings.Builder
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
			b.WriteRune(c)
		case c == '+':
			b.WriteString("plus")
		default:
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

func marshalSPDX(doc *spdx.Document) ([]byte, error) {
	var b bytes.Buffer
	if err := spdxjson.Write(doc, &b, spdxjson.Indent(" "), spdxjson.EscapeHTML(false)); err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	return b.Bytes(), nil
}

// JSON is the SPDX document's bytes.
func (d *Document) JSON() ([]byte, error) { return marshalSPDX(d.SPDX) }

// InventoryJSON is files.json's bytes (nil when the document has no
// inventory).
func (d *Document) InventoryJSON() []byte { return d.inventory }

// InventoryPath is where the file inventory of NAME.spdx.json goes:
// NAME.d/files.json.
func InventoryPath(spdxPath string) string {
	return strings.TrimSuffix(spdxPath, ".spdx.json") + ".d/files.json"
}

// WriteFile writes the SPDX document to path (NAME.spdx.json) and the file
// inventory to InventoryPath(path), each written beside and renamed into
// place, the inventory first.
func (d *Document) WriteFile(path string) error {
	if d.inventory != nil {
		inv := InventoryPath(path)
		if err := os.MkdirAll(filepath.Dir(inv), 0o755); err != nil {
			return err
		}
		if err := WriteAtomic(inv, d.inventory); err != nil {
			return err
		}
	}
	body, err := d.JSON()
	if err != nil {
		return err
	}
	return WriteAtomic(path, body)
}

// WriteAtomic writes data to a temporary file beside path and renames it
// into place: a reader sees the old file or the new one, never a part.
func WriteAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Read reads an SPDX JSON document (SPDX 2.1 to 2.3) and, when it is there
// and belongs to it, the file inventory beside it (NAME.d/files.json).
func Read(path string) (*Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var doc spdx.Document
	if err := spdxjson.ReadInto(f, &doc); err != nil {
		return nil, fmt.Errorf("%s: not an SPDX JSON document: %w", path, err)
	}
	d := &Document{SPDX: &doc}
	inv := InventoryPath(path)
	data, err := os.ReadFile(inv)
	if err != nil {
		d.InventoryNote = fmt.Sprintf("no file inventory beside %s (%s)", filepath.Base(path), inv)
		return d, nil
	}
	if m := inventoryRE.FindStringSubmatch(doc.DocumentComment); m != nil {
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != m[1] {
			d.InventoryNote = fmt.Sprintf("%s is not the inventory %s names (its sha256 differs): it belongs to another build", inv, filepath.Base(path))
			return d, nil
		}
	}
	if d.Files, err = ReadInventory(inv); err != nil {
		return nil, err
	}
	d.inventory = data
	return d, nil
}

// Packages are the installed packages the document lists: those with a deb
// or rpm package URL (which SBOMs of other tools carry too).
func (d *Document) Packages() []Package {
	var out []Package
	for _, p := range d.SPDX.Packages {
		for _, r := range p.PackageExternalReferences {
			if r == nil || !strings.EqualFold(r.RefType, common.TypePackageManagerPURL) {
				continue
			}
			u, ok := parsePurl(r.Locator)
			if !ok || (u.Type != "deb" && u.Type != "rpm") {
				continue
			}
			pk := Package{Manager: u.Type, Name: u.Name, Version: u.Version, Arch: u.Qualifiers["arch"], License: p.PackageLicenseDeclared}
			if u.Type == "rpm" && u.Qualifiers["epoch"] != "" {
				pk.Epoch = u.Qualifiers["epoch"]
				pk.Version = pk.Epoch + ":" + pk.Version
			}
			if pk.Version == "" {
				pk.Version = p.PackageVersion
			}
			out = append(out, pk)
			break
		}
	}
	sortPackages(out)
	return out
}

// sortPackages orders by manager, name, architecture and version.
func sortPackages(p []Package) {
	sort.Slice(p, func(i, j int) bool {
		a, b := p[i], p[j]
		switch {
		case a.Manager != b.Manager:
			return a.Manager < b.Manager
		case a.Name != b.Name:
			return a.Name < b.Name
		case a.Arch != b.Arch:
			return a.Arch < b.Arch
		}
		return CompareVersions(a.Manager, a.Version, b.Version) < 0
	})
}

// osRelease is what etc/os-release says of the image's distribution.
type osRelease struct {
	ID, VersionID, PrettyName string
}

func readOSRelease(root string) (osRelease, error) {
	var r osRelease
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		hp, err := inRoot(root, p)
		if err != nil {
			return r, err
		}
		data, err := os.ReadFile(hp)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if !ok {
				continue
			}
			v = strings.Trim(v, `"'`)
			switch k {
			case "ID":
				r.ID = v
			case "VERSION_ID":
				r.VersionID = v
			case "PRETTY_NAME":
				r.PrettyName = v
			}
		}
		return r, nil
	}
	return r, nil
}

// inRoot is the host path of p inside the image's tree, its symbolic links
// resolved as the image would (an absolute link stays inside the tree).
func inRoot(root, p string) (string, error) {
	hp, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return "", fmt.Errorf("sbom: %s in %s: %w", p, root, err)
	}
	return hp, nil
}
