// Package boottest implements `builder boot-test IMAGE`: boot a disk image
// under QEMU and succeed only when it really came up (login prompt,
// cloud-init finished, probe facts checked). The work is done by the
// library package builder/boottest; this package turns flags into a Spec and
// the result into output and an exit code.
//
// Wiring into the root command:
//
//	root.AddCommand(boottest.NewCmdBootTest(nil))
//	err := root.ExecuteContext(ctx) // ctx cancelled on SIGINT/SIGTERM
//	var ee *boottest.ExitError
//	if errors.As(err, &ee) {
//		os.Exit(ee.Code) // already printed: do not print err again
//	}
//
// Exit codes: 0 pass, 1 the boot failed (or could not be run), 2 bad usage
// (missing image, unknown flag value, image with a backing file, missing
// firmware or tools). Every non-zero exit is an *ExitError whose message
// this command has already printed; cobra's own error printing is silenced
// for this command.
package boottestcmd

import (
	"bufio"
	"builder/internal/workspace"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"builder/boottest"
	"builder/publish"
)

// ExitError carries the process exit code of a failed boot-test. Its
// message has already been printed to Options.ErrOut or Options.Out.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Options are the command's inputs. Tests fill them and call Run directly.
type Options struct {
	// Out receives the final PASS/FAIL line; ErrOut progress, the live
	// console (--verbose) and usage errors. nil means os.Stdout/os.Stderr.
	Out, ErrOut io.Writer

	Image            string
	Kernel           string // a ramdisk: --kernel and --initramfs, or NAME
	Initramfs        string
	Append           string
	Ready            string
	Firmware         string // "" is bios, or uefi with SecureBoot or arm64
	SecureBoot       bool
	Arch             string // "": read from the image (amd64 when it cannot be)
	Accel            string
	Timeout          time.Duration
	KVMProbe         time.Duration
	Grow             string // size: "2G", "512MiB", "0", bytes
	Memory           int
	CPUs             int
	User             string
	SSHKeyFiles      []string
	ExpectCmdline    string
	ExpectGrow       bool
	RequireCloudInit bool
	NoFailedUnits    bool
	AllowBacking     bool
	ShowPassword     bool
	CacheDir         string
	ConsoleLog       string
	Report           string
	Verbose          bool
}

// NewOptions returns Options with the command's defaults.
func NewOptions() *Options {
	return &Options{
		Accel:      "auto",
		Timeout:    boottest.DefaultTimeout,
		KVMProbe:   boottest.DefaultKVMProbe,
		Grow:       "2G",
		Memory:     boottest.DefaultMemory,
		Ready:      "marker",
		User:       boottest.DefaultUser,
		ExpectGrow: true,
		CacheDir:   workspace.DefaultCache(),
	}
}

