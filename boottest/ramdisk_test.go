package boottest

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ramdiskSpec(t *testing.T) Spec {
	t.Helper()
	dir := t.TempDir()
	k, i := filepath.Join(dir, "r.kernel"), filepath.Join(dir, "r.initramfs")
	os.WriteFile(k, []byte("kernel"), 0o644)
	os.WriteFile(i, []byte("initramfs"), 0o644)
	return Spec{Kernel: k, Initramfs: i}
}

func TestJudgeRamdiskLog(t *testing.T) {
	log := readLog(t, "builder-ramdisk-debian12-bios-tcg.log")
	s, err := ramdiskSpec(t).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s.ExpectCmdline = "console=ttyS0,115200n8"
	j, c, v, r := replay(t, s, log, 33*time.Second)
	if v != vPass {
		t.Fatalf("verdict %d %q, want pass", v, r)
	}
	want := "ramdisk ready, network up on enp0s1 10.0.2.15/24, cmdline has console=ttyS0,115200n8"
	if got := strings.Join(j.checks, ", "); got != want {
		t.Errorf("checks %q, want %q", got, want)
	}
	rr := c.RamdiskReady()
	if rr == nil || rr.Iface != "enp0s1" || rr.Address != "10.0.2.15/24" || rr.Gateway != "10.0.2.2" || rr.DIB ||
		!strings.HasPrefix(rr.Line, "builder-ramdisk: ready: network up on enp0s1") {
		t.Errorf("readiness %+v", rr)
	}
	if j.readyAt != 33*time.Second {
		t.Errorf("ready at %s", j.readyAt)
	}

	// The same boot cut before the line: go on, then time out saying what
	// was awaited.
	cut := log[:bytes.Index(log, []byte("builder-ramdisk: ready"))]
	j, c, v, _ = replay(t, s, cut, 30*time.Second)
	if v != vContinue {
		t.Errorf("before the readiness line: verdict %d", v)
	}
	if r := j.timeoutReason(c, 600*time.Second); !strings.Contains(r, "builder-ramdisk: ready") || !strings.Contains(r, "userspace") {
		t.Errorf("timeout reason %q", r)
	}
	// --ready login waits for a prompt, which this boot had not printed.
	s.Ready = "login"
	if _, _, v, _ = replay(t, s, log, 33*time.Second); v != vContinue {
		t.Errorf("--ready login without a prompt: verdict %d", v)
	}
	if _, _, v, _ = replay(t, s, append(append([]byte{}, log...), "\r\ndebian login: "...), 40*time.Second); v != vPass {
		t.Errorf("--ready login with a prompt: verdict %d", v)
	}
}

func TestConsoleRamdiskLines(t *testing.T) {
	// DIB's busybox ramdisk: its address, then "network ready".
	c := NewConsole()
	c.Feed([]byte("obtained the following from dhcp: \r\n ip address = 10.0.2.15\r\n netmask = 255.255.255.0\r\n"))
	if c.RamdiskReady() != nil {
		t.Fatalf("ready before \"network ready\"")
	}
	c.Feed([]byte("network ready\r\n"))
	if r := c.RamdiskReady(); r == nil || !r.DIB || r.Address != "10.0.2.15" {
		t.Errorf("DIB readiness %+v", r)
	}
	// DIB's init prints "network ready" even when DHCP failed: without an
	// address it is a failure.
	c = NewConsole()
	c.Feed([]byte("Could not find an interface that owns MAC: 52:54:00:12:34:56\r\nobtained the following from dhcp: \r\n ip address = \r\n netmask = \r\nnetwork ready\r\n"))
	if c.RamdiskReady() != nil || !strings.Contains(c.Fatal(), "without a DHCP address") {
		t.Errorf("DIB ramdisk without an address: ready %+v, fatal %q", c.RamdiskReady(), c.Fatal())
	}
	// "network ready" inside another message is not the line.
	c = NewConsole()
	c.Feed([]byte("[  OK  ] Reached target network ready state\r\n"))
	if c.RamdiskReady() != nil {
		t.Errorf("took a longer line for DIB's \"network ready\"")
	}
	// The ramdisk's own failure ends the boot at once.
	c = NewConsole()
	c.Feed([]byte("[  301.2] builder-ramdisk-ready[190]: builder-ramdisk: not ready: no IPv4 address on any interface after 300 s\r\n"))
	if f := c.Fatal(); !strings.Contains(f, "network did not come up: no IPv4 address") {
		t.Errorf("fatal %q", f)
	}
	j := newJudge(Spec{Kernel: "k", Initramfs: "i", Ready: "marker"}, false)
	if v, r := j.decide(c, time.Second, "", false); v != vFail || !strings.Contains(r, "no IPv4 address") {
		t.Errorf("verdict %d %q", v, r)
	}
}

