package boottest

import (
	"regexp"
	"strings"
)

// Stage is how far the boot got, as far as the serial console shows.
type Stage int

// Boot stages in the order a boot passes through them.
const (
	StageNone       Stage = iota // no output yet
	StageFirmware                // SeaBIOS/OVMF (any output counts)
	StageBootloader              // GRUB and friends
	StageKernel                  // kernel log lines
	StageUserspace               // initramfs, systemd, cloud-init
	StageLogin                   // a login prompt
)

func (s Stage) String() string {
	switch s {
	case StageNone:
		return "no output"
	case StageFirmware:
		return "firmware"
	case StageBootloader:
		return "bootloader"
	case StageKernel:
		return "kernel"
	case StageUserspace:
		return "userspace"
	case StageLogin:
		return "login prompt"
	}
	return "unknown"
}

// CloudInit is what the console showed of cloud-init.
type CloudInit struct {
	// Seen is true once any "Cloud-init v. X" line appeared.
	Seen    bool
	Version string
	// Finished is true once "Cloud-init v. X finished at ..." appeared
	// (cloud-init's final_message, the last thing it does).
	Finished bool
	// Datasource is the datasource named in the finished line, such as
	// DataSourceNoCloud; DataSourceNone means no seed was found.
	Datasource string
}

const (
	tailLines  = 200
	maxLineLen = 4096 // GRUB's menu is drawn without newlines; cut it into pieces
)

var (
	// Kernel printk timestamps have six decimals; systemd's lines have none.
	kernelTimeRE = regexp.MustCompile(`\[\s*\d+\.\d{6}\]`)
	kernelCmdRE  = regexp.MustCompile(`\]\s+Command line:\s*(.*)$`)
	ciSeenRE     = regexp.MustCompile(`Cloud-init v\. (\S+)`)
	ciFinishedRE = regexp.MustCompile(`Cloud-init v\. (\S+) finished at .*Datasource (\w+)`)
	failedUnitRE = regexp.MustCompile(`\[FAILED\] Failed to start (.+?)\.?\s*$`)
	// A getty prompt is "<hostname> login: " with no newline after it.
	loginPromptRE = regexp.MustCompile(`(?:^|\s)login:\s*$`)
	// On a complete line the prompt may be followed by a kernel message
	// that was printed before anyone typed.
	loginLineRE = regexp.MustCompile(`(?:^|\s)login:(?:\s|$)`)
	grubShellRE = regexp.MustCompile(`^grub>\s*$`)
	// OVMF starts its shell when no boot option worked (and no startup.nsh
	// booted anything): the prompt means nothing bootable was found.
	uefiShellRE = regexp.MustCompile(`^Shell>\s*$`)
)

// fatalPatterns end a boot early: each one means the guest will not reach
// a usable login (or has dropped to a shell that looks like one).
var fatalPatterns = []string{
	"Kernel panic",
	"ALERT!",                   // initramfs-tools: root device missing
	"Gave up waiting for root", // initramfs-tools
	"error: no such device",    // GRUB: search by UUID/label failed
	"grub rescue>",
	"No bootable device",                     // SeaBIOS
	"No bootable option or device was found", // OVMF
	"You are in emergency mode",              // systemd
}

// Console follows a serial console byte stream and records what matters for
// a boot test. It has no clock and no I/O, so recorded logs can be replayed
// through it in tests. It is not safe for concurrent use.
type Console struct {
	san      sanitizer
	partial  []byte
	tail     []string // ring of the last tailLines non-empty lines
	tailNext int
	bytes    int64

	stage         Stage
	login         bool
	kernelCmdline string
	ci            CloudInit
	probe         *Probe
	probeErr      error
	fatal         string
	failedUnits   []string
	ramdisk       *RamdiskReady // ramdisk.go
	dibAddress    string
}

// NewConsole returns an empty Console.
func NewConsole() *Console { return &Console{} }

// Feed consumes the next piece of console output; pieces may split lines,
// UTF-8 sequences and escape sequences anywhere.
func (c *Console) Feed(p []byte) {
	c.bytes += int64(len(p))
	if len(p) > 0 && c.stage < StageFirmware {
		c.stage = StageFirmware
	}
	for _, b := range p {
		b, ok := c.san.next(b)
		if !ok {
			continue
		}
		if b == '\n' || b == '\r' {
			c.endLine()
			continue
		}
		c.partial = append(c.partial, b)
		if len(c.partial) >= maxLineLen {
			c.endLine()
		}
	}
	c.checkPrompt(strings.TrimLeft(string(c.partial), " \t"))
}

