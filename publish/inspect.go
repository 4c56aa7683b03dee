package publish

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// LocalImage is what publish knows about the file before it uploads it.
type LocalImage struct {
	Path string
	// Format is qemu-img's name for the content (qcow2, raw, vmdk, vpc,
	// vhdx, vdi); DiskFormat is Glance's name for it.
	Format     string
	DiskFormat string
	// VirtualSize is the disk's size as a guest sees it; Size the file's.
	VirtualSize int64
	Size        int64
	ModTime     time.Time
	// Hashes of the file, hex: sha512 is Glance's default os_hash_algo,
	// md5 its legacy checksum.
	SHA512, SHA256, MD5 string
	// Partitions as read from the disk; Firmware from them: "uefi" means
	// UEFI only (Glance needs hw_firmware_type=uefi for it).
	Partitions PartitionTable
	Firmware   string
	// From the image's os-release, when it could be read.
	OSDistro, OSVersion, OSName string
	// Arch is the architecture the root filesystem's programs are built
	// for, in builder's names (amd64, arm64, ...); "" when not read.
	Arch string
	// SBOMDigest is the sha256 of the bill of materials builder wrote
	// beside the image (NAME.spdx.json), when there is one.
	SBOMDigest string
}

// InspectOptions tune Inspect.
type InspectOptions struct {
	// QemuImg is the qemu-img binary (default from PATH).
	QemuImg string
	// SkipOS leaves out reading os-release from the root filesystem (it
	// copies the root partition of a non-raw image to a temporary file).
	SkipOS bool
	// TempDir is where that copy goes (default os.TempDir()).
	TempDir string
}

// glanceFormats maps qemu-img's format names to Glance's disk_format.
var glanceFormats = map[string]string{
	"qcow2": "qcow2", "raw": "raw", "vmdk": "vmdk", "vpc": "vhd", "vhdx": "vhdx", "vdi": "vdi",
}

// Inspect reads the file's real format (never its name), checks that it is
// a self-contained, consistent disk image, and hashes it. Facts that only
// help (os-release, firmware) come back as warnings when they cannot be
// read; anything that would make the upload wrong is an error.
func Inspect(ctx context.Context, path string, o InspectOptions) (*LocalImage, []string, error) {
	if o.QemuImg == "" {
		o.QemuImg = "qemu-img"
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("image %s does not exist: pass the path of a disk image (e.g. from builder image)", path)
		}
		return nil, nil, fmt.Errorf("image %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("image %s is not a regular file: pass the disk image file itself", path)
	}
	li := &LocalImage{Path: path, Size: st.Size(), ModTime: st.ModTime()}
	var warnings []string

	info, err := qemuInfo(ctx, o.QemuImg, path)
	if err != nil {
		return nil, nil, err
	}
	li.Format, li.VirtualSize = info.Format, info.VirtualSize
	li.DiskFormat = glanceFormats[info.Format]
	if li.DiskFormat == "" {
		return nil, nil, fmt.Errorf("image %s is in format %q, which Glance does not take: convert it with qemu-img convert -O qcow2", path, info.Format)
	}
	if info.BackingFilename != "" {
		return nil, nil, fmt.Errorf("image %s has a backing file (%s): Glance would get only the overlay; flatten it with qemu-img convert -O %s", path, info.BackingFilename, info.Format)
	}
	if info.FormatSpecific.Data.Corrupt {
		return nil, nil, fmt.Errorf("image %s is marked corrupt in its %s header: rebuild it, or repair it with qemu-img check -r all", path, info.Format)
	}
	if ext := strings.TrimPrefix(filepath.Ext(path), "."); ext != "" && glanceFormats[ext] != "" && ext != info.Format {
		warnings = append(warnings, fmt.Sprintf("%s is named .%s but holds %s data: uploading it as %s", filepath.Base(path), ext, info.Format, li.DiskFormat))
	}
	if err := qemuCheck(ctx, o.QemuImg, path, info.Format); err != nil {
		return nil, nil, err
	}

	head, err := readHead(ctx, o.QemuImg, path, info.Format, info.VirtualSize)
	if err != nil {
		return nil, nil, err
	}
	pt, perr := ParsePartitionTable(head)
	if perr != nil {
		warnings = append(warnings, fmt.Sprintf("partition table of %s: %v", path, perr))
	}
	if pt.Kind == "" && info.Format == "raw" && !hasFilesystem(head) {
		return nil, nil, fmt.Errorf("image %s is raw data with neither a partition table nor a filesystem: it is not a disk image (pass the output of builder image)", path)
	}
	li.Partitions = pt
	li.Firmware = pt.Firmware()

	if !o.SkipOS {
		if root, ok := pt.Root(); ok {
			osr, arch, err := readRoot(ctx, o, li, root)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("could not read os-release from %s: %v (set --os-distro and --os-version)", path, err))
			} else {
				li.OSDistro, li.OSVersion, li.OSName = osDistro(osr["ID"]), firstOf(osr["VERSION_ID"], osr["VERSION_CODENAME"]), osr["PRETTY_NAME"]
				li.Arch = arch
			}
		}
	}

	if err := li.hash(ctx); err != nil {
		return nil, nil, err
	}
	li.SBOMDigest = sbomDigest(path)
	return li, warnings, nil
}

