// Package cachecmd is `builder cache`: what the cache holds, pruning it
// and verifying it.
package cachecmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"builder/cache"
	"builder/cmd/imagecmd"
	"builder/internal/units"
	"builder/internal/workspace"
)

// Options are the flags of `builder cache`.
type Options struct {
	Out, Err   io.Writer
	ImageCache string
	// ls
	Steps bool
	JSON  bool
	// prune
	OlderThan time.Duration
	MaxSize   string
	Keep      int
	DryRun    bool
	NoWait    bool
}

func (o *Options) workspace() workspace.Workspace {
	c := o.ImageCache
	if c == "" {
		c = os.Getenv("DIB_IMAGE_CACHE")
	}
	return workspace.New(c)
}

// NewCmdCache returns `builder cache` with ls, prune and verify.
func NewCmdCache() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "What builder's cache holds; prune it; verify it",
		Long: `builder keeps every step of every build in its cache (a container store under
the image cache), so that an unchanged rebuild is a series of lookups. Builds
prune it to --cache-max-size (BUILDER_CACHE_MAX_SIZE, default 20G) when they
end, least recently used first, always keeping the last build of each image.`,
	}
	cmd.PersistentFlags().StringVar(&o.ImageCache, "image-cache", "", "cache directory (default ~/.cache/image-create, or DIB_IMAGE_CACHE)")
	setup := func(c *cobra.Command) {
		o.Out, o.Err = c.OutOrStdout(), c.ErrOrStderr()
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List what is held: per image name (builds, steps, sizes unique and shared, last use), and with --steps each cached step",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			setup(c)
			return List(c.Context(), o)
		},
	}
	ls.Flags().BoolVar(&o.Steps, "steps", false, "list every cached step too")
	ls.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove what is not needed: by age, by total size, keeping the last N builds of each image",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			setup(c)
			return Prune(c.Context(), o)
		},
	}
	prune.Flags().DurationVar(&o.OlderThan, "older-than", 0, "remove what no build used for this long (e.g. 720h)")
	prune.Flags().StringVar(&o.MaxSize, "max-size", "", "remove the least recently used until the cache holds at most this (e.g. 20G)")
	prune.Flags().IntVar(&o.Keep, "keep", 1, "always keep the steps of the last N builds of each image name")
	prune.Flags().BoolVar(&o.DryRun, "dry-run", false, "say what would be removed, remove nothing")
	prune.Flags().BoolVar(&o.NoWait, "no-wait", false, "fail at once when a build is running instead of waiting for it")
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Re-hash every cached layer and download; remove what is damaged (the next build makes it again)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			setup(c)
			return Verify(c.Context(), o)
		},
	}
	verify.Flags().BoolVar(&o.NoWait, "no-wait", false, "fail at once when a build is running instead of waiting for it")
	cmd.AddCommand(ls, prune, verify)
	return cmd
}

func open(ctx context.Context, o *Options) (*cache.Manager, error) {
	ws := o.workspace()
	m, err := cache.Open(ctx, ws)
	if err != nil {
		return nil, &imagecmd.UsageError{Err: fmt.Errorf("%w (is --image-cache right?)", err)}
	}
	return m, nil
}

// List prints what the cache holds.
func List(ctx context.Context, o *Options) error {
	m, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer m.Close()
	rep, err := m.List()
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(o.Out, "cache %s: %s held, %s of it used by no recorded build\n\n", o.workspace().Cache, units.Format(rep.Total), units.Format(rep.Unreferenced))
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tBUILDS\tSTEPS\tUNIQUE\tSHARED\tLAST USED")
	for _, u := range rep.Names {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", u.Name, u.Builds, u.Steps, units.Format(u.Unique), units.Format(u.Shared), u.LastUsed.Format("2006-01-02 15:04"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !o.Steps {
		return nil
	}
	fmt.Fprintln(o.Out)
	tw = tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tKIND\tSIZE\tLAST USED\tUSED BY")
	for _, e := range rep.Entries {
		name := e.Name
		if name == "" {
			name = e.ID[:12] + " (untagged)"
		}
		what := e.Kind
		if e.Phase != "" {
			what += " " + e.Phase
		}
		if e.InUse {
			what += " (in use)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, what, units.Format(e.Bytes), e.LastUsed.Format("2006-01-02 15:04"), strings.Join(e.UsedBy, ","))
	}
	return tw.Flush()
}

// Prune removes what the flags let go.
func Prune(ctx context.Context, o *Options) error {
	p := cache.Policy{OlderThan: o.OlderThan, Keep: o.Keep, DryRun: o.DryRun}
	if o.OlderThan < 0 {
		return &imagecmd.UsageError{Err: fmt.Errorf("--older-than %s is negative: give how long unused, e.g. 720h", o.OlderThan)}
	}
	if o.Keep < 0 {
		return &imagecmd.UsageError{Err: fmt.Errorf("--keep %d is negative: give how many recent builds of each image to keep (0 or more)", o.Keep)}
	}
	if o.MaxSize != "" {
		n, err := units.ParseBytes(o.MaxSize)
		if err != nil {
			return &imagecmd.UsageError{Err: fmt.Errorf("--max-size: %w", err)}
		}
		p.MaxBytes = n
	}
	if p.OlderThan == 0 && p.MaxBytes == 0 {
		return &imagecmd.UsageError{Err: errors.New("say what to prune: --older-than DURATION and/or --max-size SIZE")}
	}
	if p.Keep < 0 {
		return &imagecmd.UsageError{Err: fmt.Errorf("--keep %d: give 0 or more builds to keep per image", p.Keep)}
	}
	unlock, err := alone(ctx, o)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer m.Close()
	res, err := m.Prune(ctx, p)
	if err != nil {
		return err
	}
	verb := "removed"
	if o.DryRun {
		verb = "would remove"
	}
	for _, e := range res.Removed {
		name := e.Name
		if name == "" {
			name = e.ID[:12]
		}
		fmt.Fprintf(o.Out, "%s %s (%s, last used %s)\n", verb, name, units.Format(e.Bytes), e.LastUsed.Format("2006-01-02"))
	}
	fmt.Fprintf(o.Out, "builder: %s %d entries, %s; the cache holds %s (was %s); %d kept for the last builds\n",
		verb, len(res.Removed), units.Format(res.FreedBytes), units.Format(res.TotalAfter), units.Format(res.TotalBefore), res.KeptForBuild)
	return nil
}

// Verify re-hashes the cache.
func Verify(ctx context.Context, o *Options) error {
	unlock, err := alone(ctx, o)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := open(ctx, o)
	if err != nil {
		return err
	}
	defer m.Close()
	res, err := m.Verify(ctx, func(s string) { fmt.Fprintln(o.Out, s) })
	if err != nil {
		return err
	}
	if len(res.Damaged) == 0 {
		fmt.Fprintf(o.Out, "builder: %d layers and downloads checked, none damaged\n", res.Checked)
		return nil
	}
	fmt.Fprintf(o.Out, "builder: %d checked, %d damaged and removed (the next build makes them again)\n", res.Checked, len(res.Damaged))
	return nil
}

// alone takes the cache for prune or verify: no build runs meanwhile.
func alone(ctx context.Context, o *Options) (func(), error) {
	l, err := cache.LockAlone(ctx, o.workspace(), !o.NoWait, func(holder string) {
		fmt.Fprintln(o.Err, "builder: waiting for the running builds to end")
	})
	if err != nil {
		return nil, err
	}
	return func() { l.Unlock() }, nil
}
