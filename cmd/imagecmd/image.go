// Package imagecmd is `builder image`: diskimage-builder's disk-image-create.
package imagecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"builder/imagebuild"
)

// Options are the flags of `builder image`, with DIB's names and meanings.
type Options struct {
	Out, Err io.Writer
	Environ  []string // the user's environment (os.Environ())

	Elements     []string
	Output       string
	Types        []string
	Arch         string
	Packages     []string
	Trace        int
	ImageSize    string
	ImageCache   string
	NoTmpfs      bool
	SkipBase     bool
	Checksum     bool
	Uncompressed bool
	QemuImgOpts  string
	RootLabel    string
	MkfsOptions  string
	DockerTarget string
	Offline      bool
	MinTmpfs     string
	Isolation    string
	Runtime      string
	NoCache      bool
	Verbose      bool
	DebugShell   bool
	In           io.Reader
	// Args is the command line after "image" (DIB_ARGS for hooks).
	Args []string

	// RamdiskElement is DIB's --ramdisk-element; Ramdisk is set by
	// `builder ramdisk` (cmd/ramdisk), which adds that element first.
	RamdiskElement string
	Ramdisk        bool
}

// NewCmdImage returns the command; run replaces Run in tests.
func NewCmdImage(run func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{}
	cmd := &cobra.Command{
		Use:   "image [options] ELEMENT...",
		Short: "Build a disk image from elements (diskimage-builder's disk-image-create)",
		Long: `Build a disk image from diskimage-builder elements.

  builder image debian vm -o debian                  # debian.qcow2, bootable, cloud-init ready
  builder image -t qcow2,raw -p vim,curl --image-size 4 -o web debian vm

Element hooks run in containers; the disk is assembled without loop devices.
DIB's variables keep their meaning: DIB_RELEASE, DIB_DISTRIBUTION_MIRROR,
DIB_IMAGE_SIZE, DIB_IMAGE_EXTRA_SIZE (MB), DIB_CHECKSUM, TMP_DIR, ELEMENTS_PATH...`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Elements = args
			if len(os.Args) > 2 && opts.Args == nil {
				opts.Args = os.Args[2:]
			}
			opts.Out = cmd.OutOrStdout()
			opts.Err = cmd.ErrOrStderr()
			opts.In = cmd.InOrStdin()
			if opts.Environ == nil {
				opts.Environ = os.Environ()
			}
			if run != nil {
				return run(cmd.Context(), opts)
			}
			return Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.Output, "output", "o", "image", "image name (and directory); the type is appended")
	f.StringSliceVarP(&opts.Types, "type", "t", []string{"qcow2"}, "output types, comma separated: qcow2 raw vhd vhdx vmdk vdi tar tgz squashfs docker")
	f.StringVar(&opts.DockerTarget, "docker-target", "", "image name for -t docker, in container storage (e.g. localhost/web:latest)")
	f.StringVarP(&opts.Arch, "arch", "a", "amd64", "architecture of the image (amd64)")
	f.StringArrayVarP(&opts.Packages, "packages", "p", nil, "extra packages to install, comma separated (repeatable)")
	f.CountVarP(&opts.Trace, "trace", "x", "trace hooks (DIB_DEBUG_TRACE); repeat for more")
	f.StringVar(&opts.ImageSize, "image-size", "", "image size in GB (default: the content plus headroom)")
	f.StringVar(&opts.ImageCache, "image-cache", "", "cache directory (default ~/.cache/image-create, or DIB_IMAGE_CACHE)")
	f.BoolVar(&opts.NoTmpfs, "no-tmpfs", false, "accepted for DIB compatibility (builder uses no tmpfs)")
	f.StringVar(&opts.MinTmpfs, "min-tmpfs", "", "accepted for DIB compatibility (ignored)")
	f.BoolVarP(&opts.SkipBase, "no-base", "n", false, "do not add the base element")
	f.BoolVar(&opts.Checksum, "checksum", false, "write .md5 and .sha256 files next to each output")
	f.BoolVarP(&opts.Uncompressed, "uncompressed", "u", false, "do not compress qcow2 output")
	f.StringVar(&opts.QemuImgOpts, "qemu-img-options", "", "options passed to qemu-img convert -o (e.g. compat=0.10)")
	f.StringVar(&opts.RootLabel, "root-label", "", "label of the root filesystem (default cloudimg-rootfs; img-rootfs for xfs)")
	f.StringVar(&opts.MkfsOptions, "mkfs-options", "", "extra options for the root filesystem's mkfs (DIB: mkfs_root only)")
	f.BoolVar(&opts.Offline, "offline", false, "do not ask the mirror for updates; build from what is cached")
	f.StringVar(&opts.Isolation, "isolation", "chroot", "hook isolation: chroot (no runtime needed) or oci (runc)")
	f.StringVar(&opts.Runtime, "runtime", "runc", "OCI runtime for --isolation oci")
	f.BoolVar(&opts.NoCache, "no-cache", false, "run every step even when its result is cached")
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "show the output of every hook")
	f.BoolVar(&opts.DebugShell, "debug-shell", false, "open a shell where a hook fails, in its container (DIB's break=after-error)")
	f.StringVar(&opts.RamdiskElement, "ramdisk-element", "ramdisk", "element that builder ramdisk adds first (ramdisk, or dracut-ramdisk); accepted and unused by builder image, as in DIB")
	return cmd
}

