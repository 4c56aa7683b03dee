// Package doctorcmd is `builder doctor`: what this machine offers builder,
// each problem with its fix.
package doctorcmd

import (
	"builder/internal/workspace"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"builder/boottest"
	"builder/elements"
	"builder/internal/doctor"
	"builder/rootfs"
)

// Options are the flags of `builder doctor`.
type Options struct {
	Out        io.Writer
	ImageCache string
	TmpDir     string
}

// ErrProblems is returned when a check failed (exit status 1).
var ErrProblems = errors.New("builder doctor found problems")

// NewCmdDoctor returns the command; run replaces Run in tests.
func NewCmdDoctor(run func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check what this machine offers builder, and say how to fix what is missing",
		Long: `Check what builds and boot tests need: root or user namespaces with
subordinate ids (and that newuidmap can map them), host tools, GRUB images,
KVM, free space in the cache and temp dirs, the container storage driver.
builder image runs the checks a build needs first, with the same words.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out = cmd.OutOrStdout()
			if run != nil {
				return run(cmd.Context(), opts)
			}
			return Run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.ImageCache, "image-cache", "", "cache directory (default ~/.cache/image-create, or DIB_IMAGE_CACHE)")
	return cmd
}

// dibLibrary says whether diskimage-builder's own elements are there to
// fall back on (for elements builder does not ship).
func dibLibrary(dir string) doctor.Finding {
	if dir == "" {
		return doctor.Finding{Check: "DIB element library", Status: doctor.OK,
			Detail: "not installed: elements come from ELEMENTS_PATH and builder's own library only (apt-get install python3-diskimage-builder, or pip install diskimage-builder, adds DIB's as a fallback)"}
	}
	return doctor.Finding{Check: "DIB element library", Status: doctor.OK, Detail: dir + " (searched after builder's own library)"}
}

// Run prints every finding and fails when one failed.
func Run(ctx context.Context, o *Options) error {
	cache := o.ImageCache
	if cache == "" {
		cache = os.Getenv("DIB_IMAGE_CACHE")
	}
	if cache == "" {
		cache = workspace.DefaultCache()
	}
	tmp := o.TmpDir
	if tmp == "" {
		tmp = os.Getenv("TMP_DIR")
	}
	if tmp == "" {
		tmp = os.TempDir()
	}
	fs := doctor.Run(ctx, doctor.Options{CacheDir: cache, TmpDir: tmp, StorageDrivers: rootfs.DriverOrder(),
		KVM:   func(ctx context.Context) (bool, string) { return boottest.KVMStatus(ctx, cache) },
		Build: true, Bootstrap: true, VM: true, Boot: true, MinFreeBytes: 2 << 30, ForeignArches: []string{"arm64"}})
	fs = append(fs, dibLibrary(elements.FindDIBLibrary()))
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	failed := false
	for _, f := range fs {
		fmt.Fprintf(w, "%s\t%s\t%s\n", f.Check, f.Status, f.Detail)
		if f.Fix != "" && f.Status != doctor.OK {
			fmt.Fprintf(w, "\t\tfix: %s\n", f.Fix)
		}
		failed = failed || f.Status == doctor.Fail
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if failed {
		return ErrProblems
	}
	return nil
}
