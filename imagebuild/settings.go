package imagebuild

import (
	"builder/internal/units"
	"builder/rootfs"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Kind is the type of a setting's value.
type Kind int

const (
	String Kind = iota
	Bool
	Int
	Float
	List // comma separated; a flag may repeat
)

// Setting is one build setting, defined once: its flag on the command line
// (builder image, builder ramdisk), its DIB variable, its key in a pipeline
// file, its type, default and meaning. Every command turns what it was given
// into a Request through this table (NewRequest), so the command line, the
// environment and a pipeline file agree by construction.
type Setting struct {
	// Name is the setting's key in a pipeline file.
	Name  string
	Flag  string // long flag, "" when the command line has none
	Short string // one-letter flag
	// Env is the DIB variable that sets it when the flag or key does not.
	Env     string
	Kind    Kind
	Default string
	Help    string
	// Local settings say where and how this machine builds (caches,
	// registries, isolation), never what the image holds: they are left
	// out of what the image records (DIB_ARGS, DIB_ENV), so the same image
	// built elsewhere has the same bytes.
	Local bool
	apply func(r *Request, v string) error
}

// Settings is the table. Values are strings here (a list is comma
// separated, a bool "1"/"true"); the table's apply functions check them.
var Settings = []Setting{
	{Name: "output", Flag: "output", Short: "o", Default: "image", Help: "image name (and directory); the type is appended",
		apply: func(r *Request, v string) error { r.Output = v; return nil }},
	{Name: "formats", Flag: "type", Short: "t", Kind: List, Default: "qcow2", Help: "output types, comma separated: " + typeList(),
		apply: func(r *Request, v string) error { r.Types = splitList(v); return nil }},
	{Name: "docker_target", Flag: "docker-target", Env: "DOCKER_TARGET", Help: "image name for -t docker, in container storage (e.g. localhost/web:latest)",
		apply: func(r *Request, v string) error { r.DockerTarget = v; return nil }},
	{Name: "arch", Flag: "arch", Short: "a", Env: "ARCH", Default: "amd64", Help: "architecture of the image: amd64 (x86_64) or arm64 (aarch64, built under QEMU emulation on other hosts)",
		apply: func(r *Request, v string) (err error) { r.Arch, err = resolveArch(v); return err }},
	{Name: "packages", Flag: "packages", Short: "p", Kind: List, Help: "extra packages to install, comma separated (repeatable)",
		apply: func(r *Request, v string) error { r.Packages = splitList(v); return nil }},
	{Name: "trace", Local: true, Flag: "trace", Short: "x", Env: "DIB_DEBUG_TRACE", Kind: Int, Help: "trace hooks (DIB_DEBUG_TRACE); repeat for more",
		apply: func(r *Request, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%q is not a trace level (0, 1, 2...)", v)
			}
			r.Trace = n
			return nil
		}},
	{Name: "size", Flag: "image-size", Env: "DIB_IMAGE_SIZE", Kind: Float, Help: "image size in GB (default: the content plus headroom)",
		apply: func(r *Request, v string) error {
			gb, err := strconv.ParseFloat(v, 64)
			if err != nil || gb <= 0 {
				return fmt.Errorf("%q is not a positive number of GB", v)
			}
			r.ImageSizeGiB = gb
			return nil
		}},
	{Name: "image_cache", Local: true, Flag: "image-cache", Env: "DIB_IMAGE_CACHE", Help: "cache directory (default ~/.cache/image-create)",
		apply: func(r *Request, v string) error { r.ImageCache = v; return nil }},
	{Name: "no_tmpfs", Local: true, Flag: "no-tmpfs", Env: "DIB_NO_TMPFS", Kind: Bool, Help: "work on disk instead of tmpfs",
		apply: boolInto(func(r *Request) *bool { return &r.NoTmpfs })},
	{Name: "min_tmpfs", Local: true, Flag: "min-tmpfs", Env: "DIB_MIN_TMPFS", Help: "accepted for DIB compatibility (builder sizes its tmpfs use from the free space)",
		apply: func(r *Request, v string) error { return nil }},
	{Name: "skip_base", Flag: "no-base", Short: "n", Kind: Bool, Help: "do not add the base element",
		apply: boolInto(func(r *Request) *bool { return &r.SkipBase })},
	{Name: "checksum", Flag: "checksum", Env: "DIB_CHECKSUM", Kind: Bool, Help: "write .md5 and .sha256 files next to each output (DIB_CHECKSUM may also be md5, sha256 or both)",
		apply: func(r *Request, v string) error {
			switch strings.ToLower(v) {
			case "", "0", "false", "no":
				r.Checksum = ""
			case "1", "true", "yes":
				r.Checksum = "md5,sha256"
			default:
				for _, x := range strings.Split(v, ",") {
					if x = strings.TrimSpace(x); x != "md5" && x != "sha256" {
						return fmt.Errorf("%q: use 1 (both), md5, sha256 or md5,sha256", v)
					}
				}
				r.Checksum = v
			}
			return nil
		}},
	{Name: "uncompressed", Flag: "uncompressed", Short: "u", Kind: Bool, Help: "do not compress qcow2 output",
		apply: boolInto(func(r *Request) *bool { return &r.Uncompressed })},
	{Name: "qemu_img_options", Flag: "qemu-img-options", Help: "options passed to qemu-img convert -o (e.g. compat=0.10)",
		apply: func(r *Request, v string) error { r.QemuImgOpts = v; return nil }},
	{Name: "root_label", Flag: "root-label", Env: "ROOT_LABEL", Help: "label of the root filesystem (default cloudimg-rootfs; img-rootfs for xfs)",
		apply: func(r *Request, v string) error { r.RootLabel = v; return nil }},
	{Name: "mkfs_options", Flag: "mkfs-options", Help: "extra options for the root filesystem's mkfs (DIB: mkfs_root only)",
		apply: func(r *Request, v string) error { r.MkfsOptions = v; return nil }},
	{Name: "offline", Local: true, Flag: "offline", Env: "DIB_OFFLINE", Kind: Bool, Help: "do not ask the mirror for updates; build from what is cached",
		apply: boolInto(func(r *Request) *bool { return &r.Offline })},
	{Name: "isolation", Local: true, Flag: "isolation", Default: "chroot", Help: "hook isolation: chroot (no runtime needed) or oci (runc)",
		apply: func(r *Request, v string) error {
			if v != "chroot" && v != "oci" {
				return fmt.Errorf("%q: use chroot or oci", v)
			}
			r.Isolation = v
			return nil
		}},
	{Name: "runtime", Local: true, Flag: "runtime", Default: "runc", Help: "OCI runtime for --isolation oci",
		apply: func(r *Request, v string) error { r.Runtime = v; return nil }},
	{Name: "no_cache", Local: true, Flag: "no-cache", Kind: Bool, Help: "run every step even when its result is cached",
		apply: boolInto(func(r *Request) *bool { return &r.NoCache })},
	{Name: "tmp_dir", Local: true, Env: "TMP_DIR", Help: "where builds work (default the system's temp dir)",
		apply: func(r *Request, v string) error { r.TmpDir = v; return nil }},
	{Name: "elements_path", Env: "ELEMENTS_PATH", Help: "directories of elements, colon separated, searched before builder's own",
		apply: func(r *Request, v string) error {
			r.ElementsPath = nil
			for _, p := range strings.Split(v, ":") {
				if p != "" {
					r.ElementsPath = append(r.ElementsPath, p)
				}
			}
			return nil
		}},
	{Name: "ramdisk_element", Flag: "ramdisk-element", Default: "ramdisk", Help: "element builder ramdisk adds first (ramdisk, or dracut-ramdisk); accepted and unused by builder image, as in DIB",
		apply: func(r *Request, v string) error { r.RamdiskElement = v; return nil }},
	{Name: "cache_max_size", Local: true, Flag: "cache-max-size", Env: "BUILDER_CACHE_MAX_SIZE", Default: "20G", Help: "after a build, prune the cache to this size, least recently used first (0: never; the last build of each image is always kept)",
		apply: func(r *Request, v string) error {
			n, err := units.ParseBytes(v)
			if err != nil {
				return err
			}
			r.CacheMaxBytes = n
			return nil
		}},
	{Name: "sbom", Flag: "sbom", Kind: Bool, Default: "true", Help: "write NAME.spdx.json (SPDX 2.3) and NAME.d/files.json beside the outputs",
		apply: boolInto(func(r *Request) *bool { return &r.SBOM })},
	{Name: "cache_from", Local: true, Flag: "cache-from", Env: "BUILDER_CACHE_FROM", Kind: List, Help: "registry repositories (REGISTRY/REPO, comma separated) to take cached steps from; a miss or a registry that is down only costs time",
		apply: func(r *Request, v string) error {
			r.CacheFrom = splitList(v)
			for _, repo := range r.CacheFrom {
				if err := rootfs.CheckRepository(repo); err != nil {
					return err
				}
			}
			return nil
		}},
	{Name: "cache_to", Local: true, Flag: "cache-to", Env: "BUILDER_CACHE_TO", Help: "registry repository (REGISTRY/REPO) to push every step of the build to, for other runners' --cache-from (also read from)",
		apply: func(r *Request, v string) error {
			r.CacheTo = v
			if v == "" {
				return nil
			}
			return rootfs.CheckRepository(v)
		}},
	{Name: "cache_tls_verify", Local: true, Flag: "cache-tls-verify", Env: "BUILDER_CACHE_TLS_VERIFY", Kind: Bool, Help: "verify the registry cache's TLS certificate (default: as registries.conf says; false as podman's --tls-verify=false)",
		apply: func(r *Request, v string) error {
			if v == "" {
				r.CacheTLSVerify = nil
				return nil
			}
			var b bool
			if err := boolInto(func(*Request) *bool { return &b })(r, v); err != nil {
				return err
			}
			r.CacheTLSVerify = &b
			return nil
		}},
	{Name: "explain_keys", Local: true, Flag: "explain-keys", Env: "BUILDER_EXPLAIN_KEYS", Help: "append what each step's cache key is made of to this file (why a step was not reused from a cache)",
		apply: func(r *Request, v string) error { r.ExplainKeys = v; return nil }},
	{Name: "break", Env: "break", Help: "DIB's break points: after-error, before-PHASE, after-PHASE (comma separated)",
		apply: func(r *Request, v string) error {
			b, err := parseBreaks(v)
			if err != nil {
				return err
			}
			r.Breaks = b
			return nil
		}},
}

