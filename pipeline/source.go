package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"builder/assemble"
	"builder/internal/fsutil"
	"builder/internal/workspace"
	"builder/rootfs"
)

// An image with source: is downloaded, not built:
//
//	- name: debian-12-upstream
//	  source:
//	    url: https://cloud.example.org/debian-12-generic-amd64.qcow2
//	    checksums: https://cloud.example.org/SHA512SUMS     # lists the file by name
//	    signature: https://cloud.example.org/SHA512SUMS.sign # optional, with keyring
//	    keyring: /usr/share/keyrings/distro.gpg
//	    # or: checksum: sha512:HEX
//	  convert: [compat=0.10]
//	  publish: {name: "Debian 12 (upstream)"}
//
// It goes into the verified download cache (rootfs.FetchVerified), is
// written as the image's formats (the upstream file as it is when the
// format matches and no convert: options are given), then boot-tested and
// published like a built image.

// Source is where a downloaded image comes from and how it is verified:
// its checksum, or the checksums file the distribution publishes (and
// that file's OpenPGP signature, checked against keyring).
type Source struct {
	URL       string `yaml:"url"`
	Checksum  string `yaml:"checksum"`
	Checksums string `yaml:"checksums"`
	Signature string `yaml:"signature"`
	Keyring   string `yaml:"keyring"`
}

// UnmarshalYAML takes the mapping; a bare URL is refused with the fix,
// as a download needs a checksum.
func (s *Source) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return fmt.Errorf("line %d: source: give {url: %s, checksums: URL of the checksums file} or {url: ..., checksum: sha256:HEX}: a download is verified", n.Line, n.Value)
	}
	type plain Source
	return strictDecode(n, (*plain)(s))
}

// Convert are qemu-img convert -o options for an image's outputs, e.g.
// compat=0.10 (QEMU before 1.1 and clouds that need qcow2 version 2; zstd
// compression then falls back to zlib) or compression_type=zlib (QEMU
// before 5.1). Written as "compat=0.10,compression_type=zlib" or a list.
type Convert []string

var convertOptionRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]*=[A-Za-z0-9_.:+-]+$`)

// UnmarshalYAML accepts a comma-separated string or a list.
func (c *Convert) UnmarshalYAML(n *yaml.Node) error {
	var items []string
	switch n.Kind {
	case yaml.ScalarNode:
		for _, s := range strings.Split(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	case yaml.SequenceNode:
		if err := n.Decode(&items); err != nil {
			return fmt.Errorf("line %d: convert: give qemu-img options such as [compat=0.10]", n.Line)
		}
	default:
		return fmt.Errorf("line %d: convert: give qemu-img options such as compat=0.10 or [compat=0.10, compression_type=zlib]", n.Line)
	}
	for _, s := range items {
		if !convertOptionRE.MatchString(s) {
			return fmt.Errorf("line %d: convert: %q is not a qemu-img option: write key=value, e.g. compat=0.10 or compression_type=zlib", n.Line, s)
		}
	}
	*c = items
	return nil
}

func (c Convert) String() string { return strings.Join(c, ",") }

// convert of an image: its own, else the defaults'.
func (f *File) convert(img Image) Convert {
	if len(img.Convert) > 0 {
		return img.Convert
	}
	return f.Defaults.Convert
}

// sourceFormats are the formats a downloaded image can be written as.
var sourceFormats = []string{"qcow2", "raw", "vmdk", "vdi", "vhdx", "vhd"}

// checkSource checks a downloaded image's entry.
func (f *File) checkSource(where string, img Image) error {
	src := img.Source
	u, err := url.Parse(src.URL)
	if src.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: source.url %q: give the http(s) URL of a disk image", where, src.URL)
	}
	switch {
	case len(img.Elements) > 0 || len(img.Packages) > 0 || len(img.Variables) > 0 || img.Size != 0 || len(img.Settings) > 0:
		return fmt.Errorf("%s: a downloaded image (source:) is not built: drop elements, packages, variables, size and build settings, or drop source", where)
	case src.Checksum != "" && src.Checksums != "":
		return fmt.Errorf("%s: source: give checksum or checksums, not both", where)
	case src.Checksum == "" && src.Checksums == "":
		return fmt.Errorf("%s: source without a checksum: give source.checksum: sha256:HEX (or sha512:HEX), or source.checksums: the URL of the checksums file the distribution publishes (SHA256SUMS, SHA512SUMS)", where)
	case src.Signature != "" && src.Keyring == "":
		return fmt.Errorf("%s: source.signature needs source.keyring: the OpenPGP keys the checksums file is signed with", where)
	case (src.Signature != "" || src.Keyring != "") && src.Checksums == "":
		return fmt.Errorf("%s: source.signature and source.keyring check a checksums file: give source.checksums", where)
	}
	if src.Checksum != "" {
		if _, err := rootfs.ParseDigest(src.Checksum); err != nil {
			return fmt.Errorf("%s: source: %w", where, err)
		}
	}
	for _, s := range []struct{ key, v string }{{"checksums", src.Checksums}, {"signature", src.Signature}} {
		if u, err := url.Parse(s.v); s.v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https")) {
			return fmt.Errorf("%s: source.%s %q: give an http(s) URL", where, s.key, s.v)
		}
	}
	if src.Keyring != "" {
		if _, err := os.Stat(f.path(src.Keyring)); err != nil {
			return fmt.Errorf("%s: source.keyring: %w", where, err)
		}
	}
	for _, t := range f.formats(img) {
		if !contains(sourceFormats, t) {
			return fmt.Errorf("%s: format %q: a downloaded image is written as one of %s", where, t, strings.Join(sourceFormats, ", "))
		}
		if t == "raw" && len(f.convert(img)) > 0 {
			return fmt.Errorf("%s: convert options do not apply to raw output: drop raw from formats or drop convert", where)
		}
	}
	return nil
}

// fetchSource downloads img's source into the verified cache and writes
// out.FORMAT for each of its formats. It returns the outputs and the
// digest the download was verified against.
func (r *runner) fetchSource(ctx context.Context, img Image, conv Convert, out string, log io.Writer) ([]string, rootfs.Digest, error) {
	src := img.Source
	v := rootfs.Verification{Checksum: src.Checksum, ChecksumsURL: src.Checksums, SignatureURL: src.Signature}
	if src.Keyring != "" {
		v.Keyring = r.f.path(src.Keyring)
	}
	path, digest, err := rootfs.FetchVerified(ctx, src.URL, workspace.New(r.cache).Downloads(), v, log)
	if err != nil {
		return nil, digest, err
	}
	srcFormat, err := diskFormat(ctx, path)
	if err != nil {
		return nil, digest, fmt.Errorf("%s: %w", src.URL, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, digest, err
	}
	var outputs []string
	for _, t := range r.f.formats(img) {
		dst := out + "." + t
		if err := writeFormat(ctx, path, srcFormat, dst, t, conv, log); err != nil {
			return nil, digest, err
		}
		// The outputs carry the download's time: it is the image's date
		// (its build_date and description), the same on every run until
		// upstream publishes a new file, so an unchanged upstream changes
		// nothing in Glance.
		if err := os.Chtimes(dst, time.Now(), st.ModTime()); err != nil {
			return nil, digest, err
		}
		outputs = append(outputs, dst)
	}
	return outputs, digest, nil
}

// diskFormat is what qemu-img makes of a file; images with a backing file
// are refused (the backing file would not be uploaded).
func diskFormat(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("not a disk image qemu-img reads: %s", msg)
	}
	var info struct {
		Format      string `json:"format"`
		BackingFile string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", err
	}
	if info.BackingFile != "" {
		return "", fmt.Errorf("a %s image with a backing file (%s): publish a standalone image", info.Format, info.BackingFile)
	}
	if info.Format == "vpc" {
		info.Format = "vhd"
	}
	if info.Format == "raw" {
		// qemu-img calls anything it does not know raw: a compressed
		// image or an archive would be published as a disk.
		if kind := archiveKind(path); kind != "" {
			return "", fmt.Errorf("the download is %s, not a disk image: give the URL of the uncompressed image (qcow2, raw, vmdk, ...)", kind)
		}
	}
	return info.Format, nil
}

// archiveKind names a compressed or archived file by its magic bytes.
func archiveKind(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 512)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	for _, m := range []struct{ kind, magic string }{
		{"xz-compressed", "\xfd7zXZ\x00"}, {"gzip-compressed", "\x1f\x8b"}, {"zstd-compressed", "\x28\xb5\x2f\xfd"},
		{"bzip2-compressed", "BZh"}, {"a zip archive", "PK\x03\x04"},
	} {
		if strings.HasPrefix(string(b), m.magic) {
			return m.kind
		}
	}
	if len(b) >= 262 && string(b[257:262]) == "ustar" {
		return "a tar archive"
	}
	return ""
}

// writeFormat writes the download as dst in format t: the file itself
// when it already is that and nothing is to change (its bytes stay the
// upstream's), else converted through a raw image with builder's
// conversion (zstd-compressed qcow2 unless the options say otherwise).
func writeFormat(ctx context.Context, src, srcFormat, dst, t string, conv Convert, log io.Writer) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	os.Remove(tmp) // a crashed run's
	defer os.Remove(tmp)
	if srcFormat == t && len(conv) == 0 {
		// A hard link when the cache and the outputs share a filesystem:
		// neither is ever written in place.
		if err := os.Link(src, tmp); err != nil {
			if err := fsutil.CopyFile(src, tmp, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(log, "%s: the downloaded %s as it is\n", filepath.Base(dst), t)
		return os.Rename(tmp, dst)
	}
	raw := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".raw")
	defer os.Remove(raw)
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", srcFormat, "-O", "raw", src, raw).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert %s to raw: %v: %s", src, err, strings.TrimSpace(string(out)))
	}
	note, err := assemble.ConvertWithNote(ctx, raw, dst, assemble.Format(t), assemble.ConvertOptions{
		Compress: true, Compression: "zstd", QemuImgOptions: conv.String(), MoveSource: true})
	if err != nil {
		return err
	}
	how := "converted"
	if len(conv) > 0 {
		how += " with " + conv.String()
	}
	if note != "" {
		how += " (" + note + ")"
	}
	fmt.Fprintf(log, "%s: the downloaded %s %s\n", filepath.Base(dst), srcFormat, how)
	return nil
}
