package publish

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// DefaultOrphanAge is how old a temporary upload or a smoke-test server
// must be before CleanupOrphans takes it for the leftover of a crashed run
// (as Request.StaleAfter: a younger one may belong to a run still going).
const DefaultOrphanAge = 6 * time.Hour

// CleanupRequest is one cleanup of what crashed runs left in a cloud.
type CleanupRequest struct {
	// OlderThan: only leftovers not updated for this long are removed
	// (default DefaultOrphanAge).
	OlderThan time.Duration
	DryRun    bool
	Out       io.Writer
}

// CleanupResult is what a cleanup found and did.
type CleanupResult struct {
	Cloud   string   `json:"cloud"`
	Changes []Change `json:"changes"`
	// Servers says whether smoke-test servers were looked for (the cloud
	// has Nova).
	Servers  bool     `json:"servers_checked"`
	Warnings []string `json:"warnings,omitempty"`
}

// tempNameRE is the temporary name publish uploads under:
// NAME.uploading-<run id>.
var tempNameRE = regexp.MustCompile(`^(.+)\.uploading-(\d{8}T\d{6}Z-[0-9a-f]{6})$`)

// smokeNameRE is a smoke-test server's name.
var smokeNameRE = regexp.MustCompile(`^` + regexp.QuoteMeta(SmokeServerPrefix) + `\d{8}T\d{6}Z-[0-9a-f]{6}$`)

