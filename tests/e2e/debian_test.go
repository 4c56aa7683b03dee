package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builder/sbom"
)

// bootReport is the part of `builder boot-test --report` the tests read.
type bootReport struct {
	Passed    bool    `json:"passed"`
	Reason    string  `json:"reason"`
	Seconds   float64 `json:"seconds"`
	Accel     string  `json:"accel"`
	Arch      string  `json:"arch"`
	LoginSeen bool    `json:"login_seen"`
	CloudInit struct {
		Present  bool `json:"present"`
		Finished bool `json:"finished"`
	} `json:"cloud_init"`
	Probe *struct {
		Cmdline   string `json:"cmdline"`
		RootBytes int64  `json:"root_bytes"`
		DiskBytes int64  `json:"disk_bytes"`
		PartBytes int64  `json:"part_bytes"`
		TailBytes int64  `json:"tail_bytes"`
		User      string `json:"user"`
		Sudo      string `json:"sudo"`
		// FailedUnits counts failed systemd units in the guest.
		FailedUnits     int      `json:"failed_units"`
		FailedUnitNames []string `json:"failed_unit_names"`
	} `json:"probe"`
}

type qemuInfo struct {
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	FormatSpecific struct {
		Data struct {
			CompressionType string `json:"compression-type"`
		} `json:"data"`
	} `json:"format-specific"`
}

func imageInfo(t *testing.T, path string) qemuInfo {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var qi qemuInfo
	if err := json.Unmarshal(out, &qi); err != nil {
		t.Fatal(err)
	}
	return qi
}

