package boottest

import (
	"builder/internal/workspace"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// Defaults used when a Spec field is left at its zero value.
const (
	DefaultTimeout  = 600 * time.Second
	DefaultKVMProbe = 20 * time.Second
	DefaultGrow     = 2 << 30 // bytes added to the image's virtual size
	DefaultMemory   = 1024    // MiB
	DefaultUser     = "builder"
	MaxCPUs         = 2
)

// Spec says what to boot and what to expect. The zero value of every field
// except Image is a sensible default.
type Spec struct {
	// Image is the disk image to boot; it is only ever read.
	Image string
	// Kernel and Initramfs boot a ramdisk instead of Image (QEMU's -kernel
	// and -initrd; see ramdisk.go): no disk, no seed, and the boot passes
	// on the ramdisk's readiness line. Append is added to its kernel
	// command line; Ready is "marker" (default) or "login".
	Kernel, Initramfs, Append, Ready string
	// Firmware is "bios" (SeaBIOS, default) or "uefi" (OVMF via pflash).
	Firmware string
	// SecureBoot boots with OVMF's Secure Boot firmware and Microsoft's
	// keys enrolled (q35 with SMM), and passes only when the guest reports
	// Secure Boot enabled. It implies Firmware "uefi".
	SecureBoot bool
	// Arch is the guest's architecture: "amd64" (default) or "arm64"
	// (qemu-system-aarch64, virt machine, AAVMF; always UEFI, always TCG
	// on another host).
	Arch string
	// Accel is "auto" (default: KVM when it works, else TCG), "kvm" or "tcg".
	Accel string
	// Timeout bounds the whole run, KVM probe included (default 600 s).
	Timeout time.Duration
	// KVMProbe is how long KVM gets to reach the guest kernel before the
	// run falls back to TCG (default 20 s).
	KVMProbe time.Duration
	// Grow is added to the image's virtual size for the guest's disk.
	// 0 means DefaultGrow; a negative value means no growth.
	Grow int64
	// Memory is the guest RAM in MiB (default 1024).
	Memory int
	// CPUs is the number of guest vCPUs (at most 2, and never more than
	// the host has). 0 is 1 under emulation (TCG) and 2 with KVM: see
	// guestCPUs.
	CPUs int
	// User is the account cloud-init creates (default "builder").
	User string
	// SSHKeys are public keys for User, one authorized_keys line each.
	SSHKeys []string
	// ExpectCmdline must be a substring of the guest's /proc/cmdline when
	// the probe reports it (empty: no check).
	ExpectCmdline string
	// RequireCloudInit fails the run when cloud-init does not run.
	RequireCloudInit bool
	// SkipGrowCheck turns off the check that the root filesystem fills at
	// least 90% of its disk once the probe reports.
	SkipGrowCheck bool
	// FailOnFailedUnits makes failed systemd units (from the probe) fatal.
	FailOnFailedUnits bool
	// AllowBacking accepts an image that has a backing file of its own.
	AllowBacking bool
	// ShowPassword puts the test user's password into the Report.
	ShowPassword bool
	// CacheDir holds the KVM verdict (default $XDG_CACHE_HOME/image-create
	// or ~/.cache/image-create).
	CacheDir string
	// WorkDir is where the run's temporary directory is made (default
	// os.TempDir()).
	WorkDir string
	// ConsoleLog, when set, receives a live copy of the raw serial output.
	ConsoleLog string
	// Verbose, when set, receives the serial output as readable text, live.
	Verbose io.Writer
	// Progress receives one line per event ("boot-test: login prompt after 83 s").
	Progress io.Writer
	// QEMU and QEMUImg name the binaries (default qemu-system-x86_64, or
	// qemu-system-aarch64 for arm64, and qemu-img, looked up in PATH).
	QEMU, QEMUImg string
}

// UsageError reports a run that could not start because of its input or the
// host (missing image, image with a backing file, missing firmware or
// tools). The message names the problem and the fix.
type UsageError struct {
	Msg string
	Err error
}

func (e *UsageError) Error() string {
	if e.Err != nil && !strings.Contains(e.Msg, e.Err.Error()) {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// BootFailure is returned by Run when QEMU ran but the guest did not pass;
// Reason is the same text as Report.Reason.
type BootFailure struct {
	Reason string
	// Err is the underlying cause when there is one (context.Canceled on
	// interruption).
	Err error
}

func (e *BootFailure) Error() string { return "boot test failed: " + e.Reason }

func (e *BootFailure) Unwrap() error { return e.Err }

// imageDefaults checks and completes Image, for a disk boot.
func (s *Spec) imageDefaults() error {
	if s.Image == "" {
		return usagef("no image given: pass the path of a disk image (qcow2 or raw)")
	}
	abs, err := filepath.Abs(s.Image)
	if err != nil {
		return fmt.Errorf("resolving image path %s: %w", s.Image, err)
	}
	s.Image = abs
	st, err := os.Stat(s.Image)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return usagef("image %s does not exist: pass the path of an existing disk image (qcow2 or raw)", s.Image)
	case err != nil:
		return &UsageError{Msg: fmt.Sprintf("cannot read image %s", s.Image), Err: err}
	case !st.Mode().IsRegular():
		return usagef("image %s is not a regular file: pass a disk image file (qcow2 or raw)", s.Image)
	}
	return nil
}

var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// withDefaults returns a copy of s with zero fields filled in, or a
// UsageError for values that cannot work.
func (s Spec) withDefaults() (Spec, error) {
	if s.isRamdisk() {
		var err error
		if s, err = s.ramdiskDefaults(); err != nil {
			return s, err
		}
	} else if err := s.imageDefaults(); err != nil {
		return s, err
	}
	switch s.Arch {
	case "", "amd64", "x86_64":
		s.Arch = "amd64"
	case "arm64", "aarch64":
		s.Arch = "arm64"
		if s.Firmware == "bios" {
			return s, usagef("arm64 has no BIOS: use --firmware uefi (or leave it out)")
		}
		if s.SecureBoot {
			return s, usagef("--secure-boot is for amd64 images: arm64 boots with AAVMF without Secure Boot")
		}
		if s.isRamdisk() {
			return s, usagef("arm64 ramdisks cannot be boot-tested yet: boot an arm64 disk image")
		}
		s.Firmware = "uefi"
		if runtime.GOARCH != "arm64" {
			if s.Accel == "kvm" {
				return s, usagef("--accel kvm cannot run an arm64 guest on this %s host: use --accel tcg (emulation)", runtime.GOARCH)
			}
			s.Accel = "tcg"
		}
	default:
		return s, usagef("architecture %q cannot be boot-tested: use amd64 or arm64", s.Arch)
	}
	if s.SecureBoot {
		if s.Firmware == "bios" {
			return s, usagef("--secure-boot needs UEFI: drop --firmware bios")
		}
		s.Firmware = "uefi"
	}
	if s.Firmware == "" {
		s.Firmware = "bios"
	}
	if s.Firmware != "bios" && s.Firmware != "uefi" {
		return s, usagef("firmware %q is not known: use bios or uefi", s.Firmware)
	}
	if s.Accel == "" {
		s.Accel = "auto"
	}
	if s.Accel != "auto" && s.Accel != "kvm" && s.Accel != "tcg" {
		return s, usagef("accel %q is not known: use auto, kvm or tcg", s.Accel)
	}
	if s.Timeout <= 0 {
		s.Timeout = DefaultTimeout
	}
	if s.KVMProbe <= 0 {
		s.KVMProbe = DefaultKVMProbe
	}
	switch {
	case s.Grow == 0:
		s.Grow = DefaultGrow
	case s.Grow < 0:
		s.Grow = 0
	}
	if s.Memory <= 0 {
		s.Memory = DefaultMemory
	}
	if s.Memory < 256 {
		return s, usagef("memory %d MiB is too small to boot a cloud image: use at least 256", s.Memory)
	}
	// More vCPUs than host cores only slows TCG down; the brief caps at 2.
	if maxCPUs := min(runtime.NumCPU(), MaxCPUs); s.CPUs > maxCPUs {
		s.CPUs = maxCPUs
	} else if s.CPUs < 0 {
		s.CPUs = 0
	}
	if s.User == "" {
		s.User = DefaultUser
	}
	if !userNameRE.MatchString(s.User) {
		return s, usagef("user name %q is not a valid Linux user name: use lower-case letters, digits, _ and -", s.User)
	}
	// Copy: the caller's slice must not change under it.
	keys := make([]string, 0, len(s.SSHKeys))
	for i, k := range s.SSHKeys {
		k = strings.TrimSpace(k)
		if k == "" || strings.ContainsAny(k, "\r\n") {
			return s, usagef("ssh key %d must be a single non-empty line", i+1)
		}
		keys = append(keys, k)
	}
	s.SSHKeys = keys
	if s.CacheDir == "" {
		s.CacheDir = workspace.DefaultCache()
	}
	if s.WorkDir == "" {
		s.WorkDir = os.TempDir()
	}
	if s.QEMU == "" {
		s.QEMU = "qemu-system-x86_64"
		if s.Arch == "arm64" {
			s.QEMU = "qemu-system-aarch64"
		}
	}
	if s.QEMUImg == "" {
		s.QEMUImg = "qemu-img"
	}
	return s, nil
}

// guestCPUs is the guest's vCPU count for an accelerator. Unless asked
// for, a guest under emulation gets one: with two, QEMU's multi-threaded
// TCG runs each vCPU in a host thread of its own, and on this busy 2-core
// host (two boot tests side by side, builds beside them) a Debian trixie
// guest died in its kernel (a kfree fault in an interrupt) where one vCPU,
// emulated in one thread, leaves no vCPU waiting on another's host thread.
// KVM guests get the host's cores, at most MaxCPUs.
func guestCPUs(requested int, accel string) int {
	switch {
	case requested > 0:
		return requested
	case accel == "kvm":
		return min(runtime.NumCPU(), MaxCPUs)
	}
	return 1
}
