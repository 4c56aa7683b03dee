package boottest

// Ramdisk boots: a kernel and an initramfs (NAME.kernel, NAME.initramfs of
// `builder ramdisk`, DIB's ramdisk-image-create) started with QEMU's
// -kernel and -initrd instead of a disk image. There is no disk, no
// NoCloud seed and no cloud-init: the boot passes on the ramdisk's own
// readiness line, which ramdisk-base prints once an interface has an
// address from DHCP (QEMU's user network answers it):
//
//	builder-ramdisk: ready: network up on IFACE ADDR/PREFIX (gateway GW) after N s
//
// DIB's own ramdisks (ramdisk-base's init) print "network ready" after
// their DHCP, which counts too when they also printed the address they
// obtained (they print the line even when DHCP failed); Spec.Ready "login"
// passes on a login prompt instead, for ramdisks that print neither.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// RamdiskReady is the readiness line a ramdisk printed.
type RamdiskReady struct {
	Line    string `json:"line"`
	Iface   string `json:"iface,omitempty"`
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// DIB is true when the line is DIB's ramdisk-base "network ready".
	DIB bool `json:"dib,omitempty"`
}

var (
	ramdiskReadyRE    = regexp.MustCompile(`builder-ramdisk: ready: network up on (\S+) (\S+)(?: \(gateway (\S+)\))?`)
	ramdiskNotReadyRE = regexp.MustCompile(`builder-ramdisk: not ready: (.*)$`)
	// DIB's ramdisk init: "obtained the following from dhcp:",
	// " ip address = 10.0.2.15", ..., then "network ready".
	dibReadyRE   = regexp.MustCompile(`^\s*network ready\s*$`)
	dibAddressRE = regexp.MustCompile(`^\s*ip address = (\S+)\s*$`)
)

// matchRamdisk looks for readiness lines; matchLine calls it on every line.
func (c *Console) matchRamdisk(line string) {
	if c.ramdisk != nil {
		return
	}
	if m := ramdiskReadyRE.FindStringSubmatch(line); m != nil {
		c.ramdisk = &RamdiskReady{Line: strings.TrimSpace(line[strings.Index(line, "builder-ramdisk:"):]), Iface: m[1], Address: m[2], Gateway: m[3]}
		return
	}
	if m := ramdiskNotReadyRE.FindStringSubmatch(line); m != nil && c.fatal == "" {
		c.fatal = "the ramdisk's network did not come up: " + strings.TrimSpace(m[1])
		return
	}
	if m := dibAddressRE.FindStringSubmatch(line); m != nil {
		c.dibAddress = m[1]
	}
	if dibReadyRE.MatchString(line) {
		if c.dibAddress == "" && c.fatal == "" {
			// DIB's init says so even when its DHCP failed.
			c.fatal = "DIB's ramdisk printed \"network ready\" without a DHCP address (\"ip address =\" was empty): its network did not come up"
			return
		}
		c.ramdisk = &RamdiskReady{Line: strings.TrimSpace(line), Address: c.dibAddress, DIB: true}
	}
}

// RamdiskReady returns the ramdisk's readiness line, or nil.
func (c *Console) RamdiskReady() *RamdiskReady { return c.ramdisk }

// isRamdisk reports whether the spec boots a kernel and initramfs.
func (s Spec) isRamdisk() bool { return s.Kernel != "" || s.Initramfs != "" }

// ramdiskDefaults checks and completes the ramdisk fields of a spec.
func (s Spec) ramdiskDefaults() (Spec, error) {
	if s.Image != "" {
		return s, usagef("give a disk image or a kernel and initramfs, not both")
	}
	if s.Kernel == "" || s.Initramfs == "" {
		return s, usagef("a ramdisk boot needs both --kernel and --initramfs (or NAME, for NAME.kernel and NAME.initramfs)")
	}
	for _, p := range []*string{&s.Kernel, &s.Initramfs} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return s, err
		}
		*p = abs
		st, err := os.Stat(abs)
		switch {
		case err != nil:
			return s, usagef("%s does not exist: pass the files `builder ramdisk -o NAME` wrote (NAME.kernel, NAME.initramfs)", abs)
		case !st.Mode().IsRegular():
			return s, usagef("%s is not a regular file", abs)
		}
	}
	switch s.Ready {
	case "":
		s.Ready = "marker"
	case "marker", "login":
	default:
		return s, usagef("ready %q is not known: use marker (the ramdisk's readiness line) or login (a login prompt)", s.Ready)
	}
	if s.Memory <= 0 {
		m, err := RamdiskMemory(s.Initramfs)
		if err != nil {
			return s, &UsageError{Msg: "cannot read the initramfs " + s.Initramfs, Err: err}
		}
		s.Memory = m
	}
	return s, nil
}

