package boottest

import (
	"builder/internal/workspace"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// KVMVerdict is the cached answer to "does KVM boot guests on this host?".
type KVMVerdict struct {
	Works   bool      `json:"works"`
	Reason  string    `json:"reason"`
	Checked time.Time `json:"checked"`
}

// accelPlan says how to start: which accelerator first, whether to watch
// KVM for the kernel, and whether to restart with TCG when it fails.
type accelPlan struct {
	First    string // "kvm" or "tcg"
	Probe    bool
	Fallback bool
	Note     string // why, for the progress output ("" when obvious)
}

// planAccel decides how to start from the requested mode, whether /dev/kvm
// can be opened (kvmErr) and the cached verdict (nil when none). It is pure
// so the decision table can be tested without a KVM.
func planAccel(requested string, kvmErr error, cached *KVMVerdict) (accelPlan, error) {
	switch requested {
	case "tcg":
		return accelPlan{First: "tcg", Note: "requested"}, nil
	case "kvm":
		if kvmErr != nil {
			return accelPlan{}, &UsageError{Msg: "--accel kvm, but /dev/kvm is not usable: use --accel tcg or auto", Err: kvmErr}
		}
		// Asked for explicitly: try even if the cache says no, and fail
		// fast (no fallback) when the kernel does not show up in time.
		return accelPlan{First: "kvm", Probe: true, Note: "requested"}, nil
	case "auto", "":
	default:
		return accelPlan{}, usagef("accel %q is not known: use auto, kvm or tcg", requested)
	}
	if kvmErr != nil {
		return accelPlan{First: "tcg", Note: "no usable /dev/kvm: " + kvmErr.Error()}, nil
	}
	if cached != nil && !cached.Works {
		return accelPlan{First: "tcg", Note: fmt.Sprintf("cached verdict from %s: KVM does not boot guests here: %s",
			cached.Checked.Format("2006-01-02"), cached.Reason)}, nil
	}
	note := "probing KVM: TCG takes over if the guest kernel does not start in time"
	if cached != nil {
		// Keep watching even when KVM worked before: the watch costs
		// nothing when it works and saves a full timeout when it stopped.
		note = "cached verdict: KVM works"
	}
	return accelPlan{First: "kvm", Probe: true, Fallback: true, Note: note}, nil
}

// kvmOpenable checks that /dev/kvm exists and can be opened read-write,
// which is what QEMU needs (group kvm, or root).
func kvmOpenable() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// kvmStderrFailure returns the line of QEMU's stderr that shows KVM cannot
// run the guest, or "". On nested PVM QEMU prints "KVM internal error" and
// stops the guest (UEFI), or aborts on "failed to set MSR" (-cpu host).
func kvmStderrFailure(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		for _, p := range []string{"KVM internal error", "failed to set MSR", "kvm run failed",
			"failed to initialize kvm", "Could not access KVM kernel module", "KVM_RUN"} {
			if strings.Contains(l, p) {
				return strings.TrimSpace(l)
			}
		}
	}
	return ""
}

// kvmProbeResult judges a KVM attempt so far. The guest counts as running
// once the kernel logs to the console; the brief's "any serial byte" is not
// enough here, because on this PVM host SeaBIOS prints its banner and
// "GRUB loading." under KVM and then stalls for ever.
//
// proven says whether a failure is certain from this attempt alone (QEMU
// reported a KVM error or died, or not even the firmware printed). A stall
// after firmware output is only proven once the same image shows kernel
// output under TCG: an image whose kernel is quiet on ttyS0 would look
// the same on a KVM that works, and caching that would send every later
// run to TCG.
func kvmProbeResult(stage Stage, elapsed, window time.Duration, stderr string, exited bool, lastLine string) (decided, works, proven bool, reason string) {
	if stage >= StageKernel {
		return true, true, true, ""
	}
	if l := kvmStderrFailure(stderr); l != "" {
		return true, false, true, "QEMU: " + l
	}
	if exited {
		return true, false, true, "QEMU exited before the guest kernel started"
	}
	if elapsed >= window {
		if stage == StageNone {
			return true, false, true, fmt.Sprintf("no serial output within %s", fmtSeconds(window))
		}
		r := fmt.Sprintf("no kernel output within %s (console stopped at %s", fmtSeconds(window), stage)
		if lastLine != "" {
			r += ": " + quoteLine(lastLine)
		}
		return true, false, false, r + ")"
	}
	return false, false, false, ""
}

