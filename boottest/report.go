package boottest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is the result of a run; its JSON form is what --report writes and
// what other tests parse. Times are seconds since QEMU was started for the
// boot that counted (after a failed KVM probe: the TCG boot).
type Report struct {
	Image string `json:"image"`
	// A ramdisk boot's files, its guest memory (MiB) and what it printed.
	Kernel       string        `json:"kernel,omitempty"`
	Initramfs    string        `json:"initramfs,omitempty"`
	Memory       int           `json:"memory_mib,omitempty"`
	RamdiskReady *RamdiskReady `json:"ramdisk_ready,omitempty"`
	ReadySeconds float64       `json:"ready_seconds,omitempty"`
	ImageFormat  string        `json:"image_format"`
	// ImageBytes is the image's virtual size, DiskBytes the guest's disk.
	ImageBytes int64 `json:"image_bytes"`
	DiskBytes  int64 `json:"disk_bytes"`

	Accel    string     `json:"accel"`
	Firmware string     `json:"firmware"`
	Arch     string     `json:"arch,omitempty"`
	KVM      *KVMReport `json:"kvm,omitempty"`

	Seconds      float64 `json:"seconds"`
	TotalSeconds float64 `json:"total_seconds"`

	KernelSeconds float64         `json:"kernel_seconds,omitempty"`
	LoginSeen     bool            `json:"login_seen"`
	LoginSeconds  float64         `json:"login_seconds,omitempty"`
	CloudInit     CloudInitReport `json:"cloud_init"`
	Probe         *Probe          `json:"probe"`
	// KernelCmdline is the "Command line:" the kernel logged, when it did.
	KernelCmdline string `json:"kernel_cmdline,omitempty"`
	// ConsoleFailedUnits are systemd's "[FAILED] Failed to start" lines.
	ConsoleFailedUnits []string `json:"console_failed_units,omitempty"`

	User     string `json:"user"`
	Password string `json:"password,omitempty"`

	Passed bool   `json:"passed"`
	Reason string `json:"reason"`
	// Checks lists what was verified, in words, for the PASS line.
	Checks      []string `json:"checks,omitempty"`
	ConsoleTail []string `json:"console_tail,omitempty"`

	cause error // context cause of an interrupted or timed-out boot
}

// KVMReport says what happened with KVM.
type KVMReport struct {
	Tried   bool    `json:"tried"`
	Works   bool    `json:"works"`
	Cached  bool    `json:"cached"` // the decision came from the cache
	Reason  string  `json:"reason,omitempty"`
	Seconds float64 `json:"seconds,omitempty"` // time spent on a failed KVM attempt
}

// CloudInitReport is cloud-init as seen on the console.
type CloudInitReport struct {
	Present    bool    `json:"present"`
	Finished   bool    `json:"finished"`
	Seconds    float64 `json:"seconds"`
	Version    string  `json:"version,omitempty"`
	Datasource string  `json:"datasource,omitempty"`
}

// Summary is the one-line verdict, without the "boot-test: " prefix.
func (r *Report) Summary() string {
	if !r.Passed {
		return fmt.Sprintf("FAIL after %s: %s", fmtSeconds(secs(r.Seconds)), r.Reason)
	}
	s := fmt.Sprintf("PASS in %s (%s, %s)", fmtSeconds(secs(r.Seconds)), r.Accel, r.Firmware)
	if len(r.Checks) > 0 {
		s += ": " + strings.Join(r.Checks, ", ")
	}
	return s
}

// WriteFile writes the report as indented JSON, atomically.
func (r *Report) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding report: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".boot-report-*")
	if err != nil {
		return fmt.Errorf("writing report %s: %w", path, err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing report %s: %w", path, werr)
	}
	return nil
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// roundSecs gives seconds with one decimal, for the JSON report.
func roundSecs(d time.Duration) float64 { return math.Round(d.Seconds()*10) / 10 }

// fmtSeconds prints whole seconds ("83 s"), as the progress lines do.
func fmtSeconds(d time.Duration) string {
	return fmt.Sprintf("%d s", int64(math.Round(d.Seconds())))
}

// fmtBytes prints a size in GiB with one decimal (MiB below 1 GiB).
func fmtBytes(n int64) string {
	if n < 1<<30 {
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// quoteLine quotes a console line for a message, shortened.
func quoteLine(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return fmt.Sprintf("%q", s)
}
