package rootfs

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// RegistryCache keeps steps in container registries, so a runner that
// starts with an empty store (a CI job, a pod) takes the steps another one
// made instead of running them. A step is an OCI image tagged with its key
// (step-KEY; bases base-KEY; the files a step wrote as outputs
// outputs-KEY). Pulls are verified blob by blob against their digests and
// the image must say it holds the key it was asked for. The registry only
// ever costs time: a miss, an error or a registry that is down makes the
// step run as it would without one.
//
// Whoever can push to To decides what later builds that pull from it get:
// point From only at repositories written by builds you trust.
type RegistryCache struct {
	// From are repositories (REGISTRY/REPO) steps are taken from, in order.
	From []string
	// To is the repository steps are pushed to ("" pushes nothing).
	To string
	// TLSVerify false skips TLS verification (podman's --tls-verify=false);
	// nil follows registries.conf.
	TLSVerify *bool
	// AuthFile holds credentials (default: podman's auth.json).
	AuthFile string
	// Note receives what the cache did worth telling (a registry down).
	Note func(string)

	mu      sync.Mutex
	down    map[string]bool
	store   *Store
	jobs    chan pushJob
	done    chan struct{}
	pushErr error
	pushed  int
	started time.Time
	cancel  context.CancelFunc
}

type pushJob struct {
	local, tag string
	outputs    string // a step's outputs directory, pushed as outputs-KEY
}

// Image configuration labels a step image carries, so a step taken from a
// registry brings what the local store keeps beside it.
const (
	labelKey     = "builder.step.key"
	labelMounts  = "builder.step.mounts"
	labelOutputs = "builder.step.outputs" // keys of the chain's steps that wrote outputs
)

// probeTimeout bounds asking a registry whether it has a tag; a registry
// that does not answer in time is treated as down for the rest of the build.
const probeTimeout = 15 * time.Second

// Enabled says whether the cache does anything.
func (r *RegistryCache) Enabled() bool {
	return r != nil && (len(r.sources()) > 0 || r.To != "")
}

// sources are the repositories to pull from: From, then To (a runner that
// fills a cache also reads it).
func (r *RegistryCache) sources() []string {
	out := append([]string(nil), r.From...)
	if r.To != "" && !contains(out, r.To) {
		out = append(out, r.To)
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// CheckRepository says what is wrong with a REGISTRY/REPO name, in words
// for the user.
func CheckRepository(repo string) error {
	if strings.Contains(repo, "://") {
		return fmt.Errorf("%q: name a repository without a scheme, e.g. registry.example.com/builder/cache", repo)
	}
	if strings.ContainsAny(repo, "@") || strings.Contains(filepath.Base(repo), ":") && !strings.Contains(repo, "/") {
		return fmt.Errorf("%q: name a repository, without a tag or digest (builder tags each step)", repo)
	}
	if _, err := docker.ParseReference("//" + repo + ":probe"); err != nil {
		return fmt.Errorf("%q is not a repository name: %v", repo, err)
	}
	if !strings.Contains(repo, "/") {
		return fmt.Errorf("%q: name the registry and a repository, e.g. 127.0.0.1:5000/builder-cache", repo)
	}
	return nil
}

func (r *RegistryCache) note(format string, args ...any) {
	if r.Note != nil {
		r.Note(fmt.Sprintf(format, args...))
	}
}

// sys is the system context for registry traffic: the user's registry
// configuration and credentials, as podman reads them.
func (r *RegistryCache) sys(s *Store) *types.SystemContext {
	sc := *s.sc
	sc.SystemRegistriesConfPath = ""
	sc.AuthFilePath = r.AuthFile
	if r.TLSVerify != nil {
		sc.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*r.TLSVerify)
	}
	// zstd: faster to make and to unpack than gzip.
	sc.CompressionFormat = &compression.Zstd
	sc.BlobInfoCacheDir = filepath.Join(s.dir, "blob-info-cache")
	return &sc
}

func (r *RegistryCache) policy(s *Store) (*signature.PolicyContext, error) {
	p, err := signature.NewPolicyFromFile(s.sc.SignaturePolicyPath)
	if err != nil {
		return nil, err
	}
	return signature.NewPolicyContext(p)
}

func remoteRef(repo, tag string) (types.ImageReference, error) {
	return docker.ParseReference("//" + repo + ":" + tag)
}

// isDown marks a repository down after an error that says it cannot be
// reached (not a miss), so the build stops asking it.
func (r *RegistryCache) isDown(repo string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down[repo]
}

func (r *RegistryCache) markDown(repo string, err error) {
	r.mu.Lock()
	first := !r.down[repo]
	if r.down == nil {
		r.down = map[string]bool{}
	}
	r.down[repo] = true
	r.mu.Unlock()
	if first {
		r.note("registry cache %s cannot be used (%v): steps it may hold run here instead", repo, err)
	}
}

// unreachable tells a registry that cannot be reached from one that just
// lacks the tag.
func unreachable(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") ||
		strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "unauthorized") ||
		strings.Contains(err.Error(), "authentication required")
}

