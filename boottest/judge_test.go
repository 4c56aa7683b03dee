package boottest

import (
	"strings"
	"testing"
	"time"
)

// replay feeds a log and asks the judge once at time at.
func replay(t *testing.T, s Spec, log []byte, at time.Duration) (*judge, *Console, verdict, string) {
	t.Helper()
	s.KVMProbe = DefaultKVMProbe
	j := newJudge(s, false)
	c := NewConsole()
	c.Feed(log)
	j.observe(c, at)
	v, r := j.decide(c, at, "", false)
	return j, c, v, r
}

func TestJudgeDIBLog(t *testing.T) {
	log := readLog(t, "dib-debian-minimal-bios-tcg.log")
	j, _, v, r := replay(t, Spec{}, log, 96*time.Second)
	if v != vPass {
		t.Fatalf("verdict %d %q, want pass", v, r)
	}
	if strings.Join(j.checks, ", ") != "login prompt" {
		t.Errorf("checks %q", j.checks)
	}
	// Without a probe the kernel's own "Command line:" is checked.
	j, _, v, r = replay(t, Spec{ExpectCmdline: "console=tty0 console=ttyS0,115200"}, log, 96*time.Second)
	if v != vPass || !strings.Contains(strings.Join(j.checks, ","), "cmdline has console=tty0 console=ttyS0,115200") {
		t.Errorf("verdict %d %q checks %q", v, r, j.checks)
	}
	if _, _, v, r = replay(t, Spec{ExpectCmdline: "console=hvc0"}, log, 96*time.Second); v != vFail || !strings.Contains(r, `lacks "console=hvc0"`) {
		t.Errorf("wrong cmdline: verdict %d %q", v, r)
	}
	// --require-cloud-init: wait a while after the prompt, then fail.
	s := Spec{RequireCloudInit: true}
	j = newJudge(s, false)
	c := NewConsole()
	c.Feed(log)
	j.observe(c, 96*time.Second)
	if v, r := j.decide(c, 100*time.Second, "", false); v != vContinue {
		t.Errorf("require-cloud-init right after login: %d %q", v, r)
	}
	if v, r := j.decide(c, 96*time.Second+ciGrace, "", false); v != vFail || !strings.Contains(r, "cloud-init did not run") {
		t.Errorf("require-cloud-init after the grace: %d %q", v, r)
	}
}

func TestJudgeCloudInitLog(t *testing.T) {
	log := readLog(t, "debian12-cloudinit-bios-tcg.log")
	base := Spec{User: "builder", Grow: DefaultGrow, ExpectCmdline: "console=tty0 console=ttyS0,115200"}
	j, _, v, r := replay(t, base, log, 139*time.Second)
	if v != vPass {
		t.Fatalf("verdict %d %q, want pass", v, r)
	}
	want := "login prompt, cloud-init finished, root fs 3.3 GiB of 3.6 GiB, cmdline has console=tty0 console=ttyS0,115200"
	if got := strings.Join(j.checks, ", "); got != want {
		t.Errorf("checks %q\nwant   %q", got, want)
	}

	// The root filesystem must be larger than the image it came from.
	s := base
	j = newJudge(s, false)
	j.imageBytes = 4 << 30
	c := NewConsole()
	c.Feed(log)
	if v, r := j.decide(c, time.Minute, "", false); v != vFail || !strings.Contains(r, "did not grow") {
		t.Errorf("image larger than root fs: %d %q", v, r)
	}
	s.SkipGrowCheck = true
	j = newJudge(s, false)
	j.imageBytes = 4 << 30
	if v, r := j.decide(c, time.Minute, "", false); v != vPass {
		t.Errorf("--expect-grow=false: %d %q", v, r)
	}
}

