package rootfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"go.podman.io/buildah"

	"builder/internal/testreq"
)

func TestMain(m *testing.M) {
	if buildah.InitReexec() {
		return
	}
	logrus.SetLevel(logrus.WarnLevel)
	os.Exit(m.Run())
}

var (
	baseOnce sync.Once
	baseTar  string
	baseErr  error
)

// testBaseTar is a minimal Debian (mmdebstrap minbase), made once and kept
// in the test cache: containers need a real userland with bash.
func testBaseTar(t *testing.T) string {
	t.Helper()
	testreq.Short(t, "needs a Debian base made with mmdebstrap: skipped with -short")
	if os.Geteuid() != 0 {
		testreq.Missing(t, "container tests run as root")
	}
	baseOnce.Do(func() {
		cache := os.Getenv("BUILDER_TEST_CACHE")
		if cache == "" {
			cache = "/var/tmp/builder-test-cache"
		}
		baseTar = filepath.Join(cache, "rootfs-test-minbase.tar")
		if _, err := os.Stat(baseTar); err == nil {
			return
		}
		if err := os.MkdirAll(cache, 0o755); err != nil {
			baseErr = err
			return
		}
		tmp := baseTar + ".tmp"
		out, err := exec.Command("mmdebstrap", "--variant=minbase", "--format=tar", "bookworm", tmp).CombinedOutput()
		if err != nil {
			baseErr = fmt.Errorf("mmdebstrap: %v\n%s", err, out)
			return
		}
		baseErr = os.Rename(tmp, baseTar)
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	return baseTar
}

// testStore opens a store in a temp dir with the test base imported.
func testStore(t *testing.T) (*Store, Image) {
	t.Helper()
	tar := testBaseTar(t)
	dir := t.TempDir()
	ctx := context.Background()
	s, err := OpenStore(ctx, StoreOptions{Dir: filepath.Join(dir, "store"), RunRoot: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		names, _ := s.ContainerNames()
		if len(names) > 0 {
			t.Errorf("containers left in the store: %v", names)
		}
		s.Close()
	})
	// Applied as a bootstrapped base is: every test's containers, commits
	// and pushes run on such an image.
	if _, err := s.ImportTarFile(tar, tarDigest(t, tar), TarImport{Name: "localhost/test/base:1", Epoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	return s, Image{Name: "localhost/test/base:1", Key: "test-base"}
}

// tarDigest is the sha256 digest of a tarball.
func tarDigest(t *testing.T, path string) digest.Digest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := digest.Canonical.FromReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
