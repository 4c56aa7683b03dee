package assemble

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
)

// blockBytes is the ext4 block size this package creates and sizes for.
const blockBytes = 4096

// TreeUsage is what a directory tree will occupy in an ext4 filesystem with
// 4 KiB blocks, counted the way mkfs.ext4 -d copies it.
type TreeUsage struct {
	Files    int64 // regular files, each inode once (hard links count once)
	Dirs     int64
	Symlinks int64
	Others   int64 // devices, fifos, sockets
	// DataBytes is the file content in 4 KiB blocks: sizes rounded up, and
	// for files that are sparse on the source, their allocated size (mkfs
	// keeps holes). Extent-tree blocks of very large files are included.
	DataBytes int64
	Inodes    int64 // inodes the tree needs: Files+Dirs+Symlinks+Others
	// DirBytes estimates the directory blocks ext4 will need, from the
	// number and length of names (not from the source's directory sizes,
	// which depend on the source filesystem and its history).
	DirBytes int64
	// SymlinkBytes is one block per symlink whose target is too long (60
	// bytes or more) to be stored in the inode.
	SymlinkBytes  int64
	HardLinks     int64 // names beyond the first of multiply-linked inodes
	ApparentBytes int64 // sum of regular file sizes, each inode once
	// MountPoints lists paths (relative to the tree) where another
	// filesystem is mounted. Their content is not counted, and mkfs.ext4 -d
	// would copy it, so PlanDisk refuses such trees.
	MountPoints []string
}

// ContentBytes is everything the tree needs in data blocks.
func (u TreeUsage) ContentBytes() int64 { return u.DataBytes + u.DirBytes + u.SymlinkBytes }

// MeasureTree walks dir without following symlinks and without crossing
// mount points, counting hard-linked inodes once (by device and inode).
func MeasureTree(ctx context.Context, dir string) (TreeUsage, error) {
	usages, err := measureSplit(ctx, dir, nil)
	if err != nil {
		return TreeUsage{}, err
	}
	return usages["/"], nil
}

type devIno struct{ dev, ino uint64 }

// measureSplit measures the tree once, attributing each entry to the
// filesystem of the deepest mount point above it. Each mount point is an
// empty directory in its parent's filesystem and the root directory of its
// own. Hard links are counted once per filesystem (mkfs copies a link
// that crosses filesystems as separate files).
func measureSplit(ctx context.Context, root string, mountPoints []string) (map[string]TreeUsage, error) {
	st, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("measure tree: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("measure tree: %s is not a directory", root)
	}
	usages := map[string]*TreeUsage{"/": {Dirs: 1}}
	for _, mp := range mountPoints {
		usages[mp] = &TreeUsage{Dirs: 1}
	}
	w := walker{ctx: ctx, dev: st.Sys().(*syscall.Stat_t).Dev, usages: usages, seen: map[*TreeUsage]map[devIno]bool{}}
	if err := w.dir(usages["/"], root, "/"); err != nil {
		return nil, fmt.Errorf("measure tree %s: %w", root, err)
	}
	out := map[string]TreeUsage{}
	for mp, u := range usages {
		u.Inodes = u.Files + u.Dirs + u.Symlinks + u.Others
		out[mp] = *u
	}
	return out, nil
}

type walker struct {
	ctx    context.Context
	dev    uint64
	usages map[string]*TreeUsage
	seen   map[*TreeUsage]map[devIno]bool // only inodes with more than one link
}

func (w *walker) dir(u *TreeUsage, dir, rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w (mkfs must read the whole tree: run as root, or in the user namespace that owns it)", err)
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("read directory %s: %w", dir, err)
	}
	// "." and ".." are 12 bytes each; every name takes 8 bytes plus the
	// name rounded up to 4.
	nameBytes := int64(24)
	for _, e := range entries {
		nameBytes += 8 + (int64(len(e.Name()))+3)&^3
	}
	u.DirBytes += dirBlocks(nameBytes) * blockBytes
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		r := path.Join(rel, e.Name())
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Dev != w.dev {
			u.MountPoints = append(u.MountPoints, r)
			w.usages["/"].MountPoints = appendUnique(w.usages["/"].MountPoints, r)
		}
		if child, isMount := w.usages[r]; isMount && info.IsDir() {
			// An empty directory here; the content is the child's.
			u.Dirs++
			u.DirBytes += blockBytes
			if st.Dev != w.dev {
				continue
			}
			if err := w.dir(child, p, r); err != nil {
				return err
			}
			continue
		}
		if st.Nlink > 1 && !info.IsDir() {
			k := devIno{uint64(st.Dev), st.Ino}
			if w.seen[u] == nil {
				w.seen[u] = map[devIno]bool{}
			}
			if w.seen[u][k] {
				u.HardLinks++
				continue
			}
			w.seen[u][k] = true
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			u.Dirs++
			if st.Dev != w.dev {
				continue // another filesystem: counted as a mount point
			}
			if err := w.dir(u, p, r); err != nil {
				return err
			}
		case mode.IsRegular():
			u.Files++
			u.ApparentBytes += info.Size()
			u.DataBytes += fileBlocks(info.Size(), st.Blocks*512) * blockBytes
		case mode&fs.ModeSymlink != 0:
			u.Symlinks++
			if info.Size() >= 60 { // fast symlinks keep up to 59 bytes in the inode
				u.SymlinkBytes += blockBytes
			}
		default:
			u.Others++
		}
	}
	return nil
}

// dirBlocks estimates the blocks of a linear ext4 directory holding
// nameBytes of entries. Entries do not span blocks and each block ends in a
// 12-byte checksum tail, so a block holds a little less than 4084 bytes.
// Directories grown piecemeal get fragmented: past 4 extents they need an
// extent leaf block.
func dirBlocks(nameBytes int64) int64 {
	b := (nameBytes + 3999) / 4000
	if b > 4 {
		b++
	}
	return b
}

// fileBlocks is the number of 4 KiB blocks mkfs.ext4 -d allocates for a file
// of size bytes with allocated bytes on the source: sparse files keep their
// holes; a file whose data lives inline in the source inode still needs a
// block here (the target has no inline_data). Very large files get one
// extent leaf block per 340 extents of at most 128 MiB.
func fileBlocks(size, allocated int64) int64 {
	if size == 0 {
		return 0
	}
	n := (size + blockBytes - 1) / blockBytes
	if allocated < size {
		n = max(1, (allocated+blockBytes-1)/blockBytes)
	}
	if n > 4*32768/2 { // more than 4 extents are likely: allocation crosses group metadata
		n += 1 + n/(340*32768/2)
	}
	return n
}
