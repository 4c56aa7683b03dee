package publish

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"builder/internal/flock"
)

// Image properties builder reads and writes. The builder_* ones record a
// publish's progress in Glance itself, so that a later run (on any host)
// can tell a finished image from a half-done one.
const (
	PropSeries     = "builder_series"      // the public name the image belongs to
	PropState      = "builder_state"       // StateUploading ... StatePrevious
	PropRun        = "builder_run"         // id of the publish run that uploaded it
	PropHost       = "builder_host"        // host of that run
	PropPromotedAt = "builder_promoted_at" // when it took the public name
	PropBuildDate  = "builder_build_date"
	PropElements   = "builder_elements"
	PropVersion    = "builder_version"
	PropSource     = "builder_source"        // the URL a downloaded image came from
	PropSourceSum  = "builder_source_digest" // its verified digest, "sha512:HEX"
	PropSBOM       = "builder_sbom_sha256"   // sha256 of the image's NAME.spdx.json
)

// Values of PropState, in the order an image goes through them.
const (
	// StateUploading: created under a temporary name, data not verified.
	StateUploading = "uploading"
	// StateVerified: active, Glance's hash matches the file, properties
	// set; still private under the temporary name.
	StateVerified = "verified"
	// StateCurrent: holds the public name.
	StateCurrent = "current"
	// StatePrevious: replaced by a newer image (made private or renamed).
	StatePrevious = "previous"
)

// Visibilities Glance knows; Rotations publish offers.
var (
	Visibilities = []string{"public", "private", "shared", "community"}
	Rotations    = []string{"private", "rename"}
)

// Metadata describes the build behind an image. Empty fields are left out
// (or, for the OS, taken from the image's os-release).
type Metadata struct {
	OSDistro, OSVersion string
	Elements            []string
	BuildDate           time.Time
	BuilderVersion      string
	// Source and SourceDigest: where a downloaded (not built) image came
	// from and the digest it was verified against.
	Source, SourceDigest string
	// Firmware, when known (a build's disk, or the caller's word), sets
	// the properties that make the cloud boot the image as it was built
	// (FirmwareProperties): architecture, UEFI, Secure Boot.
	Firmware *FirmwareFacts
}

// Request is one publish of a local image under a public name.
type Request struct {
	// Name is the public name.
	Name string
	// Visibility the new image gets (default public).
	Visibility string
	// Rotate says what happens to the images that had the name: "private"
	// (default: they keep the name and become private) or "rename" (they
	// keep their visibility and get their date in the name).
	Rotate string
	// Keep is how many versions stay, the new one included; older ones
	// are deleted, oldest first, except protected ones. 0 keeps all.
	Keep int
	// Properties are extra image properties (--property k=v); min_disk
	// and min_ram set those attributes.
	Properties map[string]string
	Meta       Metadata
	// Description, when set, is a text/template for the image's
	// description property, with DescriptionData (e.g. "Debian 12, built
	// {{.Date}}").
	Description string
	// SmokeTest, when set, boots the upload as a server in the cloud's
	// Nova before it is promoted; a failure blocks the promotion.
	SmokeTest *SmokeTest
	// DryRun reports what would change and changes nothing.
	DryRun bool
	// Force uploads the file even when the name already has this very
	// content (which otherwise only finishes the rotation).
	Force bool
	// ActiveTimeout bounds the wait for Glance to mark the upload active
	// (default 10 min). UploadStall fails an upload that sent nothing for
	// that long (default 5 min).
	ActiveTimeout time.Duration
	UploadStall   time.Duration
	// StaleAfter: half-done uploads of another host younger than this are
	// left alone, as that host may still be working on them (default 6 h).
	// This host's own are always finished or undone: the lock says that
	// nobody here is working on them.
	StaleAfter time.Duration
	// Host identifies this machine in PropHost (default os.Hostname()).
	Host string
	// LockDir, when set, holds a lock per cloud and name so that two
	// publishes on this host never work on the same name at once.
	LockDir string
	// LeaseTTL: publishes of one name on different hosts take turns
	// through a lease kept in Glance; a holder that has not renewed its
	// lease for this long is taken to have died (default 10 min).
	LeaseTTL time.Duration
	// Out receives one line per step.
	Out io.Writer
}

// Change is one thing publish did, or would do with DryRun.
type Change struct {
	Action    string `json:"action"` // delete-leftover, upload, reuse, promote, make-private, rename, delete, keep-protected, skip-in-flight
	ImageID   string `json:"image_id"`
	ImageName string `json:"image_name"`
	Detail    string `json:"detail,omitempty"`
}