// NewCmdBootTest returns the boot-test command. run replaces Run (tests use
// it to capture Options); nil means Run.
func NewCmdBootTest(run func(context.Context, *Options) error) *cobra.Command {
	opts := NewOptions()
	cmd := &cobra.Command{
		Use:   "boot-test IMAGE | NAME | --kernel K --initramfs I",
		Short: "Boot a disk image under QEMU and check that it really came up",
		Long: `Boot IMAGE under QEMU without modifying it (a temporary qcow2 overlay, larger
than the image by --grow) and pass only when the serial console shows a login
prompt, cloud-init finished (when the image has cloud-init), and the probe run
by cloud-init reports the expected kernel command line, a grown root
filesystem and the test user.

A NoCloud seed (FAT, label CIDATA) creates the user (--user) with a random
password, passwordless sudo and --ssh-key keys. KVM is used when it works;
when the guest kernel does not start within --kvm-probe the run restarts
with TCG and caches that verdict in --cache-dir.

A ramdisk (builder ramdisk -o NAME: NAME.kernel and NAME.initramfs, or
--kernel and --initramfs) boots with QEMU's -kernel and -initrd, the serial
console on the kernel command line (--append adds to it), memory sized from
the initramfs and a NIC on QEMU's user network; it passes on the ramdisk's
readiness line ("builder-ramdisk: ready: network up on ..."), or on a login
prompt with --ready login. There is no disk, seed or cloud-init.

Exit status: 0 pass, 1 fail, 2 bad usage.`,
		Example: `  builder boot-test out/debian.qcow2
  builder boot-test --firmware uefi --expect-cmdline "console=ttyS0,115200" --report boot.json out/debian.qcow2
  builder boot-test --accel tcg --timeout 15m --console-log console.txt -v out/debian.qcow2
  builder boot-test out/deploy          # out/deploy.kernel + out/deploy.initramfs`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && (opts.Kernel != "" || opts.Initramfs != "") {
				return nil // a ramdisk given by its files
			}
			if len(args) != 1 {
				msg := fmt.Sprintf("expected one IMAGE argument, got %d: use builder boot-test IMAGE [flags]", len(args))
				fmt.Fprintln(cmd.ErrOrStderr(), "boot-test: error: "+msg)
				return &ExitError{Code: 2, Err: errors.New(msg)}
			}
			return nil
		},
		// Errors are printed here, in one line, with the fix; cobra's
		// "Error: ..." plus usage dump would bury them.
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Image = args[0]
			}
			if !cmd.Flags().Changed("memory") && (opts.Kernel != "" || opts.Initramfs != "" || ramdiskPair(opts.Image) != "") {
				opts.Memory = 0 // sized from the initramfs
			}
			opts.Out, opts.ErrOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			// The root is expected to cancel on signals already; this makes
			// sure QEMU is killed even when it does not.
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if run != nil {
				return run(ctx, opts)
			}
			return Run(ctx, opts)
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "boot-test: error: %v (see builder boot-test --help)\n", err)
		return &ExitError{Code: 2, Err: err}
	})
	f := cmd.Flags()
	f.StringVar(&opts.Kernel, "kernel", "", "boot this kernel with --initramfs (a ramdisk) instead of a disk IMAGE; NAME alone finds NAME.kernel and NAME.initramfs")
	f.StringVar(&opts.Initramfs, "initramfs", "", "the ramdisk's initramfs, with --kernel")
	f.StringVar(&opts.Append, "append", "", "added to a ramdisk's kernel command line (after console=ttyS0)")
	f.StringVar(&opts.Ready, "ready", opts.Ready, "what a ramdisk boot waits for: marker (its \"builder-ramdisk: ready\" line, or DIB's \"network ready\") or login (a login prompt)")
	f.StringVar(&opts.Firmware, "firmware", opts.Firmware, "firmware: bios (SeaBIOS) or uefi (OVMF); default bios, uefi with --secure-boot or -a arm64")
	f.BoolVar(&opts.SecureBoot, "secure-boot", false, "boot with OVMF's Secure Boot firmware and Microsoft's keys (q35, SMM); pass only when the guest reports Secure Boot enabled")
	f.StringVarP(&opts.Arch, "arch", "a", opts.Arch, "the image's architecture: amd64, or arm64 (qemu-system-aarch64 with AAVMF, emulated); default: read from the image's programs, else amd64")
	f.StringVar(&opts.Accel, "accel", opts.Accel, "accelerator: auto (KVM if it works, else TCG), kvm or tcg")
	f.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "limit for the whole boot test")
	f.DurationVar(&opts.KVMProbe, "kvm-probe", opts.KVMProbe, "time KVM gets to start the guest kernel before falling back to TCG")
	f.StringVar(&opts.Grow, "grow", opts.Grow, "added to the image's size for the guest's disk (K/M/G/T, binary); 0 for none")
	f.IntVar(&opts.Memory, "memory", opts.Memory, "guest memory in MiB")
	f.IntVar(&opts.CPUs, "cpus", 0, "guest vCPUs (default: 1 under emulation, host cores up to 2 with KVM)")
	f.StringVar(&opts.User, "user", opts.User, "user created by cloud-init (random password, passwordless sudo)")
	f.StringArrayVar(&opts.SSHKeyFiles, "ssh-key", nil, "public key `FILE` for the user (repeatable)")
	f.StringVar(&opts.ExpectCmdline, "expect-cmdline", "", "text the guest's /proc/cmdline must contain, e.g. \"console=tty0 console=ttyS0,115200\"")
	f.BoolVar(&opts.ExpectGrow, "expect-grow", opts.ExpectGrow, "when the probe reports, require the root filesystem to fill >= 90% of its disk")
	f.BoolVar(&opts.RequireCloudInit, "require-cloud-init", false, "fail when cloud-init does not run")
	f.BoolVar(&opts.NoFailedUnits, "no-failed-units", false, "fail when systemd units failed")
	f.BoolVar(&opts.AllowBacking, "allow-backing", false, "accept an image that has a backing file of its own")
	f.BoolVar(&opts.ShowPassword, "show-password", false, "put the test user's password into the --report file (it is never printed)")
	f.StringVar(&opts.CacheDir, "cache-dir", opts.CacheDir, "cache directory (holds the KVM verdict)")
	f.StringVar(&opts.ConsoleLog, "console-log", "", "keep a copy of the raw serial console in `FILE`")
	f.StringVar(&opts.Report, "report", "", "write a JSON report to `FILE`")
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "show the serial console live (on stderr)")
	return cmd
}