// The spine of the product: `builder image debian vm` gives a qcow2 that
// boots, runs cloud-init, has the serial console on the kernel command line
// and grows its root filesystem into a larger disk. A second build with
// nothing changed reuses every step.
func TestDebianVMBuildsAndBoots(t *testing.T) {
	needE2E(t)
	out := t.TempDir()
	tmp := t.TempDir()
	env := []string{"TMP_DIR=" + tmp}
	ctx := withTimeout(t, 40*time.Minute)

	start := time.Now()
	r := runBuilder(t, ctx, env, "image", "debian", "vm", "-o", filepath.Join(out, "debian"), "--image-cache", cacheDir)
	cold := time.Since(start)
	if r.code != 0 {
		t.Fatalf("build failed (exit %d)", r.code)
	}
	img := filepath.Join(out, "debian.qcow2")
	qi := imageInfo(t, img)
	if qi.Format != "qcow2" {
		t.Fatalf("format %q, want qcow2", qi.Format)
	}
	if qi.FormatSpecific.Data.CompressionType != "zstd" {
		t.Errorf("compression %q, want zstd", qi.FormatSpecific.Data.CompressionType)
	}
	if out, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	for _, want := range []string{"install.d/01-package-installs [package-installs]", "finalise.d/40-update-initramfs [dpkg]", "timing", "boot-config"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("progress lacks %q", want)
		}
	}
	if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
		t.Errorf("left behind after a successful build: %v", l)
	}

	// Nothing changed: every step comes from the cache and the outputs are
	// the last build's, not written again.
	firstDigest := fileDigest(t, img)
	start = time.Now()
	r2 := runBuilder(t, ctx, env, "image", "debian", "vm", "-o", filepath.Join(out, "debian"), "--image-cache", cacheDir)
	warm := time.Since(start)
	if r2.code != 0 {
		t.Fatalf("rebuild failed")
	}
	if strings.Count(r2.stdout, "cached") < 5 || strings.Contains(r2.stdout, "bootstrapped") {
		t.Errorf("rebuild did not reuse the cached steps:\n%s", r2.stdout)
	}
	if !strings.Contains(r2.stdout, "outputs reused") || strings.Contains(r2.stdout, "write qcow2") {
		t.Errorf("an unchanged rebuild wrote its outputs again")
	}
	if fileDigest(t, img) != firstDigest {
		t.Errorf("the reused output differs from the first build's")
	}
	// The same file: no dated copy of it.
	if olds, _ := filepath.Glob(filepath.Join(out, "debian-*.qcow2")); len(olds) != 0 {
		t.Errorf("an unchanged rebuild kept a dated copy: %v", olds)
	}
	t.Logf("cold build %s, rebuild %s", cold.Round(time.Second), warm.Round(time.Second))

	// Nothing changed, the outputs go somewhere new (a CI job's fresh
	// workspace): reused, and described by the tree's reading kept with
	// them, the same packages and files as the first build's.
	elsewhere := t.TempDir()
	rElse := runBuilder(t, ctx, env, "image", "debian", "vm", "-o", filepath.Join(elsewhere, "debian"), "--image-cache", cacheDir)
	if rElse.code != 0 {
		t.Fatalf("rebuild into another directory failed")
	}
	if !strings.Contains(rElse.stdout, "outputs reused") || !strings.Contains(rElse.stdout, "tree as read when the reused outputs were made") {
		t.Errorf("a rebuild into another directory did not reuse the outputs and the tree's reading:\n%s", rElse.stdout)
	}
	if fileDigest(t, filepath.Join(elsewhere, "debian.qcow2")) != firstDigest {
		t.Errorf("the output reused elsewhere differs from the first build's")
	}
	if a, b := fileDigest(t, filepath.Join(out, "debian.d", "files.json")), fileDigest(t, filepath.Join(elsewhere, "debian.d", "files.json")); a != b {
		t.Errorf("the file inventory written with the reused outputs differs from the first build's")
	}
	d1, err1 := sbom.Read(filepath.Join(out, "debian.spdx.json"))
	d3, errElse := sbom.Read(filepath.Join(elsewhere, "debian.spdx.json"))
	if err1 != nil || errElse != nil {
		t.Fatalf("reading the SBOMs: %v, %v", err1, errElse)
	}
	if p1, p3 := fmt.Sprint(d1.Packages()), fmt.Sprint(d3.Packages()); p1 != p3 || len(d1.Packages()) < 100 {
		t.Errorf("the SBOM written with the reused outputs lists other packages (%d, first build %d)", len(d3.Packages()), len(d1.Packages()))
	}

	report := filepath.Join(out, "boot.json")
	console := filepath.Join(out, "console.log")
	before := fileDigest(t, img)
	br := runBuilder(t, ctx, nil, "boot-test", img, "--report", report, "--console-log", console,
		"--expect-cmdline", "console=tty0 console=ttyS0,115200", "--require-cloud-init", "--timeout", "15m")
	rep := readBootReport(t, report, br.code)
	bootedWithCloudInit(t, rep)
	if strings.Contains(br.stderr, "read from its programs") || rep.Arch != "amd64" {
		t.Errorf("boot-test took an amd64 image for another architecture (report arch %q)", rep.Arch)
	}
	if fileDigest(t, img) != before {
		t.Errorf("boot-test changed the image (it must boot a copy-on-write overlay)")
	}
	if data, err := os.ReadFile(console); err != nil || !strings.Contains(string(data), "login:") {
		t.Errorf("--console-log: %v, %d bytes, no login prompt", err, len(data))
	}
	if !strings.Contains(rep.Probe.User, "(builder)") || rep.Probe.Sudo != "yes" {
		t.Errorf("probe: user %q, sudo %q: want cloud-init's test user with passwordless sudo", rep.Probe.User, rep.Probe.Sudo)
	}
	if rep.Probe == nil {
		t.Fatalf("the guest never reported its probe line")
	}
	if !strings.Contains(rep.Probe.Cmdline, "console=tty0 console=ttyS0,115200") {
		t.Errorf("/proc/cmdline = %q", rep.Probe.Cmdline)
	}
	if rep.Probe.DiskBytes <= qi.VirtualSize {
		t.Errorf("boot-test disk %d is not larger than the image %d", rep.Probe.DiskBytes, qi.VirtualSize)
	}
	// The root partition is the last: it must reach the end of the disk
	// (less the backup GPT) and the filesystem must fill it.
	if rep.Probe.TailBytes < 0 || rep.Probe.TailBytes > 2<<20 || float64(rep.Probe.RootBytes) < 0.9*float64(rep.Probe.PartBytes) {
		t.Errorf("root did not grow to fill the %d-byte disk: partition %d, %d bytes after it, filesystem %d",
			rep.Probe.DiskBytes, rep.Probe.PartBytes, rep.Probe.TailBytes, rep.Probe.RootBytes)
	}
	if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
		t.Errorf("left behind after boot-test: %v", l)
	}

	// An output edited in place (here: a byte appended) is never reused:
	// the next build writes it again, and keeps the edited one under its
	// date, as DIB does with an earlier image.
	f, err := os.OpenFile(img, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
	r3 := runBuilder(t, ctx, env, "image", "debian", "vm", "-o", filepath.Join(out, "debian"), "--image-cache", cacheDir)
	if r3.code != 0 {
		t.Fatalf("build after an edited output failed")
	}
	if strings.Contains(r3.stdout, "outputs reused") || !strings.Contains(r3.stdout, "write qcow2") {
		t.Errorf("an output edited in place was reused")
	}
	if out, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check after the rewrite: %v\n%s", err, out)
	}
	if olds, _ := filepath.Glob(filepath.Join(out, "debian-*.qcow2")); len(olds) != 1 {
		t.Errorf("the edited image was not kept with its date: %v", olds)
	}
}

