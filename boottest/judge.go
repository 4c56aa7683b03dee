package boottest

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

// Grace periods inside the overall timeout.
const (
	// ciGrace: with --require-cloud-init, how long after the login prompt
	// cloud-init may stay silent before the run fails.
	ciGrace = 90 * time.Second
	// probeGrace: how long after cloud-init's "finished" line the probe may
	// take. runcmd runs before final_message, so it should already be there.
	probeGrace = 30 * time.Second
	// loginGrace: how long after cloud-init finished the serial login
	// prompt may take. getty does not wait for cloud-final, so it normally
	// comes first; long after, it is not coming (no getty on ttyS0).
	loginGrace = 120 * time.Second
)

type verdict int

const (
	vContinue  verdict = iota
	vPass              // the guest came up and every check passed
	vFail              // the guest will not pass; stop now
	vKVMFailed         // KVM cannot run this guest; restart with TCG or fail
)

// judge turns console state into a decision. It has no clock of its own:
// the caller passes the time since QEMU started, so recorded logs can be
// judged in tests.
type judge struct {
	spec     Spec
	probeKVM bool // this attempt runs on KVM and must show the kernel in time
	kvmOK    bool
	// kvmProven: the KVM failure is certain without a TCG cross-check.
	kvmProven bool
	// imageBytes is the image's virtual size: a root filesystem larger
	// than that can only have grown in the guest.
	imageBytes int64

	// First times, -1 until seen.
	kernelAt, loginAt, ciSeenAt, ciFinishedAt, probeAt, readyAt time.Duration

	checks []string // what passed, for the summary
}

func newJudge(s Spec, probeKVM bool) *judge {
	return &judge{spec: s, probeKVM: probeKVM,
		kernelAt: -1, loginAt: -1, ciSeenAt: -1, ciFinishedAt: -1, probeAt: -1, readyAt: -1}
}

// observe records the first time of each milestone and returns progress
// messages for the new ones.
func (j *judge) observe(c *Console, at time.Duration) []string {
	var msgs []string
	if j.kernelAt < 0 && c.Stage() >= StageKernel {
		j.kernelAt = at
		msgs = append(msgs, "kernel started after "+fmtSeconds(at))
	}
	if j.loginAt < 0 && c.LoginSeen() {
		j.loginAt = at
		msgs = append(msgs, "login prompt after "+fmtSeconds(at))
	}
	ci := c.CloudInit()
	if j.ciSeenAt < 0 && ci.Seen {
		j.ciSeenAt = at
		msgs = append(msgs, fmt.Sprintf("cloud-init %s running after %s", ci.Version, fmtSeconds(at)))
	}
	if j.probeAt < 0 {
		if p, _ := c.Probe(); p != nil {
			j.probeAt = at
			msgs = append(msgs, fmt.Sprintf("probe after %s: root fs %s of %s disk, %s, sudo %s",
				fmtSeconds(at), fmtBytes(p.RootBytes), fmtBytes(p.DiskBytes), failedUnits(p.FailedUnits), cmp.Or(p.Sudo, "unknown")))
		}
	}
	if r := c.RamdiskReady(); j.readyAt < 0 && r != nil {
		j.readyAt = at
		msgs = append(msgs, fmt.Sprintf("ramdisk ready after %s: %s", fmtSeconds(at), r.Line))
	}
	if j.ciFinishedAt < 0 && ci.Finished {
		j.ciFinishedAt = at
		msgs = append(msgs, fmt.Sprintf("cloud-init finished after %s (%s)", fmtSeconds(at), ci.Datasource))
	}
	return msgs
}

// decide says whether the boot passed, failed or must go on. stderr is
// QEMU's stderr so far; exited means QEMU is gone.
func (j *judge) decide(c *Console, at time.Duration, stderr string, exited bool) (verdict, string) {
	j.observe(c, at) // the grace periods need the milestone times; a no-op when already observed
	if f := c.Fatal(); f != "" {
		return vFail, "console shows a fatal error: " + quoteLine(f)
	}
	if j.probeKVM && !j.kvmOK {
		decided, works, proven, reason := kvmProbeResult(c.Stage(), at, j.spec.KVMProbe, stderr, exited, c.LastLine())
		if !decided {
			return vContinue, ""
		}
		if !works {
			j.kvmProven = proven
			return vKVMFailed, reason
		}
		j.kvmOK = true
	}
	v, reason := j.evaluate(c, at)
	if v == vContinue && exited {
		r := "QEMU exited before the guest came up (the guest powered off or rebooted, or QEMU failed)"
		if l := lastNonEmptyLine(stderr); l != "" {
			r += ": " + l
		}
		return vFail, r
	}
	return v, reason
}