// Run runs the boot test described by opts, prints progress and the final
// line, writes the report, and returns nil or an *ExitError.
func Run(ctx context.Context, opts *Options) error {
	out, errOut := opts.Out, opts.ErrOut
	if out == nil {
		out = os.Stdout
	}
	if errOut == nil {
		errOut = os.Stderr
	}
	usage := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintln(errOut, "boot-test: error: "+msg)
		return &ExitError{Code: 2, Err: errors.New(msg)}
	}
	if opts.Kernel == "" && opts.Initramfs == "" {
		if base := ramdiskPair(opts.Image); base != "" {
			opts.Kernel, opts.Initramfs, opts.Image = base+".kernel", base+".initramfs", ""
		}
	}
	ramdisk := opts.Kernel != "" || opts.Initramfs != ""
	if ramdisk && opts.Image != "" {
		return usage("give a disk IMAGE or --kernel and --initramfs, not both")
	}
	if ramdisk && (opts.Kernel == "" || opts.Initramfs == "") {
		return usage("a ramdisk boot needs both --kernel and --initramfs (or NAME, for NAME.kernel and NAME.initramfs)")
	}
	if opts.Image == "" && !ramdisk {
		return usage("no IMAGE given: use builder boot-test IMAGE [flags], or NAME / --kernel K --initramfs I for a ramdisk")
	}
	if ramdisk {
		// The disk checks below do not apply.
	} else if st, err := os.Stat(opts.Image); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return usage("image %s does not exist: pass the path of a disk image built by builder (qcow2 or raw)", opts.Image)
		}
		return usage("cannot read image %s: %v", opts.Image, err)
	} else if st.IsDir() {
		return usage("image %s is a directory: pass the disk image file inside it", opts.Image)
	}
	// The library reads zero as "the default"; a negative value is a typo.
	switch {
	case opts.Timeout < 0:
		return usage("--timeout %s is negative: give a duration such as 15m", opts.Timeout)
	case opts.KVMProbe < 0:
		return usage("--kvm-probe %s is negative: give a duration such as 20s", opts.KVMProbe)
	case opts.Memory < 0:
		return usage("--memory %d is negative: give MiB, e.g. --memory 2048", opts.Memory)
	case opts.CPUs < 0:
		return usage("--cpus %d is negative: give a number of vCPUs, or leave it out", opts.CPUs)
	}
	grow, err := ParseSize(opts.Grow)
	if err != nil {
		return usage("--grow %q: %v (use e.g. 2G, 512M or 0)", opts.Grow, err)
	}
	if grow == 0 {
		grow = -1 // Spec: negative means no growth, 0 means the default
	}
	if opts.ShowPassword && opts.Report == "" {
		return usage("--show-password only puts the password into the report: add --report FILE")
	}
	var keys []string
	for _, f := range opts.SSHKeyFiles {
		k, err := readPublicKeys(f)
		if err != nil {
			return usage("%v", err)
		}
		keys = append(keys, k...)
	}

	if opts.Arch == "" && !ramdisk {
		// An arm64 image boots in qemu-system-aarch64 without being told;
		// one whose programs cannot be read boots as amd64, as before.
		if arch, err := publish.DetectArch(ctx, opts.Image, publish.InspectOptions{}); err == nil && arch != "" {
			if arch != "amd64" {
				fmt.Fprintf(errOut, "boot-test: %s image (read from its programs; -a says otherwise)\n", arch)
			}
			opts.Arch = arch
		}
	}

	spec := boottest.Spec{
		Image:             opts.Image,
		Kernel:            opts.Kernel,
		Initramfs:         opts.Initramfs,
		Append:            opts.Append,
		Ready:             opts.Ready,
		Firmware:          opts.Firmware,
		SecureBoot:        opts.SecureBoot,
		Arch:              opts.Arch,
		Accel:             opts.Accel,
		Timeout:           opts.Timeout,
		KVMProbe:          opts.KVMProbe,
		Grow:              grow,
		Memory:            opts.Memory,
		CPUs:              opts.CPUs,
		User:              opts.User,
		SSHKeys:           keys,
		ExpectCmdline:     opts.ExpectCmdline,
		RequireCloudInit:  opts.RequireCloudInit,
		SkipGrowCheck:     !opts.ExpectGrow,
		FailOnFailedUnits: opts.NoFailedUnits,
		AllowBacking:      opts.AllowBacking,
		ShowPassword:      opts.ShowPassword,
		CacheDir:          opts.CacheDir,
		ConsoleLog:        opts.ConsoleLog,
		Progress:          errOut,
	}
	if opts.Verbose {
		spec.Verbose = errOut
	}
	rep, runErr := boottest.Run(ctx, spec)

	// The report is written whatever happened, so that a caller can always
	// read passed/reason from it.
	if opts.Report != "" && rep != nil {
		if err := rep.WriteFile(opts.Report); err != nil {
			fmt.Fprintln(errOut, "boot-test: error: "+err.Error())
			if runErr == nil {
				runErr = err
			}
		}
	}
	var ue *boottest.UsageError
	if errors.As(runErr, &ue) {
		fmt.Fprintln(errOut, "boot-test: error: "+ue.Error())
		return &ExitError{Code: 2, Err: runErr}
	}
	var bf *boottest.BootFailure
	switch {
	case runErr == nil:
		fmt.Fprintln(out, "boot-test: "+rep.Summary())
		return nil
	case errors.As(runErr, &bf) && rep != nil:
		fmt.Fprintln(out, "boot-test: "+rep.Summary())
	case rep != nil && rep.Passed:
		// Passed, but something went wrong afterwards (cleanup, report).
		fmt.Fprintln(out, "boot-test: "+rep.Summary())
		fmt.Fprintln(errOut, "boot-test: error: "+runErr.Error())
	default:
		secs := 0.0
		if rep != nil {
			secs = rep.Seconds
		}
		fmt.Fprintf(out, "boot-test: FAIL after %d s: %v\n", int(secs+0.5), runErr)
	}
	return &ExitError{Code: 1, Err: runErr}
}

