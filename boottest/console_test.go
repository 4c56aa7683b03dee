package boottest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// Recorded logs in testdata: see testdata/README.md.
func readLog(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// feedChunks feeds b in random pieces (1..max bytes) so that lines, UTF-8
// and escape sequences are split at arbitrary places, as pipe reads do.
func feedChunks(c *Console, b []byte, max int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	for len(b) > 0 {
		n := 1 + r.IntN(max)
		n = min(n, len(b))
		c.Feed(b[:n])
		b = b[n:]
	}
}

type consoleState struct {
	Stage         Stage
	Login         bool
	CloudInit     CloudInit
	Probe         *Probe
	Fatal         string
	KernelCmdline string
	FailedUnits   []string
	Tail          []string
}

func stateOf(c *Console) consoleState {
	p, _ := c.Probe()
	return consoleState{c.Stage(), c.LoginSeen(), c.CloudInit(), p, c.Fatal(), c.KernelCmdline(), c.FailedUnits(), c.Tail(30)}
}

// The matcher must not depend on how the stream is cut into reads.
func TestConsoleChunkingDoesNotMatter(t *testing.T) {
	for _, name := range []string{"dib-debian-minimal-bios-tcg.log", "debian12-cloudinit-bios-tcg.log",
		"builder-debian12-uefi-tcg.log", "kvm-pvm-stall-bios.log"} {
		t.Run(name, func(t *testing.T) {
			b := readLog(t, name)
			whole := NewConsole()
			whole.Feed(b)
			want := stateOf(whole)
			for i, max := range []int{1, 3, 17, 512, 4096} {
				c := NewConsole()
				feedChunks(c, b, max, uint64(i+1))
				if got := stateOf(c); !reflect.DeepEqual(got, want) {
					t.Errorf("chunks of <= %d bytes:\n got %+v\nwant %+v", max, got, want)
				}
				if c.Bytes() != int64(len(b)) {
					t.Errorf("Bytes() = %d, want %d", c.Bytes(), len(b))
				}
			}
		})
	}
}

func TestConsoleDIBLog(t *testing.T) {
	c := NewConsole()
	feedChunks(c, readLog(t, "dib-debian-minimal-bios-tcg.log"), 300, 7)
	if !c.LoginSeen() || c.Stage() != StageLogin {
		t.Fatalf("login not seen, stage %s; tail %q", c.Stage(), c.Tail(5))
	}
	if c.CloudInit().Seen {
		t.Error("cloud-init seen in an image without it")
	}
	if f := c.Fatal(); f != "" {
		t.Errorf("fatal %q in a good boot", f)
	}
	if p, err := c.Probe(); p != nil || err != nil {
		t.Errorf("probe %v, %v in a boot without cloud-init", p, err)
	}
	if cl := c.KernelCmdline(); !strings.Contains(cl, "console=tty0 console=ttyS0,115200") || !strings.HasPrefix(cl, "BOOT_IMAGE=") {
		t.Errorf("kernel cmdline %q", cl)
	}
	if u := c.FailedUnits(); len(u) != 0 {
		t.Errorf("failed units %q", u)
	}
	if l := c.LastLine(); l != "debian login:" {
		t.Errorf("last line %q, want the prompt", l)
	}
	for _, l := range c.Tail(30) {
		if strings.ContainsAny(l, "\x1b\r") {
			t.Errorf("escape or CR left in %q", l)
		}
	}
}

func TestConsoleCloudInitLog(t *testing.T) {
	c := NewConsole()
	feedChunks(c, readLog(t, "debian12-cloudinit-bios-tcg.log"), 300, 9)
	ci := c.CloudInit()
	want := CloudInit{Seen: true, Version: "22.4.2", Finished: true, Datasource: "DataSourceNoCloud"}
	if ci != want {
		t.Errorf("cloud-init %+v, want %+v", ci, want)
	}
	// In this log the prompt is followed on the same line by a cloud-init
	// message: "builder-boot-test login: [   96.500618] cloud-init[379]: ...".
	if !c.LoginSeen() {
		t.Error("interleaved login prompt not recognised")
	}
	p, err := c.Probe()
	if err != nil || p == nil {
		t.Fatalf("probe: %v, %v", p, err)
	}
	if p.RootBytes != 3592245248 || p.DiskBytes != 3902406656 || p.FailedUnits != 0 || p.Sudo != "yes" || p.FailedUnitNames != nil {
		t.Errorf("probe %+v", p)
	}
	if !strings.HasPrefix(p.User, "uid=1000(builder)") {
		t.Errorf("probe user %q", p.User)
	}
	if !strings.Contains(p.Cmdline, "console=tty0 console=ttyS0,115200") || p.Cmdline != c.KernelCmdline() {
		t.Errorf("probe cmdline %q, kernel logged %q", p.Cmdline, c.KernelCmdline())
	}
	if f := c.Fatal(); f != "" {
		t.Errorf("fatal %q", f)
	}
}

// builder's own image (GPT, ESP) booted with OVMF: firmware output, a
// failed unit named by the probe, no "[FAILED]" line on the console.
func TestConsoleBuilderUEFILog(t *testing.T) {
	c := NewConsole()
	feedChunks(c, readLog(t, "builder-debian12-uefi-tcg.log"), 300, 11)
	if !c.LoginSeen() || c.Fatal() != "" {
		t.Fatalf("login %t fatal %q", c.LoginSeen(), c.Fatal())
	}
	ci := c.CloudInit()
	if !ci.Finished || ci.Datasource != "DataSourceNoCloud" {
		t.Errorf("cloud-init %+v", ci)
	}
	p, err := c.Probe()
	if err != nil || p == nil {
		t.Fatalf("probe %v %v", p, err)
	}
	if p.FailedUnits != 1 || !reflect.DeepEqual(p.FailedUnitNames, []string{"cloud-config.service"}) {
		t.Errorf("failed units %d %q", p.FailedUnits, p.FailedUnitNames)
	}
	if !strings.Contains(p.Cmdline, "root=UUID=") || !strings.Contains(p.Cmdline, "console=ttyS0,115200") {
		t.Errorf("cmdline %q", p.Cmdline)
	}
}

func TestConsoleKVMStall(t *testing.T) {
	c := NewConsole()
	c.Feed(readLog(t, "kvm-pvm-stall-bios.log"))
	if c.Stage() != StageBootloader {
		t.Errorf("stage %s, want bootloader (GRUB loading.)", c.Stage())
	}
	if c.LoginSeen() || c.Fatal() != "" {
		t.Errorf("login %t fatal %q", c.LoginSeen(), c.Fatal())
	}
	if l := c.LastLine(); l != "GRUB loading." {
		t.Errorf("last line %q", l)
	}
}

func TestConsoleFatalPatterns(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		fatal    bool
	}{
		{"panic", "[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n", true},
		{"alert", "ALERT!  /dev/loop0p3 does not exist.  Dropping to a shell!\r\n", true},
		{"gave up", "Gave up waiting for root file system device.  Common problems:\r\n", true},
		{"initramfs prompt", "BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) built-in shell (ash)\r\n(initramfs) ", true},
		{"grub no such device", "error: no such device: 4f1c7a4e-0000-4000-8000-000000000000.\r\n", true},
		{"grub rescue", "Entering rescue mode...\r\ngrub rescue> ", true},
		{"grub shell", "\x1b[H\x1b[JGNU GRUB  version 2.06\r\n\r\ngrub> ", true},
		{"seabios", "Boot failed: not a bootable disk\r\n\r\nNo bootable device.  Retrying in 60 seconds.\r\n", true},
		{"ovmf", "BdsDxe: No bootable option or device was found.\r\n", true},
		{"uefi shell", "UEFI Interactive Shell v2.2\r\nPress ESC in 1 seconds to skip startup.nsh\r\n\x1b[08;01H\x1b[1m\x1b[33m\x1b[40mShell> \x1b[0m\x1b[37m\x1b[40m", true},
		{"emergency", "You are in emergency mode. After logging in, type \"journalctl -xb\" to view\r\n", true},
		{"signed grub disk info", "error: no such device: /.disk/info.\r\n", false},
		{"normal boot text", "[  OK  ] Started systemd-logind.service - User Login Management.\r\n", false},
		{"sysctl text", "kernel.panic = 10\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConsole()
			feedChunks(c, []byte(tc.in), 5, 3)
			if got := c.Fatal() != ""; got != tc.fatal {
				t.Errorf("fatal = %q, want fatal %t", c.Fatal(), tc.fatal)
			}
		})
	}
}

