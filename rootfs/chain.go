package rootfs

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"builder/internal/cleanup"
	"builder/internal/flock"
	"builder/internal/version"
)

// StepKind says where a step runs.
type StepKind int

const (
	// Inside runs Command inside a container made from the previous image.
	Inside StepKind = iota
	// Outside runs Command on the host with the container's root
	// filesystem mounted; Env gets TARGET_ROOT and TMP_MOUNT_PATH.
	Outside
	// Tree calls Edit with the mounted root filesystem (builder's own edits).
	Tree
)

func (k StepKind) String() string {
	switch k {
	case Inside:
		return "inside"
	case Outside:
		return "outside"
	default:
		return "tree"
	}
}

//go:embed outside.sh
var outsideScript []byte

// Step is one unit of work on the root filesystem, cached under its key.
type Step struct {
	Name string
	Kind StepKind
	// Identity is what the command's inputs are (the scripts and files it
	// can see, package lists), hashed by the caller; StepKey adds the rest
	// of the step's specification.
	Identity string
	// KeyEnv are the variables (KEY=value) that can change what the step
	// makes; Env is what it runs with, which also holds paths of this run.
	KeyEnv []string
	// Volatile maps path prefixes that name this run or this cache (the
	// work directory, the cache directory) to placeholders for the key.
	Volatile map[string]string
	Command  []string
	Env      []string
	Mounts   []Mount // Inside only
	// Dir is the working directory of an Outside command. With
	// DirIsOutputs, what the command leaves there are the step's outputs
	// (DIB's hooks write $IMAGE_NAME.initramfs and the like into their
	// working directory): they are kept with the step in the cache, so a
	// cached step still delivers them. Dir must be empty then.
	Dir          string
	DirIsOutputs bool
	// Writable are the host paths an Outside command may write besides the
	// root filesystem; the rest of the host is read-only to it.
	Writable []string
	// ReadOnly are paths inside Writable ones that stay read-only.
	ReadOnly []string
	// MountAt is where an Outside command finds the root filesystem
	// (TARGET_ROOT, TMP_MOUNT_PATH): DIB's $TMP_BUILD_DIR/mnt, inside a
	// writable path. Empty: the container's own mount point.
	MountAt string
	Edit    func(ctx context.Context, root string) error // Tree only
	// ContentKeyed steps run on every build and are keyed by what they
	// changed, not by what they are: DIB's extra-data.d copies host data
	// whose identity is only known once it has been copied. An unchanged
	// result keeps every later step cached.
	ContentKeyed bool
	// ResolvConf: the tree's /etc/resolv.conf holds the host's resolver
	// configuration while the step runs, as DIB arranges after root.d; what
	// the step leaves there is discarded unless it made it a symlink.
	ResolvConf bool
	// Pseudo: an Outside command finds /proc, /sys and /dev mounted in
	// the target, as DIB mounts them after root.d.
	Pseudo bool
	// BreakBefore and BreakAfter open a debug shell before and after the
	// command (DIB's break=before-PHASE, after-PHASE); the step then never
	// comes from or goes to the shared cache under its normal key.
	BreakBefore, BreakAfter bool
	// Output receives the command's combined stdout and stderr.
	Output io.Writer
	// Wrap turns a failure into a more useful error (which hook failed).
	Wrap func(error) error
	// Begin and End bracket the step for progress reporting; cached is true
	// when the step was found in the cache and did not run.
	Begin func()
	End   func(cached bool, err error)

	// carried are the bind mounts earlier outside hooks made into the
	// tree, set by RunChain.
	carried []Mount
}

// Image is a committed image and the cache key it was stored under.
type Image struct {
	Name string
	Key  string
	// Mounts are bind mounts outside hooks made into the tree (DIB's
	// pip-cache mounts a host cache at /tmp/pip): every later step sees
	// them, and their content is never part of a layer.
	Mounts []Mount
	// Outputs are directories holding files steps wrote as outputs (see
	// Step.DirIsOutputs), oldest first; OutputKeys are those steps' keys.
	Outputs    []string
	OutputKeys []string
}

