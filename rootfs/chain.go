package rootfs

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"builder/internal/cleanup"
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
	// Identity is everything that can change the step's result (scripts,
	// element files, environment, package lists), hashed by the caller.
	Identity string
	Command  []string
	Env      []string
	Mounts   []Mount // Inside only
	// Dir is the working directory of an Outside command.
	Dir string
	// Writable are the host paths an Outside command may write besides the
	// root filesystem; the rest of the host is read-only to it.
	Writable []string
	// ReadOnly are paths inside Writable ones that stay read-only.
	ReadOnly []string
	Edit     func(ctx context.Context, root string) error // Tree only
	// Output receives the command's combined stdout and stderr.
	Output io.Writer
	// Wrap turns a failure into a more useful error (which hook failed).
	Wrap func(error) error
	// Begin and End bracket the step for progress reporting; cached is true
	// when the step was found in the cache and did not run.
	Begin func()
	End   func(cached bool, err error)
}

// Image is a committed image and the cache key it was stored under.
type Image struct {
	Name string
	Key  string
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
	DebugShell io.Reader
	// DebugOut receives the shell's output.
	DebugOut io.Writer
}

// StepKey chains a step's identity onto its parent's key.
func StepKey(parent string, s Step) string {
	h := sha256.New()
	fmt.Fprintf(h, "builder-step-v1\x00%s\x00%s\x00%s\x00%s", parent, s.Kind, s.Name, s.Identity)
	return hex.EncodeToString(h.Sum(nil))
}

// CacheImageName is where a step's result is stored.
func CacheImageName(key string) string {
	return "localhost/builder/step:" + key[:40]
}

// RunChain runs steps in order on top of base. A step whose key already has
// an image is skipped, so an unchanged build is a series of lookups and a
// change late in the chain re-runs only the steps from there on.
func (s *Store) RunChain(ctx context.Context, base Image, steps []Step, o ChainOptions) (Image, error) {
	cur := base
	for i, st := range steps {
		if err := ctx.Err(); err != nil {
			return Image{}, err
		}
		key := StepKey(cur.Key, st)
		name := CacheImageName(key)
		if st.Begin != nil {
			st.Begin()
		}
		if !o.NoCache && s.HasImage(name) {
			if st.End != nil {
				st.End(true, nil)
			}
			cur = Image{Name: name, Key: key}
			continue
		}
		err := s.runStep(ctx, cur, st, name, i, o)
		if st.End != nil {
			st.End(false, err)
		}
		if err != nil {
			return Image{}, err
		}
		cur = Image{Name: name, Key: key}
	}
	return cur, nil
}

// RunOutsideReadOnly runs an Outside step's command against a read-only
// mount of img and commits nothing: DIB's extra-data.d, which fills the
// hooks tree from the host and must run on every build, since the tree it
// leaves is part of every later step's key.
func (s *Store) RunOutsideReadOnly(ctx context.Context, img Image, st Step) error {
	out := st.Output
	if out == nil {
		out = io.Discard
	}
	var root string
	if img.Name == "scratch" {
		empty, err := os.MkdirTemp("", "builder-empty-root-")
		if err != nil {
			return err
		}
		defer os.Remove(empty)
		root = empty
	} else {
		p, release, err := s.MountImage(img.Name)
		if err != nil {
			return fmt.Errorf("step %s: %w", st.Name, err)
		}
		defer release()
		root = p
	}
	if st.Begin != nil {
		st.Begin()
	}
	err := runOutside(ctx, st, root, out)
	if err != nil && st.Wrap != nil {
		err = st.Wrap(err)
	}
	if st.End != nil {
		st.End(false, err)
	}
	return err
}

func (s *Store) runStep(ctx context.Context, from Image, st Step, commitAs string, idx int, o ChainOptions) (err error) {
	cname := fmt.Sprintf("builder-%s-%02d-%s", o.RunID, idx, sanitize(st.Name))
	c, err := s.NewContainer(ctx, from.Name, cname, o.Isolation, o.Runtime)
	if err != nil {
		return fmt.Errorf("step %s: %w", st.Name, err)
	}
	var h cleanup.Handle
	if o.Cleanup != nil {
		h = o.Cleanup.Push("container "+cname, c.Delete)
	}
	defer func() {
		if err != nil && o.DebugShell != nil && ctx.Err() == nil {
			debugShell(ctx, c, st, o)
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
	switch st.Kind {
	case Inside:
		err = c.Run(ctx, RunSpec{Command: st.Command, Env: st.Env, Mounts: st.Mounts, Stdout: out, Stderr: out})
	case Outside:
		var root string
		if root, err = c.Mount(); err == nil {
			err = runOutside(ctx, st, root, out)
		}
	case Tree:
		var root string
		if root, err = c.Mount(); err == nil {
			err = st.Edit(ctx, root)
		}
	}
	if err != nil {
		if st.Wrap != nil {
			err = st.Wrap(err)
		}
		return err
	}
	if _, err = c.Commit(ctx, commitAs); err != nil {
		return fmt.Errorf("step %s: %w", st.Name, err)
	}
	return nil
}

// debugShell runs an interactive shell where st failed. Its own exit status
// does not matter: the build fails as it would have.
func debugShell(ctx context.Context, c *Container, st Step, o ChainOptions) {
	out := o.DebugOut
	if out == nil {
		out = os.Stderr
	}
	fmt.Fprintf(out, "builder: debug shell after the failure of %s (exit the shell to clean up)\n", st.Name)
	shell := []string{"/bin/bash", "-i"}
	switch st.Kind {
	case Inside:
		env := append(append([]string(nil), st.Env...), "PS1=[builder debug "+st.Name+"] \\w# ")
		_ = c.Run(ctx, RunSpec{Command: shell, Env: env, Mounts: st.Mounts, Stdin: o.DebugShell, Stdout: out, Stderr: out})
	case Outside:
		root, err := c.Mount()
		if err != nil {
			fmt.Fprintf(out, "builder: no debug shell: %v\n", err)
			return
		}
		sh := st
		sh.Command = shell
		sh.Env = append(append([]string(nil), st.Env...), "PS1=[builder debug "+st.Name+" outside] \\w# ")
		_ = runOutsideIO(ctx, sh, root, out, o.DebugShell)
	default:
		fmt.Fprintf(out, "builder: no debug shell for builder's own step %s\n", st.Name)
	}
}

// runOutside runs an outside hook command on the host in its own process
// group, so cancellation reaches every process it started.
func runOutside(ctx context.Context, st Step, root string, out io.Writer) error {
	return runOutsideIO(ctx, st, root, out, nil)
}

func runOutsideIO(ctx context.Context, st Step, root string, out io.Writer, stdin io.Reader) error {
	if len(st.Command) == 0 {
		return errors.New("outside step without a command")
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
	args = append(args, "--")
	args = append(args, st.Command...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append([]string(nil), st.Env...), "TARGET_ROOT="+root, "TMP_MOUNT_PATH="+root)
	cmd.Dir = st.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Stdin = stdin
	// Its own process group, so cancellation reaches all it started; not
	// for an interactive shell, which must stay in the terminal's group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: stdin == nil, Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", st.Command[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &ExitError{Code: ee.ExitCode()}
		}
		return err
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
		return ctx.Err()
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
