package boottest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"builder/internal/fsutil"
)

// errBootTimeout is the cause of the run context when Spec.Timeout expires,
// to tell a timeout from an interruption.
var errBootTimeout = errors.New("boot-test timeout")

// Run boots s.Image and judges the boot. It always returns a Report
// (Passed is false on any error). The error is nil when the boot passed, a
// *BootFailure when QEMU ran but the guest did not pass (wrapping
// context.Canceled when interrupted), a *UsageError when the run could not
// start because of its input or missing host tools, and another error for
// unexpected failures. No QEMU outlives Run, and its temporary directory is
// removed, whatever the outcome.
func Run(ctx context.Context, spec Spec) (*Report, error) {
	started := time.Now()
	rep := &Report{Image: spec.Image, Firmware: spec.Firmware, User: spec.User}
	s, err := spec.withDefaults()
	if err == nil {
		rep.Image, rep.Firmware, rep.User = s.Image, firmwareName(s), s.User
		rep.Arch = s.Arch
		r := &runner{s: s, rep: rep}
		err = r.run(ctx)
	}
	rep.TotalSeconds = roundSecs(time.Since(started))
	if err != nil {
		rep.Passed = false
		if rep.Reason == "" {
			rep.Reason = err.Error()
		}
	}
	return rep, err
}

type runner struct {
	s    Spec
	rep  *Report
	info ImageInfo
	dir  string // run directory
	logs io.Writer
	proc *qemuProc // the QEMU running now, if any
}

func (r *runner) say(format string, args ...any) {
	if r.s.Progress != nil {
		fmt.Fprintf(r.s.Progress, "boot-test: "+format+"\n", args...)
	}
}

func (r *runner) run(ctx context.Context) (err error) {
	s := r.s
	if _, err := exec.LookPath(s.QEMU); err != nil {
		return &UsageError{Msg: fmt.Sprintf("%s not found: install qemu-system-x86 (Debian) or qemu-system-x86-core", s.QEMU), Err: err}
	}
	if _, err := exec.LookPath(s.QEMUImg); err != nil {
		return &UsageError{Msg: fmt.Sprintf("%s not found: install qemu-utils", s.QEMUImg), Err: err}
	}
	if s.isRamdisk() {
		r.rep.Kernel, r.rep.Initramfs, r.rep.Memory = s.Kernel, s.Initramfs, s.Memory
		if err := r.inspectRamdisk(); err != nil {
			return err
		}
	} else if err := r.inspectImage(ctx); err != nil {
		return err
	}
	var ovmfCode, ovmfVars string
	if s.Firmware == "uefi" {
		if ovmfCode, ovmfVars, err = findFirmware(s); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeoutCause(ctx, s.Timeout, errBootTimeout)
	defer cancel()

	if err := os.MkdirAll(s.WorkDir, 0o755); err != nil {
		return fmt.Errorf("creating work directory: %w", err)
	}
	for _, d := range sweepStale(s.WorkDir) {
		r.say("removed %s, left behind by a run that was killed", d)
	}
	r.dir, err = os.MkdirTemp(s.WorkDir, runDirPrefix+"*")
	if err != nil {
		return fmt.Errorf("creating run directory: %w", err)
	}
	defer func() {
		// Every exit path: kill QEMU, sweep for anything that still refers
		// to the run directory, remove the directory.
		var errs []error
		if r.proc != nil {
			errs = append(errs, r.proc.Kill())
		}
		errs = append(errs, killStragglers(r.dir))
		if rerr := os.RemoveAll(r.dir); rerr != nil {
			errs = append(errs, fmt.Errorf("removing run directory: %w", rerr))
		}
		if cerr := errors.Join(errs...); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
		}
	}()
	if err := writeOwner(r.dir); err != nil {
		return fmt.Errorf("writing run directory owner: %w", err)
	}

	if !s.isRamdisk() {
		if err := r.makeSeed(ctx); err != nil {
			return err
		}
	}

	logf, err := os.Create(filepath.Join(r.dir, "console.log"))
	if err != nil {
		return fmt.Errorf("creating console log: %w", err)
	}
	defer logf.Close()
	r.logs = logf
	if s.ConsoleLog != "" {
		cl, err := os.Create(s.ConsoleLog)
		if err != nil {
			return &UsageError{Msg: fmt.Sprintf("cannot write console log %s", s.ConsoleLog), Err: err}
		}
		defer cl.Close()
		r.logs = io.MultiWriter(logf, cl)
	}

	plan, key, cached, err := r.planAccel(ctx)
	if err != nil {
		return err
	}
	if plan.First == "kvm" || cached != nil || s.Accel == "kvm" {
		r.rep.KVM = &KVMReport{Cached: cached != nil}
	}
	if plan.Note != "" {
		note := plan.Note
		if cached != nil && !cached.Works && plan.First == "tcg" {
			note += " (delete " + verdictPath(s.CacheDir) + " to probe again)"
		}
		r.say("accel %s: %s", plan.First, note)
	}
	accel := plan.First
	// pending is a KVM failure that still needs the TCG boot to prove it
	// (see kvmProbeResult) before it is cached.
	pending := ""
	for attempt := 1; ; attempt++ {
		probe := accel == "kvm" && plan.Probe
		res, err := r.attempt(ctx, attempt, accel, probe, ovmfCode, ovmfVars)
		if err != nil {
			r.rep.Accel = accel
			if res.j != nil {
				r.finish(accel, res)
			}
			return err
		}
		if probe {
			r.rep.KVM.Tried = true
			r.rep.KVM.Works = res.j.kvmOK
			switch {
			case res.j.kvmOK:
				r.saveVerdict(key, cached, true, "")
			case res.v == vKVMFailed:
				r.rep.KVM.Reason = res.reason
				r.rep.KVM.Seconds = roundSecs(res.at)
				if res.j.kvmProven {
					r.saveVerdict(key, cached, false, res.reason)
				} else {
					pending = res.reason
				}
			}
			// A fatal console line or a timeout before the kernel says
			// nothing about KVM: nothing is cached.
		}
		if res.v == vKVMFailed {
			if plan.Fallback {
				r.say("KVM does not boot guests here: %s; restarting with TCG", res.reason)
				accel = "tcg"
				continue
			}
			res.v = vFail
			res.reason = "KVM does not boot guests here: " + res.reason + " (use --accel tcg, or auto to fall back)"
		}
		if pending != "" && accel == "tcg" {
			if res.j.kernelAt >= 0 {
				r.saveVerdict(key, cached, false, pending+"; the same image showed kernel output under TCG")
			} else {
				r.say("KVM verdict not cached: the image printed no kernel output under TCG either, so the KVM stall is not proven")
			}
		}
		r.finish(accel, res)
		break
	}
	if !r.rep.Passed {
		return &BootFailure{Reason: r.rep.Reason, Err: r.rep.cause}
	}
	return nil
}

