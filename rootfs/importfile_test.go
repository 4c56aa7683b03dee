package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A tarball becomes an image containers/image reads (its labels, its
// files), with the layer a libimage import of the same bytes gets, under
// containers/image's ID for it; the same tarball again gives the same
// image, not a second layer; a digest that does not match leaves nothing.
func TestImportTarFile(t *testing.T) {
	tar := testBaseTar(t)
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenStore(ctx, StoreOptions{Dir: filepath.Join(dir, "store"), RunRoot: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	diffID := tarDigest(t, tar)
	stream := func(name string) (string, error) {
		return s.ImportTarFile(tar, diffID, TarImport{Name: name, Epoch: 1700000000, Labels: map[string]string{LabelEpoch: "1700000000"}})
	}
	layerCount := func() int {
		ls, err := s.st.Layers()
		if err != nil {
			t.Fatal(err)
		}
		return len(ls)
	}

	id, err := stream("localhost/test/streamed:1")
	if err != nil {
		t.Fatal(err)
	}
	if epoch, err := s.BaseEpoch(ctx, Image{Name: "localhost/test/streamed:1", Key: "k"}); err != nil || epoch != 1700000000 {
		t.Errorf("the epoch label read back: %d, %v", epoch, err)
	}
	root, release, err := s.MountImage("localhost/test/streamed:1")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "etc/debian_version"))
	release()
	if err != nil || !strings.HasPrefix(string(data), "12") {
		t.Errorf("etc/debian_version in the image: %q %v", data, err)
	}

	// The tarball import of the same bytes has the same layer digest.
	if _, err := s.ImportTarball(ctx, tar, "localhost/test/tarball:1", "amd64"); err != nil {
		t.Fatal(err)
	}
	digestOf := func(name string) string {
		img, err := s.st.Image(name)
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.st.Layer(img.TopLayer)
		if err != nil {
			t.Fatal(err)
		}
		return l.UncompressedDigest.String()
	}
	if a, b := digestOf("localhost/test/streamed:1"), digestOf("localhost/test/tarball:1"); a != b || a == "" {
		t.Errorf("streamed layer %s, tarball's %s", a, b)
	}

	before := layerCount()
	again, err := stream("localhost/test/streamed:2")
	if err != nil || again != id {
		t.Errorf("the same stream again: image %s (%v), want %s", again, err, id)
	}
	if n := layerCount(); n != before {
		t.Errorf("the same stream again left %d layers, want %d", n, before)
	}
	if !s.HasImage("localhost/test/streamed:2") || !s.HasImage("localhost/test/streamed:1") {
		t.Errorf("the image lacks one of its names")
	}

	// Two builds applying the same tarball at once to a store without it
	// both get the image, and the store one layer.
	s2, err := OpenStore(ctx, StoreOptions{Dir: filepath.Join(dir, "store2"), RunRoot: filepath.Join(dir, "run2")})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	type result struct {
		id  string
		err error
	}
	results := make(chan result, 2)
	for _, name := range []string{"localhost/test/race:1", "localhost/test/race:2"} {
		go func(name string) {
			id, err := s2.ImportTarFile(tar, diffID, TarImport{Name: name, Epoch: 1600000000})
			results <- result{id, err}
		}(name)
	}
	a, b := <-results, <-results
	if a.err != nil || b.err != nil || a.id != b.id {
		t.Errorf("two imports at once: %s (%v) and %s (%v)", a.id, a.err, b.id, b.err)
	}
	if ls, err := s2.st.Layers(); err != nil || len(ls) != 1 {
		t.Errorf("two imports at once left %d layers (%v), want 1", len(ls), err)
	}

	// The layer has containers/image's ID for a base layer of that
	// digest: a commit on it finds it instead of copying it.
	img, err := s.st.Image("localhost/test/streamed:1")
	if err != nil || img.TopLayer != diffID.Encoded() {
		t.Errorf("the layer's ID is %s (%v), want %s", img.TopLayer, err, diffID.Encoded())
	}

	// A wrong digest (a tarball changed after it was digested) is refused
	// and leaves nothing.
	if _, err := s.ImportTarFile(tar, digest.FromString("not this"), TarImport{Name: "localhost/test/wrong:1", Epoch: 1}); err == nil {
		t.Errorf("a tarball with another digest was imported")
	}
	if s.HasImage("localhost/test/wrong:1") {
		t.Errorf("a refused tarball became an image")
	}
	if n := layerCount(); n != before {
		t.Errorf("a refused tarball left %d layers, want %d", n, before)
	}
}