// find returns the first repository that has the tag.
func (r *RegistryCache) find(ctx context.Context, s *Store, tag string) (string, bool) {
	for _, repo := range r.sources() {
		if r.isDown(repo) {
			continue
		}
		ref, err := remoteRef(repo, tag)
		if err != nil {
			r.markDown(repo, err)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		_, err = docker.GetDigest(pctx, r.sys(s), ref)
		cancel()
		if err == nil {
			return repo, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		if unreachable(err) {
			r.markDown(repo, err)
		}
	}
	return "", false
}

// pull copies repo:tag into the store as local; the layers the store has
// are not transferred again.
func (r *RegistryCache) pull(ctx context.Context, s *Store, repo, tag, local string) error {
	src, err := remoteRef(repo, tag)
	if err != nil {
		return err
	}
	dst, err := s.ref(local)
	if err != nil {
		return err
	}
	pc, err := r.policy(s)
	if err != nil {
		return err
	}
	defer pc.Destroy()
	_, err = copy.Image(ctx, pc, dst, src, &copy.Options{SourceCtx: r.sys(s), DestinationCtx: s.sc})
	if err != nil {
		if unreachable(err) {
			r.markDown(repo, err)
		}
		return fmt.Errorf("pull %s:%s: %w", repo, tag, err)
	}
	return nil
}

// PullBase takes a base from the registry cache into the store as local.
func (r *RegistryCache) PullBase(ctx context.Context, s *Store, key, local string) bool {
	if !r.Enabled() || len(r.sources()) == 0 {
		return false
	}
	repo, ok := r.find(ctx, s, "base-"+key)
	if !ok {
		return false
	}
	if err := r.pull(ctx, s, repo, "base-"+key, local); err != nil {
		r.note("%v: bootstrapping instead", err)
		return false
	}
	s.markPushed(local, repo)
	return true
}

// pullStep takes the step with this key from the registry; ok is false on
// a miss or any failure (then nothing of it is left in the store).
func (r *RegistryCache) pullStep(ctx context.Context, s *Store, parent Image, key, runID string) (Image, string, bool) {
	tag := "step-" + key
	repo, ok := r.find(ctx, s, tag)
	if !ok {
		return Image{}, "", false
	}
	name := CacheImageName(key)
	fail := func(err error) (Image, string, bool) {
		_ = s.RemoveImage(name)
		r.note("%v: running the steps instead", err)
		return Image{}, "", false
	}
	if err := r.pull(ctx, s, repo, tag, name); err != nil {
		return fail(err)
	}
	labels, err := s.imageLabels(ctx, name)
	if err != nil {
		return fail(err)
	}
	if labels[labelKey] != key {
		return fail(fmt.Errorf("%s:%s holds step %q, not %s (the repository was written by something else)", repo, tag, labels[labelKey], key))
	}
	id, err := s.ImageID(name)
	if err != nil {
		return fail(err)
	}
	if m := labels[labelMounts]; m != "" {
		if err := s.st.SetImageBigData(id, mountsBigData, []byte(m), nil); err != nil {
			return fail(err)
		}
	}
	img := Image{Name: name, Key: key, Mounts: s.imageMounts(name)}
	// The outputs of every step of the chain up to this one.
	var outKeys []string
	if o := labels[labelOutputs]; o != "" {
		if err := json.Unmarshal([]byte(o), &outKeys); err != nil {
			return fail(fmt.Errorf("%s:%s: bad %s label: %v", repo, tag, labelOutputs, err))
		}
	}
	for _, k := range outKeys {
		dir := s.OutputsDir(k)
		if _, err := os.Stat(filepath.Join(dir, outputsStamp)); err != nil {
			if err := r.pullOutputs(ctx, s, k, runID); err != nil {
				return fail(err)
			}
		}
		img.Outputs = append(img.Outputs, dir)
		img.OutputKeys = append(img.OutputKeys, k)
		if k == key {
			if err := s.st.SetImageBigData(id, outputsBigData, []byte("1"), nil); err != nil {
				return fail(err)
			}
		}
	}
	// Last, as for a step run here: only a whole entry is trusted.
	if err := s.st.SetImageBigData(id, completeBigData, []byte("1"), nil); err != nil {
		return fail(err)
	}
	s.markPushed(name, repo)
	return img, repo, true
}

func outputsImageName(key string) string { return "localhost/builder/outputs:" + key[:40] }

func (r *RegistryCache) pullOutputs(ctx context.Context, s *Store, key, runID string) error {
	tag := "outputs-" + key
	repo, ok := r.find(ctx, s, tag)
	if !ok {
		return fmt.Errorf("the outputs of step %s are not in the registry cache", key[:12])
	}
	local := outputsImageName(key)
	defer s.RemoveImage(local)
	if err := r.pull(ctx, s, repo, tag, local); err != nil {
		return err
	}
	root, release, err := s.MountImage(local)
	if err != nil {
		return err
	}
	defer release()
	return keepOutputs(root, s.OutputsDir(key), runID)
}

// markPushed records that an image is in a repository, so it is not pushed
// there again.
func (s *Store) markPushed(name, repo string) {
	img, err := s.st.Image(name)
	if err != nil {
		return
	}
	old, _ := s.st.ImageBigData(img.ID, pushedBigData)
	lines := strings.Fields(string(old))
	if contains(lines, repo) {
		return
	}
	lines = append(lines, repo)
	_ = s.st.SetImageBigData(img.ID, pushedBigData, []byte(strings.Join(lines, "\n")), nil)
}

func (s *Store) wasPushed(name, repo string) bool {
	img, err := s.st.Image(name)
	if err != nil {
		return false
	}
	old, _ := s.st.ImageBigData(img.ID, pushedBigData)
	return contains(strings.Fields(string(old)), repo)
}

const pushedBigData = "builder-pushed"

// imageLabels reads an image's configuration labels.
func (s *Store) imageLabels(ctx context.Context, name string) (map[string]string, error) {
	ref, err := s.ref(name)
	if err != nil {
		return nil, err
	}
	img, err := ref.NewImage(ctx, s.sc)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, err
	}
	return cfg.Config.Labels, nil
}

// Start begins pushing in the background: steps are pushed in the order
// they are queued while the build goes on. Wait ends it.
func (r *RegistryCache) Start(ctx context.Context, s *Store) {
	if r == nil || r.To == "" || r.jobs != nil {
		return
	}
	r.store = s
	r.jobs = make(chan pushJob, 1024)
	r.done = make(chan struct{})
	r.started = time.Now()
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		for j := range r.jobs {
			if ctx.Err() != nil || r.isDown(r.To) {
				continue
			}
			if err := r.push(ctx, s, j); err != nil {
				r.mu.Lock()
				if r.pushErr == nil {
					r.pushErr = err
				}
				r.mu.Unlock()
				if unreachable(err) {
					r.markDown(r.To, err)
				} else {
					r.note("%v (the build goes on)", err)
				}
				continue
			}
			r.mu.Lock()
			r.pushed++
			r.mu.Unlock()
		}
	}()
}

