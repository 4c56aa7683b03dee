package rootfs

import (
	"bufio"
	"builder/internal/version"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"builder/internal/fsutil"
	"builder/internal/progress"

	"github.com/opencontainers/go-digest"
)

// Bootstrap describes how to make an operating system's base root
// filesystem from a package mirror (the OS element's rootfs-source.yaml,
// already expanded with its environment).
type Bootstrap struct {
	Method         string   // "mmdebstrap"
	Suite          string   // e.g. bookworm
	Variant        string   // e.g. minbase
	Sources        []string // "deb URI SUITE COMPONENTS..." lines
	Packages       []string
	EssentialHooks []string // shell commands, "$1" is the new root
	Arch           string
}

// BaseOptions are the host-side settings of a bootstrap.
type BaseOptions struct {
	// StateDir keeps small records (the latest key per bootstrap spec).
	StateDir string
	// AptCache is shared with the build's containers (downloaded .debs).
	AptCache string
	// TmpDir receives the bootstrap tree and tarball while they are made
	// (tmpfs when the caller has room).
	TmpDir string
	// Offline uses the newest base already built for this spec instead of
	// asking the mirror whether it changed.
	Offline bool
	// Log receives the bootstrap tool's output.
	Log io.Writer
	// Refresh rebuilds the base even when the key is in the store.
	Refresh bool
	// Progress, if set, gets one line per stage (mirror check, bootstrap,
	// import).
	Progress *progress.Task
	// Registry, if enabled, gives a base the store lacks and takes the
	// one this build made.
	Registry *RegistryCache
	// Epoch is SOURCE_DATE_EPOCH for the bootstrap (set by EnsureBase from
	// the mirror's Release date): the base tarball is reproducible.
	Epoch int64
}

func (b Bootstrap) validate() error {
	if b.Method != "mmdebstrap" {
		return fmt.Errorf("rootfs source method %q is not supported (known: mmdebstrap)", b.Method)
	}
	if b.Suite == "" {
		return errors.New("rootfs source: suite is empty (is DIB_RELEASE set?)")
	}
	if len(b.Sources) == 0 {
		return errors.New("rootfs source: no package sources")
	}
	for _, s := range b.Sources {
		f := strings.Fields(s)
		if len(f) < 3 || f[0] != "deb" {
			return fmt.Errorf("rootfs source: %q is not a \"deb URI SUITE COMPONENTS\" line", s)
		}
	}
	return nil
}

