package glance

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// publishedAndNext makes two images of gib GiB, publishes the first under
// a new name, and returns that name, the first image's hash and the
// second image with its hash.
func publishedAndNext(t *testing.T, c *cloud, prefix string, gib float64) (name, h1, v2, h2 string) {
	t.Helper()
	dir := t.TempDir()
	name = unique(prefix)
	v1, h1 := makeImage(t, dir, "v1", prefix+"-1", gib, false)
	v2, h2 = makeImage(t, dir, "v2", prefix+"-2", gib, false)
	if r := c.publish(t, v1, "--name", name, "--no-boot-test"); r.err != nil {
		t.Fatal(r.err)
	}
	return name, h1, v2, h2
}

// A corrupt image is refused before anything is created in Glance.
func TestCorruptFileIsRefused(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	c := noauthCloud(t, "")
	name, h1, v2, _ := publishedAndNext(t, c, "corrupt", 0.1)
	// Break v2's L1 table, as a crash during the build could.
	writeAt(t, v2, 3*65536, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	before := c.snapshot(t, name)
	r := c.publish(t, v2, "--name", name, "--no-boot-test")
	if r.err == nil || !strings.Contains(r.stderr, "fails qemu-img check") {
		t.Fatalf("corrupt image: want a qemu-img check failure, got %v", r.err)
	}
	if after := c.snapshot(t, name); after != before {
		t.Errorf("Glance changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	c.resolve(t, name, "public", h1)
}

// Data damaged between builder and Glance: Glance's recorded hash does not
// match the file, the upload is removed, the name is untouched.
func TestDamagedUploadIsRejected(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	proxy := newFaultProxy(t, noauth.glanceURL)
	c := noauthCloud(t, proxy.srv.URL)
	name, h1, v2, _ := publishedAndNext(t, c, "damaged", 0.1)
	before := c.snapshot(t, name)
	proxy.On(func(r *http.Request, _ []byte) fault {
		if r.Method == "PUT" && strings.HasSuffix(r.URL.Path, "/file") {
			return corrupt
		}
		return pass
	})
	r := c.publish(t, v2, "--name", name, "--no-boot-test")
	if r.err == nil || !strings.Contains(r.stderr, "damaged on the way") || !strings.Contains(r.stdout, "removed the unfinished upload") {
		t.Fatalf("damaged upload: %v", r.err)
	}
	if after := c.snapshot(t, name); after != before {
		t.Errorf("Glance changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	c.resolve(t, name, "public", h1)
}

// The client is killed (SIGKILL) while Glance has half the upload: the
// name keeps resolving to the previous image; the next run removes the
// half-done upload and finishes the publish.
func TestClientKilledDuringUpload(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	proxy := newFaultProxy(t, noauth.glanceURL)
	c := noauthCloud(t, proxy.srv.URL)
	name, h1, v2, h2 := publishedAndNext(t, c, "killed-client", 0.2)

	proxy.On(isUpload)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := runHelper(ctx, c.env, "publish", "--lock-dir", t.TempDir(), v2, "--name", name, "--no-boot-test")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFired(t, proxy, "stall")
	c.resolve(t, name, "public", h1, h2) // mid-upload: still the old one
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	proxy.Release()
	t.Logf("killed publish said:\n%s", out.String())

	cur := one(t, "public after the kill", c.resolve(t, name, "public", h1, h2))
	if propOf(cur, "os_hash_value") != h1 {
		t.Error("the name moved to the half-uploaded image")
	}
	left := byState(c.series(t, name), "uploading")
	one(t, "half-done upload", left)

	r := c.publish(t, v2, "--name", name, "--no-boot-test")
	if r.err != nil || !strings.Contains(r.stdout, "delete-leftover "+left[0].ID) {
		t.Fatalf("rerun: %v", r.err)
	}
	cur = one(t, "public after the rerun", c.resolve(t, name, "public", h1, h2))
	if propOf(cur, "os_hash_value") != h2 {
		t.Error("the rerun did not publish v2")
	}
	if n := len(byState(c.series(t, name), "uploading")); n != 0 {
		t.Errorf("%d half-done uploads left", n)
	}
}

// Glance is killed in the middle of a publish and restarted: during the
// upload, and between the new image taking the name and the old one giving
// it up. Between those, the client is killed after verifying, before
// promoting.
// After each, the name resolves to active, verified images only, nothing
// else is lost, and running publish again finishes the job.
func TestGlanceKilledMidPublishNoauth(t *testing.T) {
	needServices(t)
	t.Parallel()
	testGlanceKilled(t, noauth, func(proxyURL string) *cloud { return noauthCloud(t, proxyURL) })
}

// The same with Keystone: the token outlives Glance, and recovery only
// looks at the images of the credentials' project.
func TestGlanceKilledMidPublishKeystone(t *testing.T) {
	needServices(t)
	t.Parallel()
	testGlanceKilled(t, keystone, func(proxyURL string) *cloud {
		c := keystoneCloud(t, "admin-openrc")
		c.env = append(c.env, "OS_IMAGE_URL="+proxyURL) // Keystone for the token, the proxy for Glance
		return c
	})
}

func testGlanceKilled(t *testing.T, svc *services, connect func(proxyURL string) *cloud) {
	svc.mu.Lock() // this test takes Glance away from the others
	defer svc.mu.Unlock()
	proxy := newFaultProxy(t, svc.glanceURL)
	c := connect(proxy.srv.URL)
	dir := t.TempDir()
	name := unique("killed-glance-" + svc.mode)
	bystander := unique("bystander")
	var files, hashes []string
	for i, seed := range []string{"kg-1", "kg-2", "kg-3", "kg-4"} {
		f, h := makeImage(t, dir, "v"+string(rune('1'+i)), seed, 0.2, false)
		files, hashes = append(files, f), append(hashes, h)
	}
	b, _ := makeImage(t, dir, "bystander", "bystander", 0.1, false)
	for _, p := range [][2]string{{b, bystander}, {files[0], name}} {
		if r := c.publish(t, p[0], "--name", p[1], "--no-boot-test"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	others := c.snapshot(t, bystander)

	// publishAsync starts a publish and returns its outcome channel.
	publishAsync := func(file string) chan result {
		ch := make(chan result, 1)
		go func() { ch <- c.publish(t, file, "--name", name, "--no-boot-test") }()
		return ch
	}
	restart := func() {
		t.Helper()
		start := time.Now()
		if out, err := svc.script("start-glance"); err != nil {
			t.Fatalf("start-glance: %v\n%s", err, out)
		}
		t.Logf("glance restarted in %.1f s", time.Since(start).Seconds())
	}
	kill := func() {
		t.Helper()
		if out, err := svc.script("kill-glance"); err != nil {
			t.Fatalf("kill-glance: %v\n%s", err, out)
		}
	}

	t.Run("during upload", func(t *testing.T) {
		proxy.On(isUpload)
		done := publishAsync(files[1])
		waitFired(t, proxy, "stall")
		kill()
		proxy.Release()
		r := <-done
		if r.err == nil || !strings.Contains(r.stderr, "the next publish of") {
			t.Errorf("publish with Glance killed: %v (want the leftover announced)", r.err)
		}
		restart()
		cur := one(t, "public after restart", c.resolve(t, name, "public", hashes...))
		if propOf(cur, "os_hash_value") != hashes[0] {
			t.Error("the name moved to the interrupted upload")
		}
		if len(byState(c.series(t, name), "uploading")) != 1 {
			t.Errorf("want the interrupted upload recorded as uploading: %v", c.series(t, name))
		}
		r = c.publish(t, files[1], "--name", name, "--no-boot-test")
		if r.err != nil || !strings.Contains(r.stdout, "delete-leftover") {
			t.Fatalf("rerun after restart: %v", r.err)
		}
		cur = one(t, "public after rerun", c.resolve(t, name, "public", hashes...))
		if propOf(cur, "os_hash_value") != hashes[1] {
			t.Error("the rerun did not finish the publish")
		}
	})

	t.Run("after verify, before promotion", func(t *testing.T) {
		proxy.Rearm()
		proxy.On(patchSetting("current"))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := runHelper(ctx, c.env, "publish", "--lock-dir", t.TempDir(), files[2], "--name", name, "--no-boot-test")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFired(t, proxy, "hold")
		cmd.Process.Signal(syscall.SIGKILL) // dies before its promotion reaches Glance
		cmd.Wait()
		proxy.Release()
		if n := len(byState(c.series(t, name), "verified")); n != 1 {
			t.Errorf("%d verified uploads waiting for promotion, want 1", n)
		}
		cur := one(t, "public", c.resolve(t, name, "public", hashes...))
		if propOf(cur, "os_hash_value") != hashes[1] {
			t.Error("the name moved before the promotion")
		}
		report := filepath.Join(dir, "reuse.json")
		r := c.publish(t, files[2], "--name", name, "--no-boot-test", "--report", report)
		if r.err != nil || !strings.Contains(r.stdout, "uploaded this very file; finishing its publish") {
			t.Fatalf("rerun: %v", r.err)
		}
		var rep struct{ Uploaded bool }
		if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &rep) != nil || rep.Uploaded {
			t.Errorf("the rerun uploaded again instead of finishing the verified upload (%v)", err)
		}
		cur = one(t, "public after rerun", c.resolve(t, name, "public", hashes...))
		if propOf(cur, "os_hash_value") != hashes[2] {
			t.Error("the rerun did not promote the verified upload")
		}
	})

	t.Run("between promotion and rotation", func(t *testing.T) {
		proxy.Rearm()
		proxy.On(patchSetting("previous"))
		done := publishAsync(files[3])
		waitFired(t, proxy, "hold")
		kill()
		proxy.Release()
		if r := <-done; r.err == nil {
			t.Fatal("publish with Glance killed succeeded")
		}
		restart()
		// Both hold the name now; both are active and verified.
		if n := len(c.resolve(t, name, "public", hashes...)); n != 2 {
			t.Errorf("%d public images under the name, want the new and the old one", n)
		}
		r := c.publish(t, files[3], "--name", name, "--no-boot-test")
		if r.err != nil || !strings.Contains(r.stdout, "finishing the rotation") {
			t.Fatalf("rerun: %v", r.err)
		}
		cur := one(t, "public after rerun", c.resolve(t, name, "public", hashes...))
		if propOf(cur, "os_hash_value") != hashes[3] {
			t.Error("the wrong image holds the name")
		}
	})

	// Nothing lost: every version is still there (no --keep), the
	// bystander is untouched, no half-done upload is left.
	got := map[string]bool{}
	for _, img := range c.series(t, name) {
		got[propOf(img, "os_hash_value")] = true
		if s := propOf(img, "builder_state"); s != "current" && s != "previous" {
			t.Errorf("image %s left in state %q", img.ID, s)
		}
	}
	for i, h := range hashes {
		if !got[h] {
			t.Errorf("version %d is gone", i+1)
		}
	}
	if after := c.snapshot(t, bystander); after != others {
		t.Errorf("another image changed:\nbefore:\n%s\nafter:\n%s", others, after)
	}
}

func waitFired(t *testing.T, p *faultProxy, prefix string) {
	t.Helper()
	select {
	case ev := <-p.fired:
		if !strings.HasPrefix(ev, prefix) {
			t.Fatalf("proxy: %s, want %s", ev, prefix)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("proxy: no %s within 90 s", prefix)
	}
}
