package glance

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// Two runners publishing one name from different hosts (here: different
// lock directories, so the host lock cannot keep them apart) take turns
// through the lease in Glance. Runner A holds it, its upload stalled; B
// waits for it. A is killed outright: its lease is no longer renewed, B
// takes it over once A's TTL has passed, removes A's half upload and
// publishes. One image has the name, nothing is left half-done, and the
// lease's record says released.
func TestPublishLeaseAcrossHosts(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	proxy := newFaultProxy(t, noauth.glanceURL)
	c := noauthCloud(t, proxy.srv.URL)
	dir := t.TempDir()
	name := unique("lease")
	imgA, shaA := makeImage(t, dir, "a", name+"-a", 0.2, false)
	imgB, shaB := makeImage(t, dir, "b", name+"-b", 0.2, false)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	proxy.On(isUpload)
	a := runHelper(ctx, c.env, "publish", imgA, "--name", name, "--no-boot-test", "--lock-dir", t.TempDir(), "--lease-ttl", "4s")
	var outA lockedBuffer
	a.Stdout, a.Stderr = &outA, &outA
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFired(t, proxy, "stall")

	b := runHelper(ctx, c.env, "publish", imgB, "--name", name, "--no-boot-test", "--lock-dir", t.TempDir())
	var outB lockedBuffer
	b.Stdout, b.Stderr = &outB, &outB
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(outB.String(), "waiting: another runner is publishing") {
		if time.Now().After(deadline) || b.ProcessState != nil {
			t.Fatalf("runner B did not wait for A's lease:\nA:\n%s\nB:\n%s", outA.String(), outB.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// B keeps waiting while A renews.
	time.Sleep(6 * time.Second)
	if strings.Contains(outB.String(), "uploading") || strings.Contains(outB.String(), "done:") {
		t.Fatalf("runner B went on while A held the lease:\n%s", outB.String())
	}
	began := time.Now()
	_ = a.Process.Signal(syscall.SIGKILL)
	_ = a.Wait()
	proxy.Release()
	if err := b.Wait(); err != nil {
		t.Fatalf("runner B: %v\nA:\n%s\nB:\n%s", err, outA.String(), outB.String())
	}
	t.Logf("B took over %s after A was killed\nA:\n%s\nB:\n%s", time.Since(began).Round(time.Second), outA.String(), outB.String())

	cur := one(t, "image with the name", c.resolve(t, name, "public", shaA, shaB))
	if propOf(cur, "os_hash_value") != shaB {
		t.Errorf("the name is on %.16s, want runner B's image", propOf(cur, "os_hash_value"))
	}
	for _, img := range c.series(t, name) {
		if img.ID != cur.ID {
			t.Errorf("left in the series: %s %q (%s, builder_state %s)", img.ID, img.Name, img.Status, propOf(img, "builder_state"))
		}
	}
	var leases []images.Image
	for _, img := range c.all(t) {
		if img.Name == ".builder-lease "+name {
			leases = append(leases, img)
		}
	}
	if len(leases) != 1 || propOf(leases[0], "builder_lease_state") != "released" || leases[0].Visibility != images.ImageVisibilityPrivate {
		var got []string
		for _, l := range leases {
			got = append(got, l.ID+" "+string(l.Visibility)+" "+propOf(l, "builder_lease_state"))
		}
		t.Errorf("lease record: %v, want one private image, released", got)
	}
}