// specHash identifies the bootstrap recipe, without the mirror's state.
func (b Bootstrap) specHash() string {
	h := sha256.New()
	// builder's code (the mmdebstrap hooks it adds) is part of it.
	fmt.Fprintf(h, "bootstrap\x00%s\x00%s\x00%s\x00%s\x00%s\x00", version.CodeID(), b.Method, b.Suite, b.Variant, b.Arch)
	for _, l := range [][]string{b.Sources, b.Packages, b.EssentialHooks} {
		fmt.Fprintf(h, "%d\x00%s\x00", len(l), strings.Join(l, "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mirrorState hashes each source's InRelease (or Release) file: the base is
// rebuilt exactly when the mirror published something new. epoch is the
// newest Date of those files: builds on the base take it as their
// SOURCE_DATE_EPOCH.
func (b Bootstrap) mirrorState(ctx context.Context) (state string, epoch int64, err error) {
	h := sha256.New()
	client := &http.Client{Timeout: 30 * time.Second}
	for _, s := range b.Sources {
		f := strings.Fields(s)
		uri, suite := strings.TrimSuffix(f[1], "/"), f[2]
		var body []byte
		var errs []error
		for _, name := range []string{"InRelease", "Release"} {
			u := uri + "/dists/" + suite + "/" + name
			data, err := httpGet(ctx, client, u)
			if err == nil {
				body = data
				break
			}
			errs = append(errs, err)
		}
		if body == nil {
			return "", 0, fmt.Errorf("check mirror %s %s: %w (use --offline to build from the cached base)", uri, suite, errors.Join(errs...))
		}
		fmt.Fprintf(h, "%s\x00%s\x00%x\x00", uri, suite, sha256.Sum256(body))
		if t, ok := releaseDate(body); ok && t > epoch {
			epoch = t
		}
	}
	return hex.EncodeToString(h.Sum(nil)), epoch, nil
}

// releaseDate reads the Date field of a Release file ("Sat, 09 Nov 2024
// 10:41:34 UTC").
func releaseDate(body []byte) (int64, bool) {
	for _, line := range strings.Split(string(body), "\n") {
		v, ok := strings.CutPrefix(line, "Date:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		for _, layout := range []string{time.RFC1123, time.RFC1123Z, "Mon, 2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
			if t, err := time.Parse(layout, v); err == nil {
				return t.Unix(), true
			}
		}
		return 0, false
	}
	return 0, false
}

func httpGet(ctx context.Context, c *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// BaseKey is the cache key of the base: the recipe plus the mirror's state.
// epoch is the mirror's newest Release date (0 offline: the base's label
// has it).
func (b Bootstrap) BaseKey(ctx context.Context, o BaseOptions) (key string, epoch int64, err error) {
	if err := b.validate(); err != nil {
		return "", 0, err
	}
	spec := b.specHash()
	record := filepath.Join(o.StateDir, "base-"+spec[:32])
	if o.Offline {
		data, err := os.ReadFile(record)
		if err != nil {
			return "", 0, fmt.Errorf("offline build: no base was built yet for this operating system and release (build once online)")
		}
		return strings.TrimSpace(string(data)), 0, nil
	}
	state, epoch, err := b.mirrorState(ctx)
	if err != nil {
		return "", 0, err
	}
	sum := sha256.Sum256([]byte(spec + "\x00" + state))
	return hex.EncodeToString(sum[:]), epoch, nil
}

// BaseImageName is where the base with this key is stored.
func BaseImageName(key string) string { return "localhost/builder/base:" + key[:40] }

// EnsureBase returns the base image for b, bootstrapping and importing it
// unless the store already has it. cached reports a store hit.
func (s *Store) EnsureBase(ctx context.Context, b Bootstrap, o BaseOptions) (img Image, cached bool, err error) {
	st := o.Progress.Step("mirror state")
	key, epoch, err := b.BaseKey(ctx, o)
	if err != nil {
		st.Fail(err)
		return Image{}, false, err
	}
	st.Done("")
	name := BaseImageName(key)
	if !o.Refresh && s.HasImage(name) {
		o.Registry.QueueBase(Image{Name: name, Key: key})
		return Image{Name: name, Key: key}, true, nil
	}
	if !o.Refresh && o.Registry.Enabled() {
		st = o.Progress.Step("registry cache")
		if o.Registry.PullBase(ctx, s, key, name) {
			st.Done("pulled")
			return Image{Name: name, Key: key}, true, nil
		}
		st.Done("not there")
	}
	if epoch == 0 {
		// Offline and the base is gone: it is bootstrapped from the
		// packages cached, at the time of the recipe's last base.
		epoch = time.Now().Unix()
	}
	o.Epoch = epoch
	if err := os.MkdirAll(o.TmpDir, 0o700); err != nil {
		return Image{}, false, err
	}
	tmp, err := os.MkdirTemp(o.TmpDir, "bootstrap-")
	if err != nil {
		return Image{}, false, err
	}
	defer removeBootstrapDir(tmp)
	st = o.Progress.Step("mmdebstrap " + b.Suite)
	tarPath, diffID, err := writeBootstrapTar(ctx, b, tmp, o)
	if err != nil {
		st.Fail(err)
		return Image{}, false, err
	}
	st.Done(fmt.Sprintf("%d packages requested", len(b.Packages)))
	st = o.Progress.Step("import into the store")
	if _, err := s.ImportTarFile(tarPath, diffID, TarImport{Name: name, Arch: b.Arch, Epoch: epoch, Labels: map[string]string{LabelEpoch: fmt.Sprint(epoch)}}); err != nil {
		st.Fail(err)
		return Image{}, false, err
	}
	st.Done("")
	o.Registry.QueueBase(Image{Name: name, Key: key})
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o755); err == nil {
			rec := filepath.Join(o.StateDir, "base-"+b.specHash()[:32])
			_ = writeIfDifferent(rec, []byte(key+"\n"))
		}
	}
	return Image{Name: name, Key: key}, false, nil
}

// removeBootstrapDir removes mmdebstrap's temporary directory. An
// mmdebstrap that was killed (the build was stopped) leaves the binds it
// made in its tree: the host's /dev/shm, /sys and /proc among them. They
// are detached first, deepest first; were one still there, nothing is
// removed (a removal would walk into the host's files), and the next
// build's clean-up of this run's directory detaches and removes it.
func removeBootstrapDir(dir string) {
	if left, err := fsutil.DetachMounts(dir); err != nil || len(left) > 0 {
		return
	}
	os.RemoveAll(dir)
}

// writeBootstrapTar runs mmdebstrap with its tarball on a pipe, written
// to tmp and digested as it comes: the store then applies it under that
// digest.
func writeBootstrapTar(ctx context.Context, b Bootstrap, tmp string, o BaseOptions) (string, digest.Digest, error) {
	cmd, err := mmdebstrapCommand(ctx, b, tmp, o)
	if err != nil {
		return "", "", err
	}
	tarPath := filepath.Join(tmp, "base.tar")
	out, err := os.OpenFile(tarPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", "", err
	}
	defer out.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return "", "", err
	}
	defer r.Close()
	var tail tailBuffer
	cmd.Stdout = w // mmdebstrap's own messages go to stderr when the tarball is on stdout
	cmd.Stderr = io.MultiWriter(&tail, orDiscard(o.Log))
	err = cmd.Start()
	w.Close() // the child has its own copy: the reader sees EOF when it ends
	if err != nil {
		return "", "", fmt.Errorf("starting mmdebstrap: %w", err)
	}
	digester := digest.Canonical.Digester()
	_, copyErr := io.Copy(io.MultiWriter(out, digester.Hash()), r)
	if copyErr != nil {
		// Out of room for the tarball: mmdebstrap would block on a
		// full pipe.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		if copyErr == nil {
			return "", "", fmt.Errorf("mmdebstrap %s failed: %w\n%s", b.Suite, err, tail.String())
		}
	}
	if copyErr == nil {
		copyErr = out.Close()
	}
	if copyErr != nil {
		return "", "", fmt.Errorf("writing the bootstrap tarball: %w", copyErr)
	}
	return tarPath, digester.Digest(), nil
}

// mmdebstrapCommand is mmdebstrap making b's tree under tmp and writing it
// as a tarball to its standard output.
func mmdebstrapCommand(ctx context.Context, b Bootstrap, tmp string, o BaseOptions) (*exec.Cmd, error) {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return nil, errors.New("mmdebstrap is not installed (apt-get install mmdebstrap, or run hack/setup.sh)")
	}
	args := []string{"--variant=" + b.Variant, "--format=tar", "--arch=" + b.Arch}
	if len(b.Packages) > 0 {
		args = append(args, "--include="+strings.Join(b.Packages, ","))
	}
	// eatmydata skips the fsync()s dpkg does for every file: the tree is
	// packed into a tarball right after, so durability buys nothing here.
	// Its hook calls dpkg-architecture (dpkg-dev).
	if canEatMyData() {
		args = append(args, "--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata")
	}
	if o.AptCache != "" {
		if err := os.MkdirAll(filepath.Join(o.AptCache, "partial"), 0o755); err != nil {
			return nil, err
		}
		// Reuse and keep the downloaded packages across builds: the .deb
		// files only (the shared directory also holds concurrent builds'
		// own archives), each put in place by a rename so that another
		// build never reads half a package. mmdebstrap runs as root (in
		// the user namespace when rootless): its hooks see host paths.
		q := "'" + strings.ReplaceAll(o.AptCache, "'", `'\''`) + "'"
		args = append(args,
			"--skip=essential/unlink",
			`--setup-hook=mkdir -p "$1"/var/cache/apt/archives/ && find `+q+` -maxdepth 1 -type f -name '*.deb' -exec cp --reflink=auto -t "$1"/var/cache/apt/archives/ {} +`,
			`--customize-hook=for f in "$1"/var/cache/apt/archives/*.deb; do [ -f "$f" ] || continue; b=${f##*/}; [ -e `+q+`/"$b" ] && continue; cp --reflink=auto "$f" `+q+`/".$b.tmp.$$" && mv -f `+q+`/".$b.tmp.$$" `+q+`/"$b" || exit 1; done`,
		)
	}
	for _, h := range b.EssentialHooks {
		args = append(args, "--essential-hook="+h)
	}
	// mmdebstrap copies the host's resolv.conf and hostname (with their
	// modes): the image gets neither the host's DNS servers nor its name,
	// and the same files wherever it is built. The networking element
	// names the host; DHCP fills resolv.conf at boot.
	args = append(args,
		`--customize-hook=rm -f "$1/etc/resolv.conf" && install -m 644 /dev/null "$1/etc/resolv.conf"`,
		`--customize-hook=rm -f "$1/etc/hostname" && echo localhost > "$1/etc/hostname" && chmod 644 "$1/etc/hostname"`,
		// apt owns its partial downloads by _apt, but only when its
		// sandbox user can reach them, which a rootless build's cannot.
		`--customize-hook=if chroot "$1" getent passwd _apt >/dev/null; then mkdir -p "$1/var/cache/apt/archives/partial" && chroot "$1" chown _apt:root /var/cache/apt/archives/partial && chmod 700 "$1/var/cache/apt/archives/partial"; fi`,
	)
	// Keep the package lists: hooks install packages without another
	// "apt-get update"; dpkg's finalise.d removes them from the image.
	args = append(args, "--skip=cleanup/apt/lists")
	args = append(args, b.Suite, "-") // "-": the tarball on standard output
	args = append(args, b.Sources...)
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	// mmdebstrap builds the tree in TMPDIR before packing it; with
	// SOURCE_DATE_EPOCH it clamps times and drops what varies per run.
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if o.Epoch > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("SOURCE_DATE_EPOCH=%d", o.Epoch))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// tailBuffer keeps the last lines written to it.
type tailBuffer struct{ lines []string }

func (t *tailBuffer) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		t.lines = append(t.lines, sc.Text())
		if len(t.lines) > 30 {
			t.lines = t.lines[1:]
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.Join(t.lines, "\n") }

func canEatMyData() bool {
	for _, t := range []string{"eatmydata", "dpkg-architecture"} {
		if _, err := exec.LookPath(t); err != nil {
			return false
		}
	}
	return exists("/usr/share/mmdebstrap/hooks/eatmydata")
}
