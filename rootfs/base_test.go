package rootfs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The base key follows the mirror: same Release files, same key; a new
// Release (the mirror published updates), a new key. Offline reuses the
// last key recorded for the recipe.
func TestBaseKeyFollowsMirrorState(t *testing.T) {
	var release atomic.Value
	release.Store("Date: 1\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dists/bookworm/InRelease" {
			w.Write([]byte(release.Load().(string)))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	b := Bootstrap{Method: "mmdebstrap", Suite: "bookworm", Variant: "minbase", Arch: "amd64",
		Sources: []string{"deb " + srv.URL + " bookworm main"}, Packages: []string{"systemd-sysv"}}
	o := BaseOptions{StateDir: t.TempDir()}
	ctx := context.Background()
	k1, _, err := b.BaseKey(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	k1again, _, _ := b.BaseKey(ctx, o)
	if k1 != k1again {
		t.Fatalf("same mirror state, different keys")
	}
	release.Store("Date: 2\n")
	k2, _, _ := b.BaseKey(ctx, o)
	if k2 == k1 {
		t.Fatalf("mirror changed but the key did not")
	}
	b2 := b
	b2.Packages = []string{"systemd-sysv", "vim"}
	if k3, _, _ := b2.BaseKey(ctx, o); k3 == k2 {
		t.Fatalf("package list changed but the key did not")
	}
	// Offline without a recorded base is an error that says what to do.
	if _, _, err := b.BaseKey(ctx, BaseOptions{StateDir: o.StateDir, Offline: true}); err == nil || !strings.Contains(err.Error(), "online") {
		t.Fatalf("offline with nothing built: err = %v", err)
	}
	// A mirror that does not answer names itself.
	b3 := b
	b3.Sources = []string{"deb " + srv.URL + "/nothing bookworm main"}
	if _, _, err := b3.BaseKey(ctx, o); err == nil || !strings.Contains(err.Error(), "check mirror") {
		t.Fatalf("unreachable mirror: err = %v", err)
	}
	if err := (Bootstrap{Method: "debootstrap", Suite: "x", Sources: []string{"deb u s"}}).validate(); err == nil {
		t.Fatalf("unknown method accepted")
	}
}
