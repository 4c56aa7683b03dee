package assemble

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression is how an initramfs is compressed. The kernel must have the
// matching decompressor built in (CONFIG_RD_GZIP, CONFIG_RD_ZSTD,
// CONFIG_RD_XZ); see KernelSupports.
type Compression string

const (
	// CompressGzip is DIB's choice and the default: every kernel, boot
	// loader and tool that looks into an initramfs reads it. Written with
	// parallel deflate (pgzip), so it costs no more wall time than pigz.
	CompressGzip Compression = "gzip"
	// CompressZstd is smaller and several times faster to unpack at boot,
	// for kernels built with CONFIG_RD_ZSTD (Debian's since bookworm).
	CompressZstd Compression = "zstd"
	// CompressXz is the smallest and the slowest, through the host's xz
	// with the CRC32 check the kernel's decoder requires.
	CompressXz Compression = "xz"
	// CompressNone writes the bare cpio archive.
	CompressNone Compression = "none"
)

// ParseCompression accepts gzip, zstd, xz and none ("" is gzip).
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.ToLower(strings.TrimSpace(s))); c {
	case "":
		return CompressGzip, nil
	case CompressGzip, CompressZstd, CompressXz, CompressNone:
		return c, nil
	}
	return "", fmt.Errorf("initramfs compression %q is not known: use gzip, zstd, xz or none", s)
}

// kernelOption is the kernel configuration option that lets the kernel
// unpack an initramfs compressed with c.
func (c Compression) kernelOption() string {
	switch c {
	case CompressGzip:
		return "CONFIG_RD_GZIP"
	case CompressZstd:
		return "CONFIG_RD_ZSTD"
	case CompressXz:
		return "CONFIG_RD_XZ"
	}
	return "CONFIG_BLK_DEV_INITRD"
}

// KernelSupports checks a kernel's configuration (the text of
// /boot/config-VERSION) for the decompressor c needs. An uncompressed
// archive only needs initramfs support itself.
func KernelSupports(config []byte, c Compression) error {
	opt := c.kernelOption()
	for _, line := range bytes.Split(config, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == opt+"=y" {
			return nil
		}
	}
	return fmt.Errorf("the kernel is built without %s, so it cannot unpack a %s initramfs: use gzip", opt, c)
}

// CpioEntry is an archive member that does not come from the tree: the
// device nodes an initramfs needs before devtmpfs is mounted, which a
// rootless build cannot create on disk.
type CpioEntry struct {
	Path                 string // relative to the archive root, no leading slash
	Mode                 uint32 // st_mode: type and permission bits
	UID, GID             uint32
	RdevMajor, RdevMinor uint32 // device nodes
	Target               string // symlinks
}

// DefaultDeviceNodes are what a kernel and an early init expect in /dev of
// an initramfs before devtmpfs is mounted: the console the kernel opens for
// init's standard streams, and the random devices some systemd versions
// read before mounting /dev.
var DefaultDeviceNodes = []CpioEntry{
	{Path: "dev/console", Mode: syscall.S_IFCHR | 0o600, RdevMajor: 5, RdevMinor: 1},
	{Path: "dev/null", Mode: syscall.S_IFCHR | 0o666, RdevMajor: 1, RdevMinor: 3},
	{Path: "dev/random", Mode: syscall.S_IFCHR | 0o666, RdevMajor: 1, RdevMinor: 8},
	{Path: "dev/urandom", Mode: syscall.S_IFCHR | 0o666, RdevMajor: 1, RdevMinor: 9},
}

// InitramfsOptions control WriteInitramfs.
type InitramfsOptions struct {
	// Exclude lists patterns (path.Match syntax, relative to the root) of
	// entries left out with everything below them. A pattern with a slash
	// matches the whole relative path ("boot/*" keeps /boot, empty); one
	// without matches the base name at any depth ("*.pyc").
	Exclude []string
	// Extra entries are added where the tree has nothing at that path;
	// their parent directories must be in the archive.
	Extra []CpioEntry
	// Compression defaults to gzip.
	Compression Compression
}

// InitramfsStats describe a written archive.
type InitramfsStats struct {
	Entries   int   // archive members, the root directory included
	Files     int   // regular files (each inode once)
	HardLinks int   // names beyond the first of multiply-linked files
	Devices   int   // character and block devices
	Excluded  int   // entries left out by Exclude (subtrees count once)
	CpioBytes int64 // the archive before compression
	Bytes     int64 // the file written
}