func TestConsoleLoginPrompt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []string
		login bool
	}{
		{"split prompt", []string{"\r\nDebian GNU/Linux 12 deb", "ian ttyS0\r\n\r\ndebian log", "in: "}, true},
		{"prompt then kernel line", []string{"host login: [   96.5] cloud-init[379]: Cloud-init v. 22.4.2 running\r\n"}, true},
		{"bare prompt", []string{"login: "}, true},
		{"last login", []string{"Last login: Thu Nov 26 05:00:00 UTC 2026 on ttyS0\r\n"}, false},
		{"logind", []string{"Starting systemd-logind.service - User Login Management...\r\n"}, false},
		{"not yet", []string{"debian logi"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConsole()
			for _, p := range tc.parts {
				c.Feed([]byte(p))
			}
			if c.LoginSeen() != tc.login {
				t.Errorf("LoginSeen = %t, want %t (tail %q)", c.LoginSeen(), tc.login, c.Tail(3))
			}
		})
	}
}

func TestConsoleCloudInitLines(t *testing.T) {
	c := NewConsole()
	c.Feed([]byte("[   65.8] cloud-init[264]: Cloud-init v. 23.1 running 'init-local' at Thu, 26 Nov 2026. Up 65.11 seconds.\r\n"))
	if ci := c.CloudInit(); !ci.Seen || ci.Finished || ci.Version != "23.1" {
		t.Errorf("after init-local: %+v", ci)
	}
	c.Feed([]byte("[  113.7] cloud-init[405]: Cloud-init v. 23.1 finished at Thu, 26 Nov 2026 05:03:56 +0000. Datasource DataSourceNone.  Up 113.64 seconds\r\n"))
	if ci := c.CloudInit(); !ci.Finished || ci.Datasource != "DataSourceNone" {
		t.Errorf("after finished: %+v", ci)
	}
}