// ChainOptions are the settings shared by all steps of a build.
type ChainOptions struct {
	Isolation Isolation
	Runtime   string // OCI runtime binary for IsolationOCI
	// RunID names the working containers ("builder-<RunID>-..."), so a later
	// run can find and remove what a killed one left.
	RunID   string
	Cleanup *cleanup.Stack
	// NoCache runs every step even when its image exists.
	NoCache bool
	// DebugShell, if set, opens an interactive shell where a step failed,
	// before its container is deleted (DIB's break=after-error): in the
	// container for inside steps, on the host in the hook sandbox with
	// TARGET_ROOT for outside ones. It reads commands from DebugShell.
	// Steps with BreakBefore or BreakAfter use it too.
	DebugShell io.Reader
	// DebugOut receives the shell's output.
	DebugOut io.Writer
	// Warn receives notes about the build that are not errors (a mount a
	// hook made that cannot be carried to later phases).
	Warn func(string)
	// OnStep is told each step's result, cached or made (the build records
	// which images it used).
	OnStep func(st Step, img Image)
	// Registry, if enabled, gives steps the store lacks and takes the
	// steps of this build (RegistryCache.Start must have been called for
	// pushes).
	Registry *RegistryCache
	// Note receives informational lines (steps taken from a registry).
	Note func(string)
	// ExplainKeys, if set, receives what each step's key is made of.
	ExplainKeys io.Writer
}

