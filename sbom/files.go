package sbom

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
)

// File is one entry of the image's file inventory (NAME.d/files.json).
// Times are left out on purpose: they say when, not what, and two builds of
// the same content must give the same inventory.
type File struct {
	Path   string `json:"path"` // absolute in the image: /etc/passwd
	Type   string `json:"type"` // file, dir, symlink, char, block, fifo, socket
	Mode   string `json:"mode"` // octal permission bits with setuid/setgid/sticky: 0755, 4755
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size,omitempty"`   // regular files
	Target string `json:"target,omitempty"` // symlinks
	Device string `json:"device,omitempty"` // char and block devices: MAJOR:MINOR
	SHA256 string `json:"sha256,omitempty"` // regular files
}

// inventoryVersion is files.json's format version.
const inventoryVersion = 1

type inventoryFile struct {
	Version int    `json:"version"`
	Files   []File `json:"files"`
}

// Inventory walks the tree at root and returns every entry, sorted by
// path, with the sha256 of every regular file. Files are read by as many
// workers as Go has processors: on a 2-core machine the inventory shares
// them with the disk assembly that runs beside it.
func Inventory(ctx context.Context, root string) ([]File, error) {
	var files []File
	var regular []int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		f := File{Path: filepath.ToSlash(filepath.Join("/", rel)), Mode: modeString(fi.Mode())}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			f.UID, f.GID = int(st.Uid), int(st.Gid)
			if fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice) != 0 {
				f.Device = fmt.Sprintf("%d:%d", major(st.Rdev), minor(st.Rdev))
			}
		}
		switch m := fi.Mode(); {
		case m.IsRegular():
			f.Type, f.Size = "file", fi.Size()
			regular = append(regular, len(files))
		case m.IsDir():
			f.Type = "dir"
		case m&fs.ModeSymlink != 0:
			f.Type = "symlink"
			if f.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case m&fs.ModeCharDevice != 0:
			f.Type = "char"
		case m&fs.ModeDevice != 0:
			f.Type = "block"
		case m&fs.ModeNamedPipe != 0:
			f.Type = "fifo"
		case m&fs.ModeSocket != 0:
			f.Type = "socket"
		default:
			f.Type = "other"
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file inventory of %s: %w", root, err)
	}
	if err := hashFiles(ctx, root, files, regular); err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func hashFiles(ctx context.Context, root string, files []File, idx []int) error {
	workers := runtime.GOMAXPROCS(0)
	if workers > len(idx) {
		workers = len(idx)
	}
	ch := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for i := range ch {
				sum, err := hashFile(filepath.Join(root, files[i].Path), buf)
				if err != nil {
					errs <- err
					for range ch {
					}
					return
				}
				files[i].SHA256 = sum
			}
		}()
	}
	var stopped error
	for _, i := range idx {
		if stopped = ctx.Err(); stopped != nil {
			break
		}
		select {
		case ch <- i:
		case err := <-errs:
			stopped = err
		}
		if stopped != nil {
			break
		}
	}
	close(ch)
	wg.Wait()
	close(errs)
	if stopped != nil {
		return stopped
	}
	if err, ok := <-errs; ok {
		return err
	}
	return nil
}

func hashFile(p string, buf []byte) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("file inventory: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return "", fmt.Errorf("file inventory: read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// modeString is the permission bits in octal, with setuid (4), setgid (2)
// and sticky (1) in front when set, as chmod takes them.
func modeString(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

func major(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func minor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }

// marshalInventory writes one entry per line, so that the file reads and
// greps well and the same tree gives the same bytes.
func marshalInventory(files []File) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"version":` + strconv.Itoa(inventoryVersion) + `,"files":[`)
	for i, f := range files {
		line, err := json.Marshal(f)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n")
		b.Write(line)
	}
	b.WriteString("\n]}\n")
	return b.Bytes(), nil
}

// ReadInventory reads a files.json.
func ReadInventory(path string) ([]File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var inv inventoryFile
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&inv); err != nil {
		return nil, fmt.Errorf("%s: not a file inventory: %w", path, err)
	}
	if inv.Version != inventoryVersion {
		return nil, fmt.Errorf("%s: file inventory version %d; this builder reads version %d", path, inv.Version, inventoryVersion)
	}
	return inv.Files, nil
}

// DirDigest is "sha256:HEX" of a directory's content: every entry's path,
// type and permission bits, each file's bytes and each link's target, in
// path order. Owners and times are left out: the same element checked out
// anywhere has the same digest.
func DirDigest(dir string) (string, error) {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%s\x00", filepath.ToSlash(rel), modeString(fi.Mode()))
		switch {
		case fi.Mode().IsRegular():
			sum, err := hashFile(p, buf)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "file\x00%s\x00", sum)
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "symlink\x00%s\x00", t)
		case fi.IsDir():
			fmt.Fprint(h, "dir\x00")
		default:
			fmt.Fprintf(h, "other %v\x00", fi.Mode().Type())
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", dir, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