// UsageError is bad input: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Request translates the options into a build request.
func (o *Options) Request() (imagebuild.Request, error) {
	env := imagebuild.UserEnv(o.Environ)
	req := imagebuild.Request{
		Elements:     o.Elements,
		Output:       o.Output,
		Arch:         o.Arch,
		Trace:        o.Trace,
		ImageCache:   o.ImageCache,
		NoTmpfs:      o.NoTmpfs || env["DIB_NO_TMPFS"] == "1",
		SkipBase:     o.SkipBase,
		Checksum:     o.Checksum,
		Uncompressed: o.Uncompressed,
		QemuImgOpts:  o.QemuImgOpts,
		RootLabel:    o.RootLabel,
		MkfsOptions:  o.MkfsOptions,
		DockerTarget: o.DockerTarget,
		Env:          env,
		TmpDir:       env["TMP_DIR"],
		Offline:      o.Offline || env["DIB_OFFLINE"] != "",
		Isolation:    o.Isolation,
		Runtime:      o.Runtime,
		NoCache:      o.NoCache,
		Verbose:      o.Verbose,
		Out:          o.Out,
		Args:         o.Args,
	}
	if len(o.Elements) == 0 {
		return req, &UsageError{errors.New("no elements given: name an operating system and vm, e.g. `builder image debian vm`")}
	}
	if o.Ramdisk {
		// ramdisk-image-create: the ramdisk element before the others.
		if o.RamdiskElement == "" {
			return req, &UsageError{errors.New("--ramdisk-element is empty: name the element that makes the ramdisk (ramdisk or dracut-ramdisk)")}
		}
		req.Elements = append([]string{o.RamdiskElement}, o.Elements...)
	}
	for _, t := range o.Types {
		for _, x := range strings.Split(t, ",") {
			if x = strings.TrimSpace(x); x != "" {
				req.Types = append(req.Types, x)
			}
		}
	}
	for _, p := range o.Packages {
		for _, x := range strings.Split(p, ",") {
			if x = strings.TrimSpace(x); x != "" {
				req.Packages = append(req.Packages, x)
			}
		}
	}
	if o.Trace > 0 {
		env["DIB_DEBUG_TRACE"] = strconv.Itoa(o.Trace)
	} else if n, err := strconv.Atoi(env["DIB_DEBUG_TRACE"]); err == nil {
		req.Trace = n
	}
	if req.ImageCache == "" {
		req.ImageCache = env["DIB_IMAGE_CACHE"]
	}
	size := o.ImageSize
	if size == "" {
		size = env["DIB_IMAGE_SIZE"]
	}
	if size != "" {
		gb, err := strconv.ParseFloat(size, 64)
		if err != nil || gb <= 0 {
			return req, &UsageError{fmt.Errorf("--image-size %q is not a positive number of GB", size)}
		}
		req.ImageSizeGiB = gb
	}
	if ep := env["ELEMENTS_PATH"]; ep != "" {
		for _, p := range strings.Split(ep, ":") {
			if p != "" {
				req.ElementsPath = append(req.ElementsPath, p)
			}
		}
	}
	// DIB's break points (a comma list): after-error, before-PHASE,
	// after-PHASE.
	breaks, err := parseBreaks(env["break"])
	if err != nil {
		return req, &UsageError{err}
	}
	if breaks["after-error"] {
		o.DebugShell = true
		delete(breaks, "after-error")
	}
	if len(breaks) > 0 {
		req.Breaks = breaks
		o.DebugShell = true
	}
	if o.DebugShell {
		req.DebugShell = o.In
		req.DebugOut = o.Err
	}
	if o.Isolation != "chroot" && o.Isolation != "oci" {
		return req, &UsageError{fmt.Errorf("--isolation %q: use chroot or oci", o.Isolation)}
	}
	return req, nil
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
			return nil, fmt.Errorf("break=%s: use after-error, before-PHASE or after-PHASE with PHASE one of %s", b, strings.Join(dibBreakPhases, ", "))
		}
		out[when+"-"+phase] = true
	}
	return out, nil
}

// Run builds the image.
func Run(ctx context.Context, o *Options) error {
	req, err := o.Request()
	if err != nil {
		return err
	}
	res, err := imagebuild.Run(ctx, req)
	if err != nil {
		return err
	}
	for _, p := range res.Outputs {
		fmt.Fprintf(o.Out, "builder: wrote %s\n", p)
	}
	return nil
}
