//go:build arm64e2e

// The arm64 end-to-end tests (a root build with its boot and a rootless
// build; a build in an unprivileged container) are too slow for the normal
// run (every hook and the boot are emulated on an amd64 host), so they are
// a separate command:
//
//	hack/test-arm64.sh   (go test -tags arm64e2e ./tests/e2e -run TestArm64 -timeout 150m)
//
// Measured on a 2-core amd64 machine without KVM (2026-12-07, three runs):
// the cold root build 7m48s to 8m42s (bootstrap 257 s, package installs
// 78 s, initramfs 108 s; amd64's cold build is under a minute), an
// unchanged rebuild 0 s, the boot 2m17s to 2m50s (guest up after 136-168
// s), the cold rootless build 7m9s to 8m36s (with its interpreter
// registered in its own user namespace: 7m9s); 18 to 20 minutes in all
// from an empty cache.

package e2e

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builder/internal/testreq"
)

// `builder image -a arm64 debian vm` on an amd64 host: an arm64 Debian from
// the mirror, hooks under QEMU user-mode emulation, a UEFI-only disk with
// the image's own GRUB, and a boot under qemu-system-aarch64 with AAVMF
// that reaches cloud-init and the probe on the PL011 console. A second
// build with nothing changed reuses every step.
func TestArm64DebianVMBuildsAndBoots(t *testing.T) {
	needE2E(t)
	out, tmp := t.TempDir(), t.TempDir()
	ctx := withTimeout(t, 140*time.Minute)
	env := []string{"TMP_DIR=" + tmp}
	args := []string{"image", "-a", "aarch64", "debian", "vm", "-o", filepath.Join(out, "arm64"), "--image-cache", cacheDir}
	start := time.Now()
	r := runBuilder(t, ctx, env, args...)
	first := time.Since(start)
	if r.code != 0 {
		t.Fatalf("build failed (exit %d)", r.code)
	}
	if !strings.Contains(r.stdout+r.stderr, "under emulation") {
		t.Errorf("the build did not say it runs under emulation")
	}
	// The store expects arm64 images: no warning about a platform mismatch
	// for each step's container.
	if strings.Contains(r.stderr, "does not match the expected platform") {
		t.Errorf("the build warned that its own images are not the host's platform")
	}
	start = time.Now()
	r2 := runBuilder(t, ctx, env, args...)
	warm := time.Since(start)
	if r2.code != 0 || strings.Contains(r2.stdout, "bootstrapped") || strings.Count(r2.stdout, "cached") < 5 {
		t.Errorf("the rebuild did not reuse the cached steps (exit %d):\n%s", r2.code, r2.stdout)
	}
	img := filepath.Join(out, "arm64.qcow2")

	raw := filepath.Join(t.TempDir(), "d.raw")
	if b, err := exec.Command("qemu-img", "convert", "-O", "raw", img, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, b)
	}
	dump, _ := exec.Command("sfdisk", "-d", raw).Output()
	if strings.Contains(strings.ToUpper(string(dump)), "21686148-6449-6E6F-744E-656564454649") {
		t.Errorf("the arm64 disk has a BIOS boot partition:\n%s", dump)
	}
	listing, err := exec.Command("mdir", "-/", "-b", "-i", espTarget(t, raw), "::/EFI").CombinedOutput()
	if err != nil || !strings.Contains(string(listing), "::/EFI/BOOT/BOOTAA64.EFI") || !strings.Contains(string(listing), "::/EFI/debian/grub.cfg") {
		t.Errorf("ESP: %v\n%s", err, listing)
	}
	os.Remove(raw)

	report := filepath.Join(out, "boot.json")
	start = time.Now()
	// No -a: boot-test reads the architecture from the image's programs.
	br := runBuilder(t, ctx, nil, "boot-test", img, "--report", report, "--require-cloud-init",
		"--expect-cmdline", "console=ttyAMA0,115200", "--timeout", "60m")
	boot := time.Since(start)
	rep := readBootReport(t, report, br.code)
	if !strings.Contains(br.stderr, "arm64 image (read from its programs") {
		t.Errorf("boot-test did not say it read arm64 from the image")
	}
	bootedWithCloudInit(t, rep)
	var a struct {
		Arch string `json:"arch"`
	}
	data, _ := os.ReadFile(report)
	if err := json.Unmarshal(data, &a); err != nil || a.Arch != "arm64" {
		t.Errorf("report arch %q (%v)", a.Arch, err)
	}
	t.Logf("arm64: first build %s, unchanged rebuild %s, boot test %s (guest up after %.0f s, %s)",
		first.Round(time.Second), warm.Round(time.Second), boot.Round(time.Second), rep.Seconds, rep.Accel)

	// Rootless: an ordinary user with subordinate ids, its own empty
	// cache, and no interpreter registered on the host (the root build's
	// entry is disabled meanwhile): the build registers qemu-aarch64 in
	// its own user namespace. The image has the root build's files,
	// owners and modes.
	disableHostArm64(t)
	uid := ensureRootlessUser(t)
	binDir := sharedDir(t, 0)
	bin := filepath.Join(binDir, "builder")
	copyExecutable(t, builderBin, bin)
	userOut, userCache := sharedDir(t, uid), sharedDir(t, uid)
	start = time.Now()
	rr := runAs(t, ctx, bin, "image", "-a", "arm64", "debian", "vm", "-o", filepath.Join(userOut, "arm64"), "--image-cache", userCache)
	rootless := time.Since(start)
	if rr.code != 0 {
		t.Fatalf("rootless arm64 build failed (exit %d)", rr.code)
	}
	if !strings.Contains(rr.stdout+rr.stderr, "in the build's own user namespace") {
		t.Errorf("the rootless build did not say it registered the interpreter in its own user namespace")
	}
	compareListings(t, "root", fileListing(t, img), "rootless", fileListing(t, filepath.Join(userOut, "arm64.qcow2")))
	t.Logf("arm64 rootless: cold build %s", rootless.Round(time.Second))
}