// readPublicKeys reads an authorized_keys-style file: one key per line,
// blank lines and # comments skipped. A private key is refused, because it
// would be copied into the seed.
func readPublicKeys(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("ssh key file %s does not exist: pass a public key such as ~/.ssh/id_ed25519.pub", path)
		}
		return nil, fmt.Errorf("ssh key file %s: %w", path, err)
	}
	if strings.Contains(string(b), "PRIVATE KEY") {
		return nil, fmt.Errorf("ssh key file %s holds a private key: pass the .pub file", path)
	}
	var keys []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		keys = append(keys, l)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("ssh key file %s has no keys", path)
	}
	return keys, nil
}

// ParseSize parses a size with an optional binary unit: "2G", "2GiB",
// "512M", "1.5G", "1048576", "0". Units K, M, G, T are powers of 1024.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	upper := strings.ToUpper(t)
	upper = strings.TrimSuffix(upper, "IB")
	upper = strings.TrimSuffix(upper, "B")
	mult := int64(1)
	if n := len(upper); n > 0 {
		switch upper[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			upper = upper[:n-1]
		}
	}
	if upper == "" {
		return 0, fmt.Errorf("no number in %q", s)
	}
	if i, err := strconv.ParseInt(upper, 10, 64); err == nil {
		if i < 0 {
			return 0, fmt.Errorf("negative size %q", s)
		}
		if i > (1<<62)/mult {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return i * mult, nil
	}
	f, err := strconv.ParseFloat(upper, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return int64(f * float64(mult)), nil
}

// ramdiskPair returns NAME when arg names a ramdisk that `builder ramdisk
// -o NAME` wrote: arg is NAME, NAME.kernel or NAME.initramfs, and both
// NAME.kernel and NAME.initramfs exist (and arg is not a disk image).
func ramdiskPair(arg string) string {
	if arg == "" {
		return ""
	}
	base := arg
	if st, err := os.Stat(arg); err == nil && st.Mode().IsRegular() {
		b, ok := strings.CutSuffix(arg, ".kernel")
		if !ok {
			b, ok = strings.CutSuffix(arg, ".initramfs")
		}
		if !ok {
			return "" // a disk image
		}
		base = b
	}
	for _, ext := range []string{".kernel", ".initramfs"} {
		if st, err := os.Stat(base + ext); err != nil || !st.Mode().IsRegular() {
			return ""
		}
	}
	return base
}