// RamdiskMemory is the guest memory (MiB) a ramdisk boot gets by default:
// room for the kernel's copy of the compressed archive while it unpacks,
// the unpacked root filesystem (it lives in memory) and 768 MiB for the
// system to run, rounded up to 256 MiB; at least 1 GiB (DIB's ramdisks say
// they need that much). The unpacked size is gzip's recorded size when the
// archive is a single gzip member, else four times the file.
func RamdiskMemory(initramfs string) (int, error) {
	f, err := os.Open(initramfs)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	unpacked := 4 * size
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err == nil && bytes.Equal(head, []byte{0x1f, 0x8b}) && size > 8 {
		tail := make([]byte, 4)
		if _, err := f.ReadAt(tail, size-4); err == nil {
			// ISIZE is the size modulo 4 GiB: add the wraps a plausible
			// compression ratio (at most 10:1) allows for.
			isize := int64(binary.LittleEndian.Uint32(tail))
			for isize < size && isize+(1<<32) <= 10*size {
				isize += 1 << 32
			}
			if isize >= size {
				unpacked = isize
			}
		}
	}
	mib := int64(768) + (size+unpacked)>>20
	mib = (mib + 255) / 256 * 256
	return int(max(mib, 1024)), nil
}

// inspectRamdisk reports what a ramdisk boot starts with.
func (r *runner) inspectRamdisk() error {
	s := r.s
	var sizes []string
	for _, p := range []string{s.Kernel, s.Initramfs} {
		st, err := os.Stat(p)
		if err != nil {
			return &UsageError{Msg: "cannot read " + p, Err: err}
		}
		sizes = append(sizes, fmtBytes(st.Size()))
	}
	r.say("ramdisk: kernel %s (%s), initramfs %s (%s); guest memory %d MiB; command line %q",
		s.Kernel, sizes[0], s.Initramfs, sizes[1], s.Memory, ramdiskCmdline(s.Append))
	return nil
}

// ramdiskCmdline is the kernel command line of a ramdisk boot: the serial
// console last, so that it is /dev/console (where the readiness line and
// systemd's messages go), then what the caller adds.
func ramdiskCmdline(extra string) string {
	parts := []string{"console=tty0", "console=ttyS0,115200n8"}
	if e := strings.TrimSpace(extra); e != "" {
		parts = append(parts, e)
	}
	return strings.Join(parts, " ")
}

// evaluateRamdisk applies the ramdisk success criteria.
func (j *judge) evaluateRamdisk(c *Console) (verdict, string) {
	if j.spec.Ready == "login" {
		if !c.LoginSeen() {
			return vContinue, ""
		}
		j.checks = []string{"login prompt"}
	} else {
		r := c.RamdiskReady()
		if r == nil {
			return vContinue, ""
		}
		what := "network up"
		if r.Iface != "" {
			what += " on " + r.Iface
		}
		if r.Address != "" {
			what += " " + r.Address
		}
		j.checks = []string{"ramdisk ready", what}
	}
	if exp := j.spec.ExpectCmdline; exp != "" {
		cl := c.KernelCmdline()
		if cl == "" {
			return vFail, "cannot check --expect-cmdline: the kernel did not log its command line"
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

// ramdiskTimeoutReason explains a ramdisk boot that timed out.
func (j *judge) ramdiskTimeoutReason(c *Console, limit time.Duration) string {
	want := "the ramdisk's readiness line (\"builder-ramdisk: ready: ...\", or DIB's \"network ready\")"
	if j.spec.Ready == "login" {
		want = "a login prompt"
	}
	r := fmt.Sprintf("timeout: no %s within %s (console reached %s", want, fmtSeconds(limit), c.Stage())
	if l := c.LastLine(); l != "" {
		r += "; last line " + quoteLine(l)
	}
	r += ")"
	if j.spec.Ready != "login" && c.LoginSeen() {
		r += "; a login prompt appeared: is ramdisk-base in the ramdisk's elements? (--ready login accepts the prompt)"
	}
	return r
}
