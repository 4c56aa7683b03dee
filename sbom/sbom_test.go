package sbom

import (
	"builder/sbom/spdxschema"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/github/go-spdx/v2/spdxexp"

	"builder/internal/testreq"
)

var created = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

func testInputs(name string) Inputs {
	return Inputs{
		Name:    name,
		Version: "2024.06.01",
		Created: created,
		Elements: []Element{
			{Name: "debian", Hash: "sha256:" + strings.Repeat("ab", 32), Origin: "builtin"},
			{Name: "vm", Hash: strings.Repeat("cd", 32), Origin: "builtin"},
			{Name: "my-element+x", Hash: "sha256:" + strings.Repeat("01", 32), Origin: "/srv/elements"},
		},
		Base:    "docker.io/library/debian@sha256:" + strings.Repeat("ef", 32),
		Outputs: []Output{{Path: "/out/" + name + ".qcow2", SHA256: strings.Repeat("12", 32)}, {Path: "/out/" + name + ".raw", SHA256: strings.Repeat("34", 32)}},
	}
}

// The packages are dpkg's own view of the image: the same names,
// architectures, versions and source packages as dpkg-query reads from
// the tree's database, and a licence exactly where the copyright file is
// machine-readable.
func TestDebianPackagesAreDpkgQuerys(t *testing.T) {
	root := debianTree(t)
	testreq.Tool(t, "dpkg-query", "dpkg")
	s, err := ScanTree(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dpkg-query", "--admindir", filepath.Join(root, "var/lib/dpkg"), "-W",
		"-f", `${Package}\t${Architecture}\t${Version}\t${db:Status-Status}\t${source:Package}\t${source:Version}\n`).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range lines(string(out)) {
		f := strings.Split(l, "\t")
		if installedStates[f[3]] {
			want = append(want, strings.Join([]string{f[0], f[1], f[2], f[4], f[5]}, " "))
		}
	}
	var got []string
	for _, p := range s.Packages {
		if p.Manager != "deb" {
			t.Errorf("%s: manager %q in a Debian tree", p.Name, p.Manager)
		}
		got = append(got, strings.Join([]string{p.Name, p.Arch, p.Version, p.Source, p.SourceVersion}, " "))
	}
	if len(want) < 50 {
		t.Fatalf("dpkg-query lists only %d installed packages: %q", len(want), want)
	}
	if miss, extra := setDiff(want, got), setDiff(got, want); len(miss)+len(extra) > 0 || len(got) != len(want) {
		t.Errorf("packages differ from dpkg-query's:\nmissing %q\nextra %q", miss, extra)
	}

	dep5 := 0
	for _, p := range s.Packages {
		data, _ := os.ReadFile(filepath.Join(root, "usr/share/doc", p.Name, "copyright"))
		first, _, _ := strings.Cut(string(data), "\n")
		machine := strings.HasPrefix(first, "Format:") && strings.Contains(first, "copyright-format")
		switch {
		case machine && p.License == noAssertion:
			t.Errorf("%s: DEP-5 copyright file but no licence", p.Name)
		case machine:
			dep5++
			if ok, bad := spdxexp.ValidateLicenses([]string{p.License}); !ok {
				t.Errorf("%s: licence %q is not an SPDX expression (%v)", p.Name, p.License, bad)
			}
		case !machine && data != nil && p.License != noAssertion && !strings.HasPrefix(string(data), "Format") && !strings.Contains(string(data), "\nFormat:"):
			t.Errorf("%s: licence %q from a copyright file that is not machine-readable", p.Name, p.License)
		}
		if p.Name == "zlib1g" && p.License != "Zlib" {
			t.Errorf("zlib1g: licence %q, want Zlib", p.License)
		}
		if p.Name == "libc6" {
			want := "pkg:deb/debian/libc6@" + purlEscape(p.Version, true) + "?arch=amd64&distro=debian-12"
			if got := packagePurl(p); got != want {
				t.Errorf("libc6 purl %s, want %s", got, want)
			}
		}
	}
	if dep5 < len(s.Packages)/2 {
		t.Errorf("only %d of %d packages got a licence from a DEP-5 file", dep5, len(s.Packages))
	}
	t.Logf("%d packages, %d with a DEP-5 licence, %d files", len(s.Packages), dep5, len(s.Files))
}

