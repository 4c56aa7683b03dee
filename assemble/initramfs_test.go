package assemble

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"
)

// newcMember is one member as a reader of the format sees it, parsed here
// from the specification (cpio(5), the kernel's init/initramfs.c), not
// with the writer's code.
type newcMember struct {
	ino, mode, uid, gid, nlink, mtime uint32
	rmaj, rmin                        uint32
	name                              string
	data                              []byte
}

func parseNewc(t *testing.T, b []byte) []newcMember {
	t.Helper()
	var out []newcMember
	off := 0
	for {
		if off+110 > len(b) {
			t.Fatalf("archive ends inside a header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		m := newcMember{ino: field(0), mode: field(1), uid: field(2), gid: field(3), nlink: field(4), mtime: field(5),
			rmaj: field(9), rmin: field(10)}
		size, namesize := int(field(6)), int(field(11))
		if field(7) != 0 || field(8) != 0 {
			t.Errorf("device fields of %d are not zero: the archive would depend on the build host", off)
		}
		nameStart := off + 110
		if b[nameStart+namesize-1] != 0 {
			t.Fatalf("name at %d is not NUL-terminated", nameStart)
		}
		m.name = string(b[nameStart : nameStart+namesize-1])
		dataStart := (nameStart + namesize + 3) &^ 3
		m.data = b[dataStart : dataStart+size]
		off = (dataStart + size + 3) &^ 3
		if m.name == "TRAILER!!!" {
			if len(b)%512 != 0 {
				t.Errorf("archive is %d bytes, not padded to 512", len(b))
			}
			for _, c := range b[off:] {
				if c != 0 {
					t.Fatalf("non-zero bytes after the trailer")
				}
			}
			return out
		}
		out = append(out, m)
	}
}

func decompress(t *testing.T, c Compression, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch c {
	case CompressNone:
		return b
	case CompressGzip:
		zr, err := pgzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case CompressZstd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("no decompressor for %s in this test", c)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %s: %v", c, err)
	}
	return out
}

// testTree makes a small root filesystem with every kind of entry the
// writer handles.
func testTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin", "dev", "etc", "boot", "usr/share/doc/pkg", "a", "a-b", "tmp"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(root, "bin/tool"), []byte("#!/bin/sh\necho tool\n"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/empty"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/secret"), []byte("s"), 0o600))
	must(os.WriteFile(filepath.Join(root, "boot/vmlinuz-1"), bytes.Repeat([]byte("k"), 1000), 0o644))
	must(os.WriteFile(filepath.Join(root, "usr/share/doc/pkg/README"), []byte("doc"), 0o644))
	must(os.WriteFile(filepath.Join(root, "a/x.pyc"), []byte("pyc"), 0o644))
	must(os.WriteFile(filepath.Join(root, "a/file"), []byte("in a"), 0o644))
	must(os.WriteFile(filepath.Join(root, "a-b/file"), []byte("in a-b"), 0o644))
	// Three names of one inode, one of them excluded.
	must(os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("BUSYBOX-DATA-0123456789"), 0o755))
	must(os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "bin/sh")))
	must(os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "tmp/busybox-copy")))
	must(os.Symlink("bin/busybox", filepath.Join(root, "init")))
	must(syscall.Mkfifo(filepath.Join(root, "dev/initctl"), 0o600))
	must(syscall.Chmod(filepath.Join(root, "bin/tool"), 0o4755))
	old := time.Unix(1700000000, 0)
	must(os.Chtimes(filepath.Join(root, "etc/secret"), old, old))
	return root
}

