// Package pipelinecmd is `builder pipeline run FILE`: build, boot-test and
// publish every image of a pipeline file (see builder/pipeline), the job a
// cron entry or a systemd timer runs (hack/pipeline/).
package pipelinecmd

import (
	"builder/internal/redact"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.podman.io/storage/pkg/unshare"

	"builder/cmd/imagecmd"
	"builder/pipeline"
)

// Options are the inputs of `pipeline run`. Tests fill them and call Run.
type Options struct {
	// Out receives progress and the summary table, redacted; nil means
	// os.Stdout.
	Out io.Writer
	// Environ is the environment (nil: os.Environ()).
	Environ []string

	File          string
	Only          []string
	Shard         string
	CacheFrom     []string
	CacheTo       string
	Group         string
	StopOnFailure bool
	Jobs          int
	Wait          bool
	DryRun        bool
	Force         bool
	ImageCache    string
	OutputDir     string
	Report        string
	Verbose       bool

	// Steps replaces parts of the pipeline in unit tests.
	Steps pipeline.Steps
}

// NewCmdPipeline returns `pipeline` with its `run` subcommand; run
// replaces Run in tests.
func NewCmdPipeline(run func(context.Context, *Options) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Build, boot-test and publish the images of a pipeline file",
	}
	cmd.AddCommand(newCmdRun(run), newCmdPlan(nil))
	return cmd
}

