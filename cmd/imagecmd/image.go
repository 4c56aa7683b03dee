// Package imagecmd is `builder image`: diskimage-builder's disk-image-create.
package imagecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"builder/imagebuild"
)

// Options are what `builder image` was given: its elements, the settings
// given as flags (by imagebuild.Settings' names) and the few flags that are
// the command's own.
type Options struct {
	Out, Err io.Writer
	Environ  []string // the user's environment (os.Environ())
	In       io.Reader

	Elements []string
	// Values are the settings given on the command line.
	Values imagebuild.Values
	// Verbose shows every hook's output; DebugShell opens a shell where a
	// hook fails (DIB's break=after-error).
	Verbose    bool
	DebugShell bool
	// Args is the command line after the command's name (DIB_ARGS).
	Args []string
	// Ramdisk is set by `builder ramdisk` (cmd/ramdiskcmd), which adds the
	// ramdisk element (--ramdisk-element) first.
	Ramdisk bool
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
			opts.Values = changedSettings(cmd)
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
	AddSettingFlags(f)
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "show the output of every hook")
	f.BoolVar(&opts.DebugShell, "debug-shell", false, "open a shell where a hook fails, in its container (DIB's break=after-error)")
	return cmd
}

// AddSettingFlags defines a flag for every setting of imagebuild.Settings
// that has one.
func AddSettingFlags(f *pflag.FlagSet) {
	for _, s := range imagebuild.Settings {
		if s.Flag == "" {
			continue
		}
		switch s.Kind {
		case imagebuild.Bool:
			f.BoolP(s.Flag, s.Short, s.Default == "true", s.Help)
		case imagebuild.Int:
			f.CountP(s.Flag, s.Short, s.Help)
		case imagebuild.List:
			var def []string
			if s.Default != "" {
				def = strings.Split(s.Default, ",")
			}
			f.StringArrayP(s.Flag, s.Short, def, s.Help)
		default:
			f.StringP(s.Flag, s.Short, s.Default, s.Help)
		}
	}
}

// changedSettings are the settings given on the command line, as strings
// (a repeated list flag is joined with commas).
func changedSettings(cmd *cobra.Command) imagebuild.Values {
	v := imagebuild.Values{}
	f := cmd.Flags()
	for _, s := range imagebuild.Settings {
		if s.Flag == "" || !f.Changed(s.Flag) {
			continue
		}
		switch s.Kind {
		case imagebuild.Bool:
			b, _ := f.GetBool(s.Flag)
			v[s.Name] = strconv.FormatBool(b)
		case imagebuild.Int:
			n, _ := f.GetCount(s.Flag)
			v[s.Name] = strconv.Itoa(n)
		case imagebuild.List:
			l, _ := f.GetStringArray(s.Flag)
			v[s.Name] = strings.Join(l, ",")
		default:
			v[s.Name], _ = f.GetString(s.Flag)
		}
	}
	return v
}

// UsageError is bad input: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Request translates the options into a build request (imagebuild's
// settings table: flag, else DIB variable, else default).
func (o *Options) Request() (imagebuild.Request, error) {
	req, err := imagebuild.NewRequest(o.Elements, o.Values, imagebuild.EnvMap(o.Environ), imagebuild.ByFlag)
	if err != nil {
		return req, &UsageError{err}
	}
	if len(o.Elements) == 0 {
		return req, &UsageError{errors.New("no elements given: name an operating system and vm, e.g. `builder image debian vm`")}
	}
	if o.Ramdisk {
		// ramdisk-image-create: the ramdisk element before the others.
		if req.RamdiskElement == "" {
			return req, &UsageError{errors.New("--ramdisk-element is empty: name the element that makes the ramdisk (ramdisk or dracut-ramdisk)")}
		}
		req.Elements = append([]string{req.RamdiskElement}, req.Elements...)
	}
	req.Verbose = o.Verbose
	req.Out = o.Out
	req.Args = o.Args
	if req.Breaks["after-error"] {
		o.DebugShell = true
		delete(req.Breaks, "after-error")
	}
	if o.DebugShell || len(req.Breaks) > 0 {
		req.DebugShell = o.In
		req.DebugOut = o.Err
	}
	return req, nil
}

// Run builds the image.
func Run(ctx context.Context, o *Options) error {
	req, err := o.Request()
	if err != nil {
		return err
	}
	res, err := imagebuild.Run(ctx, req)
	var ie *imagebuild.InputError
	if errors.As(err, &ie) {
		return &UsageError{Err: err}
	}
	if err != nil {
		return err
	}
	for _, p := range res.Outputs {
		fmt.Fprintf(o.Out, "builder: wrote %s\n", p)
	}
	return nil
}