// evaluate applies the success criteria to what the console has shown.
func (j *judge) evaluate(c *Console, at time.Duration) (verdict, string) {
	if j.spec.isRamdisk() {
		return j.evaluateRamdisk(c)
	}
	if !c.LoginSeen() {
		if j.ciFinishedAt >= 0 && at-j.ciFinishedAt >= loginGrace {
			return vFail, fmt.Sprintf("cloud-init finished after %s but no login prompt on ttyS0 within %s after that (no getty on the serial console? console=ttyS0 missing from the kernel command line?)",
				fmtSeconds(j.ciFinishedAt), fmtSeconds(loginGrace))
		}
		return vContinue, ""
	}
	ci := c.CloudInit()
	if !ci.Seen {
		if j.spec.RequireCloudInit {
			if at-j.loginAt >= ciGrace {
				return vFail, fmt.Sprintf("cloud-init did not run: no \"Cloud-init v.\" line within %s of the login prompt (--require-cloud-init)", fmtSeconds(ciGrace))
			}
			return vContinue, ""
		}
		j.checks = []string{"login prompt"}
		return j.checkWithoutProbe(c)
	}
	if !ci.Finished {
		return vContinue, ""
	}
	if ci.Datasource == "DataSourceNone" {
		return vFail, "cloud-init found no datasource (DataSourceNone): the NoCloud seed (CIDATA) was not read; check datasource_list in /etc/cloud/cloud.cfg.d"
	}
	p, perr := c.Probe()
	if p == nil {
		if at-j.ciFinishedAt < probeGrace {
			return vContinue, ""
		}
		r := fmt.Sprintf("cloud-init finished but the probe did not report within %s (runcmd did not run, or could not write to /dev/ttyS0)", fmtSeconds(probeGrace))
		if perr != nil {
			r += ": " + perr.Error()
		}
		return vFail, r
	}
	j.checks = []string{"login prompt", "cloud-init finished"}
	return j.checkProbe(c, p)
}

// checkWithoutProbe applies what can be checked from the console alone.
func (j *judge) checkWithoutProbe(c *Console) (verdict, string) {
	if j.spec.SecureBoot {
		return vFail, "cannot check --secure-boot: no probe ran (no cloud-init in the image) to read the guest's Secure Boot state"
	}
	if exp := j.spec.ExpectCmdline; exp != "" {
		cl := c.KernelCmdline()
		if cl == "" {
			return vFail, "cannot check --expect-cmdline: no probe ran (no cloud-init) and the kernel did not log its command line"
		}
		if !strings.Contains(cl, exp) {
			return vFail, fmt.Sprintf("kernel command line lacks %q: %q", exp, cl)
		}
		j.checks = append(j.checks, "cmdline has "+exp)
	}
	if units := c.FailedUnits(); len(units) > 0 {
		if j.spec.FailOnFailedUnits {
			return vFail, fmt.Sprintf("%s: %s", failedUnits(len(units)), strings.Join(units, "; "))
		}
		j.checks = append(j.checks, failedUnits(len(units)))
	}
	return vPass, ""
}

