package boottestcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"builder/boottest"

	"builder/internal/testreq"
)

// execute runs the cobra command with args and a run func that captures the
// Options instead of booting.
func execute(t *testing.T, args ...string) (*Options, string, error) {
	t.Helper()
	var got *Options
	cmd := NewCmdBootTest(func(_ context.Context, o *Options) error {
		got = o
		return nil
	})
	var stderr bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&stderr)
	err := cmd.ExecuteContext(context.Background())
	return got, stderr.String(), err
}

func TestFlagsToOptions(t *testing.T) {
	o, _, err := execute(t, "img.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	want := NewOptions()
	want.Image = "img.qcow2"
	want.Out, want.ErrOut = o.Out, o.ErrOut
	if !reflect.DeepEqual(o, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", o, want)
	}
	if o.Firmware != "" || o.Arch != "" || o.SecureBoot || o.Accel != "auto" || o.Timeout != 600*time.Second || o.KVMProbe != 20*time.Second ||
		o.Grow != "2G" || o.Memory != 1024 || o.User != "builder" || !o.ExpectGrow || o.ExpectCmdline != "" {
		t.Errorf("defaults differ from the documented ones: %+v", o)
	}

	o, _, err = execute(t, "--firmware", "uefi", "--accel", "tcg", "--timeout", "15m", "--kvm-probe", "5s",
		"--grow", "1G", "--memory", "2048", "--cpus", "1", "--user", "ci", "--ssh-key", "a.pub", "--ssh-key", "b.pub",
		"--expect-cmdline", "console=tty0 console=ttyS0,115200", "--expect-grow=false", "--require-cloud-init",
		"--no-failed-units", "--allow-backing", "--show-password", "--cache-dir", "/c", "--console-log", "/l",
		"--report", "/r.json", "-v", "--secure-boot", "-a", "arm64", "x.raw")
	if err != nil {
		t.Fatal(err)
	}
	if o.Image != "x.raw" || o.Firmware != "uefi" || !o.SecureBoot || o.Arch != "arm64" || o.Accel != "tcg" || o.Timeout != 15*time.Minute || o.KVMProbe != 5*time.Second ||
		o.Grow != "1G" || o.Memory != 2048 || o.CPUs != 1 || o.User != "ci" || !reflect.DeepEqual(o.SSHKeyFiles, []string{"a.pub", "b.pub"}) ||
		o.ExpectCmdline != "console=tty0 console=ttyS0,115200" || o.ExpectGrow || !o.RequireCloudInit || !o.NoFailedUnits ||
		!o.AllowBacking || !o.ShowPassword || o.CacheDir != "/c" || o.ConsoleLog != "/l" || o.Report != "/r.json" || !o.Verbose {
		t.Errorf("flags not mapped: %+v", o)
	}
}

func exitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

// Bad command lines exit with 2 and one line saying what to do.
func TestCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		has  string
	}{
		{nil, "expected one IMAGE argument, got 0"},
		{[]string{"a", "b"}, "expected one IMAGE argument, got 2"},
		{[]string{"--bogus", "a"}, "unknown flag: --bogus"},
		{[]string{"--timeout", "600", "a"}, "missing unit"},
	} {
		_, stderr, err := execute(t, tc.args...)
		if exitCode(err) != 2 || !strings.Contains(stderr, tc.has) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q", tc.args, exitCode(err), stderr)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	priv := filepath.Join(dir, "id_ed25519")
	os.WriteFile(priv, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nxxx\n"), 0o600)
	for _, tc := range []struct {
		name string
		mod  func(o *Options)
		has  string
	}{
		{"missing image", func(o *Options) { o.Image = filepath.Join(dir, "nope.qcow2") }, "nope.qcow2 does not exist: pass the path of a disk image"},
		{"directory", func(o *Options) { o.Image = dir }, "is a directory"},
		{"bad grow", func(o *Options) { o.Grow = "lots" }, `--grow "lots"`},
		{"password without report", func(o *Options) { o.ShowPassword = true }, "add --report FILE"},
		{"missing key file", func(o *Options) { o.SSHKeyFiles = []string{filepath.Join(dir, "k.pub")} }, "k.pub does not exist"},
		{"private key", func(o *Options) { o.SSHKeyFiles = []string{priv} }, "holds a private key"},
		{"bad firmware", func(o *Options) { o.Firmware = "coreboot" }, `firmware "coreboot" is not known`},
		{"bad accel", func(o *Options) { o.Accel = "hvf" }, `accel "hvf" is not known`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			o := NewOptions()
			o.Image, o.Out, o.ErrOut, o.CacheDir = img, &out, &errOut, t.TempDir()
			tc.mod(o)
			err := Run(context.Background(), o)
			if exitCode(err) != 2 || !strings.Contains(errOut.String(), tc.has) {
				t.Errorf("exit %d (%v), stderr %q", exitCode(err), err, errOut.String())
			}
			if strings.Count(errOut.String(), "\n") != 1 || !strings.HasPrefix(errOut.String(), "boot-test: error: ") {
				t.Errorf("want one line, got %q", errOut.String())
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "2G": 2 << 30, "2g": 2 << 30, "2GiB": 2 << 30, "2GB": 2 << 30,
		"512M": 512 << 20, "512MiB": 512 << 20, "64K": 64 << 10, "1T": 1 << 40, "1.5G": 3 << 29, " 3G ": 3 << 30,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "lots", "1X", "99999999999T"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestReadPublicKeys(t *testing.T) {
	f := filepath.Join(t.TempDir(), "keys.pub")
	os.WriteFile(f, []byte("# team keys\nssh-ed25519 AAAA1 a@x\n\n  ssh-rsa AAAA2 b@y  \n"), 0o644)
	got, err := readPublicKeys(f)
	if err != nil || !reflect.DeepEqual(got, []string{"ssh-ed25519 AAAA1 a@x", "ssh-rsa AAAA2 b@y"}) {
		t.Errorf("got %q, %v", got, err)
	}
}

// Real QEMU, but fast: an all-zero disk is not bootable. SeaBIOS says "No
// bootable device" and OVMF ends in its shell; both must fail at once with
// exit code 1, the FAIL line on stdout, and a report other tests can parse.
func TestRunNonBootableDisk(t *testing.T) {
	for _, b := range []string{"qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(b); err != nil {
			if _, err := os.Stat("/usr/sbin/" + b); err != nil {
				testreq.Missing(t, "%s not installed", b)
			}
		}
	}
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			if fw == "uefi" && !fileExists("/usr/share/OVMF/OVMF_CODE_4M.fd") {
				testreq.Missing(t, "no OVMF")
			}
			dir := t.TempDir()
			// qcow2: a raw file without a boot signature is refused before
			// QEMU starts (TestRunRefusesRawNonDisk).
			img := filepath.Join(dir, "zero.qcow2")
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "64M").CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			var out, errOut bytes.Buffer
			o := NewOptions()
			o.Image, o.Out, o.ErrOut = img, &out, &errOut
			o.Firmware, o.Accel, o.Timeout = fw, "tcg", 3*time.Minute
			o.CacheDir, o.Report = t.TempDir(), filepath.Join(dir, "report.json")
			start := time.Now()
			err := Run(context.Background(), o)
			t.Logf("%s in %s", strings.TrimSpace(out.String()), time.Since(start).Round(time.Second))
			if exitCode(err) != 1 {
				t.Fatalf("exit %d (%v)\n%s", exitCode(err), err, errOut.String())
			}
			if !strings.HasPrefix(out.String(), "boot-test: FAIL after ") || !strings.Contains(out.String(), "fatal error") {
				t.Errorf("stdout %q", out.String())
			}
			if !strings.Contains(errOut.String(), "boot-test: last ") {
				t.Errorf("no console tail on stderr:\n%s", errOut.String())
			}
			b, err := os.ReadFile(o.Report)
			if err != nil {
				t.Fatal(err)
			}
			var rep map[string]any
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatalf("report is not JSON: %v\n%s", err, b)
			}
			for _, k := range []string{"accel", "firmware", "seconds", "login_seen", "cloud_init", "probe", "passed", "reason"} {
				if _, ok := rep[k]; !ok {
					t.Errorf("report lacks %q", k)
				}
			}
			if rep["passed"] != false || rep["accel"] != "tcg" || rep["firmware"] != fw || rep["login_seen"] != false {
				t.Errorf("report %s", b)
			}
			if _, ok := rep["password"]; ok {
				t.Error("password in the report without --show-password")
			}
		})
	}
}

