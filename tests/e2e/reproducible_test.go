package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"builder/internal/testreq"
	"builder/sbom"
	"builder/sbom/spdxschema"
)

// The same inputs give the same bytes: `debian vm` built as root with the
// shared cache, then by an ordinary user with a cache of its own, another
// temp dir and a clock two days ahead (faketime reaches every tool builder
// runs: mkfs, mtools, qemu-img, tar), gives identical raw and qcow2 files
// and an identical SBOM. The SBOM is valid SPDX 2.3 and lists exactly the
// packages dpkg-query lists in the image.
func TestReproducibleImages(t *testing.T) {
	needE2E(t)
	testreq.Tool(t, "faketime", "apt-get install faketime")
	uid := ensureRootlessUser(t)
	ctx := withTimeout(t, 60*time.Minute)
	elems := []string{"debian", "vm"}
	types := "raw,qcow2,tar"

	rootDir := sharedDir(t, 0)
	r := runBuilder(t, ctx, []string{"TMP_DIR=" + filepath.Join(rootDir, "tmp")},
		append(append([]string{"image"}, elems...), "-t", types, "-o", filepath.Join(rootDir, "debian"), "--image-cache", cacheDir)...)
	if r.code != 0 {
		t.Fatalf("root build failed")
	}

	binDir := sharedDir(t, 0)
	bin := filepath.Join(binDir, "builder")
	copyExecutable(t, builderBin, bin)
	userDir := sharedDir(t, uid)
	cache := filepath.Join(cacheDir, "rootless")
	os.MkdirAll(cache, 0o755)
	os.Chown(cache, uid, uid)
	// NO_FAKE_STAT: the clock moves, files keep their times (libfaketime
	// otherwise shifts every stat(), which fuse-overlayfs passes on).
	u := runAsWithEnv(t, ctx, []string{"TMP_DIR=" + filepath.Join(userDir, "tmp"), "NO_FAKE_STAT=1"}, "/usr/bin/faketime",
		append(append([]string{"-f", "+2d", bin, "image"}, elems...), "-t", types, "-o", filepath.Join(userDir, "debian"), "--image-cache", cache)...)
	if u.code != 0 {
		t.Fatalf("rootless build (clock +2 days) failed")
	}

	for _, ext := range []string{"raw", "qcow2", "spdx.json", "d/files.json"} {
		a, b := sha256File(t, filepath.Join(rootDir, "debian."+ext)), sha256File(t, filepath.Join(userDir, "debian."+ext))
		if a != b {
			t.Errorf("debian.%s differs: root %s, rootless +2d %s", ext, a, b)
		} else {
			t.Logf("debian.%s identical: %s", ext, a)
		}
	}
	if t.Failed() {
		firstDiff(t, filepath.Join(rootDir, "debian.spdx.json"), filepath.Join(userDir, "debian.spdx.json"))
		firstDiff(t, filepath.Join(rootDir, "debian.d/files.json"), filepath.Join(userDir, "debian.d/files.json"))
		compareListings(t, "root", tarEntries(t, filepath.Join(rootDir, "debian.tar")), "rootless +2d", tarEntries(t, filepath.Join(userDir, "debian.tar")))
	}

	// The SBOM: valid SPDX 2.3, and the image's own package database.
	spdxPath := filepath.Join(rootDir, "debian.spdx.json")
	data, err := os.ReadFile(spdxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := spdxschema.Validate(data); err != nil {
		t.Errorf("the SBOM is not valid SPDX 2.3: %v", err)
	}
	doc, err := sbom.Read(spdxPath)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, p := range doc.Packages() {
		listed = append(listed, p.Name+" "+p.Version+" "+p.Arch)
	}
	sort.Strings(listed)
	dpkg := dpkgQuery(t, filepath.Join(rootDir, "debian.tar"))
	if strings.Join(listed, "\n") != strings.Join(dpkg, "\n") {
		t.Errorf("the SBOM lists %d packages, dpkg-query in the image %d:\nSBOM:\n%s\ndpkg-query:\n%s", len(listed), len(dpkg), strings.Join(listed, "\n"), strings.Join(dpkg, "\n"))
	} else {
		t.Logf("the SBOM lists the %d packages dpkg-query lists", len(listed))
	}
}

// firstDiff logs the first lines where two text files differ.
func firstDiff(t *testing.T, a, b string) {
	t.Helper()
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	la, lb := strings.Split(string(da), "\n"), strings.Split(string(db), "\n")
	n := 0
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			t.Logf("%s line %d:\n  %.300s\n  %.300s", filepath.Base(a), i+1, x, y)
			if n++; n == 5 {
				return
			}
		}
	}
}

// dpkgQuery lists the installed packages of the image in tarball as
// dpkg-query itself reads its database: "name version arch", sorted.
func dpkgQuery(t *testing.T, tarball string) []string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", tarball, "-C", dir, "./var/lib/dpkg").CombinedOutput(); err != nil {
		t.Fatalf("extract the dpkg database: %v\n%s", err, out)
	}
	out, err := exec.Command("dpkg-query", "--admindir", filepath.Join(dir, "var/lib/dpkg"), "-W",
		"-f", "${db:Status-Status} ${Package} ${Version} ${Architecture}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		status, rest, _ := strings.Cut(line, " ")
		// What is on disk: installed, or half-way (its files are there).
		if status == "not-installed" || status == "config-files" {
			continue
		}
		pkgs = append(pkgs, rest)
	}
	sort.Strings(pkgs)
	return pkgs
}