// Result is what a publish did.
type Result struct {
	Cloud      string   `json:"cloud"`
	Name       string   `json:"name"`
	ImageID    string   `json:"image_id,omitempty"`
	Visibility string   `json:"visibility"`
	DiskFormat string   `json:"disk_format"`
	HashAlgo   string   `json:"hash_algo,omitempty"`
	HashValue  string   `json:"hash_value,omitempty"`
	Uploaded   bool     `json:"uploaded"`
	Already    bool     `json:"already_published"`
	DryRun     bool     `json:"dry_run"`
	Changes    []Change `json:"changes"`
	Warnings   []string `json:"warnings,omitempty"`
	// SmokeTest is what the smoke test in Nova saw, when it ran.
	SmokeTest *SmokeResult `json:"smoke_test,omitempty"`
}

// reserved are Glance's own attributes: they cannot be set as properties.
var reserved = map[string]bool{
	"id": true, "name": true, "status": true, "visibility": true, "protected": true, "os_hidden": true,
	"checksum": true, "os_hash_algo": true, "os_hash_value": true, "owner": true, "size": true,
	"virtual_size": true, "created_at": true, "updated_at": true, "file": true, "schema": true,
	"direct_url": true, "locations": true, "self": true, "tags": true, "container_format": true,
	"disk_format": true, "stores": true,
}

// Validate checks the request and fills in its defaults, before anything
// is read or sent: the command reports its error as a usage error.
func (r *Request) Validate() error { return r.validate() }

func (r *Request) validate() error {
	if strings.TrimSpace(r.Name) == "" || strings.TrimSpace(r.Name) != r.Name || len(r.Name) > 200 || strings.IndexFunc(r.Name, unicode.IsControl) >= 0 {
		return fmt.Errorf("image name %q: give a non-empty name on one line, without leading or trailing spaces (at most 200 characters)", r.Name)
	}
	if strings.HasPrefix(r.Name, LeaseNamePrefix) {
		return fmt.Errorf("image name %q: names starting with %q are builder's publish leases: choose another name", r.Name, LeaseNamePrefix)
	}
	if r.Visibility == "" {
		r.Visibility = "public"
	}
	if !contains(Visibilities, r.Visibility) {
		return fmt.Errorf("visibility %q: use one of %s", r.Visibility, strings.Join(Visibilities, ", "))
	}
	if r.Rotate == "" {
		r.Rotate = "private"
	}
	if !contains(Rotations, r.Rotate) {
		return fmt.Errorf("rotation %q: use private (previous images become private) or rename (they get their date in the name)", r.Rotate)
	}
	if r.LeaseTTL < 0 || (r.LeaseTTL > 0 && r.LeaseTTL < 2*time.Second) {
		return fmt.Errorf("lease TTL %s: give at least 2s (the default is 10m)", r.LeaseTTL)
	}
	if r.Keep < 0 {
		return fmt.Errorf("keep %d: give the number of versions to keep (0 keeps all)", r.Keep)
	}
	if err := ParseDescription(r.Description); err != nil {
		return err
	}
	if r.SmokeTest != nil {
		st := *r.SmokeTest
		if err := st.check(); err != nil {
			return err
		}
		r.SmokeTest = &st
	}
	for k, v := range r.Properties {
		switch {
		case reserved[k] || strings.HasPrefix(k, "os_glance"):
			return fmt.Errorf("property %q is an attribute Glance manages itself: remove it from --property", k)
		case strings.HasPrefix(k, "builder_"):
			return fmt.Errorf("property %q: builder_* properties record publish's own state; choose another name", k)
		case k == "min_disk" || k == "min_ram":
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return fmt.Errorf("property %s=%q: give a whole number (GiB for min_disk, MiB for min_ram)", k, v)
			}
		case k == "":
			return errors.New("property with an empty name: use --property key=value")
		}
	}
	if r.ActiveTimeout <= 0 {
		r.ActiveTimeout = 10 * time.Minute
	}
	if r.UploadStall <= 0 {
		r.UploadStall = 5 * time.Minute
	}
	if r.StaleAfter <= 0 {
		r.StaleAfter = 6 * time.Hour
	}
	if r.Host == "" {
		r.Host, _ = os.Hostname()
	}
	if r.Out == nil {
		r.Out = io.Discard
	}
	return nil
}

// publisher carries one publish run.
type publisher struct {
	c     *Cloud
	li    *LocalImage
	req   Request
	res   *Result
	run   string // this run's id
	owner string
	desc  string // the description, rendered
	lease *lease // nil in a dry run
}