// The inventory is what find(1) sees of every entry, and the sha256 of
// regular files is sha256sum's.
func TestInventoryIsTheTree(t *testing.T) {
	root := debianTree(t)
	start := time.Now()
	files, err := Inventory(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inventory of %d entries in %v", len(files), time.Since(start))
	out, err := exec.Command("find", root, "-printf", `/%P\t%y\t%m\t%U\t%G\t%s\t%l\n`).Output()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{"f": "file", "d": "dir", "l": "symlink", "c": "char", "b": "block", "p": "fifo", "s": "socket"}
	want := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		f := strings.Split(l, "\t")
		p := strings.TrimSuffix(f[0], "/")
		if p == "" {
			p = "/"
		}
		want[p] = f[1:]
	}
	if len(want) != len(files) {
		t.Errorf("inventory has %d entries, find %d", len(files), len(want))
	}
	sampled := 0
	for i, f := range files {
		w, ok := want[f.Path]
		if !ok {
			t.Errorf("%s: not found by find", f.Path)
			continue
		}
		mode := fmt.Sprintf("%04s", w[1])
		if f.Type != types[w[0]] || f.Mode != mode || fmt.Sprint(f.UID) != w[2] || fmt.Sprint(f.GID) != w[3] || f.Target != w[5] {
			t.Errorf("%s: %+v, find says type %s mode %s owner %s:%s target %q", f.Path, f, w[0], mode, w[2], w[3], w[5])
		}
		if f.Type == "file" && fmt.Sprint(f.Size) != w[4] {
			t.Errorf("%s: size %d, find says %s", f.Path, f.Size, w[4])
		}
		if i > 0 && files[i-1].Path >= f.Path {
			t.Errorf("not sorted: %s before %s", files[i-1].Path, f.Path)
		}
		if f.Type == "file" && i%97 == 0 {
			sampled++
			data, err := os.ReadFile(filepath.Join(root, f.Path))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
				t.Errorf("%s: sha256 %s, the file's is %x", f.Path, f.SHA256, sum)
			}
		}
		if f.Type != "file" && (f.SHA256 != "" || f.Size != 0) {
			t.Errorf("%s: a %s with content fields: %+v", f.Path, f.Type, f)
		}
	}
	if sampled < 20 {
		t.Errorf("only %d files sampled", sampled)
	}
}