// queue asks for an image to be pushed under tag unless it is there.
func (r *RegistryCache) queue(local, tag, outputs string) {
	if r == nil || r.jobs == nil {
		return
	}
	if r.store.wasPushed(local, r.To) {
		return
	}
	r.jobs <- pushJob{local: local, tag: tag, outputs: outputs}
}

// QueueBase pushes a base (as base-KEY).
func (r *RegistryCache) QueueBase(img Image) {
	if r != nil {
		r.queue(img.Name, "base-"+img.Key, "")
	}
}

func (r *RegistryCache) push(ctx context.Context, s *Store, j pushJob) error {
	if j.outputs != "" {
		if err := r.pushOutputs(ctx, s, j); err != nil {
			return err
		}
	}
	if err := r.pushImage(ctx, s, j.local, j.tag); err != nil {
		return err
	}
	s.markPushed(j.local, r.To)
	return nil
}

func (r *RegistryCache) pushImage(ctx context.Context, s *Store, local, tag string) error {
	src, err := s.ref(local)
	if err != nil {
		return err
	}
	dst, err := remoteRef(r.To, tag)
	if err != nil {
		return err
	}
	pc, err := r.policy(s)
	if err != nil {
		return err
	}
	defer pc.Destroy()
	_, err = copy.Image(ctx, pc, dst, src, &copy.Options{
		SourceCtx:             s.sc,
		DestinationCtx:        r.sys(s),
		ForceManifestMIMEType: imgspecv1.MediaTypeImageManifest,
	})
	if err != nil {
		return fmt.Errorf("push %s to %s:%s: %w", local, r.To, tag, err)
	}
	return nil
}

// pushOutputs pushes a step's outputs directory as a one-layer image.
func (r *RegistryCache) pushOutputs(ctx context.Context, s *Store, j pushJob) error {
	key := strings.TrimPrefix(j.tag, "step-")
	tmp, err := os.CreateTemp(s.sc.BigFilesTemporaryDir, "outputs-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tarDir(j.outputs, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("outputs of %s: %w", j.local, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	local := outputsImageName(key)
	if _, err := s.ImportTarball(ctx, tmp.Name(), local, ""); err != nil {
		return err
	}
	defer s.RemoveImage(local)
	return r.pushImage(ctx, s, local, "outputs-"+key)
}

// tarDir writes the regular files and directories under dir (not the
// completeness stamp) as a tar stream.
func tarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." || rel == outputsStamp {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = rel
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Wait lets queued pushes finish (or ctx end them) and says how many
// images were pushed and the first error, if any. Push errors never fail
// a build: the caller reports them.
func (r *RegistryCache) Wait() (pushed int, took time.Duration, err error) {
	if r == nil || r.jobs == nil {
		return 0, 0, nil
	}
	close(r.jobs)
	<-r.done
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jobs = nil
	return r.pushed, time.Since(r.started), r.pushErr
}

// Abort drops queued pushes and stops the one running (a failed build).
func (r *RegistryCache) Abort() {
	if r == nil || r.jobs == nil {
		return
	}
	r.cancel()
	_, _, _ = r.Wait()
}
