package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// The download cache is never spoiled: a good download is reused, a
// corrupted or truncated cache entry is detected and fetched again, and a
// download that does not match its published checksum is not cached.
func TestFetchVerifiesAndRepairsTheCache(t *testing.T) {
	body := []byte(strings.Repeat("cloud image bytes\n", 1000))
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	var gets atomic.Int32
	sums := fmt.Sprintf("%s  image.qcow2\n", good)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/img/image.qcow2":
			gets.Add(1)
			w.Write(body)
		case "/img/SHA256SUMS":
			w.Write([]byte(sums))
		case "/short/image.qcow2":
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Write(body[:100]) // the connection ends early
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cache := t.TempDir()
	ctx := context.Background()

	p, err := Fetch(ctx, srv.URL+"/img/image.qcow2", cache, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != string(body) {
		t.Fatalf("downloaded content differs")
	}
	if _, err := Fetch(ctx, srv.URL+"/img/image.qcow2", cache, "", nil); err != nil || gets.Load() != 1 {
		t.Fatalf("a good cache entry was not reused (downloads %d, err %v)", gets.Load(), err)
	}
	// Corrupt the cached copy: detected, fetched again.
	os.WriteFile(p, []byte("garbage"), 0o644)
	if _, err := Fetch(ctx, srv.URL+"/img/image.qcow2", cache, "", nil); err != nil || gets.Load() != 2 {
		t.Fatalf("a corrupted cache entry was not fetched again (downloads %d, err %v)", gets.Load(), err)
	}
	if got, _ := os.ReadFile(p); string(got) != string(body) {
		t.Fatalf("repaired entry differs")
	}
	// The published checksum disagrees: nothing is cached.
	sums = strings.Repeat("0", 64) + "  image.qcow2\n"
	cache2 := t.TempDir()
	if _, err := Fetch(ctx, srv.URL+"/img/image.qcow2", cache2, "", nil); err == nil || !strings.Contains(err.Error(), "expected") {
		t.Fatalf("checksum mismatch: err = %v", err)
	}
	// A truncated transfer is not cached either.
	if _, err := Fetch(ctx, srv.URL+"/short/image.qcow2", cache2, "", nil); err == nil {
		t.Fatalf("truncated download accepted")
	}
	ents, _ := os.ReadDir(filepath.Join(cache2, "downloads"))
	if len(ents) != 0 {
		t.Errorf("bad downloads left in the cache: %v", ents)
	}
	if _, err := Fetch(ctx, "ftp://x/y", cache, "", nil); err == nil {
		t.Errorf("non-http URL accepted")
	}
}