// disableHostArm64 disables the host's qemu-aarch64 entry until t ends (a
// root build registers it when there is none).
func disableHostArm64(t *testing.T) {
	t.Helper()
	const entry = "/proc/sys/fs/binfmt_misc/qemu-aarch64"
	if _, err := os.Stat(entry); err != nil {
		return // none to disable
	}
	if err := os.WriteFile(entry, []byte("0"), 0); err != nil {
		t.Fatalf("disable the host's arm64 interpreter: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(entry, []byte("1"), 0); err != nil {
			t.Errorf("enable the host's arm64 interpreter again: %v", err)
		}
	})
}

// `builder image -a arm64 debian vm` inside an unprivileged podman
// container made from the Containerfile (no --privileged, no devices), with
// the host's arm64 interpreter disabled: the build registers qemu-aarch64
// in its own user namespace, and the image's programs are arm64's.
func TestArm64InUnprivilegedContainer(t *testing.T) {
	needE2E(t)
	if _, err := exec.LookPath("podman"); err != nil {
		testreq.Missing(t, "podman is not installed (hack/test.sh installs it)")
	}
	ctx := withTimeout(t, 60*time.Minute)
	disableHostArm64(t)
	image := buildContainerImage(t, ctx)
	out := sharedDir(t, 1000)
	cache := filepath.Join(cacheDir, "container-arm64")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cache, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run", "--rm", "--network", "host"}, ulimitArgs()...)
	args = append(args, "-v", out+":/work", "-v", cache+":/home/builder/.cache", image,
		"image", "-a", "arm64", "debian", "vm", "-o", "/work/arm64")
	start := time.Now()
	r := runLogged(t, exec.CommandContext(ctx, "podman", args...), "[container] builder image -a arm64 debian vm")
	if r.code != 0 {
		t.Fatalf("arm64 build in the container failed (exit %d)", r.code)
	}
	t.Logf("arm64 in the container: cold build %s", time.Since(start).Round(time.Second))
	if !strings.Contains(r.stdout+r.stderr, "in the build's own user namespace") {
		t.Errorf("the build did not say it registered the interpreter in its own user namespace")
	}
	// buildah's own registration (it registers in a container) is not
	// tried on top of builder's.
	if strings.Contains(r.stderr, "binfmt_misc") {
		t.Errorf("the build warned about binfmt_misc")
	}
	ls, ok := openImage(t, filepath.Join(out, "arm64.qcow2")).cat(t, "/usr/bin/ls")
	if f, err := elf.NewFile(strings.NewReader(ls)); !ok || err != nil || f.Machine != elf.EM_AARCH64 {
		t.Errorf("/usr/bin/ls in the image is not an arm64 program (%v)", err)
	}
}
