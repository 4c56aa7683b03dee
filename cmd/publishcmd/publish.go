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
	"regexp"
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

	NoBootTest bool
	// Force publishes the file even when the name already has this very
	// content (boot test and upload included).
	Force        bool
	BootFirmware string
	// SecureBoot: the image boots through the signed shim; it is
	// boot-tested with Secure Boot enforced and published with the
	// properties that make the cloud boot it so.
	SecureBoot   bool
	BootTimeout  time.Duration
	SmokeTest    bool
	SmokeFlavor  string
	SmokeNetwork string
	SmokeConsole []string
	SmokeTimeout time.Duration
	Description  string

	// CleanupOrphans removes what crashed runs left (temporary uploads,
	// smoke-test servers) older than OlderThan, instead of publishing.
	CleanupOrphans bool
	OlderThan      time.Duration

	ActiveTimeout time.Duration
	LockDir       string
	LeaseTTL      time.Duration
	BootCache     string // where passed boot tests are remembered
	Report        string
}

// NewOptions returns Options with the command's defaults.
func NewOptions() *Options {
	return &Options{
		Visibility:    "public",
		Rotate:        "private",
		BootTimeout:   boottest.DefaultTimeout,
		SmokeTimeout:  15 * time.Minute,
		OlderThan:     publish.DefaultOrphanAge,
		ActiveTimeout: 10 * time.Minute,
		LockDir:       workspace.New("").PublishLocks(),
		LeaseTTL:      10 * time.Minute,
		BootCache:     workspace.New("").BootTest(),
	}
}