// StepKey chains a step's key onto its parent's: a hash of everything that
// can change what the step makes: builder's own code (version.CodeID: how
// hooks run, what builder's own edits do), the step's kind and name, its
// command, the variables it is keyed by (KeyEnv), its mounts and sandbox,
// its flags, and the caller's Identity (what the command's files are).
// Paths that only name this run or this cache (Volatile) are replaced by
// their placeholders, so another run or another cache directory gives the
// same key.
func StepKey(parent string, s Step) string {
	h := sha256.New()
	for _, f := range stepKeyFields(parent, s) {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.vals))
		for _, v := range f.vals {
			fmt.Fprintf(h, "%s\x00", v)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

type keyField struct {
	name string
	vals []string
}

// stepKeyFields is everything a step's key is made of, in order.
func stepKeyFields(parent string, s Step) []keyField {
	norm := s.normalizer()
	var fs []keyField
	field := func(name string, vals ...string) { fs = append(fs, keyField{name, vals}) }
	field("builder-step-v2", codeID())
	field("parent", parent)
	field("kind", s.Kind.String())
	field("name", s.Name)
	field("identity", s.Identity)
	keyEnv := append([]string(nil), s.KeyEnv...)
	sort.Strings(keyEnv)
	field("env", keyEnv...)
	field("command", mapStrings(s.Command, norm)...)
	var mounts []string
	for _, m := range s.Mounts {
		mounts = append(mounts, fmt.Sprintf("%s<-%s ro=%v", m.Destination, norm(m.Source), m.ReadOnly))
	}
	field("mounts", mounts...)
	field("writable", mapStrings(s.Writable, norm)...)
	field("readonly", mapStrings(s.ReadOnly, norm)...)
	field("mount-at", norm(s.MountAt))
	field("dir", norm(s.Dir))
	field("flags", fmt.Sprint(s.ContentKeyed), fmt.Sprint(s.ResolvConf), fmt.Sprint(s.Pseudo), fmt.Sprint(s.DirIsOutputs))
	return fs
}

// ExplainKey writes what a step's key is made of, one field per line (for
// `BUILDER_EXPLAIN_KEYS`: why a step was not found in a cache).
func ExplainKey(w io.Writer, parent string, s Step) {
	fmt.Fprintf(w, "step %s key %s\n", s.Name, StepKey(parent, s))
	for _, f := range stepKeyFields(parent, s) {
		for _, v := range f.vals {
			fmt.Fprintf(w, "  %s: %q\n", f.name, v)
		}
		if len(f.vals) == 0 {
			fmt.Fprintf(w, "  %s: (none)\n", f.name)
		}
	}
}

// codeID is builder's code identity (a variable for the key test).
var codeID = version.CodeID

// normalizer replaces the step's volatile path prefixes (longest first) by
// their placeholders.
func (s Step) normalizer() func(string) string {
	prefixes := make([]string, 0, len(s.Volatile))
	for p := range s.Volatile {
		if p != "" {
			prefixes = append(prefixes, p)
		}
	}
	sort.Slice(prefixes, func(i, j int) bool { return len(prefixes[i]) > len(prefixes[j]) })
	return func(v string) string {
		for _, p := range prefixes {
			if v == p || strings.HasPrefix(v, p+"/") {
				return s.Volatile[p] + strings.TrimPrefix(v, p)
			}
		}
		return v
	}
}

func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// CacheImageName is where a step's result is stored.
func CacheImageName(key string) string {
	return "localhost/builder/step:" + key[:40]
}

// mountsBigData is the image metadata key that holds the mounts a step
// left in the tree, so a cached step restores them for the ones after it;
// outputsBigData marks a step that wrote outputs (kept in OutputsDir).
const (
	mountsBigData  = "builder-mounts"
	outputsBigData = "builder-outputs"
)

// RunChain runs steps in order on top of base. A step whose key already has
// an image is skipped, so an unchanged build is a series of lookups and a
// change late in the chain re-runs only the steps from there on.
func (s *Store) RunChain(ctx context.Context, base Image, steps []Step, o ChainOptions) (Image, error) {
	cur := base
	for i := 0; i < len(steps); i++ {
		st := steps[i]
		if err := ctx.Err(); err != nil {
			return Image{}, err
		}
		st.carried = liveMounts(cur.Mounts, o.Warn)
		if st.BreakBefore || st.BreakAfter {
			// A debug shell may change the tree: keep that out of the cache.
			st.Identity += "\x00break-" + o.RunID
		}
		if o.ExplainKeys != nil && !st.ContentKeyed {
			ExplainKey(o.ExplainKeys, cur.Key, st)
		}
		if n, img, ok := s.fromRegistry(ctx, cur, steps[i:], o); ok {
			cur = img
			i += n - 1
			continue
		}
		if st.Begin != nil {
			st.Begin()
		}
		next, cached, err := s.runOne(ctx, cur, st, i, o)
		if st.End != nil {
			st.End(cached, err)
		}
		if err != nil {
			return Image{}, err
		}
		if o.OnStep != nil {
			o.OnStep(st, next)
		}
		if next.Name != cur.Name {
			o.Registry.queueStep(next)
		}
		cur = next
	}
	return cur, nil
}

// fromRegistry takes steps from the registry cache when the store lacks
// the next one: of the steps whose keys are known before anything runs (up
// to a content-keyed or debug step), the last one the registry has is
// pulled, with every layer below it, and the steps up to it are done. n is
// how many steps that covered.
func (s *Store) fromRegistry(ctx context.Context, cur Image, steps []Step, o ChainOptions) (n int, img Image, ok bool) {
	if !o.Registry.Enabled() || o.NoCache {
		return 0, Image{}, false
	}
	var keys []string
	parent := cur.Key
	for _, st := range steps {
		if st.ContentKeyed || st.BreakBefore || st.BreakAfter {
			break
		}
		k := StepKey(parent, st)
		if len(keys) == 0 && s.HasImage(CacheImageName(k)) {
			return 0, Image{}, false // the store has the next step
		}
		keys = append(keys, k)
		parent = k
	}
	for j := len(keys) - 1; j >= 0; j-- {
		if ctx.Err() != nil {
			return 0, Image{}, false
		}
		got, repo, ok := o.Registry.pullStep(ctx, s, cur, keys[j], o.RunID)
		if !ok {
			continue
		}
		for k := 0; k <= j; k++ {
			st := steps[k]
			if st.Begin != nil {
				st.Begin()
			}
			if st.End != nil {
				st.End(true, nil)
			}
			if o.OnStep != nil {
				if k == j {
					o.OnStep(st, got)
				} else {
					o.OnStep(st, Image{Key: keys[k]})
				}
			}
		}
		if o.Note != nil {
			o.Note(fmt.Sprintf("%d step(s) up to %s taken from the registry cache %s", j+1, steps[j].Name, repo))
		}
		return j + 1, got, true
	}
	return 0, Image{}, false
}

// queueStep pushes a step's image (and its outputs) to the registry cache.
func (r *RegistryCache) queueStep(img Image) {
	if r == nil || r.To == "" || img.Key == "" || img.Name != CacheImageName(img.Key) {
		return
	}
	outputs := ""
	if n := len(img.OutputKeys); n > 0 && img.OutputKeys[n-1] == img.Key {
		outputs = img.Outputs[len(img.Outputs)-1]
	}
	r.queue(img.Name, "step-"+img.Key, outputs)
}

func (s *Store) runOne(ctx context.Context, cur Image, st Step, idx int, o ChainOptions) (Image, bool, error) {
	if st.ContentKeyed {
		return s.runStep(ctx, cur, st, idx, o)
	}
	key := StepKey(cur.Key, st)
	name := CacheImageName(key)
	if !o.NoCache && s.HasImage(name) {
		if img, ok := s.cached(cur, name, key); ok {
			return img, true, nil
		}
	}
	if !o.NoCache {
		// Builds running at once (a pipeline's images) that reach the
		// same step make it once: the others wait and take it.
		l, err := flock.Wait(ctx, filepath.Join(s.dir, "locks", "step-"+key[:40]+".lock"), "step "+st.Name, func(holder string) {
			if o.Note != nil {
				o.Note(fmt.Sprintf("waiting for another build making the same step %s (%s)", st.Name, holder))
			}
		})
		if err != nil {
			return Image{}, false, err
		}
		defer l.Unlock()
		if s.HasImage(name) {
			if img, ok := s.cached(cur, name, key); ok {
				return img, true, nil
			}
		}
	}
	return s.runStep(ctx, cur, st, idx, o)
}

// cached is the stored result of a step: its image, the mounts it left
// and, when it wrote outputs, where they are kept. ok is false when the
// outputs are gone (the step must run again).
func (s *Store) cached(parent Image, name, key string) (Image, bool) {
	if !s.imageHas(name, completeBigData) {
		return Image{}, false
	}
	img := Image{Name: name, Key: key, Mounts: s.imageMounts(name), Outputs: parent.Outputs, OutputKeys: parent.OutputKeys}
	if s.imageHas(name, outputsBigData) {
		dir := s.OutputsDir(key)
		if _, err := os.Stat(filepath.Join(dir, outputsStamp)); err != nil {
			return Image{}, false
		}
		img.Outputs = append(append([]string(nil), parent.Outputs...), dir)
		img.OutputKeys = append(append([]string(nil), parent.OutputKeys...), key)
	}
	return img, true
}

// imageHas says whether an image carries the metadata key.
func (s *Store) imageHas(name, key string) bool {
	img, err := s.st.Image(name)
	if err != nil {
		return false
	}
	_, err = s.st.ImageBigData(img.ID, key)
	return err == nil
}

// OutputsDir is where the outputs of the step with this key are kept.
func (s *Store) OutputsDir(key string) string {
	return filepath.Join(s.dir, "step-outputs", key[:40])
}

// outputsStamp marks a complete copy of a step's outputs.
const outputsStamp = ".builder-complete"

// completeBigData is set on a step's image after everything else about it
// (its mounts, its outputs): the commit names the image before builder
// records those, so an image without it is a step whose build was killed
// in between, and is made again rather than used.
const completeBigData = "builder-complete"

// imageMounts reads the mounts a committed step left in the tree.
func (s *Store) imageMounts(name string) []Mount {
	img, err := s.st.Image(name)
	if err != nil {
		return nil
	}
	data, err := s.st.ImageBigData(img.ID, mountsBigData)
	if err != nil {
		return nil
	}
	var ms []Mount
	if json.Unmarshal(data, &ms) != nil {
		return nil
	}
	return ms
}

// runStep runs one step in a new container from `from` and commits the
// result. A content-keyed step is named only after it ran, from what it
// changed; when that result is already stored (or nothing changed) the
// container is dropped and the stored image is used.
func (s *Store) runStep(ctx context.Context, from Image, st Step, idx int, o ChainOptions) (res Image, cached bool, err error) {
	if st.DirIsOutputs {
		// A re-run step starts from an empty working directory.
		if err := os.RemoveAll(st.Dir); err != nil {
			return Image{}, false, err
		}
		if err := os.MkdirAll(st.Dir, 0o755); err != nil {
			return Image{}, false, err
		}
	}
	cname := fmt.Sprintf("builder-%s-%02d-%s", o.RunID, idx, sanitize(st.Name))
	c, err := s.NewContainer(ctx, from.Name, cname, o.Isolation, o.Runtime, st.ResolvConf)
	if err != nil {
		return Image{}, false, fmt.Errorf("step %s: %w", st.Name, err)
	}
	var h cleanup.Handle
	if o.Cleanup != nil {
		h = o.Cleanup.Push("container "+cname, c.Delete)
	}
	defer func() {
		if err != nil && o.DebugShell != nil && ctx.Err() == nil {
			debugShell(ctx, c, st, o, "the failure of "+st.Name)
		}
		if o.Cleanup != nil {
			if rerr := h.Release(); rerr != nil && err == nil {
				err = rerr
			}
		} else if derr := c.Delete(); derr != nil && err == nil {
			err = derr
		}
	}()

	out := st.Output
	if out == nil {
		out = io.Discard
	}
	root, err := c.Mount()
	if err != nil {
		return Image{}, false, fmt.Errorf("step %s: %w", st.Name, err)
	}
	if st.ResolvConf {
		if err = fillResolvConf(root); err != nil {
			return Image{}, false, fmt.Errorf("step %s: %w", st.Name, err)
		}
	}
	if st.BreakBefore && o.DebugShell != nil {
		debugShell(ctx, c, st, o, "break=before-"+st.Name)
	}
	mounts := st.carried
	switch st.Kind {
	case Inside:
		spec := RunSpec{Command: st.Command, Env: st.Env, Mounts: withCarried(st.Mounts, st.carried), Stdout: out, Stderr: out}
		err = c.Run(ctx, spec)
	case Outside:
		var got []mountEntry
		got, err = runOutsideCapture(ctx, st, root, out, nil)
		if err == nil {
			var notes []string
			seen := root
			if st.MountAt != "" {
				seen = st.MountAt
			}
			mounts, notes = carriedMounts(got, seen, st.Pseudo)
			for _, n := range notes {
				if o.Warn != nil {
					o.Warn(fmt.Sprintf("step %s: %s", st.Name, n))
				}
			}
		}
	case Tree:
		err = st.Edit(ctx, root)
	}
	if err != nil {
		if st.Wrap != nil {
			err = st.Wrap(err)
		}
		return Image{}, false, err
	}
	if st.BreakAfter && o.DebugShell != nil {
		debugShell(ctx, c, st, o, "break=after-"+st.Name)
	}
	if st.ResolvConf {
		if err = emptyResolvConf(root); err != nil {
			return Image{}, false, fmt.Errorf("step %s: %w", st.Name, err)
		}
	}
	wrote := false
	if st.DirIsOutputs {
		ents, rerr := os.ReadDir(st.Dir)
		if rerr != nil {
			return Image{}, false, fmt.Errorf("step %s: %w", st.Name, rerr)
		}
		wrote = len(ents) > 0
	}

	key := StepKey(from.Key, st)
	if st.ContentKeyed {
		digest, changed, derr := s.changesDigest(c, from.Name, root)
		if derr != nil {
			return Image{}, false, fmt.Errorf("step %s: %w", st.Name, derr)
		}
		if wrote {
			odigest, derr := dirDigest(st.Dir)
			if derr != nil {
				return Image{}, false, fmt.Errorf("step %s: %w", st.Name, derr)
			}
			digest += "\x00outputs=" + odigest
		}
		key = contentKey(key, digest)
		if !changed && !wrote {
			// Nothing in the tree changed: later steps build on the same
			// image, under a key that says this step ran.
			return Image{Name: from.Name, Key: key, Mounts: mounts, Outputs: from.Outputs, OutputKeys: from.OutputKeys}, false, nil
		}
		if name := CacheImageName(key); !o.NoCache && s.HasImage(name) {
			if img, ok := s.cached(from, name, key); ok {
				return img, true, nil
			}
		}
	}
	name := CacheImageName(key)
	outputs, outKeys := from.Outputs, from.OutputKeys
	if wrote {
		// Kept before the commit: an image that says it has outputs
		// always has them complete.
		dir := s.OutputsDir(key)
		if err = keepOutputs(st.Dir, dir, o.RunID); err != nil {
			return Image{}, false, fmt.Errorf("step %s: keep its outputs: %w", st.Name, err)
		}
		outputs = append(append([]string(nil), from.Outputs...), dir)
		outKeys = append(append([]string(nil), from.OutputKeys...), key)
	}
	// What the store keeps beside the image, in its configuration too, so
	// a registry carries it (registry.go).
	labels := map[string]string{labelKey: key, labelMounts: "", labelOutputs: ""}
	if len(mounts) > 0 {
		data, _ := json.Marshal(mounts)
		labels[labelMounts] = string(data)
	}
	if len(outKeys) > 0 {
		data, _ := json.Marshal(outKeys)
		labels[labelOutputs] = string(data)
	}
	id, err := c.Commit(ctx, name, labels)
	if err != nil {
		return Image{}, false, fmt.Errorf("step %s: %w", st.Name, err)
	}
	if len(mounts) > 0 {
		data, _ := json.Marshal(mounts)
		if err = s.st.SetImageBigData(id, mountsBigData, data, nil); err != nil {
			return Image{}, false, fmt.Errorf("step %s: record its mounts: %w", st.Name, err)
		}
	}
	if wrote {
		if err = s.st.SetImageBigData(id, outputsBigData, []byte("1"), nil); err != nil {
			return Image{}, false, fmt.Errorf("step %s: record its outputs: %w", st.Name, err)
		}
	}
	if err = s.st.SetImageBigData(id, completeBigData, []byte("1"), nil); err != nil {
		return Image{}, false, fmt.Errorf("step %s: %w", st.Name, err)
	}
	return Image{Name: name, Key: key, Mounts: mounts, Outputs: outputs, OutputKeys: outKeys}, false, nil
}

// contentKey names a content-keyed step's result.
func contentKey(stepKey, digest string) string {
	h := sha256.New()
	fmt.Fprintf(h, "builder-content-v1\x00%s\x00%s", stepKey, digest)
	return hex.EncodeToString(h.Sum(nil))
}

// liveMounts drops carried mounts whose source is gone (a cached step
// recorded a mount of a directory an earlier build had and this one lacks).
func liveMounts(ms []Mount, warn func(string)) []Mount {
	var out []Mount
	for _, m := range ms {
		if _, err := os.Stat(m.Source); err != nil {
			if warn != nil {
				warn(fmt.Sprintf("the mount of %s at %s an earlier hook made is not restored: %v", m.Source, m.Destination, err))
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// withCarried adds the carried mounts to an inside command's own, unless
// the command already mounts something at that place.
func withCarried(own, carried []Mount) []Mount {
	out := append([]Mount(nil), own...)
	for _, m := range carried {
		taken := false
		for _, o := range own {
			if o.Destination == m.Destination {
				taken = true
			}
		}
		if !taken {
			out = append(out, m)
		}
	}
	return out
}

// debugShell runs an interactive shell where st failed. Its own exit status
// does not matter: the build fails as it would have.
func debugShell(ctx context.Context, c *Container, st Step, o ChainOptions, at string) {
	out := o.DebugOut
	if out == nil {
		out = os.Stderr
	}
	fmt.Fprintf(out, "builder: debug shell at %s (exit the shell to go on)\n", at)
	shell := []string{"/bin/bash", "-i"}
	switch st.Kind {
	case Inside:
		env := append(append([]string(nil), st.Env...), "PS1=[builder debug "+st.Name+"] \\w# ")
		_ = c.Run(ctx, RunSpec{Command: shell, Env: env, Mounts: withCarried(st.Mounts, st.carried), Stdin: o.DebugShell, Stdout: out, Stderr: out})
	case Outside:
		root, err := c.Mount()
		if err != nil {
			fmt.Fprintf(out, "builder: no debug shell: %v\n", err)
			return
		}
		sh := st
		sh.Command = shell
		sh.Env = append(append([]string(nil), st.Env...), "PS1=[builder debug "+st.Name+" outside] \\w# ")
		_, _ = runOutsideCapture(ctx, sh, root, out, o.DebugShell)
	default:
		fmt.Fprintf(out, "builder: no debug shell for builder's own step %s\n", st.Name)
	}
}

// runOutsideCapture runs an outside hook command on the host, in its own
// mount namespace (read-only host, see outside.sh) and its own process
// group, so cancellation reaches every process it started. It returns the
// namespace's mount table as the command left it, to find the mounts the
// hooks made into the target.
func runOutsideCapture(ctx context.Context, st Step, root string, out io.Writer, stdin io.Reader) ([]mountEntry, error) {
	// (The mount table's paths are the target's as the hooks saw it:
	// st.MountAt when set.)
	if len(st.Command) == 0 {
		return nil, errors.New("outside step without a command")
	}
	// The hook sees the host read-only except its target, the hooks tree
	// and the paths the step names (a private temp dir, the image cache).
	args := []string{"/bin/bash", "-c", string(outsideScript), "outside.sh", "-w", root}
	for _, w := range st.Writable {
		args = append(args, "-w", w)
	}
	for _, r := range st.ReadOnly {
		args = append(args, "-r", r)
	}
	target := root
	if st.MountAt != "" {
		target = st.MountAt
		args = append(args, "-t", root, target)
	}
	if st.Pseudo {
		args = append(args, "-p", target)
	}
	for _, m := range st.carried {
		args = append(args, "-b", m.Source, filepath.Join(target, m.Destination))
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	args = append(args, "-M", "--")
	args = append(args, st.Command...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append([]string(nil), st.Env...), "TARGET_ROOT="+target, "TMP_MOUNT_PATH="+target)
	// The hook runs in a process group of its own, which a kill of
	// builder's group does not reach: the build's mark lets the next build
	// find and stop it (KillRun).
	if m := os.Getenv(RunMarkVar); m != "" {
		cmd.Env = append(cmd.Env, RunMarkVar+"="+m)
	}
	cmd.Dir = st.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Stdin = stdin
	cmd.ExtraFiles = []*os.File{pw} // fd 3: the mount table at the end
	// Its own process group, so cancellation reaches all it started; not
	// for an interactive shell, which must stay in the terminal's group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: stdin == nil, Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", st.Command[0], err)
	}
	pw.Close()
	table := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(pr)
		table <- data
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, &ExitError{Code: ee.ExitCode()}
		}
		if err != nil {
			return nil, err
		}
		return parseMountInfo(<-table), nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Process.Kill()
			<-done
		}
		return nil, ctx.Err()
	}
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	return b.String()
}

// exists reports whether a path exists.
func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
