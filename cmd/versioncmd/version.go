// Package versioncmd is `builder version`: which builder this is, and the
// code identity its cached steps are keyed by.
package versioncmd

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"builder/internal/version"
)

// Options are the flags of `builder version`.
type Options struct {
	Out io.Writer
}

// NewCmdVersion returns the command; run replaces Run in tests.
func NewCmdVersion(run func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{}
	return &cobra.Command{
		Use:   "version",
		Short: "Print builder's version and the code identity cached steps are keyed by",
		Long: `Print builder's version and its code identity. Every cached step's key holds
the code identity: runners share steps (through a registry cache) only when
they run builders with the same code identity: built from the same clean
commit with the same Go version, or the same executable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Out = cmd.OutOrStdout()
			if run != nil {
				return run(cmd.Context(), opts)
			}
			return Run(cmd.Context(), opts)
		},
	}
}

// Run prints the version lines.
func Run(ctx context.Context, o *Options) error {
	fmt.Fprintf(o.Out, "builder %s\n", version.Version())
	fmt.Fprintf(o.Out, "code id %s\n", version.CodeID())
	fmt.Fprintf(o.Out, "go      %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