func writeTestInitramfs(t *testing.T, root string, c Compression) ([]byte, InitramfsStats) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "test.initramfs")
	st, err := WriteInitramfs(context.Background(), root, dst, InitramfsOptions{
		Exclude:     []string{"boot/*", "tmp/*", "usr/share/doc", "*.pyc"},
		Extra:       DefaultDeviceNodes,
		Compression: c,
	})
	if err != nil {
		t.Fatalf("WriteInitramfs(%s): %v", c, err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(len(b)) {
		t.Errorf("stats say %d bytes, file has %d", st.Bytes, len(b))
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left beside the output: %v", left)
	}
	return b, st
}

func TestWriteInitramfsContent(t *testing.T) {
	root := testTree(t)
	for _, c := range []Compression{CompressNone, CompressGzip, CompressZstd} {
		t.Run(string(c), func(t *testing.T) {
			b, st := writeTestInitramfs(t, root, c)
			raw := decompress(t, c, b)
			if int64(len(raw)) != st.CpioBytes {
				t.Errorf("stats say %d archive bytes, decompressed %d", st.CpioBytes, len(raw))
			}
			ms := parseNewc(t, raw)
			var names []string
			byName := map[string]newcMember{}
			for _, m := range ms {
				names = append(names, m.name)
				byName[m.name] = m
			}
			want := []string{".", "a", "a/file", "a-b", "a-b/file", "bin", "bin/busybox", "bin/sh", "bin/tool", "boot",
				"dev", "dev/console", "dev/initctl", "dev/null", "dev/random", "dev/urandom",
				"etc", "etc/empty", "etc/secret", "init", "tmp", "usr", "usr/share"}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Fatalf("members in order:\n got %v\nwant %v", names, want)
			}
			if st.Entries != len(want) || st.Excluded != 4 || st.HardLinks != 1 || st.Devices != 4 {
				t.Errorf("stats %+v: want %d entries, 4 excluded, 1 hard link, 4 devices", st, len(want))
			}

			// Hard links: same inode number, the count of names in the
			// archive, the data on the last name only.
			bb, sh := byName["bin/busybox"], byName["bin/sh"]
			if bb.ino != sh.ino || bb.nlink != 2 || sh.nlink != 2 {
				t.Errorf("hard links: busybox ino %d nlink %d, sh ino %d nlink %d", bb.ino, bb.nlink, sh.ino, sh.nlink)
			}
			if len(bb.data) != 0 || string(sh.data) != "BUSYBOX-DATA-0123456789" {
				t.Errorf("hard-link data must be on the last name: busybox %q, sh %q", bb.data, sh.data)
			}
			seen := map[uint32]string{}
			for _, m := range ms {
				if prev, ok := seen[m.ino]; ok && m.name != "bin/sh" {
					t.Errorf("%s and %s share inode %d", prev, m.name, m.ino)
				}
				seen[m.ino] = m.name
			}

			check := func(name string, typ, perm uint32) newcMember {
				t.Helper()
				m, ok := byName[name]
				if !ok {
					t.Fatalf("%s missing", name)
				}
				if m.mode&syscall.S_IFMT != typ || m.mode&0o7777 != perm {
					t.Errorf("%s: mode %o, want type %o perm %o", name, m.mode, typ, perm)
				}
				return m
			}
			check(".", syscall.S_IFDIR, 0o755)
			if m := check("bin/tool", syscall.S_IFREG, 0o4755); string(m.data) != "#!/bin/sh\necho tool\n" {
				t.Errorf("bin/tool data %q", m.data)
			}
			if m := check("etc/secret", syscall.S_IFREG, 0o600); m.mtime != 1700000000 {
				t.Errorf("etc/secret mtime %d, want the tree's 1700000000", m.mtime)
			}
			check("etc/empty", syscall.S_IFREG, 0o644)
			if m := check("init", syscall.S_IFLNK, 0o777); string(m.data) != "bin/busybox" {
				t.Errorf("init link target %q", m.data)
			}
			check("dev/initctl", syscall.S_IFIFO, 0o600)
			if m := check("dev/console", syscall.S_IFCHR, 0o600); m.rmaj != 5 || m.rmin != 1 || m.uid != 0 {
				t.Errorf("dev/console: %d:%d uid %d", m.rmaj, m.rmin, m.uid)
			}
			if m := check("dev/urandom", syscall.S_IFCHR, 0o666); m.rmaj != 1 || m.rmin != 9 {
				t.Errorf("dev/urandom: %d:%d", m.rmaj, m.rmin)
			}
			var fst syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(root, "etc/secret"), &fst); err != nil {
				t.Fatal(err)
			}
			if m := byName["etc/secret"]; m.uid != fst.Uid || m.gid != fst.Gid {
				t.Errorf("etc/secret owner %d:%d, the tree has %d:%d", m.uid, m.gid, fst.Uid, fst.Gid)
			}
		})
	}
}