func (c *Console) endLine() {
	line := string(c.partial)
	c.partial = c.partial[:0]
	if strings.TrimSpace(line) == "" {
		return
	}
	c.addTail(line)
	c.matchLine(line)
}

func (c *Console) addTail(line string) {
	if len(c.tail) < tailLines {
		c.tail = append(c.tail, line)
		return
	}
	c.tail[c.tailNext] = line
	c.tailNext = (c.tailNext + 1) % tailLines
}

func (c *Console) reach(s Stage) {
	if s > c.stage {
		c.stage = s
	}
}

// matchLine looks at one complete, sanitized line.
func (c *Console) matchLine(line string) {
	c.matchStage(line)
	if c.kernelCmdline == "" {
		if m := kernelCmdRE.FindStringSubmatch(line); m != nil && kernelTimeRE.MatchString(line) {
			c.kernelCmdline = strings.TrimSpace(m[1])
		}
	}
	if !strings.Contains(line, "Last login") && loginLineRE.MatchString(line) {
		c.login = true
		c.reach(StageLogin)
	}
	if m := ciSeenRE.FindStringSubmatch(line); m != nil {
		c.ci.Seen = true
		if c.ci.Version == "" {
			c.ci.Version = m[1]
		}
	}
	if m := ciFinishedRE.FindStringSubmatch(line); m != nil {
		c.ci.Finished = true
		c.ci.Datasource = m[2]
	}
	if i := strings.Index(line, probeMarker); i >= 0 && c.probe == nil {
		p, err := ParseProbe(line[i:])
		if err != nil {
			c.probeErr = err
		} else {
			c.probe, c.probeErr = p, nil
		}
	}
	c.matchRamdisk(line)
	if m := failedUnitRE.FindStringSubmatch(line); m != nil {
		u := strings.TrimSpace(m[1])
		found := false
		for _, v := range c.failedUnits {
			found = found || v == u
		}
		if !found {
			c.failedUnits = append(c.failedUnits, u)
		}
	}
	if c.fatal == "" {
		for _, f := range fatalPatterns {
			// Debian's signed GRUB looks for /.disk/info on every device
			// and says "no such device" for it; that is harmless.
			if strings.Contains(line, f) && !strings.Contains(line, "/.disk/info") {
				c.fatal = strings.TrimSpace(line)
				break
			}
		}
		if strings.HasPrefix(strings.TrimSpace(line), "(initramfs)") {
			c.fatal = strings.TrimSpace(line)
		}
	}
}

// matchStage advances the boot stage from a complete line.
func (c *Console) matchStage(line string) {
	if bootloaderLine(line) {
		c.reach(StageBootloader)
	}
	if kernelTimeRE.MatchString(line) || strings.Contains(line, "Linux version ") ||
		strings.Contains(line, "EFI stub:") || strings.Contains(line, "Decompressing Linux") {
		c.reach(StageKernel)
	}
	for _, m := range []string{"Welcome to ", "systemd[1]:", "[  OK  ]", "Begin: ", "Run /init",
		"Loading, please wait", "Cloud-init v.", "Reached target "} {
		if strings.Contains(line, m) && !strings.Contains(line, "GRUB") {
			c.reach(StageUserspace)
			break
		}
	}
}

func bootloaderLine(line string) bool {
	return strings.Contains(line, "GRUB") || strings.Contains(line, "Loading Linux") ||
		strings.Contains(line, "Booting `") || strings.Contains(line, "Loading initial ramdisk") ||
		strings.Contains(line, "SYSLINUX")
}

// checkPrompt looks at the unfinished last line: prompts wait for input and
// so never end with a newline.
func (c *Console) checkPrompt(p string) {
	if p == "" {
		return
	}
	// A stall often leaves an unfinished line ("GRUB loading."): it
	// still tells how far the boot got. Only bootloader markers count
	// here: an unfinished "Welcome to " may yet become "Welcome to GRUB!".
	if c.stage < StageBootloader && bootloaderLine(p) {
		c.reach(StageBootloader)
	}
	if loginPromptRE.MatchString(p) && !strings.Contains(p, "Last login") {
		c.login = true
		c.reach(StageLogin)
	}
	if c.fatal == "" && (strings.HasPrefix(p, "(initramfs)") || strings.Contains(p, "grub rescue>") ||
		grubShellRE.MatchString(p) || uefiShellRE.MatchString(p)) {
		c.fatal = strings.TrimSpace(p) + " (a shell prompt: the boot gave up)"
	}
}