// cpioMember is one archive member, gathered before anything is written so
// that hard links can carry their data on their last name, as GNU cpio does
// and the kernel accepts.
type cpioMember struct {
	name       string
	mode       uint32
	uid, gid   uint32
	mtime      int64
	size       int64  // bytes of data written for this member
	nlink      uint32 // names of this inode in the archive
	ino        uint32
	rmaj, rmin uint32
	target     string // symlink
	src        string // regular file: where the data is read from
	key        devIno // regular files with more than one link
	linked     bool
}

// WriteInitramfs writes the tree at root as a compressed cpio "newc"
// archive at dst, the format the Linux kernel unpacks into its rootfs. It
// needs no privilege beyond reading the tree: owners and modes are those
// the tree has as this process sees it (in a user namespace, the ids the
// build uses). The archive is deterministic: members in path order
// (depth first, names sorted), inode numbers assigned in that order,
// device numbers zero, modification times from the tree. Extended
// attributes (file capabilities, SELinux labels) are not carried: newc
// has no place for them. The file appears at dst only when complete.
func WriteInitramfs(ctx context.Context, root, dst string, o InitramfsOptions) (st InitramfsStats, err error) {
	comp := o.Compression
	if comp == "" {
		comp = CompressGzip
	}
	if _, err := ParseCompression(string(comp)); err != nil {
		return st, err
	}
	for _, p := range o.Exclude {
		if _, err := path.Match(p, ""); err != nil {
			return st, fmt.Errorf("initramfs exclude pattern %q: %w", p, err)
		}
	}
	members, excluded, err := gatherMembers(ctx, root, o)
	if err != nil {
		return st, err
	}
	st.Excluded = excluded
	st.HardLinks = linkMembers(members)
	for _, m := range members {
		switch m.mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			st.Files++
		case syscall.S_IFCHR, syscall.S_IFBLK:
			st.Devices++
		}
	}
	st.Files -= st.HardLinks
	st.Entries = len(members)

	tmp := tempPath(dst)
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	f, err := os.Create(tmp)
	if err != nil {
		return st, fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	counted := &countingWriter{w: f}
	zw, finish, err := compressor(ctx, counted, comp)
	if err != nil {
		return st, err
	}
	cw := &cpioWriter{w: bufio.NewWriterSize(zw, 1<<20)}
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			finish(err)
			return st, err
		}
		if err := cw.member(m); err != nil {
			finish(err)
			return st, fmt.Errorf("initramfs: %s: %w", m.name, err)
		}
	}
	if err := cw.trailer(); err != nil {
		finish(err)
		return st, fmt.Errorf("initramfs: %w", err)
	}
	st.CpioBytes = cw.n
	if err := finish(nil); err != nil {
		return st, fmt.Errorf("initramfs: compress with %s: %w", comp, err)
	}
	if err := f.Close(); err != nil {
		return st, fmt.Errorf("initramfs: %w", err)
	}
	st.Bytes = counted.n
	if err := os.Rename(tmp, dst); err != nil {
		return st, fmt.Errorf("initramfs: %w", err)
	}
	return st, nil
}

