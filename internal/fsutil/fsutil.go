// Package fsutil has the small file operations several packages share.
package fsutil

import (
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// CopyFile copies src's content to dst, created with perm or truncated.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// DetachMounts detaches whatever is mounted under dir, deepest first (a
// tool killed half way leaves its /dev, /proc and /sys binds there), and
// says which mount points remain, if any: a tree with a mount left in it
// must not be removed, as the removal would walk into what is mounted.
func DetachMounts(dir string) (left []string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(abs))
	if err != nil {
		return nil, err
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Mountpoint) > len(ms[j].Mountpoint) })
	for _, m := range ms {
		_ = unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
	}
	ms, err = mountinfo.GetMounts(mountinfo.PrefixFilter(abs))
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		left = append(left, m.Mountpoint)
	}
	return left, nil
}