// Bytes is the number of bytes fed so far.
func (c *Console) Bytes() int64 { return c.bytes }

// Stage is the furthest boot stage seen.
func (c *Console) Stage() Stage { return c.stage }

// LoginSeen reports whether a login prompt appeared.
func (c *Console) LoginSeen() bool { return c.login }

// CloudInit reports what was seen of cloud-init.
func (c *Console) CloudInit() CloudInit { return c.ci }

// Probe returns the parsed probe line, or nil and the parse error of the
// last malformed one (nil, nil when none appeared).
func (c *Console) Probe() (*Probe, error) { return c.probe, c.probeErr }

// Fatal returns the first line that means the boot failed, or "".
func (c *Console) Fatal() string { return c.fatal }

// KernelCmdline is the command line the kernel logged ("Command line: ..."),
// or "" when the kernel did not log it (quiet, or not booted yet).
func (c *Console) KernelCmdline() string { return c.kernelCmdline }

// FailedUnits lists the units systemd reported as "[FAILED] Failed to start".
func (c *Console) FailedUnits() []string { return append([]string(nil), c.failedUnits...) }

// Tail returns up to n of the last non-empty lines, oldest first, including
// the unfinished line (a prompt) if there is one.
func (c *Console) Tail(n int) []string {
	var all []string
	if len(c.tail) < tailLines {
		all = append(all, c.tail...)
	} else {
		all = append(all, c.tail[c.tailNext:]...)
		all = append(all, c.tail[:c.tailNext]...)
	}
	if p := strings.TrimSpace(string(c.partial)); p != "" {
		all = append(all, string(c.partial))
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// LastLine is the last non-empty line (or the unfinished one), for messages.
func (c *Console) LastLine() string {
	t := c.Tail(1)
	if len(t) == 0 {
		return ""
	}
	return strings.TrimSpace(t[0])
}

// sanitizer drops terminal escape sequences and control characters so the
// matcher sees text: SeaBIOS resets the terminal, GRUB draws its menu with
// cursor movements and systemd colours its status.
type sanitizer struct {
	state int
	n     int // bytes in the current sequence, to bound runaway sequences
}

const (
	sNormal = iota
	sEsc
	sEscInter
	sCSI
	sString
	sStringEsc
)

// next returns the byte to emit for b, if any. '\r' and '\n' are emitted
// (both end a line); other control bytes are dropped.
func (s *sanitizer) next(b byte) (byte, bool) {
	if s.state != sNormal {
		s.n++
		if s.n > 256 { // not a real sequence: give up on it
			s.state = sNormal
		}
	}
	switch s.state {
	case sNormal:
		switch {
		case b == 0x1b:
			s.state, s.n = sEsc, 0
			return 0, false
		case b == '\n', b == '\r', b == '\t':
			return b, true
		case b < 0x20, b == 0x7f:
			return 0, false
		}
		return b, true
	case sEsc:
		switch {
		case b == '[':
			s.state = sCSI
		case b == ']', b == 'P', b == 'X', b == '^', b == '_':
			s.state = sString
		case b >= 0x20 && b <= 0x2f:
			s.state = sEscInter
		default:
			s.state = sNormal
		}
	case sEscInter:
		if b < 0x20 || b > 0x2f {
			s.state = sNormal
		}
	case sCSI:
		if b >= 0x40 && b <= 0x7e {
			s.state = sNormal
		}
	case sString:
		switch b {
		case 0x07:
			s.state = sNormal
		case 0x1b:
			s.state = sStringEsc
		}
	case sStringEsc:
		if b == '\\' {
			s.state = sNormal
		} else {
			s.state = sString
		}
	}
	return 0, false
}

// textFilter turns raw console output into plain text for a terminal
// (--verbose): no escape sequences (SeaBIOS would reset the user's
// terminal), no control characters but newlines and tabs. It keeps state
// across calls because sequences can be split between reads.
type textFilter struct {
	s    sanitizer
	last byte // last byte emitted
}

func (f *textFilter) filter(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for _, b := range p {
		if c, ok := f.s.next(b); ok && c != '\r' {
			out = append(out, c)
			f.last = c
		}
	}
	return out
}

// end returns the newline that ends an unfinished last line (a prompt), so
// that what is printed next starts on a line of its own.
func (f *textFilter) end() []byte {
	if f.last == 0 || f.last == '\n' {
		return nil
	}
	f.last = '\n'
	return []byte{'\n'}
}
