package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// Two publishes of one name never run at once, on one host (a file lock)
// or on several (this lease, held in Glance itself, which every runner
// already reaches). Glance has one atomic operation usable as a lock:
// creating an image with a given ID fails with 409 when that ID exists (or
// existed: Glance never gives a deleted image's ID out again). So the lease
// of a name is a sequence of generations, each an empty private image
// ".builder-lease NAME" whose ID is derived from the cloud, the name and
// the generation: whoever creates generation G+1 holds the lease, once G
// is released or stale (its holder stopped renewing it, having died).
// The newest generation stays in Glance as the lease's record (one empty
// image per published name); older ones are deleted.

// Lease properties.
const (
	PropLease        = "builder_lease"         // the lease's key (cloud, project, name)
	PropLeaseGen     = "builder_lease_gen"     // generation
	PropLeaseHolder  = "builder_lease_holder"  // host, process and run
	PropLeaseState   = "builder_lease_state"   // held, released
	PropLeaseRenewed = "builder_lease_renewed" // RFC 3339, the holder's last renewal
	PropLeaseTTL     = "builder_lease_ttl"     // seconds without renewal after which the holder is taken to be dead
)

var leaseNamespace = uuid.MustParse("0d5f3e1c-6a43-4a49-9a53-6c1b3f2b9a77")

// leaseTiming: a holder renews every Renew; a lease not renewed for TTL is
// stale (its holder died) and may be taken over; waiters poll every Poll.
type leaseTiming struct {
	TTL, Renew, Poll time.Duration
}

var defaultLeaseTiming = leaseTiming{TTL: 10 * time.Minute, Renew: time.Minute, Poll: 3 * time.Second}

// lease is a held lease.
type lease struct {
	c      *Cloud
	key    string
	gen    int
	id     string
	holder string
	stop   context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	lost   error
}

func leaseKey(c *Cloud, name string) string {
	sum := sha256.Sum256([]byte(c.lockKey() + "\x00" + name))
	return hex.EncodeToString(sum[:16])
}

func leaseID(key string, gen int) string {
	return uuid.NewSHA1(leaseNamespace, []byte(key+"/"+strconv.Itoa(gen))).String()
}

// acquireLease takes the lease of name in c, waiting while another runner
// holds it (busy is told who, once).
func (c *Cloud) acquireLease(ctx context.Context, name, holder string, t leaseTiming, busy func(string)) (*lease, error) {
	key := leaseKey(c, name)
	told := false
	for {
		gens, err := c.leaseGenerations(ctx, key)
		if err != nil {
			return nil, err
		}
		top := -1
		var topImg *images.Image
		if len(gens) > 0 {
			topImg = &gens[len(gens)-1]
			top, _ = strconv.Atoi(prop(*topImg, PropLeaseGen))
		}
		if topImg != nil && prop(*topImg, PropLeaseState) != "released" && !leaseStale(*topImg, t.TTL) && !heldByNoOne(prop(*topImg, PropLeaseHolder), holder) {
			if !told && busy != nil {
				busy(prop(*topImg, PropLeaseHolder))
				told = true
			}
			if err := sleepCtx(ctx, t.Poll); err != nil {
				return nil, err
			}
			continue
		}
		// Free (or stale): try the next generation; an ID Glance has seen
		// before (a generation deleted without a newer one listed) is
		// skipped.
		for gen := top + 1; gen < top+64; gen++ {
			l, taken, err := c.createLease(ctx, name, key, gen, holder, t)
			if err != nil {
				return nil, err
			}
			if l != nil {
				// Older generations are done with.
				for _, g := range gens {
					_ = c.delete(ctx, g.ID)
				}
				l.start(t)
				return l, nil
			}
			if taken {
				break // another runner got it first: wait for it
			}
		}
		if err := sleepCtx(ctx, t.Poll); err != nil {
			return nil, err
		}
	}
}

// createLease tries to create generation gen. taken reports that another
// runner holds it now; neither l nor taken: that ID is spent (deleted).
func (c *Cloud) createLease(ctx context.Context, name, key string, gen int, holder string, t leaseTiming) (l *lease, taken bool, err error) {
	id := leaseID(key, gen)
	now := time.Now().UTC().Format(time.RFC3339)
	_, err = c.create(ctx, images.CreateOpts{
		ID: id, Name: ".builder-lease " + name, Visibility: ptr(images.ImageVisibilityPrivate),
		Properties: map[string]string{
			PropLease: key, PropLeaseGen: strconv.Itoa(gen), PropLeaseHolder: holder,
			PropLeaseState: "held", PropLeaseRenewed: now,
			PropLeaseTTL: strconv.Itoa(int(t.TTL.Seconds() + 0.5)),
		},
	})
	if err == nil {
		return &lease{c: c, key: key, gen: gen, id: id, holder: holder}, false, nil
	}
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		return nil, false, fmt.Errorf("publish lease of %q: %w", name, err)
	}
	if _, gerr := c.get(ctx, id); gerr == nil {
		return nil, true, nil
	} else if !gophercloud.ResponseCodeIs(gerr, http.StatusNotFound) {
		return nil, false, gerr
	}
	return nil, false, nil
}

