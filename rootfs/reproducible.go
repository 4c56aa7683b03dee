package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.podman.io/storage/pkg/system"
	"golang.org/x/sys/unix"
)

// Same inputs give the same bytes: a build's SOURCE_DATE_EPOCH comes from
// its base (the mirror's Release date for a bootstrapped one, the image's
// creation time for a pulled one, the newest file under /usr of an
// imported one), hooks get it (dpkg, mkinitramfs and mmdebstrap honour
// it), and the tree the outputs are written from has no time later than
// it (ClampTimes, in a View of the final image: a committed layer cannot
// hold directory times, as applying it sets them anew).

// LabelEpoch holds a base's SOURCE_DATE_EPOCH in its configuration, so the
// base carries it to other stores (through a registry cache too).
const LabelEpoch = "builder.epoch"

const epochBigData = "builder-epoch"

// BaseEpoch is the SOURCE_DATE_EPOCH a base gives the builds on it.
func (s *Store) BaseEpoch(ctx context.Context, img Image) (int64, error) {
	if img.Name == "" || img.Name == "scratch" {
		return 0, nil
	}
	labels, err := s.imageLabels(ctx, img.Name)
	if err != nil {
		return 0, err
	}
	if v, err := strconv.ParseInt(labels[LabelEpoch], 10, 64); err == nil && v > 0 {
		return v, nil
	}
	id, err := s.ImageID(img.Name)
	if err != nil {
		return 0, err
	}
	if data, err := s.st.ImageBigData(id, epochBigData); err == nil {
		if v, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			return v, nil
		}
	}
	var epoch int64
	if strings.HasPrefix(img.Key, "image:") {
		// A pulled image: when its author made it.
		if st, err := s.st.Image(id); err == nil && !st.Created.IsZero() {
			epoch = st.Created.Unix()
		}
	}
	if epoch <= 0 {
		// An imported tree: the newest of its installed files, which
		// come with the packages' own times.
		root, release, err := s.MountImage(img.Name)
		if err != nil {
			return 0, err
		}
		epoch, err = newestUnder(filepath.Join(root, "usr"))
		release()
		if err != nil {
			return 0, err
		}
	}
	_ = s.st.SetImageBigData(id, epochBigData, []byte(strconv.FormatInt(epoch, 10)), nil)
	return epoch, nil
}

// newestUnder is the newest modification time of a regular file under dir
// that is not in the future.
func newestUnder(dir string) (int64, error) {
	now := time.Now().Unix()
	var newest int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if t := info.ModTime().Unix(); t > newest && t <= now {
			newest = t
		}
		return nil
	})
	return newest, err
}

// Normalized says what NormalizeTree changed.
type Normalized struct {
	Times  int // modification times clamped to the epoch
	Xattrs int // entries whose extended attributes were put in name order
}

// NormalizeTree makes what the outputs are written from independent of
// how the tree was made:
//   - every modification time later than epoch becomes epoch (of symlinks
//     themselves, not their targets); access times are not kept by any
//     output;
//   - an entry's extended attributes are listed in name order. tar and
//     mkfs.ext4 -d copy them in the order listxattr gives, which on ext4 is
//     the order they were set: applying a layer sets them in an order of
//     its own, so the same tree could give different bytes.
func NormalizeTree(root string, epoch int64) (Normalized, error) {
	ts := []unix.Timespec{{Sec: epoch}, {Sec: epoch}}
	var n Normalized
	normalize := func(p string) error {
		sorted, err := sortXattrs(p)
		if err != nil {
			return err
		}
		if sorted {
			n.Xattrs++
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mtim.Sec < epoch || (st.Mtim.Sec == epoch && st.Mtim.Nsec == 0) {
			return nil
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("clamp the time of %s: %w", p, err)
		}
		n.Times++
		return nil
	}
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Directories last, deepest first: on an overlay, copying a
			// changed entry up changes its directory's time.
			dirs = append(dirs, p)
			return nil
		}
		return normalize(p)
	})
	if err != nil {
		return n, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := normalize(dirs[i]); err != nil {
			return n, err
		}
	}
	return n, nil
}

// sortXattrs sets p's extended attributes again in name order when
// listxattr does not give them so. It reports whether it did.
func sortXattrs(p string) (bool, error) {
	names, err := system.Llistxattr(p)
	if errors.Is(err, unix.ENOTSUP) {
		return false, nil
	}
	if err != nil || len(names) < 2 || slices.IsSorted(names) {
		return false, err
	}
	values := make([][]byte, len(names))
	for i, name := range names {
		if values[i], err = system.Lgetxattr(p, name); err != nil {
			return false, err
		}
	}
	for _, name := range names {
		if err := unix.Lremovexattr(p, name); err != nil {
			return false, fmt.Errorf("%s: remove %s to set it again in order: %w", p, name, err)
		}
	}
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	for _, i := range order {
		if err := unix.Lsetxattr(p, names[i], values[i], 0); err != nil {
			return false, fmt.Errorf("%s: set %s again: %w", p, names[i], err)
		}
	}
	return true, nil
}

// View is a writable view of an image that is never committed: a working
// container whose root the caller may change (ClampTimes) and read. name
// names the container (builder-<run>-... so a later run removes what a
// killed one left). release deletes it.
func (s *Store) View(ctx context.Context, img Image, name string) (root string, release func() error, err error) {
	c, err := s.NewContainer(ctx, img.Name, name, IsolationChroot, "", true)
	if err != nil {
		return "", nil, err
	}
	root, err = c.Mount()
	if err != nil {
		c.Delete()
		return "", nil, err
	}
	return root, c.Delete, nil
}

// FinaliseBaseAt is FinaliseBase, then, with an epoch, what a package
// manager leaves that differs from build to build: ldconfig's auxiliary
// cache (inode numbers and times), systemd's random seed, and password
// change dates in /etc/shadow later than the epoch.
func FinaliseBaseAt(epoch int64) func(context.Context, string) error {
	return func(ctx context.Context, root string) error {
		if err := FinaliseBase(ctx, root); err != nil {
			return err
		}
		if epoch <= 0 {
			return nil
		}
		for _, p := range []string{"var/cache/ldconfig/aux-cache", "var/lib/systemd/random-seed"} {
			if err := os.Remove(filepath.Join(root, p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		for _, p := range []string{"etc/shadow", "etc/shadow-"} {
			if err := clampShadow(filepath.Join(root, p), epoch/86400); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	}
}

// clampShadow sets the last password change (days since 1970) of every
// entry later than day to day, keeping the file's owner and mode.
func clampShadow(path string, day int64) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Split(string(data), "\n")
	changed := false
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) < 3 {
			continue
		}
		if d, err := strconv.ParseInt(f[2], 10, 64); err == nil && d > day {
			f[2] = strconv.FormatInt(day, 10)
			lines[i] = strings.Join(f, ":")
			changed = true
		}
	}
	if !changed {
		return nil
	}
	// Rewritten in place: the file keeps its inode, owner and mode.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(strings.Join(lines, "\n")); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
