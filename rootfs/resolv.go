package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DIB's resolv.conf contract: after root.d the tree's /etc/resolv.conf is
// moved to /etc/resolv.conf.ORIG and the host's copy takes its place while
// the hooks run; at the end the .ORIG file (which an element may have
// rewritten to choose the image's resolv.conf) is put back, unless a hook
// turned /etc/resolv.conf into a symlink or made it immutable, in which
// case that is kept and .ORIG removed.
//
// builder fills the host's copy in just before each step runs and empties
// it again before the step is committed, so no layer holds the host's
// resolver configuration and a cached layer never carries a stale one.

const (
	resolvConf     = "etc/resolv.conf"
	resolvConfOrig = "etc/resolv.conf.ORIG"
)

// hostResolvConf is what the host resolves with; DIB falls back to a
// public resolver when the host has none.
func hostResolvConf() []byte {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil || len(strings.TrimSpace(string(data))) == 0 {
		return []byte("nameserver 8.8.8.8\n")
	}
	return data
}

// fillResolvConf gives a step the host's resolver configuration, when the
// tree's resolv.conf is still the build's regular file.
func fillResolvConf(root string) error {
	p := filepath.Join(root, resolvConf)
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || immutable(p) {
		return nil // a symlink an element chose, or removed, or made immutable: theirs
	}
	if err := os.WriteFile(p, hostResolvConf(), 0o644); err != nil {
		return fmt.Errorf("resolv.conf for the build: %w", err)
	}
	return nil
}

// emptyResolvConf drops the host's copy again before a commit.
func emptyResolvConf(root string) error {
	p := filepath.Join(root, resolvConf)
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || immutable(p) {
		return nil
	}
	if err := os.Truncate(p, 0); err != nil {
		return fmt.Errorf("resolv.conf after the step: %w", err)
	}
	return os.Chmod(p, 0o644)
}

// SaveResolvConf is DIB's step after root.d: the tree's resolv.conf
// becomes resolv.conf.ORIG and an empty regular file takes its place
// (filled with the host's for each step). It also does what DIB's
// operating-system root.d hook does with /.extra_settings: reads it (the
// base must be what it asks for) and removes it (extrasettings.go).
func SaveResolvConf(_ context.Context, root string) error {
	if err := applyExtraSettings(root); err != nil {
		return err
	}
	p := filepath.Join(root, resolvConf)
	if _, err := os.Lstat(p); err == nil {
		if err := os.Rename(p, filepath.Join(root, resolvConfOrig)); err != nil {
			return fmt.Errorf("keep resolv.conf as resolv.conf.ORIG: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, nil, 0o644)
}

// FinaliseBase is what DIB does to every image after cleanup.d: the
// resolv.conf rule above, an empty /tmp, truncated log files under
// /var/log and no *.log files under /root.
func FinaliseBase(_ context.Context, root string) error {
	if err := finaliseResolvConf(root); err != nil {
		return err
	}
	tmp := filepath.Join(root, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("empty /tmp: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
			return fmt.Errorf("empty /tmp: %w", err)
		}
	}
	err = filepath.WalkDir(filepath.Join(root, "var/log"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil && info.Size() > 0 {
				return os.Truncate(p, 0)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("truncate logs: %w", err)
	}
	err = filepath.WalkDir(filepath.Join(root, "root"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".log") {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove /root logs: %w", err)
	}
	return nil
}

func finaliseResolvConf(root string) error {
	p := filepath.Join(root, resolvConf)
	orig := filepath.Join(root, resolvConfOrig)
	if st, err := os.Lstat(p); err == nil && (st.Mode()&fs.ModeSymlink != 0 || immutable(p)) {
		if err := os.Remove(orig); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("resolv.conf: %w", err)
		}
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if _, err := os.Lstat(orig); err == nil {
		if err := os.Rename(orig, p); err != nil {
			return fmt.Errorf("restore resolv.conf.ORIG: %w", err)
		}
	}
	return nil
}

// immutable reports the file's immutable attribute (chattr +i); a
// filesystem without attributes has none.
func immutable(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	return err == nil && flags&fsImmutableFl != 0
}

// fsImmutableFl is FS_IMMUTABLE_FL from linux/fs.h (x/sys/unix lacks it).
const fsImmutableFl = 0x10
