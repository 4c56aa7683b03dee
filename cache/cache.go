package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"builder/internal/flock"
	"builder/internal/workspace"
	"builder/rootfs"
)

// Entry is one image of builder's store: a cached step, a base, or an
// image nothing names any more.
type Entry struct {
	ID       string
	Name     string    // store name, "" when untagged
	Kind     string    // step, base, local, other
	Phase    string    // the step's phase, when a build recorded it
	Bytes    int64     // its own layer (and kept outputs)
	LastUsed time.Time // the newest recorded build that used it, else its creation
	UsedBy   []string  // image names whose recorded builds use it
	InUse    bool      // a working container uses it (a build is running)
	layer    string
}

// Usage is what one image name's recorded builds hold.
type Usage struct {
	Name     string
	Builds   int
	Steps    int
	Unique   int64 // held only by this name's builds
	Shared   int64 // held by this name's builds and others'
	LastUsed time.Time
}

// Report is `builder cache ls`.
type Report struct {
	Entries []Entry
	Names   []Usage
	Total   int64 // every layer and kept output of the store
	// Unreferenced is what no recorded build uses (old versions, failed
	// builds' steps): pruned first.
	Unreferenced int64
}

// Manager is an open cache.
type Manager struct {
	ws    workspace.Workspace
	store *rootfs.Store
}

// Open opens the cache of a workspace (its container store).
func Open(ctx context.Context, ws workspace.Workspace) (*Manager, error) {
	if _, err := os.Stat(ws.Store()); err != nil {
		return nil, fmt.Errorf("no builder cache in %s: %w", ws.Cache, err)
	}
	st, err := rootfs.OpenStore(ctx, rootfs.StoreOptions{Dir: ws.Store(), RunRoot: ws.StoreRunRoot()})
	if err != nil {
		return nil, err
	}
	return &Manager{ws: ws, store: st}, nil
}

// OpenWith uses a store that is already open (a build prunes its own).
func OpenWith(ws workspace.Workspace, st *rootfs.Store) *Manager {
	return &Manager{ws: ws, store: st}
}

// Close releases the store (only one Open made).
func (m *Manager) Close() error { return m.store.Close() }

// state is the store and the records, read together.
type state struct {
	images  []rootfs.StoreImage
	layers  map[string]rootfs.LayerInfo
	entries []Entry
	byLayer map[string]int // top layer -> entry index
	records []record
}

