package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/buildah"
	"go.podman.io/buildah/define"
)

// Isolation selects how hooks are contained.
type Isolation string

const (
	// IsolationChroot needs no runtime binary; hooks share the host's PID
	// namespace, /dev, /proc and /sys (fine for trusted element code).
	IsolationChroot Isolation = "chroot"
	// IsolationOCI runs hooks under runc with their own PID/IPC/UTS/mount
	// namespaces and a minimal /dev.
	IsolationOCI Isolation = "oci"
)

// defaultCapabilities are what a package manager needs as root in the
// container; without an explicit list the process gets none.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_MKNOD",
}

// Container is one working container: a writable layer over an image.
type Container struct {
	s         *Store
	b         *buildah.Builder
	isolation Isolation
	runtime   string
	mounted   string
}

// NewContainer creates a working container from image (or "scratch").
// With ownResolvConf the container's /etc/resolv.conf is the tree's own
// file (builder fills it as DIB does); otherwise buildah mounts the host's.
func (s *Store) NewContainer(ctx context.Context, image, name string, iso Isolation, runtime string, ownResolvConf bool) (*Container, error) {
	if iso == "" {
		iso = IsolationChroot
	}
	opts := &define.CommonBuildOptions{Ulimit: hardLimits()}
	if ownResolvConf {
		opts.DNSServers = []string{"none"}
	}
	b, err := buildah.NewBuilder(ctx, s.st, buildah.BuilderOptions{
		FromImage:        image,
		Container:        name,
		PullPolicy:       define.PullNever,
		Isolation:        iso.define(),
		NamespaceOptions: hostNetwork(),
		ConfigureNetwork: define.NetworkDefault,
		NetworkInterface: hostNetworkOnly{},
		SystemContext:    s.sc,
		Capabilities:     defaultCapabilities,
		CommonBuildOpts:  opts,
		Format:           define.OCIv1ImageManifest,
	})
	if err != nil {
		return nil, fmt.Errorf("create container from %s: %w", image, err)
	}
	return &Container{s: s, b: b, isolation: iso, runtime: runtime}, nil
}

func (i Isolation) define() define.Isolation {
	if i == IsolationOCI {
		return define.IsolationOCI
	}
	return define.IsolationChroot
}

func hostNetwork() define.NamespaceOptions {
	return define.NamespaceOptions{{Name: string(specs.NetworkNamespace), Host: true}}
}

// Name is the working container's name.
func (c *Container) Name() string { return c.b.Container }

// Mount mounts the container's root filesystem read-write and returns its
// path; outside hooks and builder itself edit the tree there.
func (c *Container) Mount() (string, error) {
	if c.mounted != "" {
		return c.mounted, nil
	}
	p, err := c.b.Mount("")
	if err != nil {
		return "", fmt.Errorf("mount container %s: %w", c.Name(), err)
	}
	c.mounted = p
	return p, nil
}

// Unmount releases Mount.
func (c *Container) Unmount() error {
	if c.mounted == "" {
		return nil
	}
	c.mounted = ""
	return c.b.Unmount()
}

// Commit writes the container's changes as a new image named name and
// returns its ID. Labels with an empty value are removed (a child image
// inherits its parent's).
func (c *Container) Commit(ctx context.Context, name string, labels map[string]string) (string, error) {
	for k, v := range labels {
		if v == "" {
			c.b.UnsetLabel(k)
		} else {
			c.b.SetLabel(k, v)
		}
	}
	ref, err := c.s.ref(name)
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", name, err)
	}
	id, _, _, err := c.b.Commit(ctx, ref, buildah.CommitOptions{
		SystemContext:       c.s.sc,
		SignaturePolicyPath: c.s.sc.SignaturePolicyPath,
		// Layers are compressed when pushed to a registry cache, not here.
		Compression: 0,
	})
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", name, err)
	}
	return id, nil
}

// Delete unmounts and removes the working container.
func (c *Container) Delete() error {
	_ = c.Unmount()
	if err := c.b.Delete(); err != nil {
		return fmt.Errorf("delete container %s: %w", c.Name(), err)
	}
	return nil
}

// Mount is a bind mount into the container for one Run.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// RunSpec is one command inside the container.
type RunSpec struct {
	Command []string
	Env     []string
	Mounts  []Mount
	Stdout  io.Writer
	Stderr  io.Writer
	// Stdin, when set, is connected to the command (a debug shell); a
	// terminal is used when it is one.
	Stdin io.Reader
}

