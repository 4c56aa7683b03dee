package assemble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// toolPackages names the Debian package that ships each host tool, so a
// missing tool's error says what to install.
var toolPackages = map[string]string{
	"mkfs.ext4":    "e2fsprogs",
	"debugfs":      "e2fsprogs",
	"mkfs.vfat":    "dosfstools",
	"mmd":          "mtools",
	"mcopy":        "mtools",
	"grub-mkimage": "grub-common",
	"qemu-img":     "qemu-utils",
	"mkfs.xfs":     "xfsprogs",
	"losetup":      "mount",
	"unshare":      "util-linux",
	"lvm":          "lvm2",
}

// lookTool finds a host tool in PATH, plus the sbin directories that a
// non-root PATH often lacks (mkfs.* and debugfs live there).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if pkg := toolPackages[name]; pkg != "" {
		return "", fmt.Errorf("%s not found in PATH: install the %s package", name, pkg)
	}
	return "", fmt.Errorf("%s not found in PATH", name)
}

// run executes a host tool and returns its stdout. The error carries the
// command and the tail of its stderr, which is where these tools explain
// themselves. LC_ALL=C keeps messages stable for callers that match them.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runEnv(ctx, nil, name, args...)
}

// runEnv is run with extra environment variables (SOURCE_DATE_EPOCH).
func runEnv(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	path, err := lookTool(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(append(os.Environ(), "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1"), env...)
	killGroupOnCancel(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", name, ctx.Err())
		}
		msg := tail(stderr.String(), 6)
		if msg == "" {
			msg = tail(stdout.String(), 6)
		}
		return stdout.Bytes(), &ToolError{Tool: name, Args: args, Err: err, Stderr: msg}
	}
	return stdout.Bytes(), nil
}

// killGroupOnCancel runs cmd in a process group of its own and, when the
// context is cancelled, kills the whole group: a tool run through
// "unshare ... sh -c" has children (cp, mount) that must die with it, or
// they would keep the private mount namespace, and with it loop devices,
// busy after BuildDisk returned.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second
}

// ToolError is a host tool that exited with an error.
type ToolError struct {
	Tool   string
	Args   []string
	Err    error
	Stderr string // last lines of its error output
}

func (e *ToolError) Error() string {
	s := fmt.Sprintf("%s %s: %v", e.Tool, strings.Join(e.Args, " "), e.Err)
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

func (e *ToolError) Unwrap() error { return e.Err }

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, " | ")
}

// tempPath is where an output is written before it is renamed to path: the
// same directory (so the rename is atomic), hidden, and tagged with our pid
// so a later run can tell whose leftover it is.
func tempPath(path string) string {
	return filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.tmp-%d", filepath.Base(path), os.Getpid()))
}

// checkOutputDir fails early, with the path in the message, when an output
// cannot be created at all.
func checkOutputDir(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("output directory %s does not exist: create it first", dir)
	}
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output directory %s is not a directory", dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("output %s is a directory: give a file name", path)
	}
	return nil
}

// LookTool finds a host tool as assembly does; its error names the package
// that ships the tool.
func LookTool(name string) (string, error) { return lookTool(name) }