func ptr[T any](v T) *T { return &v }

// leaseGenerations lists the lease's images, oldest generation first.
func (c *Cloud) leaseGenerations(ctx context.Context, key string) ([]images.Image, error) {
	imgs, err := c.list(ctx, listQuery{ListOpts: images.ListOpts{Owner: c.Project}, props: map[string]string{PropLease: key}})
	if err != nil {
		return nil, err
	}
	sort.Slice(imgs, func(i, j int) bool {
		a, _ := strconv.Atoi(prop(imgs[i], PropLeaseGen))
		b, _ := strconv.Atoi(prop(imgs[j], PropLeaseGen))
		return a < b
	})
	return imgs, nil
}

// leaseStale: not renewed for the holder's TTL (ttl when it did not say),
// by the holder's clock or Glance's record of the last update, whichever
// is later. The holder's own TTL counts: it renews at its pace.
func leaseStale(img images.Image, ttl time.Duration) bool {
	if n, err := strconv.Atoi(prop(img, PropLeaseTTL)); err == nil && n > 0 {
		ttl = time.Duration(n) * time.Second
	}
	last := img.UpdatedAt
	if t, err := time.Parse(time.RFC3339, prop(img, PropLeaseRenewed)); err == nil && t.After(last) {
		last = t
	}
	return time.Since(last) > ttl
}

// start renews the lease until release; a lease found gone (taken over as
// stale) is lost.
func (l *lease) start(t leaseTiming) {
	ctx, cancel := context.WithCancel(context.Background())
	l.stop, l.done = cancel, make(chan struct{})
	go func() {
		defer close(l.done)
		tick := time.NewTicker(t.Renew)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := l.c.update(ctx, l.id, images.UpdateOpts{images.UpdateImageProperty{Op: images.ReplaceOp, Name: PropLeaseRenewed, Value: time.Now().UTC().Format(time.RFC3339)}})
			if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				l.mu.Lock()
				l.lost = errors.New("the publish lease was taken over by another runner (this one did not renew it in time)")
				l.mu.Unlock()
				return
			}
		}
	}()
}

// check says whether the lease is still this runner's: before a change
// others must not make at the same time (promoting, retiring).
func (l *lease) check(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	gens, err := l.c.leaseGenerations(ctx, l.key)
	if err != nil {
		return err
	}
	if len(gens) == 0 || gens[len(gens)-1].ID != l.id {
		return fmt.Errorf("the publish lease was taken over by another runner: nothing more is changed; run again to finish")
	}
	return nil
}

// release hands the lease on: its record stays, marked released.
func (l *lease) release(ctx context.Context) error {
	if l.stop != nil {
		l.stop()
		<-l.done
	}
	// Should Glance not hear of it (it is down), the lease is still
	// nobody's from now on: a later publish in this process takes it.
	givenUp.Store(l.holder, true)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	_, err := l.c.update(ctx, l.id, images.UpdateOpts{images.UpdateImageProperty{Op: images.ReplaceOp, Name: PropLeaseState, Value: "released"}})
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// givenUp holds the holders (one per publish) of leases this process has
// released, whether Glance recorded it or not.
var givenUp sync.Map

// heldByNoOne says whether a lease's recorded holder no longer holds it
// although the record does not say released: it died on this host, or it
// was a publish of this process that gave it up while Glance could not
// hear it (a pipeline, or a caller of this package, publishing again
// after Glance came back).
func heldByNoOne(theirs, ours string) bool {
	if _, ok := givenUp.Load(theirs); ok {
		return true
	}
	return deadHere(theirs, ours)
}

// deadHere says whether a lease's holder ran on this host (as holder
// names it) and its process is gone: a publish killed here, whose lease
// the rerun takes over at once instead of after its TTL.
func deadHere(theirs, ours string) bool {
	t, o := strings.Fields(theirs), strings.Fields(ours)
	if len(t) < 3 || len(o) < 1 || t[0] != o[0] || t[1] != "pid" {
		return false
	}
	pid, err := strconv.Atoi(t[2])
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// leaseHolder names this runner in a lease.
func leaseHolder(host, run string) string {
	return fmt.Sprintf("%s pid %d run %s", host, os.Getpid(), run)
}
