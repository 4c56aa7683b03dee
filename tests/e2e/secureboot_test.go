package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The default `debian vm` image boots with Secure Boot enforced: OVMF's
// Secure Boot firmware with Microsoft's keys, shim and GRUB from the
// image's own signed packages on the ESP, and the guest itself reporting
// Secure Boot on. (BIOS and plain UEFI boots of the same layout are
// TestDebianVMBuildsAndBoots and TestLayoutsBoot.) The build is warm after
// TestDebianVMBuildsAndBoots (same elements, same cache); the boot is one
// TCG boot, 3-5 minutes.
func TestDebianVMBootsWithSecureBoot(t *testing.T) {
	needE2E(t)
	out, tmp := t.TempDir(), t.TempDir()
	ctx := withTimeout(t, 40*time.Minute)
	start := time.Now()
	r := runBuilder(t, ctx, []string{"TMP_DIR=" + tmp}, "image", "debian", "vm", "-o", filepath.Join(out, "debian"), "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build failed (exit %d)", r.code)
	}
	built := time.Since(start)
	img := filepath.Join(out, "debian.qcow2")

	// The ESP: shim as the removable-media loader, the signed GRUB beside
	// it, and the grub.cfg its built-in prefix (/EFI/debian) names.
	raw := filepath.Join(t.TempDir(), "d.raw")
	if b, err := exec.Command("qemu-img", "convert", "-O", "raw", img, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, b)
	}
	esp := espTarget(t, raw)
	listing, err := exec.Command("mdir", "-/", "-b", "-i", esp, "::/EFI").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v %s", err, listing)
	}
	for _, want := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/grubx64.efi", "::/EFI/debian/grub.cfg"} {
		if !strings.Contains(string(listing), want) {
			t.Errorf("ESP lacks %s:\n%s", want, listing)
		}
	}
	// BOOTX64.EFI is Debian's shim: it carries Debian's CA, which it
	// checks GRUB and the kernel against.
	shim := filepath.Join(t.TempDir(), "shim")
	if b, err := exec.Command("mcopy", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", shim).CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v %s", err, b)
	}
	if data, _ := os.ReadFile(shim); !strings.Contains(string(data), "UEFI SHIM") || !strings.Contains(string(data), "Debian Secure Boot CA") {
		t.Errorf("EFI/BOOT/BOOTX64.EFI is not shim (%d bytes)", len(data))
	}
	os.Remove(raw)

	report := filepath.Join(out, "boot.json")
	br := runBuilder(t, ctx, nil, "boot-test", img, "--secure-boot", "--report", report, "--require-cloud-init", "--timeout", "15m")
	rep := readBootReport(t, report, br.code)
	bootedWithCloudInit(t, rep)
	var sb struct {
		Firmware string `json:"firmware"`
		Probe    struct {
			SecureBoot string `json:"secure_boot"`
		} `json:"probe"`
	}
	data, _ := os.ReadFile(report)
	if err := json.Unmarshal(data, &sb); err != nil {
		t.Fatal(err)
	}
	if sb.Firmware != "uefi+secure-boot" || sb.Probe.SecureBoot != "1" {
		t.Errorf("firmware %q, guest Secure Boot state %q: want uefi+secure-boot and 1", sb.Firmware, sb.Probe.SecureBoot)
	}
	t.Logf("build %s, Secure Boot boot %.0f s (%s)", built.Round(time.Second), rep.Seconds, rep.Accel)
}

// espTarget is mtools' name for the ESP of a raw GPT disk: file@@offset.
func espTarget(t *testing.T, raw string) string {
	t.Helper()
	dump, err := exec.Command("sfdisk", "-d", raw).Output()
	if err != nil {
		t.Fatalf("sfdisk: %v", err)
	}
	for _, l := range strings.Split(string(dump), "\n") {
		if !strings.Contains(strings.ToUpper(l), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
			continue
		}
		var start int64
		if _, err := fmt.Sscanf(strings.TrimSpace(strings.SplitN(strings.SplitN(l, "start=", 2)[1], ",", 2)[0]), "%d", &start); err != nil {
			t.Fatalf("ESP line %q: %v", l, err)
		}
		return fmt.Sprintf("%s@@%d", raw, start*512)
	}
	t.Fatalf("no ESP in:\n%s", dump)
	return ""
}