// SettingError is a setting's bad value: which setting, how it was given
// and the fix.
type SettingError struct {
	Setting Setting
	Source  string // "--image-size", "DIB_IMAGE_SIZE", "size"
	Err     error
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s: %v", e.Source, e.Err)
}

func (e *SettingError) Unwrap() error { return e.Err }

// Values are settings given explicitly, by Setting.Name: flags on the
// command line, keys in a pipeline file.
type Values map[string]string

// Given says how a value came: by flag (the command line) or by key (a
// pipeline file); it names the source in errors.
type Given int

const (
	ByFlag Given = iota
	ByKey
)

// NewRequest turns explicit values, the caller's environment and the
// table's defaults into a Request: for each setting, the explicit value,
// else its variable, else its default. Of the environment, what belongs to
// the build (UserEnv's rule) becomes Request.Env, which hooks get.
func NewRequest(elements []string, values Values, environ map[string]string, given Given) (Request, error) {
	if environ == nil {
		environ = map[string]string{}
	}
	env := userVars(environ)
	req := Request{Elements: elements, Env: env}
	for _, s := range Settings {
		v, src, ok := values[s.Name], "", true
		switch {
		case hasKey(values, s.Name):
			src = s.Name
			if given == ByFlag && s.Flag != "" {
				src = "--" + s.Flag
			}
		case s.Env != "" && environ[s.Env] != "":
			v, src = environ[s.Env], s.Env
		default:
			v, src, ok = s.Default, "default", s.Default != ""
		}
		if !ok {
			continue
		}
		if err := s.apply(&req, v); err != nil {
			return req, &SettingError{Setting: s, Source: src, Err: err}
		}
	}
	// What a flag or key decided, hooks see as DIB's variable (a count
	// of -x is DIB_DEBUG_TRACE).
	if req.Trace > 0 {
		env["DIB_DEBUG_TRACE"] = strconv.Itoa(req.Trace)
	}
	return req, nil
}

