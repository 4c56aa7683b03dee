// Package publishcmd is `builder publish IMAGE --name NAME`: boot-test an image
// locally, upload it to OpenStack Glance under a temporary private name,
// verify it and give it the public name, retiring the images that had it.
// The work is done by the library package builder/publish; this package
// turns flags into a Request and the result into output.
package publishcmd

import (
	"builder/internal/redact"
	"builder/internal/version"
	"builder/internal/workspace"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"builder/boottest"
	"builder/cmd/imagecmd"
	"builder/publish"
)

// Options are the command's inputs. Tests fill them and call Run.
type Options struct {
	// Out receives progress and the result; ErrOut warnings. Both pass
	// through the credentials' redactor. nil means os.Stdout/os.Stderr.
	Out, ErrOut io.Writer
	// Environ is the environment the OS_* variables come from (nil:
	// os.Environ()).
	Environ []string

	Image      string
	Name       string
	Cloud      string // --os-cloud
	Visibility string
	Rotate     string
	Keep       int
	Properties []string // key=value
	OSDistro   string
	OSVersion  string
	Elements   []string
	BuildDate  string
	DryRun     bool

	NoBootTest   bool
	BootFirmware string
	BootTimeout  time.Duration
	SmokeTest    bool

	ActiveTimeout time.Duration
	LockDir       string
	Report        string
}

// NewOptions returns Options with the command's defaults.
func NewOptions() *Options {
	return &Options{
		Visibility:    "public",
		Rotate:        "private",
		BootTimeout:   boottest.DefaultTimeout,
		ActiveTimeout: 10 * time.Minute,
		LockDir:       workspace.New("").PublishLocks(),
	}
}