// planAccel gathers what the decision needs: /dev/kvm, the host key and the
// cached verdict.
func (r *runner) planAccel(ctx context.Context) (accelPlan, string, *KVMVerdict, error) {
	s := r.s
	if s.Accel == "tcg" {
		p, err := planAccel("tcg", nil, nil)
		return p, "", nil, err
	}
	kvmErr := kvmOpenable()
	kernel, qv, err := hostKey(ctx, s.QEMU)
	if err != nil {
		return accelPlan{}, "", nil, err
	}
	key := verdictKey(kernel, qv, firmwareName(s))
	cached, err := LoadKVMVerdict(s.CacheDir, key)
	if err != nil {
		r.say("warning: %v (probing KVM again)", err)
		cached = nil
	}
	p, err := planAccel(s.Accel, kvmErr, cached)
	return p, key, cached, err
}

func (r *runner) saveVerdict(key string, cached *KVMVerdict, works bool, reason string) {
	if cached != nil && cached.Works == works {
		return
	}
	if err := saveKVMVerdict(r.s.CacheDir, key, KVMVerdict{Works: works, Reason: reason, Checked: time.Now().UTC()}); err != nil {
		r.say("warning: KVM verdict not cached: %v", err)
		return
	}
	r.say("KVM verdict (works: %t) cached in %s", works, verdictPath(r.s.CacheDir))
}

// attemptResult is how one QEMU run ended.
type attemptResult struct {
	v      verdict
	reason string
	cause  error // context cause when interrupted or timed out
	at     time.Duration
	j      *judge
	c      *Console
}