func (m *Manager) read() (*state, error) {
	imgs, err := m.store.Images()
	if err != nil {
		return nil, err
	}
	layers, err := m.store.Layers()
	if err != nil {
		return nil, err
	}
	recs, err := records(m.ws)
	if err != nil {
		return nil, err
	}
	s := &state{images: imgs, layers: layers, records: recs, byLayer: map[string]int{}}
	byName := map[string]int{}
	for _, img := range imgs {
		e := Entry{ID: img.ID, Kind: "other", LastUsed: img.Created, InUse: img.InUse, layer: img.Layer}
		if len(img.Names) > 0 {
			e.Name = img.Names[0]
		}
		switch {
		case strings.HasPrefix(e.Name, "localhost/builder/step:"):
			e.Kind = "step"
		case strings.HasPrefix(e.Name, "localhost/builder/base:"):
			e.Kind = "base"
		case strings.HasPrefix(e.Name, "localhost/builder/local:"):
			e.Kind = "local"
		}
		e.Bytes = layers[img.Layer].Bytes
		// An image that lost its step name to another build's commit of
		// the same step (two builds at once) has no key; its kept outputs
		// are the named image's.
		if k := rootfs.StepKeyOf(img.Names); img.Outputs && k != "" {
			e.Bytes += dirBytes(m.store.OutputsDir(k))
		}
		s.byLayer[img.Layer] = len(s.entries)
		for _, n := range img.Names {
			byName[n] = len(s.entries)
		}
		s.entries = append(s.entries, e)
	}
	for _, r := range recs {
		for _, b := range r.Builds {
			for _, st := range b.Steps {
				i, ok := byName[st.Image]
				if !ok {
					continue
				}
				e := &s.entries[i]
				if b.Time.After(e.LastUsed) {
					e.LastUsed = b.Time
				}
				if st.Phase != "" {
					e.Phase = st.Phase
				}
				if !contains(e.UsedBy, r.Name) {
					e.UsedBy = append(e.UsedBy, r.Name)
				}
			}
		}
	}
	return s, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// List reports what the cache holds.
func (m *Manager) List() (*Report, error) {
	s, err := m.read()
	if err != nil {
		return nil, err
	}
	rep := &Report{Entries: s.entries}
	for _, e := range s.entries {
		rep.Total += e.Bytes
		if len(e.UsedBy) == 0 {
			rep.Unreferenced += e.Bytes
		}
	}
	for _, r := range s.records {
		u := Usage{Name: r.Name, Builds: len(r.Builds)}
		seen := map[int]bool{}
		for _, b := range r.Builds {
			if b.Time.After(u.LastUsed) {
				u.LastUsed = b.Time
			}
			for _, st := range b.Steps {
				for i, e := range s.entries {
					if e.Name == st.Image && !seen[i] {
						seen[i] = true
						u.Steps++
						if len(e.UsedBy) > 1 {
							u.Shared += e.Bytes
						} else {
							u.Unique += e.Bytes
						}
					}
				}
			}
		}
		rep.Names = append(rep.Names, u)
	}
	sort.Slice(rep.Entries, func(i, j int) bool { return rep.Entries[i].LastUsed.After(rep.Entries[j].LastUsed) })
	return rep, nil
}

// Policy says what prune keeps. Zero fields impose nothing.
type Policy struct {
	// OlderThan removes what no build used for this long.
	OlderThan time.Duration
	// MaxBytes removes the least recently used until the cache is at most
	// this big.
	MaxBytes int64
	// Keep protects the steps of the last Keep builds of every image name
	// (0: none), whatever the other bounds say.
	Keep int
	// DryRun reports what would go and removes nothing.
	DryRun bool
}

// PruneResult is what prune did.
type PruneResult struct {
	Removed      []Entry
	FreedBytes   int64
	TotalBefore  int64
	TotalAfter   int64
	KeptForBuild int // entries kept because a recent build of their name uses them
}

// Prune removes what the policy lets go, least recently used first, and
// only what frees space: an image is removed only once no image left
// builds on its layer (a step in the middle of a chain frees nothing while
// a later step lives). Images a running build uses are never touched: the
// caller holds the cache lock alone (see LockAlone).
func (m *Manager) Prune(ctx context.Context, p Policy) (*PruneResult, error) {
	s, err := m.read()
	if err != nil {
		return nil, err
	}
	res := &PruneResult{}
	for _, e := range s.entries {
		res.TotalBefore += e.Bytes
	}
	protected := map[string]bool{}
	if p.Keep > 0 {
		for _, r := range s.records {
			from := len(r.Builds) - p.Keep
			if from < 0 {
				from = 0
			}
			for _, b := range r.Builds[from:] {
				for _, st := range b.Steps {
					protected[st.Image] = true
				}
			}
		}
	}
	// children counts, per layer, the layers built on it that belong to
	// images still present.
	alive := map[string]bool{}
	for _, e := range s.entries {
		alive[e.ID] = true
	}
	children := map[string]int{}
	for _, e := range s.entries {
		for l := s.layers[e.layer].Parent; l != ""; l = s.layers[l].Parent {
			children[l]++
		}
	}
	order := append([]Entry(nil), s.entries...)
	sort.Slice(order, func(i, j int) bool {
		// What no build uses goes first, then the least recently used.
		ui, uj := len(order[i].UsedBy) == 0, len(order[j].UsedBy) == 0
		if ui != uj {
			return ui
		}
		return order[i].LastUsed.Before(order[j].LastUsed)
	})
	total := res.TotalBefore
	now := time.Now()
	for changed := true; changed; {
		changed = false
		for _, e := range order {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if !alive[e.ID] || e.InUse || children[e.layer] > 0 {
				continue
			}
			if protected[e.Name] {
				res.KeptForBuild++
				continue
			}
			old := p.OlderThan > 0 && now.Sub(e.LastUsed) > p.OlderThan
			big := p.MaxBytes > 0 && total > p.MaxBytes
			if !old && !big {
				continue
			}
			if !p.DryRun {
				if err := m.store.DeleteImage(e.ID); err != nil {
					return res, err
				}
				if k := rootfs.StepKeyOf([]string{e.Name}); k != "" {
					os.RemoveAll(m.store.OutputsDir(k))
				}
			}
			alive[e.ID] = false
			for l := s.layers[e.layer].Parent; l != ""; l = s.layers[l].Parent {
				children[l]--
			}
			total -= e.Bytes
			res.FreedBytes += e.Bytes
			res.Removed = append(res.Removed, e)
			changed = true
		}
	}
	res.TotalAfter = total
	return res, nil
}

// VerifyResult is what verify found.
type VerifyResult struct {
	Checked int
	Damaged []string // what was damaged and removed
}

// Verify re-hashes every layer of the store and every verified download;
// a damaged entry is removed (with everything built on it), so the next
// build makes it again, and is named in the result.
func (m *Manager) Verify(ctx context.Context, progress func(string)) (*VerifyResult, error) {
	s, err := m.read()
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{}
	bad := map[string]error{}
	ids := make([]string, 0, len(s.layers))
	for id := range s.layers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Checked++
		if err := m.store.VerifyLayer(ctx, id); err != nil {
			if errors.Is(err, context.Canceled) {
				return res, err
			}
			bad[id] = err
		}
	}
	// An image is damaged when any layer it is built from is.
	for _, e := range s.entries {
		for l := e.layer; l != ""; l = s.layers[l].Parent {
			if err, ok := bad[l]; ok {
				what := e.Name
				if what == "" {
					what = e.ID[:12]
				}
				if e.InUse {
					res.Damaged = append(res.Damaged, fmt.Sprintf("%s: %v (in use by a running build; not removed)", what, err))
					break
				}
				if err := m.store.DeleteImage(e.ID); err != nil {
					return res, err
				}
				if k := rootfs.StepKeyOf([]string{e.Name}); k != "" {
					os.RemoveAll(m.store.OutputsDir(k))
				}
				res.Damaged = append(res.Damaged, fmt.Sprintf("%s: %v: removed, the next build makes it again", what, err))
				if progress != nil {
					progress(res.Damaged[len(res.Damaged)-1])
				}
				break
			}
		}
	}
	n, damaged, err := rootfs.VerifyDownloads(m.ws.Downloads())
	res.Checked += n
	for _, d := range damaged {
		res.Damaged = append(res.Damaged, d+": removed, fetched again when next needed")
		// Named like a damaged layer: the user learns what went.
		if progress != nil {
			progress(res.Damaged[len(res.Damaged)-1])
		}
	}
	if err != nil {
		return res, err
	}
	return res, nil
}

// LockShared is a build's hold on the cache: prune waits for it to end.
func LockShared(ctx context.Context, ws workspace.Workspace) (*flock.Lock, error) {
	return flock.Shared(ctx, ws.CacheLock(), nil)
}

// LockAlone is prune's and verify's hold on the cache: no build runs
// while it is held. With wait false, a busy cache is an error wrapping
// flock.ErrBusy.
func LockAlone(ctx context.Context, ws workspace.Workspace, wait bool, busy func(string)) (*flock.Lock, error) {
	if !wait {
		return flock.TryLock(ws.CacheLock(), "builder cache")
	}
	return flock.Wait(ctx, ws.CacheLock(), "builder cache", busy)
}
