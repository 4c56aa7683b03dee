package glance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// ownProject makes a project with a member of its own, so that a cleanup
// with a short bound cannot touch what the tests running beside it are
// uploading; it returns the member's OS_* variables.
func ownProject(t *testing.T, name string) []string {
	t.Helper()
	admin := readOpenrc(t, filepath.Join(keystone.dir, "admin-openrc"))
	m := map[string]string{}
	for _, kv := range admin {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	p, err := openstack.AuthenticatedClient(context.Background(), gophercloud.AuthOptions{
		IdentityEndpoint: m["OS_AUTH_URL"], Username: "admin", Password: m["OS_PASSWORD"], DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectName: "admin", DomainName: "Default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := openstack.NewIdentityV3(p, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	proj, err := projects.Create(ctx, id, projects.CreateOpts{Name: name, DomainID: "default"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	u, err := users.Create(ctx, id, users.CreateOpts{Name: name, Password: name + "pw", DomainID: "default", DefaultProjectID: proj.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	pages, err := roles.List(id, roles.ListOpts{Name: "member"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := roles.ExtractRoles(pages)
	if len(rs) != 1 {
		t.Fatalf("role member: %v", rs)
	}
	if err := roles.Assign(ctx, id, rs[0].ID, roles.AssignOpts{UserID: u.ID, ProjectID: proj.ID}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	env := []string{}
	for _, kv := range admin {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME":
		default:
			env = append(env, kv)
		}
	}
	return append(env, "OS_USERNAME="+name, "OS_PASSWORD="+name+"pw", "OS_PROJECT_NAME="+name)
}

// --cleanup-orphans removes what crashed runs left, and only that: in a
// project of its own, images under builder's temporary names with
// builder's run recorded (uploading or verified) and smoke-test servers
// named and tagged by builder go once older than the bound; a look-alike
// image or server without builder's marks, a protected leftover, a
// published image and anything younger than the bound stay. --dry-run
// changes nothing.
func TestCleanupOrphans(t *testing.T) {
	needNova(t)
	t.Parallel()
	novaMu.Lock()
	defer novaMu.Unlock()
	keystone.mu.RLock()
	defer keystone.mu.RUnlock()
	proj := unique("orphans")
	env := baseEnv(ownProject(t, proj)...)
	c := &cloud{name: "keystone/" + proj, svc: keystone, env: env}
	c.client, c.owner = keystoneClient(t, env)
	cc := computeClient(t, env)
	ctx := context.Background()
	dir := t.TempDir()

	// A published image (builder's, current) and the image the servers
	// boot from.
	pub, _ := makeImage(t, dir, "pub", "orphans-published", 0.5, false)
	if r := c.publish(t, "--name", "deb", "--no-boot-test", "--visibility", "private", pub); r.err != nil {
		t.Fatal(r.err)
	}
	current := one(t, "published", c.series(t, "deb"))

	run := "20260101T000000Z-abcdef"
	mk := func(name string, props map[string]string, protected bool) string {
		t.Helper()
		priv := images.ImageVisibilityPrivate
		img, err := images.Create(ctx, c.client, images.CreateOpts{Name: name, Visibility: &priv, ContainerFormat: "bare", DiskFormat: "qcow2", Properties: props, Protected: &protected}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if protected {
			t.Cleanup(func() { c.setProtected(t, img.ID, false) })
		}
		return img.ID
	}
	marks := func(state string) map[string]string {
		return map[string]string{"builder_series": "deb", "builder_state": state, "builder_run": run, "builder_host": "crashed-host"}
	}
	uploading := mk("deb.uploading-"+run, marks("uploading"), false)
	verified := mk("deb.uploading-"+run, marks("verified"), false)
	if err := imagedata.Upload(ctx, c.client, verified, strings.NewReader(strings.Repeat("x", 1024))).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	protected := mk("deb.uploading-"+run, marks("uploading"), true)
	lookalike := mk("deb.uploading-"+run, map[string]string{"builder_state": "uploading"}, false) // no series, no run
	otherRun := mk("deb.uploading-"+run, map[string]string{"builder_series": "deb", "builder_state": "uploading", "builder_run": "20260101T000000Z-000000"}, false)
	// Publish leases (publish/lease.go) of "deb": builder's own records,
	// never a user's image nor a version of the series. Generation 0,
	// released and renewed long ago, is superseded by 1 but Glance
	// updated it just now: within the lease's TTL, so both stay.
	leaseMarks := func(gen, state, renewed string) map[string]string {
		return map[string]string{"builder_lease": "0123456789abcdef", "builder_lease_gen": gen, "builder_lease_state": state,
			"builder_lease_holder": "crashed-host pid 1 run " + run, "builder_lease_renewed": renewed}
	}
	lease0 := mk(".builder-lease deb", leaseMarks("0", "released", "2026-01-01T00:00:00Z"), false)
	lease1 := mk(".builder-lease deb", leaseMarks("1", "held", "2026-01-01T00:00:00Z"), false)

	server := func(name string, meta map[string]string) string {
		t.Helper()
		s, err := servers.Create(ctx, cc, servers.CreateOpts{Name: name, ImageRef: current.ID, FlavorRef: "1", Networks: "none", Metadata: meta}, nil).Extract()
		if err != nil {
			t.Fatalf("server %s: %v", name, err)
		}
		t.Cleanup(func() { servers.Delete(context.Background(), cc, s.ID) })
		return s.ID
	}
	smoke := server("builder-smoke-"+run, map[string]string{"builder_smoke_test": "deb", "builder_run": run, "builder_host": "crashed-host"})
	untagged := server("builder-smoke-"+run, nil)
	renamed := server("web-1", map[string]string{"builder_smoke_test": "deb", "builder_run": run})

	exists := func() map[string]bool {
		m := map[string]bool{}
		for _, img := range c.all(t) {
			m[img.ID] = true
		}
		for _, s := range smokeServers(t, cc, "") {
			m[s.ID] = true
		}
		return m
	}
	all := map[string]string{"uploading": uploading, "verified": verified, "protected": protected, "lookalike": lookalike,
		"other run": otherRun, "published": current.ID, "lease 0": lease0, "lease 1": lease1, "smoke server": smoke, "untagged server": untagged, "renamed server": renamed}
	check := func(step string, gone ...string) {
		t.Helper()
		have := exists()
		for what, id := range all {
			want := true
			for _, g := range gone {
				want = want && g != what
			}
			if have[id] != want {
				t.Errorf("%s: %s %s exists %v, want %v", step, what, id, have[id], want)
			}
		}
	}

	// Young: everything stays, and the output says why.
	r := c.publish(t, "--cleanup-orphans", "--older-than", "1h")
	if r.err != nil || strings.Count(r.stdout, "keep-young") != 3 || !strings.Contains(r.stdout, "keep-protected") ||
		!strings.Contains(r.stdout, "removed 0 orphans") || !strings.Contains(r.stdout, "and smoke-test servers") {
		t.Errorf("young leftovers: %v", r.err)
	}
	check("young")

	time.Sleep(2 * time.Second)
	r = c.publish(t, "--cleanup-orphans", "--older-than", "1s", "--dry-run")
	if r.err != nil || !strings.Contains(r.stdout, "would remove 3 orphans") {
		t.Errorf("dry run: %v", r.err)
	}
	check("dry run")

	report := filepath.Join(dir, "cleanup.json")
	r = c.publish(t, "--cleanup-orphans", "--older-than", "1s", "--report", report)
	if r.err != nil || !strings.Contains(r.stdout, "removed 3 orphans") {
		t.Errorf("cleanup: %v", r.err)
	}
	check("cleanup", "uploading", "verified", "smoke server")
	var rep struct {
		OK      bool
		Changes []struct{ Action, ImageID string } `json:"changes"`
	}
	if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &rep) != nil || !rep.OK || len(rep.Changes) != 4 {
		t.Errorf("report: %+v (%v)", rep, err)
	}

	// Every pipeline run starts with the same cleanup of its clouds: a
	// leftover of another crashed run goes, with the bound of
	// defaults.cleanup_orphans, before the run's own image is published.
	run2 := "20260101T000001Z-fedcba"
	m2 := marks("uploading")
	m2["builder_run"] = run2
	all["second leftover"] = mk("deb.uploading-"+run2, m2, false)
	time.Sleep(2 * time.Second)
	up := newUpstream(t)
	src, _ := makeImage(t, dir, "src", "orphans-pipeline", 0.5, false)
	digest := up.release(t, "img.qcow2", src)
	file := filepath.Join(dir, "pipeline.yaml")
	yaml := fmt.Sprintf(`defaults:
  image_cache: %s
  output_dir: out
  boot_test: false
  cleanup_orphans: 1s
  publish: {clouds: [env], visibility: private}
images:
  - name: fromsource
    source: {url: %s/cloud/img.qcow2, checksum: "sha512:%s"}
`, filepath.Join(dir, "cache"), up.srv.URL, digest)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runInProcess(t, env, "pipeline", "run", file)
	if r.err != nil || !strings.Contains(r.stdout, "cleanup of env: removed 1 leftovers") ||
		strings.Index(r.stdout, "cleanup of env") > strings.Index(r.stdout, "publish to env") {
		t.Errorf("pipeline run: %v; want its cleanup first, removing the second leftover", r.err)
	}
	check("pipeline run", "uploading", "verified", "smoke server", "second leftover")

	// A new version of "deb", keeping one: the rotation takes the old
	// version and leaves the lease records alone.
	pub2, _ := makeImage(t, dir, "pub2", "orphans-published-2", 0.5, false)
	if r = c.publish(t, "--name", "deb", "--no-boot-test", "--visibility", "private", "--keep", "1", pub2); r.err != nil {
		t.Fatal(r.err)
	}
	if strings.Contains(r.stdout, ".builder-lease") {
		t.Error("publish took a lease record for a version of the series")
	}
	check("publish, keep 1", "uploading", "verified", "smoke server", "second leftover", "published")

	// A lease's name is builder's: refused as a name to publish under.
	if r := c.publish(t, "--name", ".builder-lease deb", "--no-boot-test", pub2); r.err == nil || !strings.Contains(r.err.Error(), "publish leases") {
		t.Errorf("publishing under a lease's name: %v", r.err)
	}

	// Bad usage: one line naming the fix.
	r = c.publish(t, "--cleanup-orphans", "some.qcow2")
	if r.err == nil || !strings.Contains(r.err.Error(), "--cleanup-orphans takes no IMAGE") {
		t.Errorf("--cleanup-orphans with an image: %v", r.err)
	}
}
