package glance

// The smoke test runs against a real Nova 26 (Zed) from Debian's
// packages: nova-api, nova-conductor, nova-scheduler and one nova-compute
// host, with Placement, Neutron's server and RabbitMQ, all on 127.0.0.1
// (hack/ci-services.sh NOVA=1). The compute host runs Nova's fake virt
// driver (compute_driver = fake.FakeDriver): KVM does not work on this
// machine and a TCG boot takes minutes.
//
// What that proves: publish asks the cloud's real Nova API through the
// Keystone catalog, with the publishing user's own (non-admin) token; Nova
// takes the uploaded image from Glance while it is still private under its
// temporary name; Nova's API checks the flavor against the image
// (min_disk, min_ram), its scheduler with Placement and its filters
// against the image's properties (an aarch64 image finds no host: the
// server goes to ERROR with Nova's fault); the compute host takes the
// server through BUILD to ACTIVE; the console log comes from Nova's API;
// the server is deleted (Nova asks Neutron for its ports) before the
// image is promoted, and a failure blocks the promotion.
//
// What it does not prove: that a hypervisor boots the image. The fake
// driver never reads the image's data, and its console log is a fixed
// text ("FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE"), so these tests accept
// its last line with --smoke-console; with the default patterns (a login
// prompt, cloud-init's final message) the smoke test fails on it, which
// the tests show too. That a builder image comes up on a real hypervisor is
// what the local boot test (QEMU) proves.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

// fakeConsole matches the last line of the fake driver's console log.
const fakeConsole = "^LAST LINE$"

func needNova(t *testing.T) {
	t.Helper()
	needServices(t)
	if !keystone.nova {
		t.Fatal("the keystone services were started without Nova")
	}
}

// novaMu: one test at a time makes servers. Nova on SQLite fails a
// server's update with "database is locked" when another server's writes
// land in the same moment (SQLite cannot wait for a transaction that read
// before the other one wrote), which a real cloud's database does not.
var novaMu sync.Mutex

// sqliteRetry runs run again, at most twice, when it failed because the
// test cloud's Nova said "database is locked" (SQLite, see novaMu): an
// artefact of this cloud's database, not of builder, whose publish is
// finished or undone by a rerun. Any other outcome is returned as it is.
func sqliteRetry(t *testing.T, run func() result) result {
	t.Helper()
	for attempt := 1; ; attempt++ {
		r := run()
		if r.err == nil || attempt == 3 {
			return r
		}
		text := r.stdout + r.stderr + r.err.Error()
		if !strings.Contains(text, "database is locked") {
			return r
		}
		t.Logf("attempt %d: Nova's SQLite said \"database is locked\"; running it again: %v", attempt, r.err)
	}
}

// computeClient logs in with an openrc's variables and returns Nova.
func computeClient(t *testing.T, env []string) *gophercloud.ServiceClient {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint: m["OS_AUTH_URL"], Username: m["OS_USERNAME"], Password: m["OS_PASSWORD"], DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectName: m["OS_PROJECT_NAME"], DomainName: "Default"},
	}
	p, err := openstack.AuthenticatedClient(context.Background(), ao)
	if err != nil {
		t.Fatalf("keystone login as %s: %v", m["OS_USERNAME"], err)
	}
	c, err := openstack.NewComputeV2(p, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	c.Microversion = "2.37"
	return c
}