// attempt boots once with the given accelerator and watches the console
// until the judge decides, QEMU exits, or ctx ends. QEMU is dead when it
// returns.
func (r *runner) attempt(ctx context.Context, n int, accel string, probeKVM bool, ovmfCode, ovmfVars string) (attemptResult, error) {
	s := r.s
	// A fresh overlay (and UEFI vars) per attempt: a KVM attempt that died
	// half-way must not leave state behind for the TCG boot.
	cfg := qemuConfig{
		Accel: accel, Firmware: s.Firmware, SecureBoot: s.SecureBoot, Arch: s.Arch, Memory: s.Memory, CPUs: guestCPUs(s.CPUs, accel),
		PidFile: filepath.Join(r.dir, "qemu.pid"),
	}
	if s.isRamdisk() {
		// Nothing to reset: QEMU only reads the kernel and the initramfs.
		cfg.Kernel, cfg.Initrd, cfg.Append = s.Kernel, s.Initramfs, ramdiskCmdline(s.Append)
	} else {
		overlay := filepath.Join(r.dir, "disk.qcow2")
		if err := os.Remove(overlay); err != nil && !errors.Is(err, os.ErrNotExist) {
			return attemptResult{}, fmt.Errorf("removing old overlay: %w", err)
		}
		if err := CreateOverlay(ctx, s.QEMUImg, s.Image, r.info.Format, overlay, r.rep.DiskBytes); err != nil {
			return attemptResult{}, err
		}
		cfg.Overlay, cfg.Seed = overlay, filepath.Join(r.dir, "seed.img")
	}
	if s.Firmware == "uefi" {
		cfg.OVMFCode = ovmfCode
		cfg.OVMFVars = filepath.Join(r.dir, "OVMF_VARS.fd")
		if err := fsutil.CopyFile(ovmfVars, cfg.OVMFVars, 0o600); err != nil {
			return attemptResult{}, fmt.Errorf("copying OVMF vars: %w", err)
		}
	}
	_ = os.Remove(cfg.PidFile)
	if n > 1 {
		fmt.Fprintf(r.logs, "\n\n===== builder boot-test: attempt %d (%s) =====\n", n, accel)
	}
	r.say("starting QEMU (%s, %s, %d vCPU)", accel, firmwareName(s), cfg.CPUs)
	proc, err := startQEMU(ctx, s.QEMU, qemuArgs(cfg), r.dir, filepath.Join(r.dir, "qemu-"+accel+".stderr"), cfg.PidFile)
	if err != nil {
		return attemptResult{}, err
	}
	r.proc = proc
	t0 := time.Now()
	var verbose textFilter
	c := NewConsole()
	j := newJudge(s, probeKVM)
	j.imageBytes = r.info.VirtualSize
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	if s.Verbose != nil {
		defer func() { _, _ = s.Verbose.Write(verbose.end()) }()
	}

	feed := func(b []byte) {
		_, _ = r.logs.Write(b) // a full disk must not stop the test; the console is still judged
		if s.Verbose != nil {
			_, _ = s.Verbose.Write(verbose.filter(b))
		}
		c.Feed(b)
	}
	chunks, done := proc.chunks, proc.done
	exited := false
	res := attemptResult{j: j, c: c}
	for {
		select {
		case b, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			feed(b)
		case <-done:
			// Judge only after the last output: the pipe may still hold
			// the lines QEMU wrote just before it exited.
			exited, done = true, nil
			for chunks != nil {
				select {
				case b, ok := <-chunks:
					if !ok {
						chunks = nil
					} else {
						feed(b)
					}
				case <-time.After(2 * time.Second):
					chunks = nil
				}
			}
		case <-tick.C:
		case <-ctx.Done():
		}
		// exec.CommandContext kills QEMU when ctx ends, so "QEMU exited"
		// may be seen first: the context decides the reason.
		if ctx.Err() != nil {
			res.at = time.Since(t0)
			res.v = vFail
			res.cause = context.Cause(ctx)
			if errors.Is(res.cause, errBootTimeout) {
				res.reason = j.timeoutReason(c, s.Timeout)
			} else {
				res.reason = "interrupted"
			}
			return res, r.stopQEMU()
		}
		at := time.Since(t0)
		for _, m := range j.observe(c, at) {
			r.say("%s", m)
		}
		stderr := ""
		if exited || (probeKVM && !j.kvmOK) {
			stderr = proc.Stderr()
		}
		v, reason := j.decide(c, at, stderr, exited)
		if v == vContinue {
			continue
		}
		res.v, res.reason, res.at = v, reason, at
		return res, r.stopQEMU()
	}
}

func (r *runner) stopQEMU() error {
	if r.proc == nil {
		return nil
	}
	err := r.proc.Kill()
	r.proc = nil
	return err
}

