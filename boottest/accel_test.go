package boottest

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPlanAccel(t *testing.T) {
	noKVM := errors.New("open /dev/kvm: no such file or directory")
	fails := &KVMVerdict{Works: false, Reason: "no kernel output", Checked: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
	works := &KVMVerdict{Works: true, Checked: time.Now()}
	for _, tc := range []struct {
		name      string
		requested string
		kvmErr    error
		cached    *KVMVerdict
		want      accelPlan // Note is checked for a substring only
		noteHas   string
		usageErr  bool
	}{
		{"tcg asked", "tcg", nil, nil, accelPlan{First: "tcg"}, "requested", false},
		{"tcg asked, kvm cached working", "tcg", nil, works, accelPlan{First: "tcg"}, "requested", false},
		{"auto, no kvm", "auto", noKVM, nil, accelPlan{First: "tcg"}, "no usable /dev/kvm", false},
		{"auto, kvm never probed", "auto", nil, nil, accelPlan{First: "kvm", Probe: true, Fallback: true}, "probing", false},
		{"auto, cached: kvm fails", "auto", nil, fails, accelPlan{First: "tcg"}, "cached verdict from 2026-11-26", false},
		{"auto, cached: kvm works", "auto", nil, works, accelPlan{First: "kvm", Probe: true, Fallback: true}, "KVM works", false},
		{"empty means auto", "", nil, nil, accelPlan{First: "kvm", Probe: true, Fallback: true}, "", false},
		{"kvm asked, cached fails: tried anyway, no fallback", "kvm", nil, fails, accelPlan{First: "kvm", Probe: true}, "requested", false},
		{"kvm asked, no /dev/kvm", "kvm", noKVM, nil, accelPlan{}, "", true},
		{"unknown", "hvf", nil, nil, accelPlan{}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planAccel(tc.requested, tc.kvmErr, tc.cached)
			var ue *UsageError
			if tc.usageErr != errors.As(err, &ue) {
				t.Fatalf("err = %v, want usage error %t", err, tc.usageErr)
			}
			if tc.usageErr {
				return
			}
			note := got.Note
			got.Note = ""
			if got != tc.want {
				t.Errorf("plan %+v, want %+v", got, tc.want)
			}
			if !strings.Contains(note, tc.noteHas) {
				t.Errorf("note %q lacks %q", note, tc.noteHas)
			}
		})
	}
}

func TestKVMProbeResult(t *testing.T) {
	const window = 20 * time.Second
	uefiStderr := "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n" +
		"KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\nemulation failure\n"
	for _, tc := range []struct {
		name          string
		stage         Stage
		elapsed       time.Duration
		stderr        string
		exited        bool
		decided, work bool
		proven        bool
		reasonHas     string
	}{
		{"kernel reached", StageKernel, 5 * time.Second, "", false, true, true, true, ""},
		{"login reached", StageLogin, 30 * time.Second, "", false, true, true, true, ""},
		{"firmware only, still early", StageBootloader, 10 * time.Second, "", false, false, false, false, ""},
		// A stall after firmware output could also be a quiet kernel: not
		// proven until TCG shows kernel output for the same image.
		{"firmware only, window over (this host, BIOS)", StageBootloader, window, "", false, true, false, false, `console stopped at bootloader: "GRUB loading."`},
		{"nothing at all, window over", StageNone, 21 * time.Second, "", false, true, false, true, "no serial output within 20 s"},
		{"KVM internal error (this host, UEFI)", StageNone, 2 * time.Second, uefiStderr, false, true, false, true, "KVM internal error"},
		{"MSR abort (-cpu host)", StageNone, time.Second, "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0\n", true, true, false, true, "failed to set MSR"},
		{"QEMU exited early", StageFirmware, 3 * time.Second, "", true, true, false, true, "QEMU exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decided, works, proven, reason := kvmProbeResult(tc.stage, tc.elapsed, window, tc.stderr, tc.exited, "GRUB loading.")
			if decided != tc.decided || works != tc.work || proven != tc.proven || !strings.Contains(reason, tc.reasonHas) {
				t.Errorf("got (%t, %t, %t, %q), want (%t, %t, %t, ~%q)", decided, works, proven, reason, tc.decided, tc.work, tc.proven, tc.reasonHas)
			}
		})
	}
}

func TestKVMVerdictCache(t *testing.T) {
	dir := t.TempDir()
	k1 := verdictKey("6.18.44-fc", "7.2.22 (Debian)", "bios")
	k2 := verdictKey("6.18.44-fc", "7.2.22 (Debian)", "uefi")
	if v, err := LoadKVMVerdict(dir, k1); v != nil || err != nil {
		t.Fatalf("empty cache: %v, %v", v, err)
	}
	when := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	if err := saveKVMVerdict(dir, k1, KVMVerdict{Works: false, Reason: "stall", Checked: when}); err != nil {
		t.Fatal(err)
	}
	if err := saveKVMVerdict(dir, k2, KVMVerdict{Works: true, Checked: when}); err != nil {
		t.Fatal(err)
	}
	v1, err := LoadKVMVerdict(dir, k1)
	if err != nil || v1 == nil || v1.Works || v1.Reason != "stall" || !v1.Checked.Equal(when) {
		t.Errorf("k1: %+v, %v", v1, err)
	}
	v2, err := LoadKVMVerdict(dir, k2)
	if err != nil || v2 == nil || !v2.Works {
		t.Errorf("k2: %+v, %v", v2, err)
	}
	// Another kernel or QEMU means another host configuration: no verdict.
	if v, _ := LoadKVMVerdict(dir, verdictKey("6.19", "7.2.22 (Debian)", "bios")); v != nil {
		t.Errorf("verdict for another kernel: %+v", v)
	}
	// A damaged file costs a probe, not the run.
	if err := os.WriteFile(verdictPath(dir), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := LoadKVMVerdict(dir, k1); v != nil || err != nil {
		t.Errorf("damaged cache: %v, %v", v, err)
	}
	if err := saveKVMVerdict(dir, k1, KVMVerdict{Works: true, Checked: when}); err != nil {
		t.Fatalf("saving over a damaged cache: %v", err)
	}
}

func TestKVMStderrFailure(t *testing.T) {
	if l := kvmStderrFailure("qemu-system-x86_64: warning: host doesn't support requested feature\n"); l != "" {
		t.Errorf("warning taken for a failure: %q", l)
	}
	if l := kvmStderrFailure("a\nKVM internal error. Suberror: 1\nb\n"); l != "KVM internal error. Suberror: 1" {
		t.Errorf("got %q", l)
	}
}