// smokeServers lists the project's servers whose name starts with prefix.
func smokeServers(t *testing.T, cc *gophercloud.ServiceClient, prefix string) []servers.Server {
	t.Helper()
	pages, err := servers.List(cc, servers.ListOpts{Name: "^" + prefix}).AllPages(context.Background())
	if err != nil {
		t.Fatalf("list servers: %v", err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// The smoke test passes: publish (as the projects' ordinary member)
// boots the private upload in Nova, sees it ACTIVE and the console log,
// deletes the server, then promotes the image and records the pass on it.
// The same through a pipeline's schedule group. With the default console
// patterns the fake driver's console shows no guest, and the smoke test
// fails: nothing is promoted.
func TestSmokeTestNova(t *testing.T) {
	needNova(t)
	t.Parallel()
	novaMu.Lock()
	defer novaMu.Unlock()
	keystone.mu.RLock()
	defer keystone.mu.RUnlock()
	c := keystoneCloud(t, "builder-openrc")
	cc := computeClient(t, c.env)
	dir := t.TempDir()
	name := unique("smoke")
	v1, h1 := makeImage(t, dir, "v1", "smoke-one", 0.5, false)

	start := time.Now()
	r := sqliteRetry(t, func() result {
		return c.publish(t, "--name", name, "--no-boot-test", "--visibility", "private", "--smoke-test", "--smoke-console", fakeConsole, v1)
	})
	t.Logf("publish with the smoke test: %.1f s", time.Since(start).Seconds())
	if r.err != nil {
		t.Fatal(r.err)
	}
	cur := one(t, "after the smoke test", c.resolve(t, name, "private", h1))
	for _, want := range []string{
		"smoke test: booting " + cur.ID + " (flavor m1.tiny) as server \"builder-smoke-",
		"is ACTIVE after",
		"the console shows \"LAST LINE\"",
		"smoke test: deleted server",
		"promote " + cur.ID,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The smoke test ran before the promotion, on the private upload.
	if strings.Index(r.stdout, "smoke test: deleted server") > strings.Index(r.stdout, "promote "+cur.ID) {
		t.Error("the image was promoted before its smoke test ended")
	}
	if s := propOf(cur, "builder_smoke_test"); !strings.HasPrefix(s, "passed ") || !strings.Contains(s, "flavor m1.tiny") {
		t.Errorf("builder_smoke_test = %q", s)
	}
	if left := smokeServers(t, cc, "builder-smoke-"); len(left) > 0 {
		for _, s := range left {
			if s.Metadata["builder_smoke_test"] == name {
				t.Errorf("server %s (%s) of the smoke test is left", s.ID, s.Status)
			}
		}
	}

	// A schedule group whose publish settings turn the smoke test on, for
	// a downloaded image.
	srv := newUpstream(t)
	digest := srv.release(t, "img.qcow2", v1)
	file := filepath.Join(dir, "pipeline.yaml")
	group := unique("grp")
	yaml := fmt.Sprintf(`images:
  - name: %s
    source: {url: %s/cloud/img.qcow2, checksum: "sha512:%s"}
    boot_test: false
schedule:
  nightly:
    clouds: [env]
    publish:
      visibility: private
      description: "%s, smoke-tested {{.Date}}"
      smoke_test: {flavor: m1.small, console: ["%s"], timeout: 2m}
`, group, srv.srv.URL, digest, group, fakeConsole)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	r = sqliteRetry(t, func() result {
		return runInProcess(t, append(append([]string{}, c.env...), "DIB_IMAGE_CACHE="+filepath.Join(dir, "cache")), "pipeline", "run", "--group", "nightly", file)
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	g := one(t, "group", c.resolve(t, group, "private", h1))
	if !strings.Contains(r.stdout, "(flavor m1.small)") || !strings.HasPrefix(propOf(g, "builder_smoke_test"), "passed ") ||
		propOf(g, "description") != group+", smoke-tested "+time.Now().UTC().Format("2006-01-02") {
		t.Errorf("group run: smoke test %q, description %q", propOf(g, "builder_smoke_test"), propOf(g, "description"))
	}

	// The default patterns want a guest: the fake driver's console has
	// none, so the smoke test fails and nothing is promoted.
	v2, _ := makeImage(t, dir, "v2", "smoke-two", 0.5, false)
	before := c.snapshot(t, name)
	r = sqliteRetry(t, func() result {
		return c.publish(t, "--name", name, "--no-boot-test", "--visibility", "private", "--smoke-test", "--smoke-timeout", "15s", v2)
	})
	if r.err == nil || !strings.Contains(r.stderr, "never showed the guest up") || !strings.Contains(r.stderr, "LAST LINE") ||
		!strings.Contains(r.stderr, "was not promoted") {
		t.Errorf("default console patterns on the fake driver: %v", r.err)
	}
	if after := c.snapshot(t, name); after != before {
		t.Errorf("a failed smoke test changed the series:\n%s\n->\n%s", before, after)
	}
}

// The smoke test blocks the promotion whenever Nova does not bring the
// image up: a server that goes to ERROR (an aarch64 image: the scheduler
// finds no host for it), an image Nova refuses for the flavor (min_disk
// larger than the flavor's disk), an image no flavor fits (min_disk
// larger than any flavor). Each time the image under the name stays the
// previous one, the upload is removed and no server is left.
func TestSmokeTestBlocksPromotion(t *testing.T) {
	needNova(t)
	t.Parallel()
	novaMu.Lock()
	defer novaMu.Unlock()
	keystone.mu.RLock()
	defer keystone.mu.RUnlock()
	c := keystoneCloud(t, "builder-openrc")
	cc := computeClient(t, c.env)
	dir := t.TempDir()
	name := unique("blocked")
	v1, h1 := makeImage(t, dir, "v1", "blocked-one", 0.5, false)
	if r := c.publish(t, "--name", name, "--no-boot-test", "--visibility", "private", v1); r.err != nil {
		t.Fatal(r.err)
	}
	good := one(t, "v1", c.resolve(t, name, "private", h1))

	for i, tc := range []struct {
		what string
		args []string
		want string
	}{
		{"ERROR", []string{"--property", "hw_architecture=aarch64"}, "went to ERROR: No valid host was found"},
		{"refused", []string{"--property", "min_disk=21", "--smoke-flavor", "m1.small"}, "Nova refused the server: HTTP 400"},
		{"no flavor", []string{"--property", "min_disk=21"}, "no flavor of"},
	} {
		v, _ := makeImage(t, dir, fmt.Sprintf("v%d", i+2), "blocked-"+tc.what, 0.5, false)
		args := append([]string{"--name", name, "--no-boot-test", "--visibility", "private", "--smoke-test", "--smoke-console", fakeConsole}, tc.args...)
		start := time.Now()
		r := sqliteRetry(t, func() result { return c.publish(t, append(args, v)...) })
		t.Logf("%s: %.1f s", tc.what, time.Since(start).Seconds())
		if r.err == nil || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "was not promoted") || !strings.Contains(r.stderr, "the upload") {
			t.Errorf("%s: error %v, want %q and that nothing was promoted", tc.what, r.err, tc.want)
		}
		cur := one(t, tc.what, c.resolve(t, name, "private", h1))
		if cur.ID != good.ID {
			t.Errorf("%s: %q is %s, not the previous image %s", tc.what, name, cur.ID, good.ID)
		}
		if n := len(c.series(t, name)); n != 1 {
			t.Errorf("%s: %d images in the series, want the previous one only (the upload removed)", tc.what, n)
		}
		for _, s := range smokeServers(t, cc, "builder-smoke-") {
			if s.Metadata["builder_smoke_test"] == name {
				t.Errorf("%s: server %s (%s) of the smoke test is left", tc.what, s.ID, s.Status)
			}
		}
	}
	if g := c.get(t, good.ID); propOf(*g, "builder_state") != "current" || g.Name != name {
		t.Errorf("the previous image is not current any more: %q %v", g.Name, g.Properties)
	}
}