// gatherMembers walks root depth first with sorted names, then merges the
// extra entries in and returns the members in archive order.
func gatherMembers(ctx context.Context, root string, o InitramfsOptions) ([]*cpioMember, int, error) {
	rst, err := os.Lstat(root)
	if err != nil {
		return nil, 0, fmt.Errorf("initramfs: %w", err)
	}
	if !rst.IsDir() {
		return nil, 0, fmt.Errorf("initramfs: %s is not a directory", root)
	}
	rootDev := rst.Sys().(*syscall.Stat_t).Dev
	var members []*cpioMember
	excluded := 0
	have := map[string]bool{}
	add := func(rel, abs string, info fs.FileInfo) error {
		s := info.Sys().(*syscall.Stat_t)
		m := &cpioMember{
			name:  rel,
			mode:  s.Mode,
			uid:   s.Uid,
			gid:   s.Gid,
			mtime: s.Mtim.Sec,
			nlink: 1,
		}
		switch s.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			if info.Size() > 0xFFFFFFFF {
				return fmt.Errorf("initramfs: %s is %d bytes, more than a newc archive member can hold (4 GiB)", rel, info.Size())
			}
			m.size = info.Size()
			m.src = abs
			if s.Nlink > 1 {
				m.key = devIno{uint64(s.Dev), s.Ino}
				m.linked = true
			}
		case syscall.S_IFLNK:
			t, err := os.Readlink(abs)
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			m.target = t
			m.size = int64(len(t))
		case syscall.S_IFCHR, syscall.S_IFBLK:
			m.rmaj, m.rmin = devMajor(uint64(s.Rdev)), devMinor(uint64(s.Rdev))
		case syscall.S_IFDIR:
			m.nlink = 2
		}
		members = append(members, m)
		have[rel] = true
		return nil
	}
	if err := add(".", root, rst); err != nil {
		return nil, 0, err
	}
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(dir) // sorted by name
		if err != nil {
			return fmt.Errorf("initramfs: %w (the whole tree must be readable: run as root, or in the user namespace that owns it)", err)
		}
		for _, e := range ents {
			r := e.Name()
			if rel != "" {
				r = rel + "/" + e.Name()
			}
			if excludedPath(o.Exclude, r) {
				excluded++
				continue
			}
			abs := filepath.Join(dir, e.Name())
			info, err := e.Info()
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			if err := add(r, abs, info); err != nil {
				return err
			}
			if info.IsDir() && info.Sys().(*syscall.Stat_t).Dev == rootDev {
				if err := walk(abs, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return nil, 0, err
	}
	for _, x := range o.Extra {
		p := strings.Trim(path.Clean("/"+x.Path), "/")
		if p == "" || have[p] {
			continue
		}
		if dir := path.Dir(p); dir != "." && !have[dir] {
			return nil, 0, fmt.Errorf("initramfs: cannot add %s: the archive has no %s directory", p, dir)
		}
		m := &cpioMember{name: p, mode: x.Mode, uid: x.UID, gid: x.GID, nlink: 1, rmaj: x.RdevMajor, rmin: x.RdevMinor}
		if x.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			m.target = x.Target
			m.size = int64(len(x.Target))
		}
		if x.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			m.nlink = 2
		}
		members = append(members, m)
		have[p] = true
	}
	// Depth-first order with sorted names is the order of the paths
	// compared component by component ("a", "a/b", "a-b").
	sort.SliceStable(members, func(i, j int) bool { return pathLess(members[i].name, members[j].name) })
	return members, excluded, nil
}

// excludedPath applies the Exclude patterns to one relative path.
func excludedPath(patterns []string, rel string) bool {
	base := path.Base(rel)
	for _, p := range patterns {
		target := rel
		if !strings.Contains(p, "/") {
			target = base
		}
		if ok, _ := path.Match(strings.TrimPrefix(p, "/"), target); ok {
			return true
		}
	}
	return false
}

// pathLess orders paths component by component; "." (the root) first.
func pathLess(a, b string) bool {
	if a == "." || b == "." {
		return a == "." && b != "."
	}
	for {
		ca, ra, moreA := strings.Cut(a, "/")
		cb, rb, moreB := strings.Cut(b, "/")
		if ca != cb {
			return ca < cb
		}
		if !moreA || !moreB {
			return !moreA && moreB
		}
		a, b = ra, rb
	}
}

// linkMembers assigns inode numbers in archive order and groups hard
// links: every name of an inode gets the same number and the count of its
// names in the archive; only the last carries the data. It returns the
// number of names beyond the first.
func linkMembers(members []*cpioMember) int {
	groups := map[devIno][]*cpioMember{}
	for _, m := range members {
		if m.linked {
			groups[m.key] = append(groups[m.key], m)
		}
	}
	next := uint32(1)
	links := 0
	for _, m := range members {
		if m.linked {
			g := groups[m.key]
			if g[0] != m {
				continue // numbered with the first name
			}
			for i, l := range g {
				l.ino = next
				l.nlink = uint32(len(g))
				if i < len(g)-1 {
					l.size = 0
					l.src = ""
				}
			}
			links += len(g) - 1
			next++
			continue
		}
		m.ino = next
		next++
	}
	return links
}

