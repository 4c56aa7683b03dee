package e2e

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"builder/internal/testregistry"
	"builder/internal/testreq"
)

// The registry cache, as CI uses it: runner A (its own empty store) builds
// and pushes every step; runner B, the Containerfile image in an
// unprivileged podman container with another empty store, takes every step
// from the registry, runs no hook but extra-data.d (which copies host data
// and so always runs) and gets the same root filesystem, file for file
// (owners, modes, xattrs, contents); runner C, whose registry goes down in
// the middle of a transfer and whose push target is down, still builds.
func TestRegistryCacheAcrossRunners(t *testing.T) {
	needE2E(t)
	if _, err := exec.LookPath("podman"); err != nil {
		testreq.Missing(t, "podman is not installed (hack/test.sh installs it)")
	}
	ctx := withTimeout(t, 45*time.Minute)
	reg := testregistry.Start(t)
	repo := reg.Addr + "/builder/cache"
	elems := []string{"debian", "vm"}
	// Runners share steps when they build the same thing: the same
	// mirrors too (the container's apt names another security mirror than
	// this host's, and the sources are in the image).
	deb, sec := pkgHostMirrors(t)
	mirrors := []string{"DIB_DISTRIBUTION_MIRROR=" + deb, "DIB_DEBIAN_SECURITY_MIRROR=" + sec}

	// Runner A.
	dirA := sharedDir(t, 0)
	a := runBuilder(t, ctx, append([]string{"TMP_DIR=" + t.TempDir(), "CONTAINERS_REGISTRIES_CONF=" + reg.RegistriesConf}, mirrors...),
		append(append([]string{"image"}, elems...), "-t", "tar,qcow2", "-o", filepath.Join(dirA, "debian"),
			"--image-cache", filepath.Join(dirA, "cache"), "--cache-to", repo)...)
	if a.code != 0 {
		t.Fatalf("runner A failed")
	}
	if !regexp.MustCompile(`cache push .* \d+ images pushed`).MatchString(a.stdout) {
		t.Errorf("runner A does not say it pushed")
	}
	listA := tarEntries(t, filepath.Join(dirA, "debian.tar"))

	// Runner B: the Containerfile image, this builder binary.
	image := buildContainerImage(t, ctx)
	out := sharedDir(t, 1000)
	cache := sharedDir(t, 1000)
	conf := filepath.Join(out, "registries.conf")
	copyFile(t, reg.RegistriesConf, conf)
	args := append([]string{"run", "--rm", "--network", "host"}, ulimitArgs()...)
	args = append(args, "-v", out+":/work", "-v", cache+":/home/builder/.cache",
		"-v", builderBin+":/usr/local/bin/builder:ro", "-e", "CONTAINERS_REGISTRIES_CONF=/work/registries.conf", "-e", mirrors[0], "-e", mirrors[1], image)
	args = append(append(append(args, "image"), elems...), "-t", "tar,qcow2", "-o", "/work/debian", "--cache-from", repo)
	start := time.Now()
	b := runLogged(t, exec.CommandContext(ctx, "podman", args...), "[container] builder image debian vm --cache-from "+repo)
	t.Logf("runner B (container, empty store, warm registry): %s", time.Since(start).Round(time.Second))
	if b.code != 0 {
		t.Fatalf("runner B failed")
	}
	if !strings.Contains(b.stdout, "taken from the registry cache "+repo) {
		t.Errorf("runner B does not say it took steps from the registry")
	}
	if !regexp.MustCompile(`registry cache\s+[0-9.]+s\s+pulled`).MatchString(b.stdout) {
		t.Errorf("runner B did not take the base from the registry")
	}
	for _, phase := range ranPhases(b.stdout) {
		if phase != "extra-data.d" {
			t.Errorf("runner B ran %s; every step but extra-data.d should come from the registry", phase)
		}
	}
	compareListings(t, "runner A", listA, "runner B", tarEntries(t, filepath.Join(out, "debian.tar")))

	// Runner C: the registry goes down while the second large layer is on
	// its way (the base, the first, arrives whole); the push target is down.
	var mu sync.Mutex
	firstBig := -1
	proxy := reg.Cuttable(t, func(blob int, sent int64) bool {
		mu.Lock()
		defer mu.Unlock()
		if sent < 1<<20 {
			return false
		}
		if firstBig < 0 {
			firstBig = blob
		}
		return blob != firstBig
	})
	dirC, tmpC := sharedDir(t, 0), t.TempDir()
	c := runBuilder(t, ctx, append([]string{"TMP_DIR=" + tmpC, "CONTAINERS_REGISTRIES_CONF=" + reg.RegistriesConf}, mirrors...),
		append(append([]string{"image"}, elems...), "-o", filepath.Join(dirC, "debian"), "--image-cache", filepath.Join(dirC, "cache"),
			"--cache-from", proxy.Addr+"/builder/cache", "--cache-to", testregistry.DownAddr(t)+"/builder/cache")...)
	if c.code != 0 {
		t.Fatalf("runner C failed: a registry that goes down must only cost time")
	}
	if !strings.Contains(c.stdout, "cannot be used") {
		t.Errorf("runner C does not say that the registry went down")
	}
	if ran := ranPhases(c.stdout); !contains(ran, "install.d") {
		t.Errorf("runner C ran %v: after the registry went down, install.d should have run", ran)
	}
	if !fileExists(filepath.Join(dirC, "debian.qcow2")) {
		t.Errorf("runner C wrote no image")
	}
	if l := leftovers(t, tmpC, dirC); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// ranPhases are the hook phases a build's progress shows as run (not
// "cached").
func ranPhases(stdout string) []string {
	var ran []string
	re := regexp.MustCompile(`(?m)^    ([a-z-]+\.d)\s+[0-9.]+s(.*)$`)
	for _, m := range re.FindAllStringSubmatch(stdout, -1) {
		if !strings.Contains(m[2], "cached") {
			ran = append(ran, m[1])
		}
	}
	return ran
}

// tarListing lists every entry of a tar output: type, mode, owner, size,
// link target, extended attributes, content hash and, for all but
// directories, modification time.
func tarEntries(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	list := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		e := fmt.Sprintf("%c %o %d:%d size=%d", h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size)
		if h.Linkname != "" {
			e += " -> " + h.Linkname
		}
		var xattrs []string
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") || strings.HasPrefix(k, "SCHILY.acl.") {
				xattrs = append(xattrs, fmt.Sprintf("%s=%x", k, v))
			}
		}
		sort.Strings(xattrs)
		e += " " + strings.Join(xattrs, ",")
		if h.Typeflag == tar.TypeReg {
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				t.Fatal(err)
			}
			e += fmt.Sprintf(" sha256=%x", sum.Sum(nil))
		}
		if h.Typeflag != tar.TypeDir {
			e += " mtime=" + h.ModTime.UTC().Format(time.RFC3339Nano)
		}
		list[h.Name] = e
	}
	if len(list) < 1000 {
		t.Fatalf("%s lists only %d entries", path, len(list))
	}
	return list
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