// verdictKey identifies the host configuration a verdict is valid for. The
// firmware is part of it because the two can fail differently (SeaBIOS
// stalls, OVMF hits a KVM internal error).
func verdictKey(kernel, qemuVersion, firmware string) string {
	return "kernel=" + kernel + " qemu=" + qemuVersion + " firmware=" + firmware
}

func verdictPath(cacheDir string) string {
	return filepath.Join(workspace.Workspace{Cache: cacheDir}.BootTest(), "kvm-verdicts.json")
}

// LoadKVMVerdict returns the cached verdict for key, or nil.
func LoadKVMVerdict(cacheDir, key string) (*KVMVerdict, error) {
	b, err := os.ReadFile(verdictPath(cacheDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading KVM verdict cache: %w", err)
	}
	m := map[string]KVMVerdict{}
	if err := json.Unmarshal(b, &m); err != nil {
		// A damaged cache only costs a probe; do not fail the run on it.
		return nil, nil
	}
	if v, ok := m[key]; ok {
		return &v, nil
	}
	return nil, nil
}

// saveKVMVerdict records v for key, keeping the other keys. It writes a
// temporary file and renames it, so a reader never sees half a file.
func saveKVMVerdict(cacheDir, key string, v KVMVerdict) error {
	p := verdictPath(cacheDir)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("creating cache directory: %w", err)
	}
	m := map[string]KVMVerdict{}
	if b, err := os.ReadFile(p); err == nil {
		_ = json.Unmarshal(b, &m) // start afresh if damaged
	}
	m[key] = v
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".kvm-verdicts-*")
	if err != nil {
		return fmt.Errorf("writing KVM verdict cache: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("writing KVM verdict cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing KVM verdict cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing KVM verdict cache: %w", err)
	}
	return nil
}

// hostKey returns the kernel release and QEMU's version line.
func hostKey(ctx context.Context, qemu string) (kernel, qemuVersion string, err error) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "", "", fmt.Errorf("reading kernel release: %w", err)
	}
	kernel = strings.TrimSpace(string(b))
	cmd := exec.CommandContext(ctx, qemu, "--version")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("%s --version: %w: %s", qemu, err, strings.TrimSpace(out.String()))
	}
	qemuVersion, _, _ = strings.Cut(strings.TrimSpace(out.String()), "\n")
	qemuVersion = strings.TrimPrefix(qemuVersion, "QEMU emulator version ")
	return kernel, qemuVersion, nil
}

// KVMStatus says whether boot tests here get hardware acceleration: ok is
// false when /dev/kvm cannot be opened or an earlier boot test found that
// KVM starts no guest (then boot-test uses TCG, 10-30 times slower).
func KVMStatus(ctx context.Context, cacheDir string) (ok bool, detail string) {
	if err := kvmOpenable(); err != nil {
		return false, fmt.Sprintf("/dev/kvm: %v", err)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return false, "qemu-system-x86_64 is not installed"
	}
	kernel, qv, err := hostKey(ctx, qemu)
	if err != nil {
		return true, "/dev/kvm opens; " + err.Error()
	}
	v, _ := LoadKVMVerdict(cacheDir, verdictKey(kernel, qv, "bios"))
	switch {
	case v == nil:
		return true, "/dev/kvm opens (not yet proven by a boot test)"
	case v.Works:
		return true, "/dev/kvm works (boot test on " + v.Checked.Format("2006-01-02") + ")"
	default:
		return false, "/dev/kvm opens but starts no guest (" + v.Reason + ")"
	}
}