func TestRamdiskQEMUArgs(t *testing.T) {
	a := strings.Join(qemuArgs(qemuConfig{Accel: "tcg", Firmware: "bios", Memory: 1280, CPUs: 2, PidFile: "/r/pid",
		Kernel: "/o/d.kernel", Initrd: "/o/d,x.initramfs", Append: ramdiskCmdline("ipa-debug=1")}), " ")
	for _, w := range []string{"-m 1280 ", "-kernel /o/d.kernel -initrd /o/d,x.initramfs -append console=tty0 console=ttyS0,115200n8 ipa-debug=1 ",
		"-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=", "-no-reboot"} {
		if !strings.Contains(a, w) {
			t.Errorf("args lack %q:\n%s", w, a)
		}
	}
	if strings.Contains(a, "-drive") {
		t.Errorf("a ramdisk boot has no drives:\n%s", a)
	}
}

func TestRamdiskMemory(t *testing.T) {
	dir := t.TempDir()
	// 600 MiB of zeros compress to under 1 MiB: gzip's recorded size counts.
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zero := make([]byte, 1<<20)
	for i := 0; i < 600; i++ {
		zw.Write(zero)
	}
	zw.Close()
	gz := filepath.Join(dir, "a.initramfs")
	os.WriteFile(gz, buf.Bytes(), 0o644)
	if m, err := RamdiskMemory(gz); err != nil || m != 1536 { // 768 + 600 + <1, rounded up to 256
		t.Errorf("gzip 600 MiB unpacked: %d MiB, %v; want 1536", m, err)
	}
	// Another format: four times the file.
	raw := filepath.Join(dir, "b.initramfs")
	os.WriteFile(raw, make([]byte, 100<<20), 0o644)
	if m, err := RamdiskMemory(raw); err != nil || m != 1280 { // 768 + 100 + 400 = 1268
		t.Errorf("100 MiB non-gzip: %d MiB, %v; want 1280", m, err)
	}
	small := filepath.Join(dir, "c.initramfs")
	os.WriteFile(small, []byte("x"), 0o644)
	if m, _ := RamdiskMemory(small); m != 1024 {
		t.Errorf("tiny ramdisk: %d MiB, want the 1024 floor", m)
	}
}

func TestRamdiskSpecDefaults(t *testing.T) {
	s := ramdiskSpec(t)
	d, err := s.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if d.Ready != "marker" || d.Memory != 1024 || d.Firmware != "bios" || !filepath.IsAbs(d.Kernel) {
		t.Errorf("defaults %+v", d)
	}
	for name, bad := range map[string]Spec{
		"image and kernel":  {Image: s.Kernel, Kernel: s.Kernel, Initramfs: s.Initramfs},
		"no initramfs":      {Kernel: s.Kernel},
		"missing kernel":    {Kernel: s.Kernel + ".gone", Initramfs: s.Initramfs},
		"unknown readiness": {Kernel: s.Kernel, Initramfs: s.Initramfs, Ready: "ssh"},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		} else if _, ok := err.(*UsageError); !ok {
			t.Errorf("%s: %T %v, want a UsageError", name, err, err)
		}
	}
}