// The second command of the issue: several types at once, -p packages
// (comma lists, repeatable), a fixed size, checksums.
func TestTypesPackagesSizeChecksum(t *testing.T) {
	needE2EOwnLane(t)
	out, tmp := t.TempDir(), t.TempDir()
	ownLaneDirs(out, tmp)
	r := runBuilder(t, withTimeout(t, 30*time.Minute), []string{"TMP_DIR=" + tmp},
		"image", "-t", "qcow2,raw", "-p", "vim,less", "-p", "tree", "--image-size", "4", "--checksum",
		"-o", filepath.Join(out, "web"), "--image-cache", ownLaneCache(), "debian", "vm")
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	for _, f := range []struct{ name, format string }{{"web.qcow2", "qcow2"}, {"web.raw", "raw"}} {
		p := filepath.Join(out, f.name)
		qi := imageInfo(t, p)
		if qi.Format != f.format || qi.VirtualSize != 4<<30 {
			t.Errorf("%s: format %s size %d, want %s and 4 GiB", f.name, qi.Format, qi.VirtualSize, f.format)
		}
		for _, sum := range []string{"md5sum", "sha256sum"} {
			ext := ".md5"
			if sum == "sha256sum" {
				ext = ".sha256"
			}
			cmd := exec.Command(sum, "--check", f.name+ext)
			cmd.Dir = out
			if o, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s --check %s%s: %v\n%s", sum, f.name, ext, err, o)
			}
		}
	}
	img := openImage(t, filepath.Join(out, "web.qcow2"))
	for _, bin := range []string{"/usr/bin/vim.basic", "/usr/bin/tree", "/usr/bin/less"} {
		if _, ok := img.cat(t, bin); !ok {
			t.Errorf("%s missing: -p packages not installed", bin)
		}
	}
	if !strings.Contains(r.stdout, "builder-packages.d/50-install-packages") {
		t.Errorf("no progress line for the -p packages step")
	}
	if l := leftovers(t, tmp, ownLaneCache()); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// Debian 13 (DIB_RELEASE=trixie) boots with cloud-init and no failed unit:
// its cloud-init asks for DHCPv6 too, which under ifupdown failed
// networking.service after 5 minutes; the debian element uses
// systemd-networkd there.
func TestTrixieBootsWithoutFailedUnits(t *testing.T) {
	needE2E(t)
	out := t.TempDir()
	ctx := withTimeout(t, 30*time.Minute)
	r := runBuilder(t, ctx, []string{"DIB_RELEASE=trixie"}, "image", "debian", "vm", "-o", filepath.Join(out, "trixie"), "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build failed (exit %d)", r.code)
	}
	img := filepath.Join(out, "trixie.qcow2")
	if rel, ok := openImage(t, img).cat(t, "/usr/lib/os-release"); !ok || !strings.Contains(rel, "trixie") {
		t.Errorf("/usr/lib/os-release is not trixie's:\n%s", rel)
	}
	rep := bootTest(t, img, "--require-cloud-init")
	if !rep.CloudInit.Finished {
		t.Errorf("cloud-init did not finish")
	}
	if rep.Probe == nil {
		t.Fatalf("the guest never reported its probe line")
	}
	if rep.Probe.FailedUnits != 0 {
		t.Errorf("%d failed unit(s) in the guest: %v", rep.Probe.FailedUnits, rep.Probe.FailedUnitNames)
	}
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// A boot that cannot finish in time fails with the timeout as its reason,
// and Ctrl-C stops a boot at once; neither leaves QEMU or a temp dir.
func TestBootTestTimeoutAndInterrupt(t *testing.T) {
	needE2E(t)
	ctx := withTimeout(t, 30*time.Minute)
	out := t.TempDir()
	img := filepath.Join(out, "img.qcow2")
	if r := runBuilder(t, ctx, nil, "image", "debian-minimal", "vm", "-o", filepath.Join(out, "img"), "--image-cache", cacheDir); r.code != 0 {
		t.Fatalf("build failed")
	}
	tmp := t.TempDir()
	report := filepath.Join(out, "timeout.json")
	start := time.Now()
	r := runBuilder(t, ctx, []string{"TMPDIR=" + tmp}, "boot-test", img, "--accel", "tcg", "--timeout", "5s", "--report", report)
	if r.code == 0 || time.Since(start) > 30*time.Second {
		t.Errorf("a 5 s boot test: exit %d after %s", r.code, time.Since(start).Round(time.Second))
	}
	var rep bootReport
	data, _ := os.ReadFile(report)
	if err := json.Unmarshal(data, &rep); err != nil || rep.Passed || !strings.HasPrefix(rep.Reason, "timeout: no login prompt within 5 s") {
		t.Errorf("report %s: reason %q (%v)", report, rep.Reason, err)
	}
	if l := bootLeftovers(tmp); len(l) > 0 {
		t.Errorf("left behind after the timeout: %v", l)
	}

	cmd := exec.CommandContext(ctx, builderBin, "boot-test", img, "--accel", "tcg")
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME"), "TMPDIR=" + tmp}
	var outb strings.Builder
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	start = time.Now()
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	t.Logf("interrupted boot-test: %v\n%s", err, outb.String())
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("Ctrl-C: %v after %s", err, time.Since(start).Round(time.Millisecond))
	}
	if l := bootLeftovers(tmp); len(l) > 0 {
		t.Errorf("left behind after Ctrl-C: %v", l)
	}
}

// bootLeftovers: QEMU processes and boot-test's temp dirs under tmp.
func bootLeftovers(tmp string) []string {
	var found []string
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		found = append(found, filepath.Join(tmp, e.Name()))
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, _ := os.ReadFile(p)
		if strings.HasPrefix(string(data), "qemu-system") && strings.Contains(string(data), tmp) {
			found = append(found, "qemu "+filepath.Dir(p))
		}
	}
	return found
}