// checkProbe checks the facts the guest reported.
func (j *judge) checkProbe(c *Console, p *Probe) (verdict, string) {
	if !strings.HasPrefix(p.User, "uid=") {
		return vFail, fmt.Sprintf("user %s was not created: `id %s` says %q", j.spec.User, j.spec.User, p.User)
	}
	if !j.spec.SkipGrowCheck {
		if p.DiskBytes <= 0 || p.RootBytes <= 0 {
			return vFail, fmt.Sprintf("the probe could not size the root filesystem (%d bytes) or its disk (%d bytes)", p.RootBytes, p.DiskBytes)
		}
		if j.spec.Grow > 0 && j.imageBytes > 0 && p.RootBytes <= j.imageBytes {
			return vFail, fmt.Sprintf("root filesystem did not grow: %s, no larger than the image (%s); is growpart/resizefs in the image?",
				fmtBytes(p.RootBytes), fmtBytes(j.imageBytes))
		}
		// With the partition's geometry: it must reach the end of the
		// disk (less the backup GPT) and the filesystem must fill it.
		if p.PartBytes > 0 && p.TailBytes >= 0 {
			if p.TailBytes > 2<<20 || p.RootBytes*10 < p.PartBytes*9 {
				return vFail, fmt.Sprintf("root did not grow to fill its disk: partition %s with %s unused after it, filesystem %s (is growpart/resizefs in the image?)",
					fmtBytes(p.PartBytes), fmtBytes(p.TailBytes), fmtBytes(p.RootBytes))
			}
		} else if p.RootBytes*10 < p.DiskBytes*9 {
			// Without it (older probe): ext4 keeps a few percent for inode
			// tables and the journal, other partitions take some more;
			// 90% of the disk means it grew.
			return vFail, fmt.Sprintf("root filesystem did not grow to fill its disk: %s of %s (want at least 90%%; is growpart/resizefs in the image?)",
				fmtBytes(p.RootBytes), fmtBytes(p.DiskBytes))
		}
		j.checks = append(j.checks, fmt.Sprintf("root fs %s of %s", fmtBytes(p.RootBytes), fmtBytes(p.DiskBytes)))
	}
	if j.spec.SecureBoot {
		if p.SecureBoot != "1" {
			return vFail, fmt.Sprintf("the guest booted but reports Secure Boot %s (SecureBoot variable %q): the image's boot chain is not the signed one (shim-signed, grub-efi-amd64-signed)",
				map[bool]string{true: "disabled", false: "state unknown"}[p.SecureBoot == "0"], p.SecureBoot)
		}
		j.checks = append(j.checks, "Secure Boot enabled in the guest")
	}
	if exp := j.spec.ExpectCmdline; exp != "" {
		if !strings.Contains(p.Cmdline, exp) {
			return vFail, fmt.Sprintf("kernel command line lacks %q: %q", exp, p.Cmdline)
		}
		j.checks = append(j.checks, "cmdline has "+exp)
	}
	if p.FailedUnits > 0 {
		if j.spec.FailOnFailedUnits {
			r := failedUnits(p.FailedUnits) + " (--no-failed-units)"
			if len(p.FailedUnitNames) > 0 {
				r += ": " + strings.Join(p.FailedUnitNames, " ")
			} else if u := c.FailedUnits(); len(u) > 0 {
				r += ": " + strings.Join(u, "; ")
			}
			return vFail, r
		}
		fu := failedUnits(p.FailedUnits)
		if len(p.FailedUnitNames) > 0 {
			fu += " (" + strings.Join(p.FailedUnitNames, " ") + ")"
		}
		j.checks = append(j.checks, fu)
	}
	return vPass, ""
}

// timeoutReason explains a timeout from how far the boot got.
func (j *judge) timeoutReason(c *Console, limit time.Duration) string {
	if j.spec.isRamdisk() {
		return j.ramdiskTimeoutReason(c, limit)
	}
	ci := c.CloudInit()
	switch {
	case !c.LoginSeen():
		r := fmt.Sprintf("timeout: no login prompt within %s (console reached %s", fmtSeconds(limit), c.Stage())
		if l := c.LastLine(); l != "" {
			r += "; last line " + quoteLine(l)
		}
		return r + ")"
	case j.spec.RequireCloudInit && !ci.Seen:
		return fmt.Sprintf("timeout: login prompt after %s but cloud-init never ran (--require-cloud-init)", fmtSeconds(j.loginAt))
	case ci.Seen && !ci.Finished:
		return fmt.Sprintf("timeout: login prompt after %s but cloud-init did not finish within %s", fmtSeconds(j.loginAt), fmtSeconds(limit))
	}
	return fmt.Sprintf("timeout after %s waiting for the probe", fmtSeconds(limit))
}

func failedUnits(n int) string {
	switch n {
	case -1:
		return "failed units unknown"
	case 1:
		return "1 failed unit"
	}
	return fmt.Sprintf("%d failed units", n)
}

func lastNonEmptyLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}
