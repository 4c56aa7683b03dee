package glance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a writer two goroutines may read while a command writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A hand-run `builder publish` and a `builder pipeline run` of the same
// name on one host take the same lock (the workspace's publish lock
// directory, keyed by the cloud's endpoint, project and the name): while
// the first is uploading (stalled by the proxy, then cut), the pipeline
// waits for it; once it has ended and cleaned up, the pipeline publishes,
// and the name resolves to the pipeline's image with no upload left over.
func TestPipelineWaitsForAHandRunPublish(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	proxy := newFaultProxy(t, noauth.glanceURL)
	c := noauthCloud(t, proxy.srv.URL)
	dir := t.TempDir()
	name := unique("shared-lock")
	hand, handSHA := makeImage(t, dir, "hand", name, 0.2, false)
	// The pipeline's image is downloaded, not built: it reaches its
	// publish within seconds, well before the stalled hand-run upload
	// gives up (after 5 minutes without progress), however cold the build
	// cache is.
	up := newUpstream(t)
	src, _ := makeImage(t, dir, "pipe-src", name+"-pipeline", 0.2, false)
	digest := up.release(t, "pipe.qcow2", src)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The hand-run publish, stalled half-way through its upload: it holds
	// the lock (default lock directory, as a user would run it).
	proxy.On(isUpload)
	handCmd := runHelper(ctx, c.env, "publish", hand, "--name", name, "--no-boot-test", "--visibility", "public")
	var handOut lockedBuffer
	handCmd.Stdout, handCmd.Stderr = &handOut, &handOut
	if err := handCmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFired(t, proxy, "stall")

	file := filepath.Join(dir, "pipeline.yaml")
	yaml := fmt.Sprintf(`defaults:
  image_cache: %s
  output_dir: out
  boot_test: false
  publish: {clouds: [env], visibility: public, keep: 0}
images:
  - name: pipe
    source: {url: %s/cloud/pipe.qcow2, checksum: "sha512:%s"}
    publish: {name: %q}
`, filepath.Join(dir, "cache"), up.srv.URL, digest, name)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	pipeCmd := runHelper(ctx, c.env, "pipeline", "run", file)
	var pipeOut lockedBuffer
	pipeCmd.Stdout, pipeCmd.Stderr = &pipeOut, &pipeOut
	if err := pipeCmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The pipeline downloads, then must wait for the lock.
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(pipeOut.String(), "waiting: another publish of") {
		if time.Now().After(deadline) {
			proxy.Release()
			t.Fatalf("the pipeline did not wait for the hand-run publish:\n%s", pipeOut.String())
		}
		time.Sleep(time.Second)
	}
	proxy.Release() // the stalled upload is cut: the hand-run publish fails and cleans up
	if err := handCmd.Wait(); err == nil || !strings.Contains(handOut.String(), "removed the unfinished upload") {
		t.Errorf("hand-run publish after its upload was cut: %v\n%s", err, handOut.String())
	}
	if err := pipeCmd.Wait(); err != nil {
		t.Fatalf("pipeline: %v\n%s", err, pipeOut.String())
	}
	t.Logf("hand-run publish:\n%s\npipeline:\n%s", handOut.String(), pipeOut.String())
	pipeSHA := fileSHA512(t, filepath.Join(dir, "out", "pipe.qcow2"))
	cur := one(t, "public image after both", c.resolve(t, name, "public", handSHA, pipeSHA))
	if propOf(cur, "os_hash_value") != pipeSHA {
		t.Errorf("the name is on %.16s, want the pipeline's image", propOf(cur, "os_hash_value"))
	}
	if n := len(byState(c.series(t, name), "uploading")) + len(byState(c.series(t, name), "queued")); n != 0 {
		t.Errorf("%d unfinished uploads left", n)
	}
}