// NewCmdPublish returns the command; run replaces Run in tests.
func NewCmdPublish(run func(context.Context, *Options) error) *cobra.Command {
	opts := NewOptions()
	cmd := &cobra.Command{
		Use:   "publish IMAGE --name NAME",
		Short: "Boot-test an image and publish it to OpenStack Glance under a public name",
		Long: `Publish IMAGE to OpenStack Glance as NAME, safely:

  1. boot-test it locally (builder boot-test; --no-boot-test skips it);
  2. upload it under a temporary private name, wait until Glance marks it
     active and check Glance's recorded hash against the file;
  3. set its properties (os_distro, os_version, hw_firmware_type=uefi for
     UEFI-only disks, min_disk, build date, elements, builder version,
     --property) and its disk_format from the file's real format;
  4. give it NAME and --visibility; the images that had NAME (same owner)
     then become private, or are renamed "NAME (date)" with --rotate rename;
  5. delete versions beyond --keep, oldest first, never a protected one.

At every moment an active, verified image is under NAME. Progress is kept
in the images' builder_* properties: running the same command again after
a crash or an interrupted upload finishes or undoes the half-done work.

Credentials: the OS_* variables of an openrc file, or --os-cloud NAME (or
OS_CLOUD) from clouds.yaml. OS_AUTH_TYPE=none with OS_IMAGE_URL talks to a
Glance without authentication. Secrets never appear in the output or the
report.`,
		Example: `  . ~/admin-openrc && builder publish debian.qcow2 --name "Debian 12"
  builder publish --os-cloud prod --name debian-12 --keep 3 --rotate rename debian.qcow2
  builder publish --dry-run --os-cloud prod --name debian-12 debian.qcow2`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &imagecmd.UsageError{Err: fmt.Errorf("expected one IMAGE argument, got %d: use builder publish IMAGE --name NAME", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Image = args[0]
			opts.Out, opts.ErrOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if run != nil {
				return run(cmd.Context(), opts)
			}
			return Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", "", "public image name (required)")
	f.StringVar(&opts.Cloud, "os-cloud", "", "cloud in clouds.yaml (default OS_CLOUD; without either, the OS_* variables)")
	f.StringVar(&opts.Visibility, "visibility", opts.Visibility, "visibility of the new image: public, private, shared or community")
	f.StringVar(&opts.Rotate, "rotate", opts.Rotate, "what happens to the images that had the name: private, or rename (\"NAME (date)\")")
	f.IntVar(&opts.Keep, "keep", 0, "versions to keep, the new one included; older ones are deleted (0 keeps all)")
	f.StringArrayVar(&opts.Properties, "property", nil, "extra image property `key=value` (repeatable)")
	f.StringVar(&opts.OSDistro, "os-distro", "", "os_distro property (default: from the image's os-release)")
	f.StringVar(&opts.OSVersion, "os-version", "", "os_version property (default: from the image's os-release)")
	f.StringSliceVar(&opts.Elements, "elements", nil, "elements the image was built from, for the builder_elements property")
	f.StringVar(&opts.BuildDate, "build-date", "", "build date (RFC 3339; default: the file's modification time)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print what would change in Glance and change nothing (no boot test)")
	f.BoolVar(&opts.NoBootTest, "no-boot-test", false, "do not boot-test the image before uploading it")
	f.StringVar(&opts.BootFirmware, "boot-firmware", "", "firmware for the boot test: bios or uefi (default: uefi for UEFI-only disks, else bios)")
	f.DurationVar(&opts.BootTimeout, "boot-timeout", opts.BootTimeout, "limit for the boot test")
	f.BoolVar(&opts.SmokeTest, "smoke-test", false, "also boot an instance in the cloud (needs Nova)")
	f.DurationVar(&opts.ActiveTimeout, "active-timeout", opts.ActiveTimeout, "how long Glance may take to mark the upload active")
	f.StringVar(&opts.LockDir, "lock-dir", opts.LockDir, "directory of the locks that keep two publishes of one name on this host apart")
	f.StringVar(&opts.Report, "report", "", "write what was done as JSON to `FILE` (without secrets)")
	return cmd
}

// Run publishes the image described by opts.
func Run(ctx context.Context, o *Options) (err error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.ErrOut == nil {
		o.ErrOut = os.Stderr
	}
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	req, err := o.request()
	if err != nil {
		return err
	}
	env := publish.EnvMap(o.Environ)
	// Connect adds what it learns (clouds.yaml secrets, the token) to this
	// redactor, which already guards every writer and the report.
	red := redact.New(env["OS_PASSWORD"], env["OS_TOKEN"], env["OS_AUTH_TOKEN"], env["OS_APPLICATION_CREDENTIAL_SECRET"])
	out, errOut := red.Writer(o.Out), red.Writer(o.ErrOut)
	defer out.Flush()
	defer errOut.Flush()
	req.Out = out

	var res *publish.Result
	var warnings []string
	defer func() {
		if o.Report != "" {
			if rerr := writeReport(o.Report, res, warnings, err, red); rerr != nil && err == nil {
				err = rerr
			}
		}
		err = red.Error(err)
	}()

	cloud, err := publish.Connect(ctx, publish.Credentials{Cloud: o.Cloud, Env: env, UserAgent: "builder/" + version.Version(), Redact: red})
	if err != nil {
		return err
	}
	if o.SmokeTest {
		if err := cloud.RequireCompute(); err != nil {
			return &imagecmd.UsageError{Err: err}
		}
		return &imagecmd.UsageError{Err: errors.New("--smoke-test: booting a test instance in the cloud is not implemented yet (it was built without a Nova to test against); drop --smoke-test")}
	}

	li, warnings, err := publish.Inspect(ctx, o.Image, publish.InspectOptions{})
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(errOut, "publish: warning: "+w)
	}
	switch {
	case o.DryRun:
		fmt.Fprintln(out, "publish: dry run: no boot test")
	case o.NoBootTest:
		fmt.Fprintln(out, "publish: boot test skipped (--no-boot-test)")
	default:
		if err := BootTest(ctx, li, o.BootFirmware, o.BootTimeout, errOut); err != nil {
			return err
		}
	}
	res, err = cloud.Publish(ctx, li, req)
	return err
}

// BootTest boots the image locally with builder's boot test and returns an
// error naming the reason when it does not come up. UEFI-only disks boot
// with OVMF unless firmware says otherwise.
func BootTest(ctx context.Context, li *publish.LocalImage, firmware string, timeout time.Duration, progress io.Writer) error {
	if firmware == "" {
		firmware = "bios"
		if li.Firmware == "uefi" {
			firmware = "uefi"
		}
	}
	rep, err := boottest.Run(ctx, boottest.Spec{Image: li.Path, Firmware: firmware, Timeout: timeout, Progress: progress})
	if err != nil {
		return fmt.Errorf("boot test of %s (%s) failed: %w; nothing was uploaded (fix the image, or --no-boot-test to publish it untested)", li.Path, firmware, err)
	}
	fmt.Fprintln(progress, "publish: boot test passed: "+rep.Summary())
	return nil
}

func (o *Options) request() (publish.Request, error) {
	req := publish.Request{
		Name:          o.Name,
		Visibility:    o.Visibility,
		Rotate:        o.Rotate,
		Keep:          o.Keep,
		DryRun:        o.DryRun,
		ActiveTimeout: o.ActiveTimeout,
		LockDir:       o.LockDir,
		Meta: publish.Metadata{
			OSDistro:       o.OSDistro,
			OSVersion:      o.OSVersion,
			Elements:       o.Elements,
			BuilderVersion: version.Version(),
		},
	}
	if o.Name == "" {
		return req, &imagecmd.UsageError{Err: errors.New("--name is required: the public image name, e.g. --name \"Debian 12\"")}
	}
	props, err := ParseProperties(o.Properties)
	if err != nil {
		return req, err
	}
	req.Properties = props
	if o.BuildDate != "" {
		t, err := time.Parse(time.RFC3339, o.BuildDate)
		if err != nil {
			return req, &imagecmd.UsageError{Err: fmt.Errorf("--build-date %q: use RFC 3339, e.g. 2026-11-26T10:00:00Z", o.BuildDate)}
		}
		req.Meta.BuildDate = t
	}
	switch o.BootFirmware {
	case "", "bios", "uefi":
	default:
		return req, &imagecmd.UsageError{Err: fmt.Errorf("--boot-firmware %q: use bios or uefi", o.BootFirmware)}
	}
	return req, nil
}

// ParseProperties turns key=value strings into a map.
func ParseProperties(kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, &imagecmd.UsageError{Err: fmt.Errorf("--property %q: use key=value", kv)}
		}
		m[k] = v
	}
	return m, nil
}

// report is the JSON written by --report.
type report struct {
	*publish.Result
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

func writeReport(path string, res *publish.Result, warnings []string, runErr error, red *redact.Redactor) error {
	r := report{Result: res, OK: runErr == nil, Warnings: warnings}
	if r.Result == nil {
		r.Result = &publish.Result{}
	}
	if runErr != nil {
		r.Error = runErr.Error()
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(red.String(string(b))+"\n"), 0o644); err != nil {
		return fmt.Errorf("--report %s: %w", path, err)
	}
	return nil
}
