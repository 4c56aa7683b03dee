package rootfs

import (
	"bufio"
	"builder/internal/privilege"
	"builder/internal/version"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.podman.io/common/libimage"
	"go.podman.io/common/pkg/config"

	"builder/internal/parttable"
)

// LocalImageKind is what a DIB_LOCAL_IMAGE file is.
type LocalImageKind string

const (
	LocalDisk    LocalImageKind = "disk"        // qcow2 or raw disk image
	LocalTarball LocalImageKind = "tarball"     // root filesystem tarball (optionally compressed)
	LocalOCI     LocalImageKind = "oci-archive" // OCI image archive
)

// LocalImageOptions are the host-side settings of ImportLocalImage.
type LocalImageOptions struct {
	TmpDir string // scratch for the converted disk and the extracted tree
	Log    io.Writer
	// Warn receives notes such as what an extraction cannot carry over.
	Warn func(string)
}

// ImportLocalImage makes a base from a local cloud image, rootfs tarball
// or OCI archive (DIB_LOCAL_IMAGE). The base is keyed by the file's
// content, so a changed file is a new base and an unchanged one is reused.
func (s *Store) ImportLocalImage(ctx context.Context, path string, o LocalImageOptions) (Image, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Image{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return Image{}, fmt.Errorf("DIB_LOCAL_IMAGE %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return Image{}, fmt.Errorf("DIB_LOCAL_IMAGE %s is not a regular file", path)
	}
	kind, format, err := probeLocalImage(ctx, abs)
	if err != nil {
		return Image{}, err
	}
	sum, err := fileSHA256(abs)
	if err != nil {
		return Image{}, err
	}
	// The file's content and the code that extracts it.
	key := "local:" + sum + ":" + version.CodeID()
	keySum := sha256.Sum256([]byte(key))
	name := "localhost/builder/local:" + hex.EncodeToString(keySum[:])[:40]
	if s.HasImage(name) {
		return Image{Name: name, Key: key}, nil
	}
	switch kind {
	case LocalTarball:
		if _, err := s.ImportTarball(ctx, abs, name, "amd64"); err != nil {
			return Image{}, err
		}
	case LocalOCI:
		rt, err := s.runtime()
		if err != nil {
			return Image{}, err
		}
		imgs, err := rt.Pull(ctx, "oci-archive:"+abs, config.PullPolicyAlways, &libimage.PullOptions{CopyOptions: libimage.CopyOptions{SignaturePolicyPath: s.sc.SignaturePolicyPath}})
		if err != nil {
			return Image{}, fmt.Errorf("DIB_LOCAL_IMAGE %s: %w", path, err)
		}
		if err := imgs[0].Tag(name); err != nil {
			return Image{}, err
		}
	case LocalDisk:
		if err := s.importDisk(ctx, abs, format, name, o); err != nil {
			return Image{}, fmt.Errorf("DIB_LOCAL_IMAGE %s: %w", path, err)
		}
	}
	return Image{Name: name, Key: key}, nil
}

// probeLocalImage tells a disk image (by qemu-img, never by its name) from
// a tarball or an OCI archive, and refuses what could pull in files the
// user did not name: backing files and external data files.
func probeLocalImage(ctx context.Context, path string) (LocalImageKind, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	f.Close()
	head = head[:n]
	switch {
	case len(head) >= 4 && string(head[:4]) == "QFI\xfb":
		// qcow2: check below.
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b, // gzip
		len(head) >= 6 && string(head[:6]) == "\xfd7zXZ\x00",
		len(head) >= 4 && string(head[:4]) == "\x28\xb5\x2f\xfd": // zstd
		return LocalTarball, "", nil
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		if isOCIArchive(path) {
			return LocalOCI, "", nil
		}
		return LocalTarball, "", nil
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		return "", "", fmt.Errorf("DIB_LOCAL_IMAGE %s is neither a disk image qemu-img can read nor a tarball or OCI archive", path)
	}
	var info struct {
		Format          string `json:"format"`
		BackingFilename string `json:"backing-filename"`
		FormatSpecific  struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", "", err
	}
	if info.BackingFilename != "" {
		return "", "", fmt.Errorf("DIB_LOCAL_IMAGE %s has a backing file (%s): refused, it would read a file you did not name; flatten it first with `qemu-img convert -O qcow2 %s flat.qcow2`", path, info.BackingFilename, path)
	}
	if info.FormatSpecific.Data.DataFile != "" {
		return "", "", fmt.Errorf("DIB_LOCAL_IMAGE %s has an external data file (%s): refused; convert it to a plain image first", path, info.FormatSpecific.Data.DataFile)
	}
	switch info.Format {
	case "qcow2", "raw", "vmdk", "vdi", "vpc", "vhdx":
		return LocalDisk, info.Format, nil
	}
	return "", "", fmt.Errorf("DIB_LOCAL_IMAGE %s: disk format %q is not supported", path, info.Format)
}

func isOCIArchive(path string) bool {
	out, err := exec.Command("tar", "-tf", path, "oci-layout").CombinedOutput()
	return err == nil && strings.TrimSpace(string(out)) == "oci-layout"
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// importDisk finds the root filesystem in a disk image, extracts it and
// imports it as name.
func (s *Store) importDisk(ctx context.Context, path, format, name string, o LocalImageOptions) error {
	work, err := os.MkdirTemp(o.TmpDir, "local-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	raw := path
	if format != "raw" {
		raw = filepath.Join(work, "disk.raw")
		if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "raw", path, raw).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img convert: %v: %s", err, out)
		}
	}
	part, err := findRootFilesystem(ctx, raw)
	if err != nil {
		return err
	}
	tree := filepath.Join(work, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(part.fsType, "ext") && !privilege.RealRoot():
		// debugfs reads ext4 as a plain file, no mount needed.
		if o.Warn != nil {
			o.Warn("extracting the root filesystem without mounting it (debugfs): hard links become copies and extended attributes (file capabilities) are not carried over")
		}
		if out, err := exec.CommandContext(ctx, "debugfs", "-R", "rdump / "+tree, fmt.Sprintf("%s?offset=%d", raw, part.offset)).CombinedOutput(); err != nil {
			return fmt.Errorf("debugfs rdump: %v: %s", err, out)
		}
	default:
		if !privilege.RealRoot() {
			return fmt.Errorf("its root filesystem is %s, which only a loop mount can read, and that needs root: run as root, or give a rootfs tarball", part.fsType)
		}
		if err := copyMounted(ctx, raw, part, tree); err != nil {
			return err
		}
	}
	tarPath := filepath.Join(work, "tree.tar")
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-C", tree, "-cpf", tarPath, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pack the extracted tree: %v: %s", err, out)
	}
	os.RemoveAll(tree)
	_, err = s.ImportTarball(ctx, tarPath, name, "amd64")
	return err
}