func (p *publisher) say(format string, args ...any) {
	fmt.Fprintf(p.req.Out, "publish: "+format+"\n", args...)
}

func (p *publisher) record(ch Change) {
	p.res.Changes = append(p.res.Changes, ch)
	verb := ch.Action
	if p.req.DryRun {
		verb = "would " + verb
	}
	line := fmt.Sprintf("%s %s", verb, describe(ch.ImageID, ch.ImageName))
	if ch.Detail != "" {
		line += ": " + ch.Detail
	}
	p.say("%s", line)
}

func describe(id, name string) string {
	if id == "" {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("%s (%q)", id, name)
}

// Publish uploads li under a temporary private name, verifies it, gives it
// req.Name, retires the images that had the name and prunes old versions.
// Every step is one Glance call that leaves a usable image under the name:
// the new image takes the name before the old ones give it up. A run that
// died half-way is finished or undone by the next one, from the state kept
// in the images' builder_* properties.
func (c *Cloud) Publish(ctx context.Context, li *LocalImage, req Request) (res *Result, err error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	p := &publisher{c: c, li: li, req: req, owner: c.Project, run: newRunID()}
	p.res = &Result{Cloud: c.Label, Name: req.Name, Visibility: req.Visibility, DiskFormat: li.DiskFormat, DryRun: req.DryRun}
	defer func() {
		if err != nil && c.Redact != nil {
			err = c.Redact.Error(err)
		}
	}()
	if req.SmokeTest != nil {
		// Before anything is uploaded: a cloud without Nova cannot test.
		if err := c.RequireCompute(); err != nil {
			return nil, err
		}
	}
	if p.desc, err = RenderDescription(req.Description, p.descriptionData()); err != nil {
		return nil, err
	}

	if req.LockDir != "" {
		// The lock is the cloud's, however this command names it (a
		// clouds.yaml entry, OS_* variables): its image endpoint and
		// project, and the name.
		sum := sha256.Sum256([]byte(c.lockKey() + "\x00" + req.Name))
		path := filepath.Join(req.LockDir, "publish-"+hex.EncodeToString(sum[:8])+".lock")
		l, err := flock.Wait(ctx, path, "publish "+req.Name, func(holder string) {
			p.say("waiting: another publish of %q to %s is running (%s)", req.Name, c.Label, holder)
		})
		if err != nil {
			return nil, err
		}
		defer l.Unlock()
	}
	if !req.DryRun {
		// Across hosts: CI runners and pods publishing the same name.
		t := defaultLeaseTiming
		if req.LeaseTTL > 0 {
			t = leaseTiming{TTL: req.LeaseTTL, Renew: req.LeaseTTL / 10, Poll: min(t.Poll, req.LeaseTTL/10)}
		}
		l, err := c.acquireLease(ctx, req.Name, leaseHolder(req.Host, p.run), t, func(holder string) {
			p.say("waiting: another runner is publishing %q to %s (%s)", req.Name, c.Label, holder)
		})
		if err != nil {
			return nil, err
		}
		p.lease = l
		defer func() {
			if rerr := l.release(ctx); rerr != nil && err == nil {
				err = fmt.Errorf("release the publish lease: %w", rerr)
			}
		}()
	}

	p.say("%s to %s as %q: %s, %s virtual, sha512 %.16s...", filepath.Base(li.Path), c.Label, req.Name, li.DiskFormat, humanBytes(li.VirtualSize), li.SHA512)
	all, err := c.series(ctx, req.Name, p.owner)
	if err != nil {
		return p.res, err
	}
	rec := classify(all, li, req, time.Now())

	// 1. Undo what earlier runs left half-done (or note it, in a dry run).
	for _, img := range rec.inFlight {
		p.record(Change{Action: "skip-in-flight", ImageID: img.ID, ImageName: img.Name,
			Detail: fmt.Sprintf("upload by host %s, updated %s: left alone (it may still be running; removed once older than %s)", prop(img, PropHost), img.UpdatedAt.Format(time.RFC3339), req.StaleAfter)})
	}
	for _, img := range rec.leftovers {
		if img.Protected {
			p.record(Change{Action: "keep-protected", ImageID: img.ID, ImageName: img.Name, Detail: "half-done upload of an earlier run, but protected: left alone"})
			continue
		}
		p.record(Change{Action: "delete-leftover", ImageID: img.ID, ImageName: img.Name,
			Detail: fmt.Sprintf("%s by an earlier run (status %s) that did not finish", orDash(prop(img, PropState)), img.Status)})
		if !req.DryRun {
			if err := c.delete(ctx, img.ID); err != nil {
				return p.res, err
			}
		}
	}

	// 2. The new image: one already there for this very file, or an upload.
	var newImg *images.Image
	switch {
	case rec.current != nil:
		newImg = rec.current
		p.res.Already = true
		p.record(Change{Action: "reuse", ImageID: newImg.ID, ImageName: newImg.Name, Detail: "this file is published already; finishing the rotation"})
	case rec.reuse != nil:
		newImg = rec.reuse
		p.record(Change{Action: "reuse", ImageID: newImg.ID, ImageName: newImg.Name, Detail: "an earlier run uploaded this very file; finishing its publish"})
		if !req.DryRun && prop(*newImg, PropState) != StateVerified {
			if newImg, err = p.verify(ctx, newImg); err != nil {
				return p.res, err
			}
		}
	default:
		tmp := fmt.Sprintf("%s.uploading-%s", req.Name, p.run)
		p.record(Change{Action: "upload", ImageName: tmp, Detail: fmt.Sprintf("%s as %s, private until verified", humanBytes(li.Size), li.DiskFormat)})
		if !req.DryRun {
			if newImg, err = p.upload(ctx, tmp); err != nil {
				return p.res, err
			}
			p.res.Uploaded = true
		}
	}

	newID := "" // in a dry run the new image does not exist
	if newImg != nil {
		newID = newImg.ID
	}

	// 2b. The smoke test in the cloud: the upload, still private, boots
	// as a server before it may take the name.
	if req.SmokeTest != nil && rec.current == nil {
		if newImg != nil && prop(*newImg, PropSmoke) != "" {
			p.record(Change{Action: "smoke-test", ImageID: newID, ImageName: newImg.Name, Detail: "passed already: " + prop(*newImg, PropSmoke)})
		} else {
			p.record(Change{Action: "smoke-test", ImageID: newID, ImageName: orDash(imageName(newImg)), Detail: "boot it as a server in Nova before promoting it"})
			if !req.DryRun {
				if newImg, err = p.runSmokeTest(ctx, newImg); err != nil {
					return p.res, err
				}
			}
		}
	}

	// 3. Promote: the new image takes the name (the old ones still have it).
	p.record(Change{Action: "promote", ImageID: newID, ImageName: req.Name, Detail: "visibility " + req.Visibility})
	if !req.DryRun {
		if err := p.lease.check(ctx); err != nil {
			return p.res, err
		}
		if newImg, err = p.promote(ctx, newImg); err != nil {
			return p.res, err
		}
		p.res.ImageID = newImg.ID
		p.res.HashAlgo, p.res.HashValue = glanceHash(*newImg)
		// Re-read: the leftovers are gone and the new image exists now.
		if all, err = c.series(ctx, req.Name, p.owner); err != nil {
			return p.res, err
		}
	}

	// 4. Retire the images that had the name, then prune old versions.
	created := time.Now()
	if newImg != nil {
		created = newImg.CreatedAt
	}
	for _, ch := range planRotation(all, newID, created, req) {
		p.record(ch.Change)
		if req.DryRun || ch.Action == "keep-protected" {
			continue
		}
		if err := p.lease.check(ctx); err != nil {
			return p.res, err
		}
		if ch.Action == "delete" {
			err = c.delete(ctx, ch.ImageID)
		} else {
			_, err = c.update(ctx, ch.ImageID, ch.ops)
		}
		if err != nil {
			return p.res, err
		}
	}
	if req.DryRun {
		p.say("dry run: nothing was changed")
	} else if p.res.Already {
		p.say("unchanged: %q is %s, already this file (%s, active, %s verified)", req.Name, newImg.ID, req.Visibility, p.res.HashAlgo)
	} else {
		p.say("done: %q is %s (%s, active, %s verified)", req.Name, newImg.ID, req.Visibility, p.res.HashAlgo)
	}
	return p.res, nil
}

// Current returns the ID of the image that has req.Name with this very
// content (promoted, active, its recorded hash the file's), or "":
// publishing the file again would change nothing, so it needs no boot
// test and no upload. With req.Force it is always "".
func (c *Cloud) Current(ctx context.Context, li *LocalImage, req Request) (string, error) {
	if err := req.validate(); err != nil {
		return "", err
	}
	all, err := c.series(ctx, req.Name, c.Project)
	if err != nil {
		return "", err
	}
	if cur := classify(all, li, req, time.Now()).current; cur != nil {
		return cur.ID, nil
	}
	return "", nil
}

// series lists the images of this owner that belong to the name: those
// carrying builder_series, and any other image under the name (published
// before builder did it, or by hand), which the rotation adopts.
func (c *Cloud) series(ctx context.Context, name, owner string) ([]images.Image, error) {
	base := images.ListOpts{Visibility: images.ImageVisibility("all"), Owner: owner, SortKey: "created_at", SortDir: "asc"}
	bySeries, err := c.list(ctx, listQuery{ListOpts: base, props: map[string]string{PropSeries: name}})
	if err != nil {
		return nil, err
	}
	byNameOpts := base
	byNameOpts.Name = name
	byName, err := c.list(ctx, listQuery{ListOpts: byNameOpts})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []images.Image
	for _, img := range append(bySeries, byName...) {
		// Without Keystone there is no owner to filter on: images with no
		// owner are this caller's, the others belong to someone else.
		if seen[img.ID] || img.Owner != owner || isLease(img) {
			continue // a lease record is builder's, never a version
		}
		seen[img.ID] = true
		out = append(out, img)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// recovery is what classify makes of the series before anything changes.
type recovery struct {
	leftovers []images.Image // half-done by earlier runs: undo
	inFlight  []images.Image // another host's, recent: leave alone
	reuse     *images.Image  // a complete upload of this very file: finish it
	current   *images.Image  // this very file holds the name already
}

func classify(all []images.Image, li *LocalImage, req Request, now time.Time) recovery {
	var rec recovery
	for i := range all {
		img := all[i]
		if prop(img, PropSeries) != req.Name {
			continue // not builder's: only the rotation looks at it
		}
		state := prop(img, PropState)
		switch {
		case !req.Force && state == StateCurrent && img.Name == req.Name && img.Status == images.ImageStatusActive && matches(img, li):
			if rec.current == nil || img.CreatedAt.After(rec.current.CreatedAt) {
				rec.current = &img
			}
		case state == StateCurrent || state == StatePrevious:
			// finished images: the rotation deals with them
		default:
			// uploading, verified, or unknown: a publish that did not finish
			if prop(img, PropHost) != req.Host && now.Sub(img.UpdatedAt) < req.StaleAfter {
				rec.inFlight = append(rec.inFlight, img)
				continue
			}
			if !req.Force && img.Status == images.ImageStatusActive && matches(img, li) && (rec.reuse == nil || img.CreatedAt.After(rec.reuse.CreatedAt)) {
				if rec.reuse != nil {
					rec.leftovers = append(rec.leftovers, *rec.reuse)
				}
				rec.reuse = &img
				continue
			}
			rec.leftovers = append(rec.leftovers, img)
		}
	}
	if rec.current != nil && rec.reuse != nil {
		rec.leftovers = append(rec.leftovers, *rec.reuse)
		rec.reuse = nil
	}
	return rec
}

// glanceHash is the hash Glance recorded: the multihash when present, else
// the legacy md5 checksum.
func glanceHash(img images.Image) (algo, value string) {
	if a, v := prop(img, "os_hash_algo"), prop(img, "os_hash_value"); a != "" && v != "" {
		return strings.ToLower(a), strings.ToLower(v)
	}
	if img.Checksum != "" {
		return "md5", strings.ToLower(img.Checksum)
	}
	return "", ""
}

// matches says whether Glance's record of img is the local file.
func matches(img images.Image, li *LocalImage) bool {
	algo, value := glanceHash(img)
	local := li.HashFor(algo)
	return local != "" && local == value && (img.SizeBytes == 0 || img.SizeBytes == li.Size)
}

// upload creates the image under a temporary private name, sends the data,
// waits for active and verifies it. On failure it deletes what it created;
// if even that fails, the next run does it.
func (p *publisher) upload(ctx context.Context, tmpName string) (*images.Image, error) {
	priv := images.ImageVisibilityPrivate
	img, err := p.c.create(ctx, images.CreateOpts{
		Name:            tmpName,
		Visibility:      &priv,
		ContainerFormat: "bare",
		DiskFormat:      p.li.DiskFormat,
		Properties: map[string]string{
			PropSeries: p.req.Name,
			PropState:  StateUploading,
			PropRun:    p.run,
			PropHost:   p.req.Host,
		},
	})
	if err != nil {
		return nil, err
	}
	undo := func(cause error) error {
		// The caller's context may be the reason we are here (Ctrl-C):
		// clean up on a context of our own.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := p.c.delete(uctx, img.ID); derr != nil {
			return fmt.Errorf("%w; removing the unfinished upload %s failed too (%v): the next publish of %q removes it", cause, img.ID, derr, p.req.Name)
		}
		p.say("removed the unfinished upload %s", img.ID)
		return cause
	}
	if err := p.send(ctx, img.ID); err != nil {
		return nil, undo(err)
	}
	verified, err := p.verify(ctx, img)
	if err != nil {
		return nil, undo(err)
	}
	return verified, nil
}

// send streams the file to Glance, hashing what it sends (the file must
// not change under the upload) and failing when the upload stalls.
func (p *publisher) send(ctx context.Context, id string) error {
	f, err := os.Open(p.li.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr := newProgressReader(f, p.li.Size, p.req.Out)
	stop := pr.watch(p.req.UploadStall, func() {
		cancel(fmt.Errorf("upload stalled: nothing sent for %s", p.req.UploadStall))
	})
	start := time.Now()
	err = p.c.upload(ctx, id, pr)
	stop()
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("%w (%v)", err, cause)
	}
	if err != nil {
		return err
	}
	if pr.n != p.li.Size || pr.sum() != p.li.SHA512 {
		return fmt.Errorf("%s changed while it was uploaded (%d of %d bytes, different hash): do not rebuild an image while publishing it", p.li.Path, pr.n, p.li.Size)
	}
	secs := time.Since(start).Seconds()
	p.say("uploaded %s in %.0f s (%s/s)", humanBytes(pr.n), secs, humanBytes(int64(float64(pr.n)/max(secs, 0.001))))
	return nil
}

// verify waits until Glance marks img active, checks its recorded hash and
// size against the file, and records the image's properties with state
// verified.
func (p *publisher) verify(ctx context.Context, img *images.Image) (*images.Image, error) {
	deadline := time.Now().Add(p.req.ActiveTimeout)
	for {
		var err error
		if img, err = p.c.get(ctx, img.ID); err != nil {
			return nil, err
		}
		if img.Status == images.ImageStatusActive {
			break
		}
		switch img.Status {
		case images.ImageStatusKilled, images.ImageStatusDeleted, images.ImageStatusPendingDelete, images.ImageStatusDeactivated:
			return nil, fmt.Errorf("%s: Glance put the upload %s in status %q instead of active (see Glance's log)", p.c.Label, img.ID, img.Status)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: upload %s still %q after %s: Glance did not finish storing it (raise --active-timeout, or check Glance's store)", p.c.Label, img.ID, img.Status, p.req.ActiveTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	algo, value := glanceHash(*img)
	if algo == "" {
		return nil, fmt.Errorf("%s: Glance recorded no hash for %s (neither os_hash_value nor checksum): cannot verify the upload", p.c.Label, img.ID)
	}
	local := p.li.HashFor(algo)
	if local == "" {
		h := newHash(algo)
		if h == nil {
			return nil, fmt.Errorf("%s: Glance hashes with %q, which builder does not know: cannot verify the upload", p.c.Label, algo)
		}
		f, err := os.Open(p.li.Path)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(h, &ctxReader{ctx: ctx, r: f})
		f.Close()
		if err != nil {
			return nil, err
		}
		local = hex.EncodeToString(h.Sum(nil))
	}
	if local != value {
		return nil, fmt.Errorf("%s: Glance recorded %s %.16s... for %s but the file has %.16s...: the data was damaged on the way", p.c.Label, algo, value, img.ID, local)
	}
	if img.SizeBytes != 0 && img.SizeBytes != p.li.Size {
		return nil, fmt.Errorf("%s: Glance stored %d bytes for %s, the file has %d: the upload is incomplete", p.c.Label, img.SizeBytes, img.ID, p.li.Size)
	}
	p.say("%s is active; Glance's %s matches the file", img.ID, algo)
	ops := p.propertyOps()
	ops = append(ops, images.UpdateImageProperty{Op: images.AddOp, Name: PropState, Value: StateVerified})
	if ops = pending(*img, ops); len(ops) == 0 {
		return img, nil
	}
	return p.c.update(ctx, img.ID, ops)
}

// promote gives the verified image the name, the visibility and state
// current in one call: Glance applies a patch as a whole.
func (p *publisher) promote(ctx context.Context, img *images.Image) (*images.Image, error) {
	ops := p.propertyOps()
	ops = append(ops,
		images.ReplaceImageName{NewName: p.req.Name},
		images.UpdateVisibility{Visibility: images.ImageVisibility(p.req.Visibility)},
		images.UpdateImageProperty{Op: images.AddOp, Name: PropState, Value: StateCurrent},
	)
	if prop(*img, PropPromotedAt) == "" || img.Name != p.req.Name {
		ops = append(ops, images.UpdateImageProperty{Op: images.AddOp, Name: PropPromotedAt, Value: time.Now().UTC().Format(time.RFC3339)})
	}
	ops = pending(*img, ops)
	if len(ops) == 0 {
		return img, nil // promoted already, exactly so: change nothing
	}
	out, err := p.c.update(ctx, img.ID, ops)
	if err == nil {
		return out, nil
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	refused := errors.As(err, &ue) && ue.Actual >= 400 && ue.Actual < 500 &&
		ue.Actual != http.StatusUnauthorized && ue.Actual != http.StatusRequestTimeout && ue.Actual != http.StatusTooManyRequests
	if p.req.Visibility == "public" && refused && ue.Actual == http.StatusForbidden {
		err = fmt.Errorf("%w; making images public is usually reserved to admins (policy publicize_image): publish with admin credentials or use --visibility shared or community", err)
	}
	if refused && p.res.Uploaded {
		// Glance said no, and would say it again to a rerun: take the
		// upload back (nothing else changed yet). After a transient
		// failure it stays, verified, for the rerun to promote.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := p.c.delete(uctx, img.ID); derr == nil {
			p.say("removed the upload %s, which could not be promoted", img.ID)
		}
	}
	return nil, err
}

// pending drops the operations that would not change img, so that a
// rerun over a finished publish is a no-op in Glance.
func pending(img images.Image, ops images.UpdateOpts) images.UpdateOpts {
	var out images.UpdateOpts
	for _, op := range ops {
		same := false
		switch o := op.(type) {
		case images.UpdateImageProperty:
			same = o.Op == images.AddOp && prop(img, o.Name) == o.Value && img.Properties[o.Name] != nil
		case images.ReplaceImageName:
			same = img.Name == o.NewName
		case images.UpdateVisibility:
			same = img.Visibility == o.Visibility
		case images.ReplaceImageMinDisk:
			same = img.MinDiskGigabytes == o.NewMinDisk
		case images.ReplaceImageMinRam:
			same = img.MinRAMMegabytes == o.NewMinRam
		}
		if !same {
			out = append(out, op)
		}
	}
	return out
}

// properties are the image's descriptive properties: what the build and
// the image say, then the user's --property values.
func (p *publisher) properties() map[string]string {
	m := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("os_distro", firstOf(p.req.Meta.OSDistro, p.li.OSDistro))
	set("os_version", firstOf(p.req.Meta.OSVersion, p.li.OSVersion))
	if p.li.Firmware == "uefi" {
		set("hw_firmware_type", "uefi")
	}
	// Nova schedules an image only on hosts of its architecture.
	if a, ok := glanceArch[p.li.Arch]; ok {
		set("architecture", a)
	}
	if f := p.req.Meta.Firmware; f != nil {
		for k, v := range FirmwareProperties(*f) {
			set(k, v)
		}
	}
	date := p.req.Meta.BuildDate
	if date.IsZero() {
		date = p.li.ModTime
	}
	set(PropBuildDate, date.UTC().Format(time.RFC3339))
	set(PropElements, strings.Join(p.req.Meta.Elements, " "))
	set(PropVersion, p.req.Meta.BuilderVersion)
	set(PropSource, p.req.Meta.Source)
	set(PropSourceSum, p.req.Meta.SourceDigest)
	set(PropSBOM, p.li.SBOMDigest)
	set("description", p.desc)
	for k, v := range p.req.Properties {
		m[k] = v
	}
	return m
}

func (p *publisher) propertyOps() images.UpdateOpts {
	props := p.properties()
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ops images.UpdateOpts
	minDisk := int((p.li.VirtualSize + 1<<30 - 1) >> 30)
	for _, k := range keys {
		switch k {
		case "min_disk":
			minDisk, _ = strconv.Atoi(props[k])
		case "min_ram":
			n, _ := strconv.Atoi(props[k])
			ops = append(ops, images.ReplaceImageMinRam{NewMinRam: n})
		default:
			ops = append(ops, images.UpdateImageProperty{Op: images.AddOp, Name: k, Value: props[k]})
		}
	}
	return append(ops, images.ReplaceImageMinDisk{NewMinDisk: minDisk})
}

// plannedChange is a Change with the Glance call that makes it.
type plannedChange struct {
	Change
	ops images.UpdateOpts
}

// planRotation decides, from the series as it is, how the images that had
// the name are retired and which versions beyond req.Keep are deleted. The
// new image (newID, created at newCreated) is never touched.
func planRotation(all []images.Image, newID string, newCreated time.Time, req Request) []plannedChange {
	type version struct {
		img     images.Image
		created time.Time
		order   int // place in all (Glance's creation order)
	}
	var demote []images.Image
	var versions []version
	for _, img := range all {
		if img.ID == newID {
			continue
		}
		series := prop(img, PropSeries) == req.Name
		state := prop(img, PropState)
		hasName := img.Name == req.Name || (series && state == StateCurrent)
		if series && state != StateCurrent && state != StatePrevious && !hasName {
			continue // half-done uploads are not versions
		}
		// Made private by an earlier rotation already: nothing to do. (In
		// rename mode an image still under the name is renamed.)
		retired := state == StatePrevious && series && req.Rotate == "private" && img.Visibility == images.ImageVisibilityPrivate
		if hasName && !retired {
			demote = append(demote, img)
		}
		if (series || hasName) && img.Status == images.ImageStatusActive {
			versions = append(versions, version{img, img.CreatedAt, len(versions)})
		}
	}
	// Newest first; the new image is version 1. Glance shows creation
	// times to the second only: images created within one second (quick
	// republishes) are told apart by their order in all, which is
	// Glance's own, finer, creation order.
	sort.SliceStable(versions, func(i, j int) bool {
		if !versions[i].created.Equal(versions[j].created) {
			return versions[i].created.After(versions[j].created)
		}
		return versions[i].order > versions[j].order
	})
	doomed := map[string]bool{}
	var pruning []plannedChange
	if req.Keep > 0 && len(versions)+1 > req.Keep {
		old := versions[req.Keep-1:]
		// Oldest first.
		for i := len(old) - 1; i >= 0; i-- {
			img := old[i].img
			if img.Protected {
				pruning = append(pruning, plannedChange{Change: Change{Action: "keep-protected", ImageID: img.ID, ImageName: img.Name,
					Detail: fmt.Sprintf("beyond --keep %d but protected", req.Keep)}})
				continue
			}
			doomed[img.ID] = true
			pruning = append(pruning, plannedChange{Change: Change{Action: "delete", ImageID: img.ID, ImageName: img.Name,
				Detail: fmt.Sprintf("created %s, beyond --keep %d", img.CreatedAt.Format("2006-01-02 15:04"), req.Keep)}})
		}
	}

	taken := map[string]bool{}
	for _, img := range all {
		if !doomed[img.ID] {
			taken[img.Name] = true
		}
	}
	var out []plannedChange
	for _, img := range demote {
		if doomed[img.ID] {
			continue // deleted below anyway: one call, not two
		}
		ops := images.UpdateOpts{
			images.UpdateImageProperty{Op: images.AddOp, Name: PropState, Value: StatePrevious},
			images.UpdateImageProperty{Op: images.AddOp, Name: PropSeries, Value: req.Name},
		}
		ch := Change{ImageID: img.ID, ImageName: img.Name}
		if req.Rotate == "rename" {
			nn := datedName(req.Name, img, taken)
			taken[nn] = true
			ops = append(ops, images.ReplaceImageName{NewName: nn})
			ch.Action, ch.Detail = "rename", fmt.Sprintf("to %q (visibility stays %s)", nn, img.Visibility)
		} else {
			ops = append(ops, images.UpdateVisibility{Visibility: images.ImageVisibilityPrivate})
			ch.Action, ch.Detail = "make-private", fmt.Sprintf("was %s, created %s", img.Visibility, img.CreatedAt.Format("2006-01-02 15:04"))
		}
		out = append(out, plannedChange{Change: ch, ops: ops})
	}
	return append(out, pruning...)
}

// datedName is "NAME (2026-11-26)" from the build date (or creation), with
// the time added when that name is taken already.
func datedName(name string, img images.Image, taken map[string]bool) string {
	t := img.CreatedAt
	if d, err := time.Parse(time.RFC3339, prop(img, PropBuildDate)); err == nil {
		t = d
	}
	t = t.UTC()
	candidates := []string{
		fmt.Sprintf("%s (%s)", name, t.Format("2006-01-02")),
		fmt.Sprintf("%s (%s)", name, t.Format("2006-01-02 15:04:05")),
	}
	for _, c := range candidates {
		if !taken[c] {
			return c
		}
	}
	for i := 2; ; i++ {
		c := fmt.Sprintf("%s (%s #%d)", name, t.Format("2006-01-02 15:04:05"), i)
		if !taken[c] {
			return c
		}
	}
}

func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// lockKey identifies the cloud and project a publish writes to.
func (c *Cloud) lockKey() string {
	if c.image != nil {
		return strings.TrimSuffix(c.image.Endpoint, "/") + "\x00" + c.Project
	}
	return c.Label
}
