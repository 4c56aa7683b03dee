package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"builder/internal/testregistry"
)

var minbaseMu sync.Mutex

// minbaseTar is a Debian minbase made with mmdebstrap, kept in the test cache.
func minbaseTar(t *testing.T) string {
	t.Helper()
	// Tests of both lanes ask for it.
	minbaseMu.Lock()
	defer minbaseMu.Unlock()
	p := filepath.Join(cacheDir, "e2e-minbase-bookworm.tar")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	os.MkdirAll(cacheDir, 0o755)
	tmp := p + ".tmp"
	if out, err := exec.Command("mmdebstrap", "--variant=minbase", "--format=tar", "bookworm", tmp).CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A Debian base pulled from a registry (a local one, as no public registry
// is reachable here) becomes a bootable cloud image.
func TestBaseFromRegistry(t *testing.T) {
	needE2E(t)
	reg := testregistry.Start(t)
	addr, conf := reg.Addr, reg.RegistriesConf
	ref := addr + "/builder-e2e/debian:bookworm"
	if out, err := exec.Command("skopeo", "copy", "--quiet", "--dest-tls-verify=false",
		"tarball:"+minbaseTar(t), "docker://"+ref).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	out, tmp := t.TempDir(), t.TempDir()
	img := filepath.Join(out, "from-registry.qcow2")
	r := runBuilder(t, withTimeout(t, 30*time.Minute),
		[]string{"TMP_DIR=" + tmp, "CONTAINERS_REGISTRIES_CONF=" + conf, "DIB_DEBIAN_CONTAINER_IMAGE=" + ref},
		"image", "debian", "vm", "-o", img, "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	if !strings.Contains(r.stdout, "container image "+ref) {
		t.Errorf("the base did not come from the registry")
	}
	rep := bootTest(t, img, "--require-cloud-init")
	if !rep.CloudInit.Finished {
		t.Errorf("cloud-init did not finish")
	}
	if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// DIB_LOCAL_IMAGE: a qcow2 builder made earlier is the base of a new image
// that boots; a qcow2 with a backing file is refused; a downloaded image is
// verified and a corrupted cache entry is fetched again, never used.
func TestBaseFromLocalImage(t *testing.T) {
	needE2E(t)
	out, tmp := t.TempDir(), t.TempDir()
	env := []string{"TMP_DIR=" + tmp}
	first := filepath.Join(out, "first.qcow2")
	if r := runBuilder(t, withTimeout(t, 30*time.Minute), env, "image", "debian-minimal", "vm", "-o", first, "--image-cache", cacheDir); r.code != 0 {
		t.Fatalf("first build failed")
	}
	second := filepath.Join(out, "second.qcow2")
	r := runBuilder(t, withTimeout(t, 30*time.Minute), append(env, "DIB_LOCAL_IMAGE="+first),
		"image", "debian", "vm", "-o", second, "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build from DIB_LOCAL_IMAGE failed")
	}
	bootTest(t, second, "--require-cloud-init")

	overlay := filepath.Join(out, "overlay.qcow2")
	if o, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", first, overlay).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, o)
	}
	r = runBuilder(t, withTimeout(t, 10*time.Minute), append(env, "DIB_LOCAL_IMAGE="+overlay),
		"image", "debian", "vm", "-o", filepath.Join(out, "refused"), "--image-cache", cacheDir)
	if r.code == 0 || !strings.Contains(r.stderr, "has a backing file") {
		t.Errorf("a qcow2 with a backing file was not refused with a clear message")
	}

	// Downloaded: verified against the published SHA256SUMS and cached.
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	var gets int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/images/first.qcow2":
			gets++
			w.Write(data)
		case "/images/SHA256SUMS":
			fmt.Fprintf(w, "%s  first.qcow2\n", hex.EncodeToString(sum[:]))
		default:
			http.NotFound(w, req)
		}
	}))
	defer srv.Close()
	cache := t.TempDir() // its own cache: the download must happen
	urlEnv := append(env, "DIB_LOCAL_IMAGE="+srv.URL+"/images/first.qcow2")
	build := func() result {
		return runBuilder(t, withTimeout(t, 30*time.Minute), urlEnv, "image", "debian-minimal", "vm", "-v",
			"-o", filepath.Join(out, "from-url"), "--image-cache", cache)
	}
	if r := build(); r.code != 0 || gets != 1 {
		t.Fatalf("build from URL: exit %d, downloads %d", r.code, gets)
	}
	cached, _ := filepath.Glob(filepath.Join(cache, "downloads", "*-first.qcow2"))
	if len(cached) != 1 {
		t.Fatalf("download not cached: %v", cached)
	}
	f, _ := os.OpenFile(cached[0], os.O_WRONLY, 0)
	f.WriteAt([]byte("corrupted!"), 4096)
	f.Close()
	r = build()
	if r.code != 0 || gets != 2 || !strings.Contains(r.stdout, "does not match its checksum") {
		t.Errorf("corrupted cache entry: exit %d, downloads %d (want 2)", r.code, gets)
	}
	if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}
