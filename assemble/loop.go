package assemble

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// loopAvailable reports whether the loop assembler can run here: real
// root (loop devices and block-device mounts need CAP_SYS_ADMIN in the
// initial user namespace) and a loop driver.
func loopAvailable() (bool, string) {
	if os.Geteuid() != 0 {
		return false, fmt.Sprintf("builder runs as uid %d", os.Geteuid())
	}
	if m, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		f := strings.Fields(string(m))
		if len(f) < 3 || f[0] != "0" || f[1] != "0" || f[2] != "4294967295" {
			return false, "builder runs as root of a user namespace, where loop devices cannot be set up"
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return false, "/dev/loop-control is missing (no loop driver)"
	}
	if _, err := lookTool("losetup"); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// cleanupContext is for releasing resources after the build's context
// was cancelled: the release must still run, but not forever.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
}

// attachLoop attaches a loop device to the size bytes at offset of file
// and returns it. Each filesystem or physical volume gets its own loop
// device over its byte range, so neither partition scanning (which this
// kernel lacks), partx, udev nor device-mapper is needed.
func attachLoop(ctx context.Context, file string, offset, size int64) (string, error) {
	out, err := run(ctx, "losetup", "--show", "-f", "--offset", fmt.Sprint(offset), "--sizelimit", fmt.Sprint(size), file)
	if err != nil {
		return "", fmt.Errorf("attach a loop device to %s at %d: %w", file, offset, err)
	}
	dev := strings.TrimSpace(string(out))
	if !strings.HasPrefix(dev, "/dev/loop") {
		return "", fmt.Errorf("losetup printed %q, not a loop device", dev)
	}
	return dev, nil
}

// detachLoops detaches every loop device backed by file, and waits until
// the kernel has let go of them. Finding them by their backing file (which
// is private to this build) also catches a device attached by a losetup
// that was killed before it printed its name. A device still in use (a
// mount in a namespace that is going away) is detached when released
// (autoclear), so this waits a little for that.
func detachLoops(file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	ctx, cancel := cleanupContext(context.Background())
	defer cancel()
	var last error
	for try := 0; try < 50; try++ {
		devs, err := loopsOf(abs)
		if err != nil {
			return err
		}
		if len(devs) == 0 {
			return nil
		}
		for _, d := range devs {
			if err := removeHolders(ctx, d); err != nil {
				last = err
			}
			if _, err := run(ctx, "losetup", "-d", d); err != nil {
				last = err
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	devs, _ := loopsOf(abs)
	return fmt.Errorf("loop devices %s on %s are still attached (busy?): %v; detach them with losetup -d", strings.Join(devs, ", "), abs, last)
}

// loopsOf lists the loop devices whose backing file is file, from sysfs
// (losetup -j matches by inode, which a deleted file no longer has).
func loopsOf(file string) ([]string, error) {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err != nil {
			continue // not attached
		}
		bf := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if bf == file {
			devs = append(devs, "/dev/"+e.Name())
		}
	}
	return devs, nil
}

// removeHolders removes device-mapper devices stacked on dev. builder never
// activates LVM, but on a host whose udev auto-activates volume groups,
// one could appear on a physical volume while it is attached; it would
// keep the loop device busy and leave a /dev/mapper node behind.
func removeHolders(ctx context.Context, dev string) error {
	holders, _ := os.ReadDir(filepath.Join("/sys/block", filepath.Base(dev), "holders"))
	var errs []error
	for _, h := range holders {
		name, err := os.ReadFile(filepath.Join("/sys/block", h.Name(), "dm", "name"))
		if err != nil {
			continue
		}
		if _, err := run(ctx, "dmsetup", "remove", "--noudevsync", strings.TrimSpace(string(name))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// bindMask hides a directory of the tree from a tool: an empty directory
// with the same owner and mode, bind-mounted over it in a private mount
// namespace.
type bindMask struct{ empty, target string }

// maskScript runs in "unshare --mount": bind the empty directories over
// their targets (arguments in pairs up to "--"), then exec the tool. The
// namespace, and with it every bind mount, disappears when the tool exits,
// however it exits.
const maskScript = `set -e
while [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done
shift
exec "$@"`

// runMasked runs a tool with the masked directories hidden. Without masks
// it is run.
func runMasked(ctx context.Context, env []string, masks []bindMask, tool string, args ...string) ([]byte, error) {
	if len(masks) == 0 {
		return runEnv(ctx, env, tool, args...)
	}
	path, err := lookTool(tool)
	if err != nil {
		return nil, err
	}
	a := []string{"--mount", "--propagation", "private", "sh", "-c", maskScript, "sh"}
	for _, m := range masks {
		a = append(a, m.empty, m.target)
	}
	a = append(a, "--", path)
	out, err := runEnv(ctx, env, "unshare", append(a, args...)...)
	var te *ToolError
	if errors.As(err, &te) {
		// Report the tool, not the wrapper.
		te.Tool, te.Args = tool+" (in a private mount namespace)", args
		if strings.Contains(te.Stderr, "unshare failed") || strings.Contains(te.Stderr, "mount: ") {
			return out, fmt.Errorf("hiding %s from %s needs a private mount namespace with bind mounts (unshare --mount), which failed: %w; run builder as root, or as root of its own user namespace",
				maskTargets(masks), tool, te)
		}
	}
	return out, err
}

func maskTargets(m []bindMask) string {
	var t []string
	for _, x := range m {
		t = append(t, x.target)
	}
	return strings.Join(t, ", ")
}

// makeMask creates the empty stand-in for dir under work, with dir's
// owner, mode and times, so that mkfs or cp records the mount point as
// the tree has it.
func makeMask(work, dir string) (bindMask, error) {
	st, err := os.Lstat(dir)
	if err != nil {
		return bindMask{}, err
	}
	empty, err := os.MkdirTemp(work, "mask-")
	if err != nil {
		return bindMask{}, err
	}
	sys := st.Sys().(*syscall.Stat_t)
	if err := os.Lchown(empty, int(sys.Uid), int(sys.Gid)); err != nil {
		return bindMask{}, fmt.Errorf("give the stand-in for %s its owner: %w (builder must run as root to split the tree into filesystems)", dir, err)
	}
	if err := os.Chmod(empty, st.Mode().Perm()|st.Mode()&(os.ModeSetgid|os.ModeSetuid|os.ModeSticky)); err != nil {
		return bindMask{}, err
	}
	mt := time.Unix(sys.Mtim.Sec, sys.Mtim.Nsec)
	at := time.Unix(sys.Atim.Sec, sys.Atim.Nsec)
	if err := os.Chtimes(empty, at, mt); err != nil {
		return bindMask{}, err
	}
	return bindMask{empty: empty, target: dir}, nil
}