type rootPart struct {
	offset int64
	fsType string
	label  string
}

// findRootFilesystem picks the partition (or whole image) holding the
// root filesystem: labels DIB and cloud images use first, then the
// largest Linux filesystem.
func findRootFilesystem(ctx context.Context, raw string) (rootPart, error) {
	starts := []int64{0}
	if t, err := readPartitionTable(raw); err == nil && len(t.Partitions) > 0 {
		starts = nil
		for _, p := range t.Partitions {
			starts = append(starts, p.StartBytes)
		}
	}
	var best rootPart
	var bestSize int64 = -1
	for _, off := range starts {
		out, err := exec.CommandContext(ctx, "blkid", "-p", "-o", "export", "-O", strconv.FormatInt(off, 10), raw).Output()
		if err != nil {
			continue
		}
		kv := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				kv[k] = v
			}
		}
		t := kv["TYPE"]
		if t != "ext4" && t != "ext3" && t != "ext2" && t != "xfs" && t != "btrfs" {
			continue
		}
		p := rootPart{offset: off, fsType: t, label: kv["LABEL"]}
		switch p.label {
		case "cloudimg-rootfs", "img-rootfs", "root", "rootfs":
			return p, nil
		}
		size, _ := strconv.ParseInt(kv["FSSIZE"], 10, 64)
		if size > bestSize {
			best, bestSize = p, size
		}
	}
	if bestSize < 0 {
		return rootPart{}, errors.New("no Linux root filesystem (ext4, xfs, btrfs) found in it: point DIB_LOCAL_IMAGE at a cloud image (qcow2 or raw), a rootfs tarball or an OCI archive")
	}
	return best, nil
}

// readPartitionTable reads the image's partition table with builder's
// one reader (internal/parttable), which assembly and publish share.
func readPartitionTable(raw string) (parttable.Table, error) {
	f, err := os.Open(raw)
	if err != nil {
		return parttable.Table{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return parttable.Table{}, err
	}
	return parttable.Read(f, st.Size())
}

// copyMounted reads a filesystem through a read-only loop mount in a
// private mount namespace (it vanishes with the process, however that ends).
func copyMounted(ctx context.Context, raw string, p rootPart, dst string) error {
	script := `set -eu
mnt=$(mktemp -d)
mount --make-rprivate /
mount -o "$5",loop,offset="$2" -t "$3" "$1" "$mnt"
tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$mnt" -cpf - . | tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$4" -xpf -
umount "$mnt"
rmdir "$mnt"`
	opts := "ro"
	if p.fsType == "xfs" {
		opts = "ro,norecovery,nouuid"
	}
	cmd := exec.CommandContext(ctx, "/bin/bash", "-c", script, "copy", raw, strconv.FormatInt(p.offset, 10), p.fsType, dst, opts)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copy the %s root filesystem: %v: %s", p.fsType, err, out)
	}
	return nil
}
