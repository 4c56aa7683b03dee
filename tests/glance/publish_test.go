package glance

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// The life of a public name, without and with Keystone: first publish,
// republish with rotation to private, with rotation by renaming, the keep
// count deleting the oldest version but never a protected one, and an
// unchanged rerun that changes nothing. After every step the name resolves
// to active images of published files only, and the newest holds it.
func TestPublishRotationAndKeep(t *testing.T) {
	needServices(t)
	t.Parallel()
	for _, mode := range []string{"noauth", "keystone"} {
		t.Run(mode, func(t *testing.T) {
			var c *cloud
			if mode == "noauth" {
				noauth.mu.RLock()
				defer noauth.mu.RUnlock()
				c = noauthCloud(t, "")
			} else {
				keystone.mu.RLock()
				defer keystone.mu.RUnlock()
				c = keystoneCloud(t, "admin-openrc")
			}
			dir := t.TempDir()
			name := unique("rot-" + mode)
			v1, h1 := makeImage(t, dir, "v1", "one", 2.5, false)
			v2, h2 := makeImage(t, dir, "v2", "two", 2.5, false)
			v3, h3 := makeImage(t, dir, "v3", "three", 2.5, true)
			v4, h4 := makeImage(t, dir, "v4", "four", 2.5, false)
			hashes := []string{h1, h2, h3, h4}
			common := []string{"--name", name, "--no-boot-test", "--os-distro", "debian", "--os-version", "12"}

			// 1. First publish: properties, formats, state.
			report := filepath.Join(dir, "r1.json")
			if r := c.publish(t, append(common, v1, "--property", "hw_disk_bus=scsi", "--elements", "debian,vm", "--report", report)...); r.err != nil {
				t.Fatal(r.err)
			}
			cur := one(t, "after the first publish", c.resolve(t, name, "public", hashes...))
			if propOf(cur, "os_hash_value") != h1 || cur.DiskFormat != "qcow2" || cur.ContainerFormat != "bare" || cur.MinDiskGigabytes != 3 {
				t.Errorf("image %+v: want v1's hash, qcow2/bare, min_disk 3 (2.5 GiB rounded up)", cur)
			}
			for k, v := range map[string]string{"os_distro": "debian", "os_version": "12", "hw_disk_bus": "scsi",
				"builder_elements": "debian vm", "builder_state": "current", "builder_series": name} {
				if got := propOf(cur, k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if propOf(cur, "hw_firmware_type") != "" || propOf(cur, "builder_build_date") == "" || propOf(cur, "builder_version") == "" {
				t.Errorf("hybrid disk: no hw_firmware_type; build date and version set: %v", cur.Properties)
			}
			var rep struct {
				OK      bool   `json:"ok"`
				ImageID string `json:"image_id"`
			}
			if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &rep) != nil || !rep.OK || rep.ImageID != cur.ID {
				t.Errorf("report %s: %+v (%v)", report, rep, err)
			}

			// 2. Republish, rotation to private (default).
			if r := c.publish(t, append(common, v2, "--keep", "3")...); r.err != nil {
				t.Fatal(r.err)
			}
			cur = one(t, "public after v2", c.resolve(t, name, "public", hashes...))
			if propOf(cur, "os_hash_value") != h2 {
				t.Errorf("public %q is not v2", name)
			}
			old := one(t, "private v1", c.resolve(t, name, "private", hashes...))
			if propOf(old, "os_hash_value") != h1 || propOf(old, "builder_state") != "previous" {
				t.Errorf("v1 after rotation: %s %v", old.Visibility, old.Properties)
			}

			// 3. Rotation by renaming, UEFI-only disk.
			if r := c.publish(t, append(common, v3, "--keep", "3", "--rotate", "rename")...); r.err != nil {
				t.Fatal(r.err)
			}
			cur = one(t, "public after v3", c.resolve(t, name, "public", hashes...))
			if propOf(cur, "os_hash_value") != h3 || propOf(cur, "hw_firmware_type") != "uefi" {
				t.Errorf("v3: hash %.16s, hw_firmware_type %q (UEFI-only disk)", propOf(cur, "os_hash_value"), propOf(cur, "hw_firmware_type"))
			}
			var renamed images.Image
			for _, img := range c.series(t, name) {
				if propOf(img, "os_hash_value") == h2 {
					renamed = img
				}
			}
			if !strings.HasPrefix(renamed.Name, name+" (") || renamed.Visibility != "public" || propOf(renamed, "builder_state") != "previous" {
				t.Errorf("v2 after rename rotation: %q %s %s", renamed.Name, renamed.Visibility, propOf(renamed, "builder_state"))
			}
			if n := len(c.series(t, name)); n != 3 {
				t.Errorf("%d versions, want 3 (keep 3)", n)
			}

			// 4. keep 2 with the oldest (v1) protected: v2 goes, v1 stays.
			c.setProtected(t, old.ID, true)
			defer c.setProtected(t, old.ID, false)
			r := c.publish(t, append(common, v4, "--keep", "2", "--rotate", "rename")...)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !strings.Contains(r.stdout, "keep-protected "+old.ID) {
				t.Errorf("output does not say the protected v1 was kept")
			}
			left := map[string]images.Image{}
			for _, img := range c.series(t, name) {
				left[propOf(img, "os_hash_value")] = img
			}
			if _, ok := left[h2]; ok {
				t.Error("v2 is beyond keep 2 and not protected: it should be deleted")
			}
			if _, ok := left[h1]; !ok {
				t.Error("protected v1 was deleted")
			}
			if _, ok := left[h3]; !ok {
				t.Error("v3 (second newest) was deleted")
			}
			cur = one(t, "public after v4", c.resolve(t, name, "public", hashes...))
			if propOf(cur, "os_hash_value") != h4 {
				t.Error("v4 does not hold the name")
			}

			// 5. The same file again: already published, nothing changes.
			before := c.snapshot(t, name)
			r = c.publish(t, append(common, v4, "--keep", "2", "--rotate", "rename")...)
			if r.err != nil || !strings.Contains(r.stdout, "published already") {
				t.Fatalf("rerun: %v", r.err)
			}
			if after := c.snapshot(t, name); after != before {
				t.Errorf("an unchanged rerun changed Glance:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// --dry-run lists the upload, promotion, rotation and deletions a publish
// would do, and Glance is exactly as before.
func TestDryRunChangesNothing(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	c := noauthCloud(t, "")
	dir := t.TempDir()
	name := unique("dry")
	a, _ := makeImage(t, dir, "a", "dry-a", 0.1, false)
	b, _ := makeImage(t, dir, "b", "dry-b", 0.1, false)
	d, _ := makeImage(t, dir, "d", "dry-d", 0.1, false)
	for _, f := range []string{a, b} {
		if r := c.publish(t, f, "--name", name, "--no-boot-test"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	before := c.snapshot(t, name)
	r := c.publish(t, d, "--name", name, "--keep", "2", "--rotate", "rename", "--dry-run")
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []string{"would upload", "would promote", "would rename", "would delete", "nothing was changed", "no boot test"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	if after := c.snapshot(t, name); after != before {
		t.Errorf("dry run changed Glance:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// disk_format comes from the content, not the file name.
func TestDiskFormatFromContent(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	c := noauthCloud(t, "")
	dir := t.TempDir()
	q, _ := makeImage(t, dir, "q", "fmt", 0.1, false)
	raw := filepath.Join(dir, "really-raw.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", q, raw).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	name := unique("fmt")
	r := c.publish(t, raw, "--name", name, "--no-boot-test")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stderr, "holds raw data") {
		t.Error("no warning about the name")
	}
	img := one(t, "raw image", c.resolve(t, name, "public", fileSHA512(t, raw)))
	if img.DiskFormat != "raw" {
		t.Errorf("disk_format %q, want raw", img.DiskFormat)
	}
}

// With Keystone, as a member user through clouds.yaml: visibility public
// is refused by Glance's policy and nothing is left behind; community
// works; images of another project with the same name are never touched.
func TestKeystoneMemberAndOwners(t *testing.T) {
	needServices(t)
	t.Parallel()
	keystone.mu.RLock()
	defer keystone.mu.RUnlock()
	admin := keystoneCloud(t, "admin-openrc")
	member := keystoneCloud(t, "builder-openrc")
	member.env = baseEnv("OS_CLIENT_CONFIG_FILE="+filepath.Join(keystone.dir, "clouds.yaml"), "OS_CLOUD=ci-builder")
	dir := t.TempDir()
	name := unique("owners")
	a1, ha1 := makeImage(t, dir, "a1", "admin-1", 0.1, false)
	m1, hm1 := makeImage(t, dir, "m1", "member-1", 0.1, false)
	m2, hm2 := makeImage(t, dir, "m2", "member-2", 0.1, false)

	if r := admin.publish(t, a1, "--name", name, "--no-boot-test"); r.err != nil {
		t.Fatal(r.err)
	}
	adminBefore := one(t, "admin's image", admin.resolve(t, name, "public", ha1))

	before := member.snapshot(t, name)
	r := member.publish(t, m1, "--name", name, "--no-boot-test")
	if r.err == nil || !strings.Contains(r.stderr, "publicize_image") || !strings.Contains(r.stderr, "--visibility shared or community") {
		t.Fatalf("member publishing public: want Glance's 403 explained, got %v", r.err)
	}
	if after := member.snapshot(t, name); after != before {
		t.Errorf("a refused promotion left changes:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	for _, f := range []string{m1, m2} {
		if r := member.publish(t, f, "--name", name, "--no-boot-test", "--visibility", "community", "--keep", "1"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	cur := one(t, "member's community image", member.resolve(t, name, "community", hm1, hm2))
	if propOf(cur, "os_hash_value") != hm2 || cur.Owner != member.owner || len(member.series(t, name)) != 1 {
		t.Errorf("member's series: %+v", member.series(t, name))
	}
	adminAfter := admin.get(t, adminBefore.ID)
	if adminAfter.Name != name || adminAfter.Visibility != "public" || !adminAfter.UpdatedAt.Equal(adminBefore.UpdatedAt) {
		t.Errorf("the admin project's image was touched: %+v", adminAfter)
	}
}

// Credentials never reach the output or the report, also when Keystone
// refuses them or Glance refuses a call; --smoke-test in a cloud without
// Nova says it needs Nova.
func TestSecretsStayOutAndSmokeTestNeedsNova(t *testing.T) {
	needServices(t)
	t.Parallel()
	keystone.mu.RLock()
	defer keystone.mu.RUnlock()
	dir := t.TempDir()
	img, _ := makeImage(t, dir, "s", "secret", 0.1, false)
	member := keystoneCloud(t, "builder-openrc")
	report := filepath.Join(dir, "report.json")

	check := func(what string, r result) {
		t.Helper()
		b, _ := os.ReadFile(report)
		all := r.stdout + r.stderr + string(b)
		for _, secret := range []string{"builderpw", "wrong-password-123", "gAAAAA"} {
			if strings.Contains(all, secret) {
				t.Errorf("%s: %q appears in the output or report", what, secret)
			}
		}
	}

	// A Glance refusal (403 for public as member), with a report.
	r := member.publish(t, img, "--name", unique("secret"), "--no-boot-test", "--report", report)
	if r.err == nil {
		t.Fatal("member publishing public should fail")
	}
	check("403", r)

	// Keystone refusing the password.
	bad := *member
	bad.env = append(append([]string{}, member.env...), "OS_PASSWORD=wrong-password-123")
	r = bad.publish(t, img, "--name", unique("secret"), "--no-boot-test", "--report", report)
	if r.err == nil || !strings.Contains(r.stderr, "authentication failed") {
		t.Fatalf("wrong password: %v", r.err)
	}
	check("401", r)

	// The same refusal through clouds.yaml: its password stays out too.
	viaYAML := *member
	viaYAML.env = baseEnv("OS_CLIENT_CONFIG_FILE="+filepath.Join(keystone.dir, "clouds.yaml"), "OS_CLOUD=ci-builder")
	r = viaYAML.publish(t, img, "--name", unique("secret"), "--no-boot-test", "--report", report)
	if r.err == nil {
		t.Fatal("member publishing public through clouds.yaml should fail")
	}
	check("403 via clouds.yaml", r)

	// Without Keystone there is no catalog, so no Nova: refused before
	// anything else. (The keystone cloud has Nova: nova_test.go.)
	for _, c := range []*cloud{noauthCloud(t, "")} {
		r = c.publish(t, img, "--name", unique("smoke"), "--smoke-test")
		if r.err == nil || !strings.Contains(r.stderr, "needs Nova (compute) in the cloud") {
			t.Errorf("%s: --smoke-test: %v", c.name, r.err)
		}
	}
}