// NewCmdPublish returns the command; run replaces Run in tests.
func NewCmdPublish(run func(context.Context, *Options) error) *cobra.Command {
	opts := NewOptions()
	cmd := &cobra.Command{
		Use:   "publish IMAGE --name NAME | --cleanup-orphans",
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

With --smoke-test, between 2 and 4 the upload (still private) boots as a
server in the cloud's Nova: it must become ACTIVE and its console log must
show the guest up (a login prompt, cloud-init's final message, or
--smoke-console); the server is then deleted. A failure blocks the
promotion and removes the upload.

--cleanup-orphans (no IMAGE) removes what crashed runs left in the project:
images still under a temporary name (NAME.uploading-RUN) and smoke-test
servers (builder-smoke-RUN), untouched for --older-than. Only what carries
builder's marks (its name pattern and builder_* properties or metadata)
is touched; protected images are kept. Publish leases (".builder-lease
NAME") are builder's records: only a superseded generation not renewed for
longer than the lease's expiry goes.

At every moment an active, verified image is under NAME. Progress is kept
in the images' builder_* properties: running the same command again after
a crash or an interrupted upload finishes or undoes the half-done work.

Credentials: the OS_* variables of an openrc file, or --os-cloud NAME (or
OS_CLOUD) from clouds.yaml. OS_AUTH_TYPE=none with OS_IMAGE_URL talks to a
Glance without authentication. Secrets never appear in the output or the
report.`,
		Example: `  . ~/admin-openrc && builder publish debian.qcow2 --name "Debian 12"
  builder publish --os-cloud prod --name debian-12 --keep 3 --rotate rename debian.qcow2
  builder publish --dry-run --os-cloud prod --name debian-12 debian.qcow2
  builder publish --os-cloud prod --name debian-12 --smoke-test --smoke-flavor m1.small debian.qcow2
  builder publish --os-cloud prod --description "Debian 12, built {{.Date}}" --name debian-12 debian.qcow2
  builder publish --os-cloud prod --cleanup-orphans --older-than 12h`,
		Args: func(cmd *cobra.Command, args []string) error {
			if opts.CleanupOrphans {
				if len(args) != 0 {
					return &imagecmd.UsageError{Err: fmt.Errorf("--cleanup-orphans takes no IMAGE (got %d arguments): use builder publish --cleanup-orphans [--older-than 6h]", len(args))}
				}
				return nil
			}
			if len(args) != 1 {
				return &imagecmd.UsageError{Err: fmt.Errorf("expected one IMAGE argument, got %d: use builder publish IMAGE --name NAME", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Image = args[0]
			}
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
	f.BoolVar(&opts.Force, "force", false, "boot-test and upload the image even when the name already has this very content (otherwise: unchanged, nothing to do)")
	f.BoolVar(&opts.SecureBoot, "secure-boot", false, "the image boots through the signed shim (builder's Debian UEFI images do): boot-test it with Secure Boot enforced, publish it with os_secure_boot=required, hw_firmware_type=uefi, hw_machine_type=q35")
	f.StringVar(&opts.BootFirmware, "boot-firmware", "", "firmware for the boot test: bios or uefi (default: uefi for UEFI-only disks, else bios)")
	f.DurationVar(&opts.BootTimeout, "boot-timeout", opts.BootTimeout, "limit for the boot test")
	f.BoolVar(&opts.SmokeTest, "smoke-test", false, "boot the upload as a server in the cloud's Nova before promoting it (it must come up)")
	f.StringVar(&opts.SmokeFlavor, "smoke-flavor", "", "flavor of the smoke-test server (default: the smallest that fits the image)")
	f.StringVar(&opts.SmokeNetwork, "smoke-network", "", "network ID for the smoke-test server (default: none; it boots from a config drive)")
	f.StringArrayVar(&opts.SmokeConsole, "smoke-console", nil, "`REGEXP` on the console log that says the guest came up (repeatable; default: a login prompt, cloud-init's final message)")
	f.DurationVar(&opts.SmokeTimeout, "smoke-timeout", opts.SmokeTimeout, "limit for the smoke-test server to become ACTIVE, and then for its console")
	f.StringVar(&opts.Description, "description", "", "description property, a template: {{.Date}} is the build date, also {{.Name}} {{.OSDistro}} {{.OSVersion}} {{.Elements}}")
	f.BoolVar(&opts.CleanupOrphans, "cleanup-orphans", false, "remove temporary uploads and smoke-test servers crashed runs left (no IMAGE)")
	f.DurationVar(&opts.OlderThan, "older-than", opts.OlderThan, "with --cleanup-orphans: only what was untouched for this long")
	f.DurationVar(&opts.ActiveTimeout, "active-timeout", opts.ActiveTimeout, "how long Glance may take to mark the upload active")
	f.StringVar(&opts.LockDir, "lock-dir", opts.LockDir, "directory of the locks that keep two publishes of one name on this host apart")
	f.DurationVar(&opts.LeaseTTL, "lease-ttl", opts.LeaseTTL, "publishes of one name on different hosts take turns through a lease in Glance; a holder silent for this long is taken to have died")
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
	if o.CleanupOrphans {
		return runCleanup(ctx, o)
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
	var ce *publish.ConfigError
	if errors.As(err, &ce) {
		return &imagecmd.UsageError{Err: err}
	}
	if err != nil {
		return err
	}
	if o.SmokeTest {
		if err := cloud.RequireCompute(); err != nil {
			return &imagecmd.UsageError{Err: err}
		}
	}

	li, warnings, err := publish.Inspect(ctx, o.Image, publish.InspectOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// The file given is not something Glance should get.
		return &imagecmd.UsageError{Err: err}
	}
	for _, w := range warnings {
		fmt.Fprintln(errOut, "publish: warning: "+w)
	}
	// The name has this very content already: nothing to test or send.
	current := ""
	if !o.Force {
		if current, err = cloud.Current(ctx, li, req); err != nil {
			return err
		}
	}
	switch {
	case o.DryRun:
		fmt.Fprintln(out, "publish: dry run: no boot test")
	case current != "":
		fmt.Fprintf(out, "publish: unchanged: %q is already this file (%s): no boot test, no upload (--force publishes it again)\n", req.Name, current)
	case o.NoBootTest:
		fmt.Fprintln(out, "publish: boot test skipped (--no-boot-test)")
	default:
		if err := BootTest(ctx, li, o.BootFirmware, o.SecureBoot, o.BootTimeout, o.BootCache, errOut); err != nil {
			return err
		}
	}
	res, err = cloud.Publish(ctx, li, req)
	return err
}

// BootTest boots the image locally with builder's boot test and returns an
// error naming the reason when it does not come up. UEFI-only disks boot
// with OVMF unless firmware says otherwise.
// A pass is remembered by the image's content in passDir: the same bytes
// are not booted again.
func BootTest(ctx context.Context, li *publish.LocalImage, firmware string, secureBoot bool, timeout time.Duration, passDir string, progress io.Writer) error {
	// An image of another architecture (read from its programs) boots in
	// that architecture's QEMU.
	spec := boottest.Spec{Image: li.Path, Firmware: boottest.FirmwareFor(firmware, li.Firmware, secureBoot), SecureBoot: secureBoot, Arch: li.Arch, Timeout: timeout, Progress: progress}
	verdict := boottest.Conditions(spec)
	if p, ok := boottest.PassedBefore(passDir, li.SHA512, verdict, version.Version()); ok {
		fmt.Fprintf(progress, "publish: boot test passed before for this very file (%s): %s\n", p.At.Format(time.RFC3339), p.Summary)
		return nil
	}
	rep, err := boottest.Run(ctx, spec)
	if err != nil {
		return fmt.Errorf("boot test of %s (%s) failed: %w; nothing was uploaded (fix the image, or --no-boot-test to publish it untested)", li.Path, spec.Firmware, err)
	}
	fmt.Fprintln(progress, "publish: boot test passed: "+rep.Summary())
	if err := boottest.RememberPass(passDir, li.SHA512, verdict, version.Version(), rep); err != nil && passDir != "" {
		fmt.Fprintf(progress, "publish: note: the pass is not remembered: %v\n", err)
	}
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
		LeaseTTL:      o.LeaseTTL,
		Force:         o.Force,
		Description:   o.Description,
		Meta: publish.Metadata{
			OSDistro:       o.OSDistro,
			OSVersion:      o.OSVersion,
			Elements:       o.Elements,
			BuilderVersion: version.Version(),
		},
	}
	if o.SecureBoot {
		req.Meta.Firmware = &publish.FirmwareFacts{UEFI: true, SecureBoot: true}
	}
	if o.Name == "" {
		return req, &imagecmd.UsageError{Err: errors.New("--name is required: the public image name, e.g. --name \"Debian 12\"")}
	}
	props, err := ParseProperties(o.Properties)
	if err != nil {
		return req, err
	}
	req.Properties = props
	// --name, --visibility, --rotate, --keep and --property, before any
	// cloud is asked or the image read.
	if err := req.Validate(); err != nil {
		return req, &imagecmd.UsageError{Err: err}
	}
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
	if err := publish.ParseDescription(o.Description); err != nil {
		return req, &imagecmd.UsageError{Err: fmt.Errorf("--description: %w", err)}
	}
	smokeSet := o.SmokeFlavor != "" || o.SmokeNetwork != "" || len(o.SmokeConsole) > 0
	if smokeSet && !o.SmokeTest {
		return req, &imagecmd.UsageError{Err: errors.New("--smoke-flavor, --smoke-network and --smoke-console set up --smoke-test: add --smoke-test")}
	}
	if o.SmokeTest {
		req.SmokeTest = &publish.SmokeTest{Flavor: o.SmokeFlavor, Network: o.SmokeNetwork, Console: o.SmokeConsole, Timeout: o.SmokeTimeout}
		for _, p := range o.SmokeConsole {
			if _, err := regexp.Compile(p); err != nil {
				return req, &imagecmd.UsageError{Err: fmt.Errorf("--smoke-console %q: %v", p, err)}
			}
		}
	}
	return req, nil
}

// runCleanup is --cleanup-orphans.
func runCleanup(ctx context.Context, o *Options) (err error) {
	if o.Name != "" || o.Image != "" {
		return &imagecmd.UsageError{Err: errors.New("--cleanup-orphans cleans the whole project: drop --name and IMAGE")}
	}
	if o.OlderThan <= 0 {
		return &imagecmd.UsageError{Err: fmt.Errorf("--older-than %s: give a positive duration such as 6h", o.OlderThan)}
	}
	env := publish.EnvMap(o.Environ)
	red := redact.New(env["OS_PASSWORD"], env["OS_TOKEN"], env["OS_AUTH_TOKEN"], env["OS_APPLICATION_CREDENTIAL_SECRET"])
	out := red.Writer(o.Out)
	defer out.Flush()
	var res *publish.CleanupResult
	defer func() {
		if o.Report != "" {
			b, jerr := json.MarshalIndent(struct {
				*publish.CleanupResult
				OK    bool   `json:"ok"`
				Error string `json:"error,omitempty"`
			}{res, err == nil, errText(err)}, "", "  ")
			if jerr == nil {
				jerr = os.WriteFile(o.Report, []byte(red.String(string(b))+"\n"), 0o644)
			}
			if jerr != nil && err == nil {
				err = fmt.Errorf("--report %s: %w", o.Report, jerr)
			}
		}
		err = red.Error(err)
	}()
	cloud, err := publish.Connect(ctx, publish.Credentials{Cloud: o.Cloud, Env: env, UserAgent: "builder/" + version.Version(), Redact: red})
	if err != nil {
		return err
	}
	res, err = cloud.CleanupOrphans(ctx, publish.CleanupRequest{OlderThan: o.OlderThan, DryRun: o.DryRun, Out: out})
	if err != nil {
		return err
	}
	removed := 0
	for _, ch := range res.Changes {
		if strings.HasPrefix(ch.Action, "delete-orphan") {
			removed++
		}
	}
	verb := "removed"
	if o.DryRun {
		verb = "would remove"
	}
	where := "temporary uploads"
	if res.Servers {
		where += " and smoke-test servers"
	} else {
		where += " (no Nova in the catalog: no servers to look at)"
	}
	fmt.Fprintf(out, "cleanup: %s %d orphans in %s, of %s untouched for %s\n", verb, removed, res.Cloud, where, o.OlderThan)
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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