// sbomDigest is the sha256 of NAME.spdx.json beside NAME.EXT, or "".
func sbomDigest(image string) string {
	b, err := os.ReadFile(strings.TrimSuffix(image, filepath.Ext(image)) + ".spdx.json")
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type qemuImgInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	FormatSpecific  struct {
		Data struct {
			Corrupt bool `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

func qemuInfo(ctx context.Context, qemuImg, path string) (qemuImgInfo, error) {
	var info qemuImgInfo
	// -U: a running boot test (or anything else) may hold the image's lock.
	out, err := run(ctx, qemuImg, "info", "-U", "--output=json", path)
	if err != nil {
		return info, fmt.Errorf("qemu-img info %s: %w (is it a disk image? is qemu-utils installed?)", path, err)
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return info, nil
}

// qemuCheck runs qemu-img check where the format supports it. Exit 3 is
// leaked clusters only: harmless, the data is intact.
func qemuCheck(ctx context.Context, qemuImg, path, format string) error {
	switch format {
	case "qcow2", "vdi", "vhdx", "vmdk":
	default:
		return nil
	}
	cmd := exec.CommandContext(ctx, qemuImg, "check", "-U", "-f", format, path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image %s fails qemu-img check (%v): %s; rebuild it (or repair with qemu-img check -r all)", path, err, lastLine(string(out)))
	}
	return nil
}

// readHead returns the first MiB of the disk as a guest sees it: enough
// for the MBR, the GPT and its entries.
func readHead(ctx context.Context, qemuImg, path, format string, virtualSize int64) ([]byte, error) {
	n := int64(1 << 20)
	if virtualSize < n {
		n = virtualSize
	}
	if format == "raw" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b := make([]byte, n)
		k, err := io.ReadFull(f, b)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return b[:k], nil
	}
	tmp, err := os.CreateTemp("", "builder-head-*.raw")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if _, err := run(ctx, qemuImg, "dd", "-U", "-f", format, "-O", "raw", "bs=512", fmt.Sprintf("count=%d", n/512), "if="+path, "of="+tmp.Name()); err != nil {
		return nil, fmt.Errorf("read the first sectors of %s: %w", path, err)
	}
	return os.ReadFile(tmp.Name())
}

// hasFilesystem recognises an unpartitioned ext2/3/4 filesystem.
func hasFilesystem(head []byte) bool {
	return len(head) >= 1082 && head[1080] == 0x53 && head[1081] == 0xef
}

// readRoot reads /usr/lib/os-release (or /etc/os-release) and the
// architecture of its programs (archOfRoot) from the root filesystem with
// debugfs, without mounting anything. A raw image is read in place; other
// formats get their root partition copied to a sparse temporary raw file
// first.
func readRoot(ctx context.Context, o InspectOptions, li *LocalImage, root Partition) (osr map[string]string, arch string, err error) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		return nil, "", errors.New("debugfs (e2fsprogs) is not installed")
	}
	dev := fmt.Sprintf("%s?offset=%d", li.Path, root.Offset)
	if li.Format != "raw" {
		dir := o.TempDir
		if dir == "" {
			dir = os.TempDir()
		}
		tmp, err := os.CreateTemp(dir, "builder-root-*.raw")
		if err != nil {
			return nil, "", err
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		opts := fmt.Sprintf("driver=raw,offset=%d,size=%d,file.driver=%s,file.file.driver=file,file.file.filename=%s",
			root.Offset, root.Size, li.Format, strings.ReplaceAll(li.Path, ",", ",,"))
		if _, err := run(ctx, o.QemuImg, "convert", "-U", "-O", "raw", "--image-opts", opts, tmp.Name()); err != nil {
			return nil, "", fmt.Errorf("copy the root partition: %w", err)
		}
		dev = tmp.Name()
	}
	for _, p := range []string{"/usr/lib/os-release", "/etc/os-release"} {
		out, err := run(ctx, "debugfs", "-R", "cat "+p, dev)
		if err != nil {
			continue
		}
		if m := parseOSRelease(out); m["ID"] != "" {
			osr = m
			break
		}
	}
	if osr == nil {
		return nil, "", errors.New("no os-release with an ID in the root filesystem (not ext2/3/4, or not a Linux root)")
	}
	return osr, archOfRoot(ctx, dev), nil
}

// archOfRoot reads the architecture from the ELF header of a program every
// Linux root has; "" when none can be read.
func archOfRoot(ctx context.Context, dev string) string {
	for _, p := range []string{"/usr/bin/ls", "/bin/ls", "/usr/bin/env"} {
		out, err := run(ctx, "debugfs", "-R", "cat "+p, dev)
		if err != nil {
			continue
		}
		if a := elfArch(out); a != "" {
			return a
		}
	}
	return ""
}

// elfArch maps an ELF header's machine (and class and byte order) to
// builder's (Debian's) architecture name.
func elfArch(h []byte) string {
	if len(h) < 20 || !bytes.HasPrefix(h, []byte("\x7fELF")) {
		return ""
	}
	class64, little := h[4] == 2, h[5] == 1
	m := elf.Machine(binary.BigEndian.Uint16(h[18:20]))
	if little {
		m = elf.Machine(binary.LittleEndian.Uint16(h[18:20]))
	}
	switch {
	case m == elf.EM_X86_64:
		return "amd64"
	case m == elf.EM_AARCH64:
		return "arm64"
	case m == elf.EM_386:
		return "i386"
	case m == elf.EM_ARM:
		return "armhf"
	case m == elf.EM_PPC64 && class64 && little:
		return "ppc64el"
	case m == elf.EM_PPC64 && class64:
		return "ppc64"
	case m == elf.EM_S390:
		return "s390x"
	case m == elf.EM_RISCV && class64:
		return "riscv64"
	}
	return ""
}

// DetectArch reads the architecture of a disk image's root filesystem
// (as Inspect does, without hashing the file): "" when it cannot be read.
func DetectArch(ctx context.Context, path string, o InspectOptions) (string, error) {
	if o.QemuImg == "" {
		o.QemuImg = "qemu-img"
	}
	info, err := qemuInfo(ctx, o.QemuImg, path)
	if err != nil {
		return "", err
	}
	head, err := readHead(ctx, o.QemuImg, path, info.Format, info.VirtualSize)
	if err != nil {
		return "", err
	}
	pt, err := ParsePartitionTable(head)
	if err != nil {
		return "", err
	}
	root, ok := pt.Root()
	if !ok {
		return "", errors.New("no root partition found")
	}
	_, arch, err := readRoot(ctx, o, &LocalImage{Path: path, Format: info.Format}, root)
	return arch, err
}

func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		m[k] = strings.Trim(v, `"'`)
	}
	return m
}

// osDistro maps os-release's ID to Glance's os_distro vocabulary (the
// names Nova and libosinfo use).
func osDistro(id string) string {
	switch id {
	case "opensuse-leap", "opensuse-tumbleweed", "opensuse":
		return "opensuse"
	case "rhel", "redhat":
		return "rhel"
	case "arch", "archlinux":
		return "arch"
	}
	return id
}

// hash reads the file once for all three hashes.
func (li *LocalImage) hash(ctx context.Context) error {
	f, err := os.Open(li.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	h512, h256, h5 := sha512.New(), sha256.New(), md5.New()
	if _, err := io.Copy(io.MultiWriter(h512, h256, h5), &ctxReader{ctx: ctx, r: f}); err != nil {
		return fmt.Errorf("hash %s: %w", li.Path, err)
	}
	li.SHA512, li.SHA256, li.MD5 = hex.EncodeToString(h512.Sum(nil)), hex.EncodeToString(h256.Sum(nil)), hex.EncodeToString(h5.Sum(nil))
	return nil
}

// HashFor returns the file's hash with a Glance os_hash_algo name, or ""
// when the algorithm is unknown.
func (li *LocalImage) HashFor(algo string) string {
	switch strings.ToLower(algo) {
	case "sha512":
		return li.SHA512
	case "sha256":
		return li.SHA256
	case "md5":
		return li.MD5
	}
	return ""
}

// newHash is the hash.Hash for a Glance os_hash_algo, for algorithms
// HashFor does not precompute.
func newHash(algo string) hash.Hash {
	switch strings.ToLower(algo) {
	case "sha512":
		return sha512.New()
	case "sha384":
		return sha512.New384()
	case "sha256":
		return sha256.New()
	case "sha224":
		return sha256.New224()
	case "md5":
		return md5.New()
	}
	return nil
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := lastLine(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