func TestConsoleFailedUnitsAndTail(t *testing.T) {
	c := NewConsole()
	var in strings.Builder
	for i := range 50 {
		in.WriteString("line " + string(rune('a'+i%26)) + "\r\r\n")
	}
	in.WriteString("[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mfoo.service\x1b[0m - Foo.\r\n")
	in.WriteString("[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mfoo.service\x1b[0m - Foo.\r\n")
	in.WriteString("[FAILED] Failed to start bar.service.\r\n")
	c.Feed([]byte(in.String()))
	want := []string{"foo.service - Foo", "bar.service"}
	if got := c.FailedUnits(); !reflect.DeepEqual(got, want) {
		t.Errorf("failed units %q, want %q", got, want)
	}
	tail := c.Tail(30)
	if len(tail) != 30 || tail[29] != "[FAILED] Failed to start bar.service." {
		t.Errorf("tail has %d lines, last %q", len(tail), tail[len(tail)-1])
	}
}

func TestSanitizerEscapes(t *testing.T) {
	var f textFilter
	in := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\n\x1b]0;title\x07\x1b(Bok\x1b[04;02H\tx\x00\x7f\n"
	var out []byte
	for i := range len(in) { // one byte at a time: sequences split across calls
		out = append(out, f.filter([]byte{in[i]})...)
	}
	if got, want := string(out), "SeaBIOS\nok\tx\n"; got != want {
		t.Errorf("filtered %q, want %q", got, want)
	}
	if e := f.end(); e != nil {
		t.Errorf("end after a newline = %q", e)
	}
	f.filter([]byte("debian login: "))
	if e := string(f.end()); e != "\n" {
		t.Errorf("end after a prompt = %q, want a newline", e)
	}
}

// Stages must come from complete evidence: fed one byte at a time, the
// console may report the kernel only once a kernel line has been fed (an
// unfinished "Welcome to " in GRUB's banner once looked like systemd).
func TestConsoleStageNotEarly(t *testing.T) {
	kernelRE := regexp.MustCompile(`\[\s*\d+\.\d{6}\]|Linux version |EFI stub:|Decompressing Linux`)
	for _, name := range []string{"dib-debian-minimal-bios-tcg.log", "debian12-cloudinit-bios-tcg.log", "builder-debian12-uefi-tcg.log"} {
		b := readLog(t, name)
		c := NewConsole()
		for i := range b {
			c.Feed(b[i : i+1])
			if c.Stage() >= StageKernel {
				if !kernelRE.Match(b[:i+1]) {
					t.Errorf("%s: stage %s after %d bytes, before any kernel line; tail %q", name, c.Stage(), i+1, c.Tail(2))
				}
				break
			}
		}
	}
}