func TestWriteInitramfsTreeOwnersAndDevices(t *testing.T) {
	// Owners other than our own and device nodes in the tree: what a
	// build as root (or in its user namespace) has.
	if os.Geteuid() != 0 {
		t.Fatalf("this test makes device nodes and foreign owners: run it as root (or under unshare -r)")
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(root, "dev/sda"), syscall.S_IFBLK|0o660, int(unix.Mkdev(8, 0))); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(root, "dev/console"), syscall.S_IFCHR|0o620, int(unix.Mkdev(5, 1))); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]uint32{"dev/sda": 0o660, "dev/console": 0o620} {
		if err := syscall.Chmod(filepath.Join(root, name), mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "owned"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(root, "owned"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "i")
	if _, err := WriteInitramfs(context.Background(), root, dst, InitramfsOptions{Extra: DefaultDeviceNodes, Compression: CompressNone}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	byName := map[string]newcMember{}
	for _, m := range parseNewc(t, b) {
		byName[m.name] = m
	}
	if m := byName["dev/sda"]; m.mode != syscall.S_IFBLK|0o660 || m.rmaj != 8 || m.rmin != 0 {
		t.Errorf("dev/sda: mode %o %d:%d", m.mode, m.rmaj, m.rmin)
	}
	// The tree's own console wins over the default one.
	if m := byName["dev/console"]; m.mode != syscall.S_IFCHR|0o620 {
		t.Errorf("dev/console from the tree: mode %o, want %o", m.mode, syscall.S_IFCHR|0o620)
	}
	if m := byName["owned"]; m.uid != 1234 || m.gid != 5678 {
		t.Errorf("owned: %d:%d, want 1234:5678", m.uid, m.gid)
	}
}

func TestWriteInitramfsDeterministic(t *testing.T) {
	root := testTree(t)
	for _, c := range []Compression{CompressGzip, CompressZstd} {
		a, _ := writeTestInitramfs(t, root, c)
		b, _ := writeTestInitramfs(t, root, c)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two writes of one tree differ", c)
		}
	}
	// Large enough to span many compression blocks, where parallel
	// compressors could reorder work.
	big := filepath.Join(root, "big")
	data := make([]byte, 12<<20)
	for i := range data {
		data[i] = byte(i*7 + i/4096)
	}
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{CompressGzip, CompressZstd} {
		a, _ := writeTestInitramfs(t, root, c)
		b, _ := writeTestInitramfs(t, root, c)
		if !bytes.Equal(a, b) {
			t.Errorf("%s with a 12 MiB file: two writes differ", c)
		}
		raw := decompress(t, c, a)
		for _, m := range parseNewc(t, raw) {
			if m.name == "big" && !bytes.Equal(m.data, data) {
				t.Errorf("%s: big file corrupted", c)
			}
		}
	}
}

func TestWriteInitramfsErrors(t *testing.T) {
	root := t.TempDir()
	dst := filepath.Join(t.TempDir(), "i")
	_, err := WriteInitramfs(context.Background(), root, dst, InitramfsOptions{Extra: DefaultDeviceNodes})
	if err == nil || !strings.Contains(err.Error(), "no dev directory") {
		t.Errorf("device node without /dev: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("a failed write left %s", dst)
	}
	if _, err := WriteInitramfs(context.Background(), root, dst, InitramfsOptions{Compression: "lz4"}); err == nil || !strings.Contains(err.Error(), "gzip, zstd, xz or none") {
		t.Errorf("unknown compression: %v", err)
	}
	if _, err := WriteInitramfs(context.Background(), root, dst, InitramfsOptions{Exclude: []string{"[x"}}); err == nil {
		t.Errorf("bad pattern accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteInitramfs(ctx, testTree(t), dst, InitramfsOptions{}); err == nil {
		t.Errorf("cancelled write succeeded")
	}
}

func TestKernelSupports(t *testing.T) {
	cfg := []byte("CONFIG_BLK_DEV_INITRD=y\nCONFIG_RD_GZIP=y\n# CONFIG_RD_XZ is not set\nCONFIG_RD_ZSTD=y\n")
	for c, ok := range map[Compression]bool{CompressGzip: true, CompressZstd: true, CompressXz: false, CompressNone: true} {
		err := KernelSupports(cfg, c)
		if (err == nil) != ok {
			t.Errorf("%s: %v, want supported=%v", c, err, ok)
		}
	}
	if err := KernelSupports([]byte("CONFIG_RD_GZIP=m\n"), CompressGzip); err == nil {
		t.Errorf("a module decompressor cannot unpack the initramfs")
	}
}

func TestPathLess(t *testing.T) {
	in := []string{"a-b", "a/b/c", ".", "a", "a/b", "b", "a/c", "a-b/x"}
	want := ".,a,a/b,a/b/c,a/c,a-b,a-b/x,b"
	got := append([]string(nil), in...)
	for i := range got {
		for j := i + 1; j < len(got); j++ {
			if pathLess(got[j], got[i]) {
				got[i], got[j] = got[j], got[i]
			}
		}
	}
	if strings.Join(got, ",") != want {
		t.Errorf("order %v, want %s", got, want)
	}
	for _, p := range in {
		if pathLess(p, p) {
			t.Errorf("pathLess(%q, %q)", p, p)
		}
	}
}

func BenchmarkWriteInitramfs(b *testing.B) {
	root := b.TempDir()
	data := make([]byte, 64<<10)
	for i := 0; i < 2000; i++ {
		for j := range data {
			data[j] = byte(i + j/100)
		}
		if err := os.WriteFile(filepath.Join(root, fmt.Sprint(i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []Compression{CompressGzip, CompressZstd} {
		b.Run(string(c), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := WriteInitramfs(context.Background(), root, filepath.Join(b.TempDir(), "i"), InitramfsOptions{Compression: c}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
