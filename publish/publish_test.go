package publish

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func img(id, name, state string, day int, props ...string) images.Image {
	p := map[string]any{}
	if state != "" {
		p[PropSeries] = "deb"
		p[PropState] = state
	}
	for i := 0; i+1 < len(props); i += 2 {
		p[props[i]] = props[i+1]
	}
	return images.Image{ID: id, Name: name, Status: images.ImageStatusActive, Visibility: images.ImageVisibilityPublic,
		CreatedAt: t0.AddDate(0, 0, day), UpdatedAt: t0.AddDate(0, 0, day), Properties: p}
}

func actions(chs []plannedChange) string {
	var s []string
	for _, c := range chs {
		s = append(s, c.Action+":"+c.ImageID)
	}
	return strings.Join(s, " ")
}

// The images that had the name are retired; versions beyond keep go,
// oldest first; protected ones and the new one stay; an image deleted
// anyway is not renamed first.
func TestPlanRotation(t *testing.T) {
	prot := img("p", "deb", StatePrevious, 1)
	prot.Protected = true
	prot.Visibility = images.ImageVisibilityPrivate
	all := []images.Image{
		prot,
		img("a", "deb", StatePrevious, 2), // private mode leftover, still public: retire
		img("b", "deb (2026-11-04)", StatePrevious, 3),
		img("c", "deb", StateCurrent, 4),
		img("legacy", "deb", "", 5), // uploaded by hand under the name
		img("new", "deb", StateCurrent, 6),
		img("up", "deb.uploading-x", StateUploading, 6), // not a version
	}
	req := Request{Name: "deb", Rotate: "private", Keep: 3}
	got := actions(planRotation(all, "new", all[5].CreatedAt, req))
	// versions newest first: new, legacy, c, b, a, p -> keep new, legacy, c.
	want := "make-private:c make-private:legacy keep-protected:p delete:a delete:b"
	if got != want {
		t.Errorf("private, keep 3:\n got %s\nwant %s", got, want)
	}

	req = Request{Name: "deb", Rotate: "rename", Keep: 0}
	chs := planRotation(all, "new", all[5].CreatedAt, req)
	// p was made private by an earlier rotation but still has the name:
	// in rename mode it is renamed too.
	if got := actions(chs); got != "rename:p rename:a rename:c rename:legacy" {
		t.Errorf("rename, keep all: got %s", got)
	}
	names := map[string]bool{}
	for _, c := range chs {
		if names[c.Detail] {
			t.Errorf("two images renamed alike: %s", c.Detail)
		}
		names[c.Detail] = true
	}
	if !strings.Contains(chs[1].Detail, `"deb (2026-11-03)"`) {
		t.Errorf("rename of a: %s", chs[1].Detail)
	}

	// keep 1: only the new one stays; the protected one is reported.
	got = actions(planRotation(all, "new", all[5].CreatedAt, Request{Name: "deb", Rotate: "private", Keep: 1}))
	if got != "keep-protected:p delete:a delete:b delete:c delete:legacy" {
		t.Errorf("keep 1: got %s", got)
	}
}

// Versions created within one second (Glance shows created_at to the
// second) are ordered as the series lists them, oldest first: keep 2
// deletes the older of two same-second versions, not the newer.
func TestPlanRotationSameSecond(t *testing.T) {
	prot := img("v1", "deb", StatePrevious, 0)
	prot.Protected = true
	v2 := img("v2", "deb (2026-11-01)", StatePrevious, 0)
	v3 := img("v3", "deb", StateCurrent, 0)
	v4 := img("v4", "deb", StateCurrent, 0)
	all := []images.Image{prot, v2, v3, v4}
	got := actions(planRotation(all, "v4", v4.CreatedAt, Request{Name: "deb", Rotate: "rename", Keep: 2}))
	if got != "rename:v1 rename:v3 keep-protected:v1 delete:v2" {
		t.Errorf("same-second versions, keep 2: got %s", got)
	}
}

// Already-retired images are left alone: a rerun changes nothing.
func TestPlanRotationIsIdempotent(t *testing.T) {
	old := img("a", "deb", StatePrevious, 1)
	old.Visibility = images.ImageVisibilityPrivate
	all := []images.Image{old, img("new", "deb", StateCurrent, 2)}
	if got := actions(planRotation(all, "new", all[1].CreatedAt, Request{Name: "deb", Rotate: "private"})); got != "" {
		t.Errorf("got %q, want nothing", got)
	}
}

