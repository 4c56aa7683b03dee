package imagebuild

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"builder/assemble"
	"builder/internal/version"
	"builder/rootfs"
	"builder/sbom"
)

// Outputs are reused when a build ends with the image the last build of
// that name ended with and the same output options: the disk is not laid
// out, converted and compressed again. The cache keeps the last outputs of
// each image name as hard links (or reflinks) of the files it wrote, so
// keeping them costs no space beside the outputs themselves; a kept file
// whose size, inode or modification time changed (an output edited in
// place shares its inode) is never reused.

// reuseRecord describes the kept outputs of one image name.
type reuseRecord struct {
	Key   string         `json:"key"`
	Files []reuseFile    `json:"files"`
	Disk  *assemble.Disk `json:"disk,omitempty"`
	// Scan is the file holding the SBOM's reading of the image's tree
	// (sbom.Scan.Encode): the same image described where the outputs go
	// now, without reading the tree again.
	Scan string `json:"scan,omitempty"`
}

type reuseFile struct {
	// Type is the output type; Ext is "" for the output itself, ".md5" or
	// ".sha256" for its checksum files.
	Type    string `json:"type"`
	Ext     string `json:"ext"`
	Name    string `json:"name"` // in the entry's directory
	Size    int64  `json:"size"`
	Inode   uint64 `json:"inode"`
	MtimeNs int64  `json:"mtime_ns"`
}

// reuseKey names everything the file outputs are made from: builder's
// code, the final image and every option that changes how it is written.
func (p *plan) reuseKey(req Request, final rootfs.Image, outs []output) string {
	h := sha256.New()
	field := func(name string, vals ...string) {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00", name, len(vals), strings.Join(vals, "\x00"))
	}
	field("builder-outputs-v1", version.CodeID())
	field("image", final.Key)
	var types []string
	for _, o := range outs {
		types = append(types, o.Type)
	}
	field("types", types...)
	field("options", fmt.Sprint(req.Uncompressed), req.QemuImgOpts, fmt.Sprint(req.ImageSizeGiB), req.RootLabel,
		req.MkfsOptions, req.Checksum, filepath.Base(imageName(req)))
	if p.layout != nil {
		data, _ := json.Marshal(p.layout)
		field("layout", string(data))
	}
	var env []string
	for _, k := range outputOnlyVars {
		if v, ok := p.env[k]; ok && k != "DIB_IMAGE_CACHE" {
			env = append(env, k+"="+v)
		}
	}
	sort.Strings(env)
	field("env", env...)
	return hex.EncodeToString(h.Sum(nil))
}

// reuseDir is where the outputs of this image name are kept.
func (p *plan) reuseDir(req Request) string {
	return filepath.Join(p.ws.Outputs(), sanitizeName(filepath.Base(imageName(req))))
}

func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
}

// reusable says whether the kept outputs match key and are intact.
func (p *plan) reusable(req Request, key string, outs []output) (*reuseRecord, bool) {
	dir := p.reuseDir(req)
	data, err := os.ReadFile(filepath.Join(dir, "record.json"))
	if err != nil {
		return nil, false
	}
	var rec reuseRecord
	if json.Unmarshal(data, &rec) != nil || rec.Key != key {
		return nil, false
	}
	have := map[string]bool{}
	for _, f := range rec.Files {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, f.Name), &st); err != nil ||
			st.Size != f.Size || st.Ino != f.Inode || st.Mtim.Nano() != f.MtimeNs {
			// Changed since it was kept (an output edited in place).
			_ = os.RemoveAll(dir)
			return nil, false
		}
		if f.Ext == "" {
			have[f.Type] = true
		}
	}
	for _, o := range outs {
		if !have[o.Type] {
			return nil, false
		}
	}
	return &rec, true
}

// scan reads the kept reading of the image's tree; nil when there is none
// or it cannot be read (the tree is read again).
func (rec *reuseRecord) scan(dir string) *sbom.Scan {
	if rec == nil || rec.Scan == "" {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, rec.Scan))
	if err != nil {
		return nil
	}
	defer f.Close()
	s, err := sbom.DecodeScan(bufio.NewReader(f))
	if err != nil {
		return nil
	}
	return s
}

// place links the kept files to the outputs' temporary paths.
func (rec *reuseRecord) place(dir string, outs []output) error {
	for _, o := range outs {
		for _, f := range rec.Files {
			if f.Type != o.Type {
				continue
			}
			if err := linkOrClone(filepath.Join(dir, f.Name), o.Temp+f.Ext); err != nil {
				return err
			}
		}
	}
	return nil
}

// keep records this build's outputs for reuse. It is best effort: an
// error only means the next build writes its outputs again.
func (p *plan) keep(req Request, key string, outs []output, disk *assemble.Disk, scan *sbom.Scan) error {
	dir := p.reuseDir(req)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	tmp := dir + ".tmp-" + hex.EncodeToString(b)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	fail := func(err error) error { os.RemoveAll(tmp); return err }
	rec := reuseRecord{Key: key, Disk: disk}
	for i, o := range outs {
		for _, ext := range []string{"", ".md5", ".sha256"} {
			src := o.Temp + ext
			if _, err := os.Stat(src); err != nil {
				if ext == "" {
					return fail(err)
				}
				continue
			}
			name := fmt.Sprintf("%d-%s%s", i, o.Type, ext)
			if err := linkOrClone(src, filepath.Join(tmp, name)); err != nil {
				return fail(err)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(tmp, name), &st); err != nil {
				return fail(err)
			}
			rec.Files = append(rec.Files, reuseFile{Type: o.Type, Ext: ext, Name: name, Size: st.Size, Inode: st.Ino, MtimeNs: st.Mtim.Nano()})
		}
	}
	if scan != nil {
		var buf bytes.Buffer
		if err := scan.Encode(&buf); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "scan.gob"), buf.Bytes(), 0o644); err != nil {
			return fail(err)
		}
		rec.Scan = "scan.gob"
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "record.json"), data, 0o644); err != nil {
		return fail(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fail(err)
	}
	return nil
}

// errNoLink: the file can be neither hard linked nor cloned (another
// filesystem without reflinks); copying would cost what reuse saves.
var errNoLink = errors.New("the output directory and the cache are on different filesystems")

// linkOrClone makes dst the same file as src: a hard link, else a reflink
// clone.
func linkOrClone(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		out.Close()
		os.Remove(dst)
		return errNoLink
	}
	return out.Close()
}
