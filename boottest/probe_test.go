package boottest

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseProbe(t *testing.T) {
	good := "BUILDER-PROBE cmdline=" + b64("BOOT_IMAGE=/vmlinuz root=LABEL=x console=tty0 console=ttyS0,115200\n") +
		" root_bytes=6000000000 disk_bytes=6442450944 user=" + b64("uid=1000(builder) gid=1000(builder) groups=1000(builder)\n") +
		" failed_units=2 failed_names=" + b64("foo.service\nbar.mount") + " sudo=yes future_field=whatever"
	p, err := ParseProbe(good)
	if err != nil {
		t.Fatal(err)
	}
	want := Probe{
		Cmdline:   "BOOT_IMAGE=/vmlinuz root=LABEL=x console=tty0 console=ttyS0,115200",
		RootBytes: 6000000000, DiskBytes: 6442450944, PartBytes: -1, TailBytes: -1,
		User:        "uid=1000(builder) gid=1000(builder) groups=1000(builder)",
		FailedUnits: 2, Sudo: "yes",
	}
	want.FailedUnitNames = []string{"foo.service", "bar.mount"}
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("got %+v\nwant %+v", *p, want)
	}
	// The partition geometry, when the guest reports it.
	p, err = ParseProbe(good + " part_bytes=5000000000 tail_bytes=1048576")
	if err != nil || p.PartBytes != 5000000000 || p.TailBytes != 1048576 {
		t.Errorf("geometry: %+v %v", p, err)
	}

	for _, bad := range []string{
		"cmdline=eA== root_bytes=1 disk_bytes=1 user=eA== failed_units=0",                       // no marker
		"BUILDER-PROBE cmdline=eA== root_bytes=1 disk_bytes=1 user=eA==",                        // cut short
		"BUILDER-PROBE cmdline=eA== root_bytes=1[  12.3] disk_bytes=1 user=eA== failed_units=0", // garbled number
		"BUILDER-PROBE cmdline=!!! root_bytes=1 disk_bytes=1 user=eA== failed_units=0",          // bad base64
		"BUILDER-PROBE cmdline=eA== root_bytes=1 [ disk_bytes=1 user=eA== failed_units=0",       // interleaved text
	} {
		if p, err := ParseProbe(bad); err == nil {
			t.Errorf("ParseProbe(%q) = %+v, want an error", bad, p)
		}
	}
}

// runProbeScript runs the guest probe on the host with its ttyS0 write
// redirected to a file, and returns the line it wrote.
func runProbeScript(t *testing.T, env []string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "ttyS0")
	script := filepath.Join(dir, "probe.sh")
	if !strings.Contains(probeScript, "con=/dev/ttyS0\n") {
		t.Fatal("probe script no longer writes to /dev/ttyS0")
	}
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(probeScript, "/dev/ttyS0", out)), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", script, "root")
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil || len(b) > 0 {
		t.Fatalf("probe script: %v, printed %q (it must print nothing but the line to ttyS0)", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), "\n") != 1 {
		t.Fatalf("probe wrote %q, want exactly one line", b)
	}
	return string(b)
}

// The probe must always produce a line the parser accepts: with the usual
// tools (here: the build host), and with no tools at all.
func TestProbeScriptOutputParses(t *testing.T) {
	line := runProbeScript(t, os.Environ())
	p, err := ParseProbe(line)
	if err != nil {
		t.Fatalf("%v: %q", err, line)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	if p.Cmdline != strings.TrimSpace(string(cmdline)) {
		t.Errorf("cmdline %q, host has %q", p.Cmdline, cmdline)
	}
	if !strings.HasPrefix(p.User, "uid=0(root)") {
		t.Errorf("user %q", p.User)
	}
	if p.RootBytes <= 0 {
		t.Errorf("root_bytes %d", p.RootBytes)
	}
	// The build host boots without UEFI here; with it, the SecureBoot
	// variable gives 0 or 1.
	wantSB := "bios"
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		wantSB = "0|1|unknown"
	}
	if !strings.Contains(wantSB, p.SecureBoot) || p.SecureBoot == "" {
		t.Errorf("secure_boot %q, want %s", p.SecureBoot, wantSB)
	}
	t.Logf("host probe: %+v", p)

	line = runProbeScript(t, []string{"PATH=/nonexistent"})
	p, err = ParseProbe(line)
	if err != nil {
		t.Fatalf("without tools: %v: %q", err, line)
	}
	if p.RootBytes != 0 || p.DiskBytes != 0 || p.FailedUnits != -1 {
		t.Errorf("without tools: %+v", p)
	}
}