// ExitError is a command that ran and exited non-zero.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// chrootNoise is what buildah's chroot runtime adds to the command's stderr.
var chrootNoise = regexp.MustCompile(`^subprocess exited with status \d+$`)

// Run runs a command in the container and waits for it. Cancelling ctx kills
// every process the command started (buildah's Run itself cannot be
// cancelled), then waits for Run to return.
func (c *Container) Run(ctx context.Context, spec RunSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The container's name holds the run's ID: KillRun finds the hook's
	// processes by it should this build be killed outright.
	marker := fmt.Sprintf("%s=%s-%d", RunMarkVar, c.Name(), time.Now().UnixNano())
	mounts := make([]specs.Mount, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		opt := "rw"
		if m.ReadOnly {
			opt = "ro"
		}
		mounts = append(mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: []string{"rbind", opt}})
	}
	stdout := spec.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	stderr := spec.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	errFilter := newLineFilter(stderr, func(line []byte) bool { return !chrootNoise.Match(bytes.TrimSpace(line)) })
	defer errFilter.Flush()
	var stdin io.Reader = strings.NewReader("")
	terminal := buildah.WithoutTerminal
	if spec.Stdin != nil {
		stdin = spec.Stdin
		terminal = buildah.DefaultTerminal
	}

	opts := buildah.RunOptions{
		Isolation:        c.isolation.define(),
		Runtime:          c.runtime,
		NamespaceOptions: hostNetwork(),
		ConfigureNetwork: define.NetworkDefault,
		Env:              append(append([]string(nil), spec.Env...), marker),
		Mounts:           mounts,
		Stdin:            stdin,
		Stdout:           stdout,
		Stderr:           errFilter,
		Terminal:         terminal,
		CgroupManager:    "cgroupfs",
		Quiet:            true,
	}
	done := make(chan error, 1)
	go func() { done <- c.b.Run(spec.Command, opts) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		killMarked(marker)
		<-done
		errFilter.Flush()
		return ctx.Err()
	}
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Code: ee.ExitCode()}
	}
	return fmt.Errorf("run in container %s: %w", c.Name(), err)
}

// killMarked kills every process whose environment carries marker, until
// none is left: hooks may fork, and chroot isolation shares our PID space.
func killMarked(marker string) {
	needle := []byte(marker + "\x00")
	killWhere(func(env []byte) bool { return bytes.Contains(append(env, 0), needle) })
}

// RunMarkVar marks the processes of a build: builder sets it to
// RunMark(run ID) in its own environment (its tools inherit it) and in the
// environment of outside hooks, and inside hooks carry it with their
// container's name (builder-<run ID>-...).
const RunMarkVar = "BUILDER_RUN_MARK"

// RunMark is the value of RunMarkVar for a run.
func RunMark(runID string) string { return "builder-" + runID }

// KillRun kills every process that carries the mark of run runID: what a
// build killed outright (SIGKILL) left running, the hooks and tools it had
// started in process groups of their own.
func KillRun(runID string) {
	needle := []byte(RunMarkVar + "=" + RunMark(runID))
	killWhere(func(env []byte) bool {
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.HasPrefix(kv, needle) && (len(kv) == len(needle) || kv[len(needle)] == '-') {
				return true
			}
		}
		return false
	})
}

// killWhere kills, until none is left, every process (but this one) whose
// environment match accepts.
func killWhere(match func(env []byte) bool) {
	for round := 0; round < 50; round++ {
		found := false
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			if err != nil || !match(env) {
				continue
			}
			found = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lineFilter passes through whole lines that keep() accepts.
type lineFilter struct {
	w    io.Writer
	keep func([]byte) bool
	buf  []byte
}

func newLineFilter(w io.Writer, keep func([]byte) bool) *lineFilter {
	return &lineFilter{w: w, keep: keep}
}

func (f *lineFilter) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	for {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			break
		}
		line := f.buf[:i+1]
		if f.keep(line) {
			if _, err := f.w.Write(line); err != nil {
				return len(p), err
			}
		}
		f.buf = f.buf[i+1:]
	}
	return len(p), nil
}

// Flush writes a trailing partial line.
func (f *lineFilter) Flush() {
	if len(f.buf) > 0 && f.keep(f.buf) {
		_, _ = f.w.Write(f.buf)
	}
	f.buf = nil
}