// A raw file that is not a disk (text, zeros) is a usage error named
// before QEMU starts.
func TestRunRefusesRawNonDisk(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testreq.Missing(t, "qemu-img not installed")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(img, []byte(strings.Repeat("not a disk image\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	o := NewOptions()
	o.Image, o.Out, o.ErrOut, o.CacheDir = img, &out, &errOut, t.TempDir()
	err := Run(context.Background(), o)
	if exitCode(err) != 2 || !strings.Contains(errOut.String(), img+" is not a bootable disk image") {
		t.Errorf("exit %d, stderr %q", exitCode(err), errOut.String())
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// The report passes through Summary for the final line.
func TestSummaryLine(t *testing.T) {
	r := &boottest.Report{Passed: true, Seconds: 97, Accel: "tcg", Firmware: "bios",
		Checks: []string{"login prompt", "cloud-init finished", "root fs 5.8 GiB of 6.0 GiB", "cmdline has console=ttyS0,115200"}}
	want := "PASS in 97 s (tcg, bios): login prompt, cloud-init finished, root fs 5.8 GiB of 6.0 GiB, cmdline has console=ttyS0,115200"
	if got := r.Summary(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	r = &boottest.Report{Seconds: 12.4, Reason: "timeout"}
	if got := r.Summary(); got != "FAIL after 12 s: timeout" {
		t.Errorf("got %s", got)
	}
}