// The document validates against the official SPDX 2.3 JSON schema, every
// licence is an SPDX expression whose LicenseRefs the document defines,
// every identifier is unique and every relationship names one of them.
func TestDocumentValidatesAgainstSPDXSchema(t *testing.T) {
	root := debianTree(t)
	start := time.Now()
	doc, err := Generate(context.Background(), root, testInputs("debian"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated in %v", time.Since(start))
	data, err := doc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SPDX document %d bytes, inventory %d bytes", len(data), len(doc.InventoryJSON()))
	validateSchema(t, data)

	var raw struct {
		Packages []struct {
			SPDXID          string `json:"SPDXID"`
			LicenseDeclared string `json:"licenseDeclared"`
		} `json:"packages"`
		Relationships []struct {
			A    string `json:"spdxElementId"`
			B    string `json:"relatedSpdxElement"`
			Type string `json:"relationshipType"`
		} `json:"relationships"`
		Extracted []struct {
			ID string `json:"licenseId"`
		} `json:"hasExtractedLicensingInfos"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{"SPDXRef-DOCUMENT": true}
	for _, p := range raw.Packages {
		if ids[p.SPDXID] {
			t.Errorf("SPDXID %s used twice", p.SPDXID)
		}
		ids[p.SPDXID] = true
	}
	refs := map[string]bool{}
	for _, e := range raw.Extracted {
		refs[e.ID] = true
	}
	for _, p := range raw.Packages {
		if p.LicenseDeclared == "" || p.LicenseDeclared == noAssertion {
			continue
		}
		if ok, bad := spdxexp.ValidateLicenses([]string{p.LicenseDeclared}); !ok {
			t.Errorf("%s: %q is not an SPDX expression: %v", p.SPDXID, p.LicenseDeclared, bad)
		}
		for _, w := range strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(p.LicenseDeclared)) {
			if strings.HasPrefix(w, "LicenseRef-") && !refs[w] {
				t.Errorf("%s: %s is not defined in hasExtractedLicensingInfos", p.SPDXID, w)
			}
		}
	}
	kinds := map[string]int{}
	for _, r := range raw.Relationships {
		if !ids[r.A] || !ids[r.B] {
			t.Errorf("relationship %s %s %s names an unknown element", r.A, r.Type, r.B)
		}
		kinds[r.Type]++
	}
	if kinds["DESCRIBES"] != 1 || kinds["DESCENDANT_OF"] != 1 || kinds["GENERATED_FROM"] != 5 || kinds["CONTAINS"] != len(doc.Packages()) {
		t.Errorf("relationships %v (packages %d)", kinds, len(doc.Packages()))
	}
	if !strings.Contains(string(data), `"checksumValue": "`+strings.Repeat("ef", 32)) {
		t.Errorf("the base's digest is not recorded as its checksum")
	}
}

func validateSchema(t *testing.T, data []byte) {
	t.Helper()
	if err := spdxschema.Validate(data); err != nil {
		t.Fatalf("not valid SPDX 2.3: %v", err)
	}
}

// The schema check itself rejects what SPDX 2.3 forbids: a test of the
// test, so that a validator that accepts anything cannot pass unnoticed.
func TestSchemaRejectsInvalidDocuments(t *testing.T) {
	root := dpkgTree(t, t.TempDir(), makeDeb(t, debSpec{Name: "builder-probe", Version: "1.0-1", Arch: "all", Copyright: probeCopyright}))
	doc, err := Generate(context.Background(), root, testInputs("probe"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := doc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	validateSchema(t, data)
	// SPDX 2.3's schema has no patterns (2.3.1 added them): its required
	// fields, enums and closed objects are what it checks.
	for name, broken := range map[string]string{
		"dashed purpose":       strings.Replace(string(data), `"OPERATING_SYSTEM"`, `"OPERATING-SYSTEM"`, 1),
		"unknown field":        strings.Replace(string(data), `"filesAnalyzed": false,`, `"filesAnalyzed": false, "colour": "blue",`, 1),
		"no name":              strings.Replace(string(data), `"name": "probe",`, ``, 1),
		"unknown relation":     strings.Replace(string(data), `"relationshipType": "CONTAINS"`, `"relationshipType": "HOLDS"`, 1),
		"unknown algorithm":    strings.Replace(string(data), `"algorithm": "SHA256"`, `"algorithm": "SHA-256"`, 1),
		"unknown ref category": strings.Replace(string(data), `"PACKAGE-MANAGER"`, `"PACKAGE_MANAGER"`, 1),
	} {
		if broken == string(data) {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		if err := validateErr(broken); err == nil {
			t.Errorf("%s: the schema accepted it", name)
		}
	}
}

func validateErr(data string) error {
	return spdxschema.Validate([]byte(data))
}

// The same tree and inputs give the same bytes, wherever the tree is; the
// creation time is the only clock in the document.
func TestSameTreeSameBytes(t *testing.T) {
	root := debianTree(t)
	ctx := context.Background()
	a, err := Generate(ctx, root, testInputs("debian"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(ctx, root, testInputs("debian"))
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := a.JSON()
	jb, _ := b.JSON()
	if !bytes.Equal(ja, jb) || !bytes.Equal(a.InventoryJSON(), b.InventoryJSON()) {
		t.Fatalf("two runs differ")
	}
	in := testInputs("debian")
	in.Created = created.Add(time.Second)
	c, err := Generate(ctx, root, in)
	if err != nil {
		t.Fatal(err)
	}
	if jc, _ := c.JSON(); bytes.Equal(ja, jc) || c.SPDX.DocumentNamespace == a.SPDX.DocumentNamespace {
		t.Errorf("another creation time gives the same document or namespace")
	}

	// Another copy of a tree, made at another time in another place.
	deb := makeDeb(t, debSpec{Name: "builder-probe", Version: "1.0-1", Arch: "all", Copyright: probeCopyright, Files: map[string]string{"usr/share/builder-probe/v": "1\n"}})
	one := dpkgTree(t, filepath.Join(t.TempDir(), "one"), deb)
	time.Sleep(1100 * time.Millisecond)
	two := dpkgTree(t, filepath.Join(t.TempDir(), "elsewhere", "two"), deb)
	d1, err := Generate(ctx, one, testInputs("probe"))
	if err != nil {
		t.Fatal(err)
	}
	d2, err := Generate(ctx, two, testInputs("probe"))
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := d1.JSON()
	j2, _ := d2.JSON()
	if !bytes.Equal(j1, j2) || !bytes.Equal(d1.InventoryJSON(), d2.InventoryJSON()) {
		t.Errorf("two installs of the same package in two places differ:\n%s\n%s", j1, j2)
	}
}

// WriteFile and Read give back the packages and files; an inventory that
// is not the one the document names is noticed, not used.
func TestWriteReadRoundTrip(t *testing.T) {
	deb := makeDeb(t, debSpec{Name: "builder-probe", Version: "1:1.0-1", Arch: "all", Source: "probe-src (1:1.0-0.1)", Copyright: probeCopyright,
		Files: map[string]string{"usr/share/builder-probe/v": "1\n"}})
	root := dpkgTree(t, t.TempDir(), deb)
	doc, err := Generate(context.Background(), root, testInputs("probe"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "probe.spdx.json")
	if err := doc.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%s holds %d entries, want probe.spdx.json and probe.d", dir, len(ents))
	}
	back, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.InventoryNote != "" || len(back.Files) != len(doc.Files) {
		t.Fatalf("inventory not read back: %q, %d files", back.InventoryNote, len(back.Files))
	}
	pkgs := back.Packages()
	if len(pkgs) != 1 {
		t.Fatalf("packages read back: %+v", pkgs)
	}
	p := pkgs[0]
	if p.Name != "builder-probe" || p.Version != "1:1.0-1" || p.Arch != "all" || p.License != "(GPL-2.0-or-later OR Artistic-1.0) AND MIT AND LicenseRef-public-domain" {
		t.Errorf("read back %+v", p)
	}
	data, _ := os.ReadFile(path)
	for _, want := range []string{
		`"referenceLocator": "pkg:deb/debian/builder-probe@1:1.0-1?arch=all&distro=debian-12"`,
		`"sourceInfo": "built from source package probe-src 1:1.0-0.1"`,
		`"supplier": "Person: Builder Tests (tests@example.org)"`,
		`"homepage": "https://example.org/builder-probe"`,
		`"creators": [` + "\n" + `   "Tool: builder-`,
		`"created": "2024-06-01T12:00:00Z"`,
		`"licenseId": "LicenseRef-public-domain"`,
		`"packageFileName": "probe.qcow2"`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("document lacks %s", want)
		}
	}

	// The inventory of another build beside this document.
	inv := InventoryPath(path)
	os.WriteFile(inv, bytes.Replace(doc.InventoryJSON(), []byte(`"mode":"0644"`), []byte(`"mode":"0600"`), 1), 0o644)
	back, err = Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Files != nil || !strings.Contains(back.InventoryNote, "belongs to another build") {
		t.Errorf("a foreign inventory was used: %q", back.InventoryNote)
	}
	os.Remove(inv)
	if back, err = Read(path); err != nil || back.Files != nil || !strings.Contains(back.InventoryNote, "no file inventory") {
		t.Errorf("without an inventory: %v %q", err, back.InventoryNote)
	}
}

// A real rpm database, made by rpm and read from a read-only tree: the
// packages rpm -qa lists, with epoch, release, architecture, source rpm
// and the License tag as SPDX.
func TestRPMDatabase(t *testing.T) {
	testreq.Root(t, "mounting the tree read-only")
	for _, tool := range []string{"rpm", "rpmbuild"} {
		testreq.Tool(t, tool, "rpm")
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0o755)
	os.WriteFile(filepath.Join(home, ".rpmmacros"), []byte("%_dbpath /var/lib/rpm\n"), 0o644)
	var rpms []string
	for _, spec := range []string{
		"Name: builder-probe\nEpoch: 3\nVersion: 1.0\nRelease: 2.fc41\nLicense: GPLv2+ and MIT\nBuildArch: noarch\nURL: https://example.org/probe\nVendor: Builder Tests\n",
		"Name: builder-probe-lib\nVersion: 2.5~rc1\nRelease: 1\nLicense: Apache-2.0 OR MIT\n",
	} {
		name := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(spec, "\n", 2)[0], "Name:"))
		f := filepath.Join(dir, name+".spec")
		os.WriteFile(f, []byte(spec+"Summary: probe\n%description\nprobe\n%install\nmkdir -p %{buildroot}/usr/share/"+name+"\necho hi > %{buildroot}/usr/share/"+name+"/a\n%files\n/usr/share/"+name+"/a\n"), 0o644)
		cmd := exec.Command("rpmbuild", "--define", "_topdir "+filepath.Join(dir, "build"), "--define", "_rpmdir "+filepath.Join(dir, "rpms"), "--define", "debug_package %{nil}", "-bb", f)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("rpmbuild: %v\n%s", err, out)
		}
	}
	found, _ := filepath.Glob(filepath.Join(dir, "rpms", "*", "*.rpm"))
	rpms = append(rpms, found...)
	if len(rpms) != 2 {
		t.Fatalf("rpms: %v", rpms)
	}
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("NAME=Fedora\nID=fedora\nVERSION_ID=41\n"), 0o644)
	rpmIn := func(args ...string) string {
		cmd := exec.Command("rpm", append([]string{"--root", tree, "--dbpath", "/var/lib/rpm"}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("rpm %v: %v", args, err)
		}
		return string(out)
	}
	rpmIn("--initdb")
	rpmIn(append([]string{"-i", "--nodeps", "--noscripts", "--ignorearch"}, rpms...)...)
	want := lines(rpmIn("-qa", "--qf", `%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\n`))

	ro := filepath.Join(dir, "ro")
	os.MkdirAll(ro, 0o755)
	if out, err := exec.Command("mount", "--bind", tree, ro).CombinedOutput(); err != nil {
		testreq.Missing(t, "bind mount: %v %s", err, out)
	}
	defer exec.Command("umount", ro).Run()
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", ro).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v %s", err, out)
	}
	s, err := ScanTree(context.Background(), ro)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range s.Packages {
		got = append(got, p.Name+" "+p.Version+" "+p.Arch)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("packages %q, rpm -qa says %q", got, want)
	}
	byName := map[string]Package{}
	for _, p := range s.Packages {
		byName[p.Name] = p
	}
	probe, lib := byName["builder-probe"], byName["builder-probe-lib"]
	if probe.License != "GPL-2.0-or-later AND MIT" || probe.Source != "builder-probe" || probe.SourceVersion != "1.0-2.fc41" || probe.Maintainer != "Builder Tests" {
		t.Errorf("builder-probe: %+v", probe)
	}
	if u := packagePurl(probe); u != "pkg:rpm/fedora/builder-probe@1.0-2.fc41?arch=noarch&distro=fedora-41&epoch=3" {
		t.Errorf("purl %s", u)
	}
	if lib.License != "Apache-2.0 OR MIT" || lib.Arch != "x86_64" || lib.Version != "2.5~rc1-1" {
		t.Errorf("builder-probe-lib: %+v", lib)
	}
	doc, err := s.Document(testInputs("fedora"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := doc.JSON()
	validateSchema(t, data)
	if !strings.Contains(doc.SPDX.DocumentComment, "(rpm)") {
		t.Errorf("comment %q", doc.SPDX.DocumentComment)
	}
}

// Version order is the package manager's: checked against dpkg
// --compare-versions and rpm's own rpm.vercmp.
func TestVersionOrderIsThePackageManagers(t *testing.T) {
	testreq.Tool(t, "dpkg", "dpkg")
	testreq.Tool(t, "rpm", "rpm")
	pairs := [][2]string{
		{"1.0", "1.0"}, {"1.0", "1.1"}, {"1.0~rc1", "1.0"}, {"1:1.0", "2.0"}, {"2.36-9+deb12u4", "2.36-9+deb12u10"},
		{"1.0-1", "1.0-1.1"}, {"1.0a", "1.0"}, {"1.0+b1", "1.0"}, {"0:1.0", "1.0"}, {"10", "9"}, {"1.002", "1.2"},
		{"1.0~~", "1.0~"}, {"2.5~rc1-1", "2.5-1"}, {"1.0-2.fc41", "1.0-10.fc41"}, {"5.1.8-6.el9", "5.1.8-6.el9_1"},
		{"1.0^git1-1", "1.0-1"}, {"a", "1"}, {"1.0.0", "1.0"}, {"3:1.0-2", "2:5.0-1"},
	}
	for _, p := range pairs {
		var deb int
		for _, rel := range []struct {
			op string
			v  int
		}{{"lt", -1}, {"eq", 0}, {"gt", 1}} {
			if exec.Command("dpkg", "--compare-versions", p[0], rel.op, p[1]).Run() == nil {
				deb = rel.v
			}
		}
		if got := CompareVersions("deb", p[0], p[1]); got != deb {
			t.Errorf("deb %s vs %s: %d, dpkg says %d", p[0], p[1], got, deb)
		}
		// rpm.vercmp compares whole EVR strings as rpm does.
		out, err := exec.Command("rpm", "--eval", fmt.Sprintf(`%%{lua: print(rpm.vercmp(%q, %q))}`, p[0], p[1])).Output()
		if err != nil {
			t.Fatal(err)
		}
		var r int
		fmt.Sscan(string(out), &r)
		if got := CompareVersions("rpm", p[0], p[1]); got != r {
			t.Errorf("rpm %s vs %s: %d, rpm says %d", p[0], p[1], got, r)
		}
	}
}

func TestLicenseExpressions(t *testing.T) {
	for in, want := range map[string]string{
		"GPL-2+":                        "GPL-2.0-or-later",
		"GPL-2":                         "GPL-2.0-only",
		"GPLv3+":                        "GPL-3.0-or-later",
		"LGPL-2.1+":                     "LGPL-2.1-or-later",
		"LGPL":                          "LGPL-2.0-or-later",
		"GFDL-NIV-1.3+":                 "GFDL-1.3-no-invariants-or-later",
		"BSD-3-clause":                  "BSD-3-Clause",
		"Expat":                         "MIT",
		"Apache-2":                      "Apache-2.0",
		"ZLIB":                          "Zlib",
		"GPL-1+ or Artistic":            "GPL-1.0-or-later OR Artistic-1.0",
		"GPL-1+ or Artistic, and Expat": "(GPL-1.0-or-later OR Artistic-1.0) AND MIT",
		"GPL-2 with Linux-syscall-note exception": "GPL-2.0-only WITH Linux-syscall-note",
		"GPL-2+ with Texinfo exception":           "GPL-2.0-or-later WITH Texinfo-exception",
		"GPL-3+ with Bison exception":             "LicenseRef-GPL-3plus-with-Bison-exception",
		"public-domain":                           "LicenseRef-public-domain",
		"MIT/X11":                                 "LicenseRef-MIT-X11",
		"MPL-1.1+":                                "MPL-1.1+",
		"GPLv2+ and (LGPLv2+ or MIT)":             "GPL-2.0-or-later AND (LGPL-2.0-or-later OR MIT)",
		"ASL 2.0":                                 "Apache-2.0",
		"Public Domain":                           "LicenseRef-Public-Domain",
		"":                                        noAssertion,
	} {
		got, refs := licenseExpression(in)
		if got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
		if ok, _ := spdxexp.ValidateLicenses([]string{got}); got != noAssertion && !ok {
			t.Errorf("%q: %q is not valid", in, got)
		}
		for _, r := range refs {
			if !strings.Contains(got, r.ID) {
				t.Errorf("%q: ref %s not in %q", in, r.ID, got)
			}
		}
	}
	if got, _ := rpmLicense("MIT AND (Apache-2.0 OR BSD-3-Clause)"); got != "MIT AND (Apache-2.0 OR BSD-3-Clause)" {
		t.Errorf("an SPDX rpm licence changed: %q", got)
	}
	// A free text copyright file gives no licence.
	if got, _ := dep5License([]byte("This is Debian's glibc.\n\nCopyright (C) 1991 FSF\n")); got != noAssertion {
		t.Errorf("free text: %q", got)
	}
}