// finish fills the report from the attempt that counted.
func (r *runner) finish(accel string, res attemptResult) {
	rep, j, c := r.rep, res.j, res.c
	rep.Accel = accel
	rep.Seconds = roundSecs(res.at)
	if j.kernelAt >= 0 {
		rep.KernelSeconds = roundSecs(j.kernelAt)
	}
	rep.LoginSeen = c.LoginSeen()
	if j.loginAt >= 0 {
		rep.LoginSeconds = roundSecs(j.loginAt)
	}
	ci := c.CloudInit()
	rep.CloudInit = CloudInitReport{Present: ci.Seen, Finished: ci.Finished, Version: ci.Version, Datasource: ci.Datasource}
	if j.ciFinishedAt >= 0 {
		rep.CloudInit.Seconds = roundSecs(j.ciFinishedAt)
	}
	rep.Probe, _ = c.Probe()
	rep.RamdiskReady = c.RamdiskReady()
	if j.readyAt >= 0 {
		rep.ReadySeconds = roundSecs(j.readyAt)
	}
	rep.KernelCmdline = c.KernelCmdline()
	rep.ConsoleFailedUnits = c.FailedUnits()
	rep.Passed = res.v == vPass
	rep.Reason = res.reason
	rep.cause = res.cause
	if rep.Passed {
		rep.Checks = j.checks
		return
	}
	rep.ConsoleTail = c.Tail(30)
	r.say("last %d console lines:", len(rep.ConsoleTail))
	for i, l := range rep.ConsoleTail {
		// GRUB's menu arrives as one long line of cursor moves.
		rep.ConsoleTail[i] = shorten(l, 512)
		r.say("| %s", shorten(l, 200))
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " [...]"
}

// inspectImage checks the disk image and sizes the guest's disk.
func (r *runner) inspectImage(ctx context.Context) error {
	s := r.s
	info, err := InspectImage(ctx, s.QEMUImg, s.Image)
	if err != nil {
		return &UsageError{Msg: fmt.Sprintf("cannot read %s as a disk image: pass a qcow2 or raw image", s.Image), Err: err}
	}
	if info.FormatSpecific.Data.Corrupt {
		return usagef("image %s is marked corrupt by qemu-img: repair a copy with `qemu-img check -r all` or rebuild it", s.Image)
	}
	if info.Format == "raw" && !hasBootSignature(s.Image) {
		// qemu-img calls any file raw; a disk without a partition table
		// or boot sector cannot boot, and QEMU would only say so later.
		return usagef("%s is not a bootable disk image: it is raw data without a partition table (no boot signature in its first sector); pass a disk image built by builder image (qcow2 or raw)", s.Image)
	}
	if info.BackingFilename != "" && !s.AllowBacking {
		return usagef("image %s has a backing file (%s): the test would boot the whole chain, not a self-contained image that can be uploaded; "+
			"flatten it with `qemu-img convert -O qcow2 %s flat.qcow2`, or pass --allow-backing", s.Image, info.BackingFilename, s.Image)
	}
	r.info = info
	r.rep.ImageFormat = info.Format
	r.rep.ImageBytes = info.VirtualSize
	r.rep.DiskBytes = overlaySize(info.VirtualSize, s.Grow)
	r.say("image %s: %s, %s; guest disk %s", s.Image, info.Format, fmtBytes(info.VirtualSize), fmtBytes(r.rep.DiskBytes))
	return nil
}

// hasBootSignature reports whether the file's first sector ends in the
// MBR signature 55 AA (an MBR, or GPT's protective MBR).
func hasBootSignature(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sig := make([]byte, 2)
	if _, err := f.ReadAt(sig, 510); err != nil {
		return false
	}
	return sig[0] == 0x55 && sig[1] == 0xaa
}

// makeSeed writes the NoCloud seed that creates the test user.
func (r *runner) makeSeed(ctx context.Context) error {
	s := r.s
	password := newPassword()
	hash, how, err := hashPassword(ctx, password)
	if err != nil {
		return fmt.Errorf("hashing the test user's password: %w", err)
	}
	if s.ShowPassword {
		r.rep.Password = password
	}
	if _, err := makeSeed(ctx, r.dir, seedConfig{
		User: s.User, PasswordHash: hash, SSHKeys: s.SSHKeys,
		InstanceID: newInstanceID(), Hostname: "builder-boot-test",
	}); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			return err
		}
		return fmt.Errorf("making the NoCloud seed: %w", err)
	}
	keys := ""
	if n := len(s.SSHKeys); n > 0 {
		keys = fmt.Sprintf(", %d ssh keys", n)
	}
	r.say("NoCloud seed: user %s (random password hashed with %s%s)", s.User, how, keys)
	return nil
}

// firmwareName is how reports name the firmware: bios, uefi, or
// uefi+secure-boot.
func firmwareName(s Spec) string {
	if s.SecureBoot {
		return s.Firmware + "+secure-boot"
	}
	return s.Firmware
}