// CleanupOrphans removes what publish runs that died left behind in this
// project: images still under a temporary name (NAME.uploading-RUN, in
// state uploading or verified, with their run recorded) and smoke-test
// servers (builder-smoke-RUN with builder's metadata), once older than
// req.OlderThan. Only what carries all of builder's marks is touched;
// protected images are kept. Publish leases (".builder-lease NAME") are
// builder's own records: only superseded generations past the lease's TTL
// go (cleanupLeases).
func (c *Cloud) CleanupOrphans(ctx context.Context, req CleanupRequest) (*CleanupResult, error) {
	if req.OlderThan <= 0 {
		req.OlderThan = DefaultOrphanAge
	}
	if req.Out == nil {
		req.Out = io.Discard
	}
	res := &CleanupResult{Cloud: c.Label}
	now := time.Now()
	record := func(ch Change) {
		res.Changes = append(res.Changes, ch)
		verb := ch.Action
		if req.DryRun && (verb == "delete-orphan" || verb == "delete-orphan-server") {
			verb = "would " + verb
		}
		fmt.Fprintf(req.Out, "cleanup: %s %s: %s\n", verb, describe(ch.ImageID, ch.ImageName), ch.Detail)
	}

	for _, state := range []string{StateUploading, StateVerified} {
		imgs, err := c.list(ctx, listQuery{
			ListOpts: images.ListOpts{Visibility: images.ImageVisibility("all"), Owner: c.Project, SortKey: "created_at", SortDir: "asc"},
			props:    map[string]string{PropState: state},
		})
		if err != nil {
			return res, err
		}
		for _, img := range imgs {
			m := tempNameRE.FindStringSubmatch(img.Name)
			if img.Owner != c.Project || m == nil || isLease(img) || prop(img, PropSeries) != m[1] || prop(img, PropRun) != m[2] {
				continue // not a temporary upload of builder's
			}
			age := now.Sub(img.UpdatedAt)
			switch {
			case img.Protected:
				record(Change{Action: "keep-protected", ImageID: img.ID, ImageName: img.Name, Detail: "a leftover upload, but protected"})
			case age < req.OlderThan:
				record(Change{Action: "keep-young", ImageID: img.ID, ImageName: img.Name,
					Detail: fmt.Sprintf("updated %s ago by host %s: its run may still be going (removed once older than %s)", age.Round(time.Second), orDash(prop(img, PropHost)), req.OlderThan)})
			default:
				record(Change{Action: "delete-orphan", ImageID: img.ID, ImageName: img.Name,
					Detail: fmt.Sprintf("%s upload of %q by host %s, untouched for %s", state, m[1], orDash(prop(img, PropHost)), age.Round(time.Minute))})
				if !req.DryRun {
					if err := c.delete(ctx, img.ID); err != nil {
						return res, err
					}
				}
			}
		}
	}

	if err := c.cleanupLeases(ctx, req, record); err != nil {
		return res, err
	}

	if !c.hasCompute() {
		return res, nil
	}
	res.Servers = true
	cc, err := c.compute()
	if err != nil {
		return res, err
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	pages, err := servers.List(cc, servers.ListOpts{Name: "^" + regexp.QuoteMeta(SmokeServerPrefix)}).AllPages(cctx)
	cancel()
	if err != nil {
		return res, fmt.Errorf("%s: list servers: %w", c.Label, c.computeError(err))
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return res, err
	}
	for _, s := range all {
		run := strings.TrimPrefix(s.Name, SmokeServerPrefix)
		if !smokeNameRE.MatchString(s.Name) || s.Metadata[MetaSmoke] == "" || s.Metadata[PropRun] != run {
			continue // not a smoke-test server of builder's
		}
		if c.Project != "" && s.TenantID != "" && s.TenantID != c.Project {
			continue
		}
		age := now.Sub(s.Created)
		if age < req.OlderThan {
			record(Change{Action: "keep-young", ImageID: s.ID, ImageName: s.Name,
				Detail: fmt.Sprintf("smoke-test server of %q, %s old: its run may still be going", s.Metadata[MetaSmoke], age.Round(time.Second))})
			continue
		}
		record(Change{Action: "delete-orphan-server", ImageID: s.ID, ImageName: s.Name,
			Detail: fmt.Sprintf("smoke-test server of %q by host %s, %s, created %s ago", s.Metadata[MetaSmoke], orDash(s.Metadata[PropHost]), s.Status, age.Round(time.Minute))})
		if req.DryRun {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		err := c.deleteServer(dctx, cc, s.ID)
		cancel()
		if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			w := fmt.Sprintf("server %s: %v", s.ID, err)
			res.Warnings = append(res.Warnings, w)
			fmt.Fprintf(req.Out, "cleanup: warning: %s\n", w)
		}
	}
	return res, nil
}

// LeaseNamePrefix starts the name of the images that hold publish leases
// (lease.go): builder's own records, never a user's image, never in a
// series.
const LeaseNamePrefix = ".builder-lease "

// isLease says whether img is one of builder's lease records.
func isLease(img images.Image) bool {
	return strings.HasPrefix(img.Name, LeaseNamePrefix) || prop(img, PropLease) != ""
}

// cleanupLeases removes the lease records a crash or a failed delete left
// behind (supersededLeases); every other lease record stays.
func (c *Cloud) cleanupLeases(ctx context.Context, req CleanupRequest, record func(Change)) error {
	var all []images.Image
	for _, state := range []string{"held", "released"} {
		imgs, err := c.list(ctx, listQuery{
			ListOpts: images.ListOpts{Visibility: images.ImageVisibility("all"), Owner: c.Project},
			props:    map[string]string{PropLeaseState: state},
		})
		if err != nil {
			return err
		}
		for _, img := range imgs {
			if img.Owner == c.Project {
				all = append(all, img)
			}
		}
	}
	ttl := defaultLeaseTiming.TTL
	for _, g := range supersededLeases(all, ttl) {
		name := strings.TrimPrefix(g.Name, LeaseNamePrefix)
		if g.Protected {
			record(Change{Action: "keep-protected", ImageID: g.ID, ImageName: g.Name, Detail: "a superseded publish lease, but protected"})
			continue
		}
		record(Change{Action: "delete-orphan", ImageID: g.ID, ImageName: g.Name,
			Detail: fmt.Sprintf("generation %s of the publish lease of %q: superseded, and not renewed for over %s", prop(g, PropLeaseGen), name, ttl)})
		if !req.DryRun {
			if err := c.delete(ctx, g.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// supersededLeases are the lease records that may go: a generation with a
// newer one of the same lease, not renewed for longer than the lease's
// TTL (its holder is gone and nobody waits on it). The newest generation
// of each lease stays even when stale: it is the lease's record, from
// which the next publisher derives the next generation's ID (and takes a
// stale one over). Images without all of a lease's marks are not leases.
func supersededLeases(imgs []images.Image, ttl time.Duration) []images.Image {
	newest := map[string]int{}
	for _, img := range imgs {
		if k := prop(img, PropLease); k != "" && strings.HasPrefix(img.Name, LeaseNamePrefix) && leaseGen(img) >= 0 {
			if g, ok := newest[k]; !ok || leaseGen(img) > g {
				newest[k] = leaseGen(img)
			}
		}
	}
	var out []images.Image
	for _, img := range imgs {
		g, ok := newest[prop(img, PropLease)]
		if !ok || !strings.HasPrefix(img.Name, LeaseNamePrefix) || leaseGen(img) < 0 || leaseGen(img) >= g || !leaseStale(img, ttl) {
			continue
		}
		out = append(out, img)
	}
	return out
}

func leaseGen(img images.Image) int {
	n, err := strconv.Atoi(prop(img, PropLeaseGen))
	if err != nil {
		return -1
	}
	return n
}

// hasCompute says whether the catalog has Nova.
func (c *Cloud) hasCompute() bool {
	return c.RequireCompute() == nil
}