func newCmdRun(run func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{}
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Build, boot-test and publish every image of FILE",
		Long: `Run the pipeline in FILE (YAML): for each image, build it, boot-test it and
publish it to the clouds it names, one image after the other. A failing
image does not stop the others unless --stop-on-failure. The run ends with
a summary table and exits non-zero when any image failed.

Each image is built under a lock in the image cache: when another run
(an overlapping cron job) holds it, the image is skipped and the summary
says so, or, with --wait, the run waits for it.

FILE:
  defaults:
    image_cache: /var/cache/builder
    output_dir: images              # relative to FILE
    publish: {clouds: [prod], visibility: public, keep: 3}
  images:
    - name: debian-12
      elements: [debian, vm]
      packages: [vim]
      variables: {DIB_RELEASE: bookworm}
      size: 4
      formats: [qcow2]
      boot_test: {firmware: bios, timeout: 15m}     # or false
      publish: {name: "Debian 12", rotate: rename}

In publish.clouds, "env" means the OS_* variables of the environment; other
names are clouds.yaml entries.

An image can be downloaded instead of built (source: {url, checksum:
sha256:HEX} or {url, checksums: the distribution's checksums file, and
signature: and keyring: where it signs it}); convert: gives qemu-img
options for the outputs
(compat=0.10, compression_type=zlib); publish.description is a template
("Debian 12, built {{.Date}}"); publish.smoke_test: true boots the upload
in the cloud's Nova before promoting it.

schedule: names groups of clouds, each with its images and settings;
--group NAME runs one (a cron entry or timer per group):
  schedule:
    production: {clouds: [prod], convert: [compat=0.10], publish: {keep: 3, smoke_test: true}}
    development: {clouds: [dev], images: [debian-12], publish: {visibility: private}}

Every run first removes from its clouds what crashed runs left: temporary
uploads and smoke-test servers older than defaults.cleanup_orphans (6h;
false turns it off).

Across runners (a CI matrix, a Kubernetes Indexed Job): --shard I/N runs
the images whose position among the sorted names is I modulo N (I from 0),
--only NAME one image; with --cache-from/--cache-to the runners share
their steps through a registry. builder pipeline plan lists the images
with their index, or writes the Kubernetes Job.`,
		Example: `  builder pipeline run /etc/builder/pipeline.yaml
  builder pipeline run --only debian-12 --wait --report /var/log/builder/last.json pipeline.yaml
  builder pipeline run --group production /etc/builder/pipeline.yaml
  builder pipeline run --shard 1/4 --cache-from reg.example.com/builder/cache --cache-to reg.example.com/builder/cache pipeline.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &imagecmd.UsageError{Err: fmt.Errorf("expected one pipeline FILE, got %d arguments: use builder pipeline run FILE", len(args))}
			}
			return nil
		},
		PreRun: func(cmd *cobra.Command, args []string) {
			// Builds need the image files' owners: not root, continue in a
			// user namespace with the subordinate ids, as builder image does.
			unshare.MaybeReexecUsingUserNamespace(false)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			opts.Out = cmd.OutOrStdout()
			if run != nil {
				return run(cmd.Context(), opts)
			}
			return Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&opts.Only, "only", nil, "run only these images (comma separated names; repeatable)")
	f.StringVar(&opts.Shard, "shard", "", "run this runner's part `I/N` of the images: those whose position among the sorted names is I modulo N (0 <= I < N)")
	f.StringSliceVar(&opts.CacheFrom, "cache-from", nil, "registry repositories (REGISTRY/REPO) to take cached steps from, for every image (over the file's cache_from)")
	f.StringVar(&opts.CacheTo, "cache-to", "", "registry repository (REGISTRY/REPO) to push every step to, for every image (over the file's cache_to)")
	f.StringVar(&opts.Group, "group", "", "run the schedule group `NAME` of the file: its images, to its clouds, with its settings")
	f.BoolVar(&opts.StopOnFailure, "stop-on-failure", false, "leave the remaining images out after the first failure")
	f.IntVarP(&opts.Jobs, "jobs", "j", 0, "images built at once (default: one per 2 cores and 4 GiB of available memory); their common steps are built once")
	f.BoolVar(&opts.Wait, "wait", false, "wait for an image another run is working on, instead of skipping it")
	f.BoolVar(&opts.DryRun, "dry-run", false, "check FILE and print what would be built and published")
	f.BoolVar(&opts.Force, "force", false, "boot-test and publish images even when a cloud has their very content under their name already")
	f.StringVar(&opts.ImageCache, "image-cache", "", "image cache (default: the file's image_cache, DIB_IMAGE_CACHE or ~/.cache/image-create)")
	f.StringVar(&opts.OutputDir, "output-dir", "", "where the images are written (default: the file's output_dir, or its directory)")
	f.StringVar(&opts.Report, "report", "", "write the summary as JSON to `FILE` (without secrets)")
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "show the output of every hook")
	return cmd
}

// Run runs the pipeline and prints the summary. The error says how many
// images failed.
func Run(ctx context.Context, o *Options) (err error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	f, err := pipeline.Load(o.File)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return &imagecmd.UsageError{Err: fmt.Errorf("%w: give the path of a pipeline file you can read", err)}
		}
		return &imagecmd.UsageError{Err: fmt.Errorf("%w (fix the file; builder pipeline run --help shows its format)", err)}
	}
	var shard pipeline.Shard
	if o.Shard != "" {
		if shard, err = pipeline.ParseShard(o.Shard); err != nil {
			return &imagecmd.UsageError{Err: err}
		}
	}
	settings := map[string]string{}
	if len(o.CacheFrom) > 0 {
		settings["cache_from"] = strings.Join(o.CacheFrom, ",")
	}
	if o.CacheTo != "" {
		settings["cache_to"] = o.CacheTo
	}
	red := redact.New()
	out := red.Writer(o.Out)
	defer out.Flush()
	sum, err := pipeline.Run(ctx, f, pipeline.Options{
		Shard:         shard,
		Settings:      settings,
		ImageCache:    o.ImageCache,
		OutputDir:     o.OutputDir,
		Only:          o.Only,
		Group:         o.Group,
		StopOnFailure: o.StopOnFailure,
		Jobs:          cmp.Or(o.Jobs, pipeline.DefaultJobs()),
		Wait:          o.Wait,
		DryRun:        o.DryRun,
		Force:         o.Force,
		Verbose:       o.Verbose,
		Environ:       o.Environ,
		Out:           out,
		Redact:        red,
		Steps:         o.Steps,
	})
	if sum == nil {
		return &imagecmd.UsageError{Err: err}
	}
	fmt.Fprintln(out)
	sum.WriteTable(out)
	if o.Report != "" {
		if rerr := sum.WriteJSON(o.Report, red); rerr != nil && err == nil {
			err = rerr
		}
	}
	return red.Error(err)
}
