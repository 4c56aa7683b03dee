package publish

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// Only a superseded lease generation not renewed for over the TTL may be
// removed: never the newest of a lease (its record), never a live one,
// never an image that merely looks like a lease.
func TestSupersededLeases(t *testing.T) {
	now := time.Now()
	lease := func(id, key, gen, state string, renewed time.Duration) images.Image {
		return images.Image{ID: id, Name: LeaseNamePrefix + "deb", UpdatedAt: now.Add(-renewed), Properties: map[string]any{
			PropLease: key, PropLeaseGen: gen, PropLeaseState: state,
			PropLeaseRenewed: now.Add(-renewed).UTC().Format(time.RFC3339),
		}}
	}
	ttl := 10 * time.Minute
	imgs := []images.Image{
		lease("a0", "A", "0", "released", time.Hour),   // superseded, stale: goes
		lease("a1", "A", "1", "held", time.Hour),       // superseded (a2 exists), stale: goes
		lease("a2", "A", "2", "held", time.Hour),       // newest, stale: the record stays
		lease("b0", "B", "0", "released", time.Minute), // superseded but recent: stays
		lease("b1", "B", "1", "held", 0),
		lease("c0", "C", "0", "released", time.Hour), // the only one: stays
		// look-alikes: no key, a bad generation, another name
		{ID: "x1", Name: LeaseNamePrefix + "deb", UpdatedAt: now.Add(-time.Hour), Properties: map[string]any{PropLeaseGen: "0", PropLeaseState: "held"}},
		{ID: "x2", Name: LeaseNamePrefix + "deb", UpdatedAt: now.Add(-time.Hour), Properties: map[string]any{PropLease: "A", PropLeaseGen: "x", PropLeaseState: "held"}},
		{ID: "x3", Name: "deb", UpdatedAt: now.Add(-time.Hour), Properties: map[string]any{PropLease: "A", PropLeaseGen: "0", PropLeaseState: "held"}},
	}
	var got []string
	for _, img := range supersededLeases(imgs, ttl) {
		got = append(got, img.ID)
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "a0 a1" {
		t.Errorf("superseded leases: %v, want [a0 a1]", got)
	}
}

// A publish never takes a name that is a lease's, and a lease record is
// never taken for a version of a series.
func TestLeaseNameRefused(t *testing.T) {
	r := Request{Name: LeaseNamePrefix + "deb"}
	if err := r.validate(); err == nil || !strings.Contains(err.Error(), "publish leases") {
		t.Errorf("name %q: %v", r.Name, err)
	}
	if !isLease(images.Image{Name: "x", Properties: map[string]any{PropLease: "k"}}) || isLease(images.Image{Name: "deb"}) {
		t.Error("isLease")
	}
}