// Synthetic consoles for the cloud-init branches the recorded logs do not
// reach.
func TestJudgeCloudInitBranches(t *testing.T) {
	const (
		login    = "\r\nbuilder-boot-test login: "
		ciStart  = "[   65.8] cloud-init[264]: Cloud-init v. 22.4.2 running 'init-local' at Thu. Up 65.11 seconds.\r\n"
		finished = "[  113.7] cloud-init[405]: Cloud-init v. 22.4.2 finished at Thu, 26 Nov 2026 05:03:56 +0000. Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].  Up 113.64 seconds\r\n"
		none     = "[  113.7] cloud-init[405]: Cloud-init v. 22.4.2 finished at Thu, 26 Nov 2026 05:03:56 +0000. Datasource DataSourceNone.  Up 113.64 seconds\r\n"
	)
	probe := func(rootBytes, failed, user string) string {
		return "BUILDER-PROBE cmdline=" + b64("root=LABEL=x console=tty0 console=ttyS0,115200") +
			" root_bytes=" + rootBytes + " disk_bytes=6442450944 user=" + b64(user) + " failed_units=" + failed + " sudo=yes\r\n"
	}
	okUser := "uid=1000(builder) gid=1000(builder) groups=1000(builder)"
	for _, tc := range []struct {
		name    string
		spec    Spec
		console string
		at      time.Duration // time of the decision; finished is seen at 100 s
		want    verdict
		has     string
	}{
		{"login, cloud-init still running", Spec{}, ciStart + login, 100 * time.Second, vContinue, ""},
		{"finished before the probe line: wait", Spec{}, ciStart + login + finished, 110 * time.Second, vContinue, ""},
		{"finished, probe never came", Spec{}, ciStart + login + finished, 100*time.Second + probeGrace, vFail, "probe did not report"},
		{"DataSourceNone", Spec{}, ciStart + login + none, 100 * time.Second, vFail, "DataSourceNone"},
		{"all good", Spec{}, ciStart + login + probe("6000000000", "0", okUser) + finished, 100 * time.Second, vPass, ""},
		{"not grown", Spec{}, ciStart + login + probe("2000000000", "0", okUser) + finished, 100 * time.Second, vFail, "did not grow to fill"},
		{"partition grew to the end, ESP before it", Spec{}, ciStart + login + strings.Replace(probe("4900000000", "0", okUser), " user=", " part_bytes=5100000000 tail_bytes=1048576 user=", 1) + finished, 100 * time.Second, vPass, ""},
		{"partition stopped short of the end", Spec{}, ciStart + login + strings.Replace(probe("6000000000", "0", okUser), " user=", " part_bytes=4000000000 tail_bytes=2000000000 user=", 1) + finished, 100 * time.Second, vFail, "unused after it"},
		{"not grown, check off", Spec{SkipGrowCheck: true}, ciStart + login + probe("2000000000", "0", okUser) + finished, 100 * time.Second, vPass, ""},
		{"user missing", Spec{User: "builder"}, ciStart + login + probe("6000000000", "0", "id: 'builder': no such user") + finished, 100 * time.Second, vFail, "user builder was not created"},
		{"failed units reported", Spec{}, ciStart + login + probe("6000000000", "2", okUser) + finished, 100 * time.Second, vPass, ""},
		{"failed units fatal", Spec{FailOnFailedUnits: true}, ciStart + login + probe("6000000000", "2", okUser) + finished, 100 * time.Second, vFail, "2 failed units (--no-failed-units)"},
		{"cmdline mismatch", Spec{ExpectCmdline: "console=hvc0"}, ciStart + login + probe("6000000000", "0", okUser) + finished, 100 * time.Second, vFail, "lacks"},
		{"finished, no login yet", Spec{}, ciStart + probe("6000000000", "0", okUser) + finished, 150 * time.Second, vContinue, ""},
		{"finished, login never comes", Spec{}, ciStart + probe("6000000000", "0", okUser) + finished, 100*time.Second + loginGrace, vFail, "no login prompt on ttyS0"},
		{"fatal line wins", Spec{}, "[    2.1] Kernel panic - not syncing: VFS\r\n" + login, 10 * time.Second, vFail, "Kernel panic"},
		{"secure boot on", Spec{SecureBoot: true}, ciStart + login + strings.Replace(probe("6000000000", "0", okUser), " sudo=yes", " sudo=yes secure_boot=1", 1) + finished, 100 * time.Second, vPass, ""},
		{"secure boot off in the guest", Spec{SecureBoot: true}, ciStart + login + strings.Replace(probe("6000000000", "0", okUser), " sudo=yes", " sudo=yes secure_boot=0", 1) + finished, 100 * time.Second, vFail, "reports Secure Boot disabled"},
		{"secure boot not reported (older probe)", Spec{SecureBoot: true}, ciStart + login + probe("6000000000", "0", okUser) + finished, 100 * time.Second, vFail, "Secure Boot state unknown"},
		{"secure boot without a probe", Spec{SecureBoot: true}, login, 100*time.Second + ciGrace, vFail, "cannot check --secure-boot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.KVMProbe = DefaultKVMProbe
			j := newJudge(tc.spec, false)
			c := NewConsole()
			c.Feed([]byte(tc.console))
			j.observe(c, 100*time.Second)
			v, r := j.decide(c, tc.at, "", false)
			if v != tc.want || !strings.Contains(r, tc.has) {
				t.Errorf("got %d %q, want %d ~%q", v, r, tc.want, tc.has)
			}
		})
	}
}

func TestJudgeBuilderUEFILog(t *testing.T) {
	log := readLog(t, "builder-debian12-uefi-tcg.log")
	s := Spec{User: "builder", Grow: DefaultGrow, ExpectCmdline: "console=tty0 console=ttyS0,115200"}
	j, _, v, r := replay(t, s, log, 93*time.Second)
	if v != vPass || !strings.Contains(strings.Join(j.checks, ", "), "1 failed unit (cloud-config.service)") {
		t.Errorf("verdict %d %q checks %q", v, r, j.checks)
	}
	s.FailOnFailedUnits = true
	if _, _, v, r = replay(t, s, log, 93*time.Second); v != vFail || r != "1 failed unit (--no-failed-units): cloud-config.service" {
		t.Errorf("--no-failed-units: %d %q", v, r)
	}
}

func TestJudgeKVMProbeAndExit(t *testing.T) {
	stall := readLog(t, "kvm-pvm-stall-bios.log")
	s := Spec{KVMProbe: 20 * time.Second}
	j := newJudge(s, true)
	c := NewConsole()
	c.Feed(stall)
	if v, _ := j.decide(c, 5*time.Second, "", false); v != vContinue {
		t.Errorf("early: %d", v)
	}
	if v, r := j.decide(c, 20*time.Second, "", false); v != vKVMFailed || !strings.Contains(r, "GRUB loading.") {
		t.Errorf("after the window: %d %q", v, r)
	}
	// Once the kernel shows up the probe is over for good.
	c.Feed([]byte("\r\n[    0.000000] Linux version 6.1.0-56-amd64\r\n"))
	if v, _ := j.decide(c, 25*time.Second, "", false); v != vContinue || !j.kvmOK {
		t.Errorf("kernel seen: %d kvmOK %t", v, j.kvmOK)
	}
	if v, r := j.decide(c, 200*time.Second, "qemu: terminating\n", true); v != vFail || !strings.Contains(r, "QEMU exited") {
		t.Errorf("QEMU gone: %d %q", v, r)
	}
	if r := j.timeoutReason(c, 600*time.Second); !strings.Contains(r, "no login prompt within 600 s (console reached kernel") {
		t.Errorf("timeout reason %q", r)
	}
}