func hasKey(m Values, k string) bool {
	_, ok := m[k]
	return ok
}

// SettingByName returns the table's entry.
func SettingByName(name string) (Setting, bool) {
	for _, s := range Settings {
		if s.Name == name {
			return s, true
		}
	}
	return Setting{}, false
}

func boolInto(field func(*Request) *bool) func(*Request, string) error {
	return func(r *Request, v string) error {
		switch strings.ToLower(v) {
		case "1", "true", "yes", "on":
			*field(r) = true
		case "", "0", "false", "no", "off":
			*field(r) = false
		default:
			return fmt.Errorf("%q is not a yes/no value (1, true, 0, false)", v)
		}
		return nil
	}
}

func splitList(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// dibBreakPhases are the phase names DIB's break points use.
var dibBreakPhases = []string{"root", "extra-data", "pre-install", "install", "post-install", "post-root", "block-device", "pre-finalise", "finalise", "cleanup"}

// parseBreaks reads DIB's break variable: after-error, before-PHASE and
// after-PHASE (PHASE with or without ".d").
func parseBreaks(v string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, b := range strings.Split(v, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if b == "after-error" {
			out[b] = true
			continue
		}
		when, phase, _ := strings.Cut(b, "-")
		phase = strings.TrimSuffix(phase, ".d")
		if (when != "before" && when != "after") || !slices.Contains(dibBreakPhases, phase) {
			return nil, fmt.Errorf("%s: use after-error, before-PHASE or after-PHASE with PHASE one of %s", b, strings.Join(dibBreakPhases, ", "))
		}
		out[when+"-"+phase] = true
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