// classify finishes or undoes what earlier runs left: a complete upload of
// the same file is reused, others are removed, another host's recent work
// is left alone.
func TestClassify(t *testing.T) {
	li := &LocalImage{SHA512: "aaa", MD5: "m", Size: 10}
	same := func(i images.Image) images.Image {
		i.Properties["os_hash_algo"], i.Properties["os_hash_value"], i.SizeBytes = "sha512", "aaa", 10
		return i
	}
	now := t0.AddDate(0, 0, 10)
	killed := img("killed", "deb.uploading-1", StateUploading, 1, PropHost, "me")
	killed.Status = images.ImageStatusSaving
	other := img("other", "deb.uploading-2", StateUploading, 10, PropHost, "elsewhere")
	other.Status = images.ImageStatusSaving
	oldOther := img("oldother", "deb.uploading-3", StateVerified, 1, PropHost, "elsewhere")
	verifiedSame := same(img("vs", "deb.uploading-4", StateVerified, 2, PropHost, "me"))
	verifiedOther := img("vo", "deb.uploading-5", StateVerified, 3, PropHost, "me")
	req := Request{Name: "deb", Host: "me", StaleAfter: 6 * time.Hour}

	rec := classify([]images.Image{killed, other, oldOther, verifiedSame, verifiedOther}, li, req, now)
	if rec.reuse == nil || rec.reuse.ID != "vs" {
		t.Errorf("reuse = %v, want vs", rec.reuse)
	}
	var left []string
	for _, i := range rec.leftovers {
		left = append(left, i.ID)
	}
	if got := strings.Join(left, " "); got != "killed oldother vo" {
		t.Errorf("leftovers %q", got)
	}
	if len(rec.inFlight) != 1 || rec.inFlight[0].ID != "other" {
		t.Errorf("in flight %v", rec.inFlight)
	}

	// The file holds the name already: nothing to upload, and a verified
	// copy of it is a leftover.
	cur := same(img("cur", "deb", StateCurrent, 4))
	rec = classify([]images.Image{verifiedSame, cur}, li, req, now)
	if rec.current == nil || rec.current.ID != "cur" || rec.reuse != nil || len(rec.leftovers) != 1 {
		t.Errorf("current %v reuse %v leftovers %v", rec.current, rec.reuse, rec.leftovers)
	}
}

func TestMatchesFallsBackToMD5(t *testing.T) {
	li := &LocalImage{SHA512: "aaa", MD5: "mmm", Size: 10}
	i := images.Image{Checksum: "MMM", SizeBytes: 10}
	if !matches(i, li) {
		t.Error("md5 checksum (any case) should match")
	}
	i.SizeBytes = 11
	if matches(i, li) {
		t.Error("size differs: must not match")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Name: ""}, "non-empty name"},
		{Request{Name: " x"}, "leading or trailing"},
		{Request{Name: "x", Visibility: "world"}, "use one of public"},
		{Request{Name: "x", Rotate: "delete"}, "rotation"},
		{Request{Name: "x", Keep: -1}, "keep -1"},
		{Request{Name: "x", Properties: map[string]string{"os_hash_value": "1"}}, "Glance manages"},
		{Request{Name: "x", Properties: map[string]string{"builder_state": "1"}}, "builder_*"},
		{Request{Name: "x", Properties: map[string]string{"min_ram": "lots"}}, "whole number"},
	} {
		r := c.req
		err := r.validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.req, err, c.want)
		}
	}
	r := Request{Name: "x"}
	if err := r.validate(); err != nil || r.Visibility != "public" || r.Rotate != "private" {
		t.Errorf("defaults: %v %+v", err, r)
	}
}

func TestPropertiesAndMinDisk(t *testing.T) {
	p := &publisher{
		li: &LocalImage{VirtualSize: 5<<30 + 1, Firmware: "uefi", OSDistro: "debian", OSVersion: "12", ModTime: t0},
		req: Request{Name: "x", Properties: map[string]string{"os_version": "12.8", "hw_disk_bus": "scsi", "min_ram": "512"},
			Meta: Metadata{Elements: []string{"debian", "vm"}, BuilderVersion: "v1"}},
	}
	props := p.properties()
	want := map[string]string{"os_distro": "debian", "os_version": "12.8", "hw_firmware_type": "uefi", "hw_disk_bus": "scsi",
		PropElements: "debian vm", PropVersion: "v1", PropBuildDate: "2026-11-01T10:00:00Z", "min_ram": "512"}
	for k, v := range want {
		if props[k] != v {
			t.Errorf("%s = %q, want %q", k, props[k], v)
		}
	}
	ops := fmt.Sprint(p.propertyOps())
	if !strings.Contains(ops, "{6}") || !strings.Contains(ops, "{512}") {
		t.Errorf("ops %s: want min_disk 6 (GiB, rounded up) and min_ram 512", ops)
	}
}

func TestDatedName(t *testing.T) {
	i := img("a", "deb", StatePrevious, 0, PropBuildDate, "2026-10-31T23:00:00Z")
	taken := map[string]bool{"deb (2026-10-31)": true}
	if got := datedName("deb", i, taken); got != "deb (2026-10-31 23:00:00)" {
		t.Errorf("got %q", got)
	}
}