// cpioWriter writes newc members: a 110-byte ASCII header, the name with
// its NUL, padding to 4 bytes, the data, padding to 4 bytes.
type cpioWriter struct {
	w *bufio.Writer
	n int64
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) header(m *cpioMember) error {
	mtime := m.mtime
	if mtime < 0 {
		mtime = 0
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		m.ino, m.mode, m.uid, m.gid, m.nlink, uint32(mtime), uint32(m.size),
		0, 0, m.rmaj, m.rmin, len(m.name)+1, 0)
	if err := c.write([]byte(h)); err != nil {
		return err
	}
	if err := c.write(append([]byte(m.name), 0)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) member(m *cpioMember) error {
	if err := c.header(m); err != nil {
		return err
	}
	switch {
	case m.target != "":
		if err := c.write([]byte(m.target)); err != nil {
			return err
		}
	case m.src != "" && m.size > 0:
		f, err := os.Open(m.src)
		if err != nil {
			return err
		}
		n, err := io.Copy(c.w, io.LimitReader(f, m.size))
		f.Close()
		c.n += n
		if err != nil {
			return err
		}
		if n != m.size {
			return fmt.Errorf("file changed while it was archived (%d bytes read, %d expected)", n, m.size)
		}
	}
	return c.pad()
}

// trailer ends the archive and pads it to 512 bytes, as cpio does.
func (c *cpioWriter) trailer() error {
	if err := c.header(&cpioMember{name: "TRAILER!!!", nlink: 1}); err != nil {
		return err
	}
	if r := c.n % 512; r != 0 {
		if err := c.write(make([]byte, 512-r)); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// compressor returns the writer the archive goes through and a function
// that ends the stream (with the archive's error, if any, it only cleans
// up). Every choice is deterministic: the same archive gives the same
// bytes.
func compressor(ctx context.Context, w io.Writer, c Compression) (io.Writer, func(error) error, error) {
	switch c {
	case CompressNone:
		return w, func(error) error { return nil }, nil
	case CompressGzip:
		// Level 6 is gzip's default (DIB pipes into plain gzip). Fixed
		// 1 MiB blocks: the output does not depend on the core count.
		zw, err := pgzip.NewWriterLevel(w, 6)
		if err != nil {
			return nil, nil, err
		}
		if err := zw.SetConcurrency(1<<20, max(2, runtime.GOMAXPROCS(0))); err != nil {
			return nil, nil, err
		}
		return zw, func(error) error { return zw.Close() }, nil
	case CompressZstd:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(max(2, runtime.GOMAXPROCS(0))), zstd.WithWindowSize(8<<20))
		if err != nil {
			return nil, nil, err
		}
		return zw, func(error) error { return zw.Close() }, nil
	case CompressXz:
		return xzCompressor(ctx, w)
	}
	return nil, nil, fmt.Errorf("initramfs compression %q is not known", c)
}

// xzCompressor pipes through the host's xz with the options the kernel's
// decoder wants (CRC32 check, 1 MiB dictionary, as its documentation
// prescribes for an initramfs).
func xzCompressor(ctx context.Context, w io.Writer) (io.Writer, func(error) error, error) {
	bin, err := exec.LookPath("xz")
	if err != nil {
		return nil, nil, fmt.Errorf("xz compression needs the xz tool: install xz-utils, or use gzip or zstd")
	}
	cmd := exec.CommandContext(ctx, bin, "--check=crc32", "--lzma2=dict=1MiB", "-T0", "-c")
	killGroupOnCancel(cmd)
	cmd.Stdout = w
	var stderr tailWriter
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return in, func(werr error) error {
		cerr := in.Close()
		if werr != nil {
			_ = cmd.Process.Kill()
		}
		if err := cmd.Wait(); err != nil && werr == nil {
			return fmt.Errorf("xz: %w: %s", err, stderr.String())
		}
		return errors.Join(werr, cerr)
	}, nil
}

// devMajor and devMinor split a Linux dev_t (glibc's encoding).
func devMajor(dev uint64) uint32 {
	return uint32((dev>>8)&0xfff) | uint32((dev>>32)&^0xfff)
}

func devMinor(dev uint64) uint32 {
	return uint32(dev&0xff) | uint32((dev>>12)&^0xff)
}
