package boottest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"builder/internal/testreq"
)

func TestQEMUArgs(t *testing.T) {
	c := qemuConfig{Accel: "tcg", Firmware: "bios", Memory: 1024, CPUs: 2,
		Overlay: "/tmp/a,b/disk.qcow2", Seed: "/tmp/a,b/seed.img", PidFile: "/tmp/a,b/qemu.pid"}
	got := strings.Join(qemuArgs(c), " ")
	for _, want := range []string{
		"-machine q35 -accel tcg,thread=multi -m 1024 -smp 2",
		"-nodefaults", "-nographic -serial stdio -monitor none", "-no-reboot",
		"-drive file=/tmp/a,,b/disk.qcow2,if=none,id=disk0,format=qcow2,cache=unsafe",
		"-device virtio-blk-pci,drive=disk0,bootindex=1",
		"-drive file=/tmp/a,,b/seed.img,if=none,id=seed0,format=raw,readonly=on",
		"-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=",
		"-pidfile /tmp/a,b/qemu.pid",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "pflash") || strings.Contains(got, "hostfwd") {
		t.Errorf("bios args have pflash or host ports: %s", got)
	}
	c.Accel, c.Firmware, c.OVMFCode, c.OVMFVars = "kvm", "uefi", "/usr/share/OVMF/OVMF_CODE_4M.fd", "/run/x/OVMF_VARS.fd"
	got = strings.Join(qemuArgs(c), " ")
	for _, want := range []string{
		"-accel kvm ",
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
		"-drive if=pflash,format=raw,unit=1,file=/run/x/OVMF_VARS.fd",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("uefi/kvm args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "-cpu host") {
		t.Error("-cpu host aborts on nested PVM KVM")
	}
}

// Secure Boot needs SMM and a secure pflash (OVMF's Secure Boot build
// stops without them); arm64 is the virt machine with an emulated CPU.
func TestQEMUArgsSecureBootAndArm64(t *testing.T) {
	c := qemuConfig{Accel: "tcg", Firmware: "uefi", SecureBoot: true, Memory: 1024, CPUs: 2,
		OVMFCode: "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", OVMFVars: "/run/x/OVMF_VARS.fd", Overlay: "/o", Seed: "/s", PidFile: "/p"}
	got := strings.Join(qemuArgs(c), " ")
	for _, want := range []string{"-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on",
		"if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd"} {
		if !strings.Contains(got, want) {
			t.Errorf("secure boot args lack %q:\n%s", want, got)
		}
	}
	c.SecureBoot, c.Arch, c.OVMFCode = false, "arm64", "/usr/share/AAVMF/AAVMF_CODE.fd"
	got = strings.Join(qemuArgs(c), " ")
	if !strings.HasPrefix(got, "-machine virt -cpu max -accel tcg") || strings.Contains(got, "q35") || strings.Contains(got, "smm") {
		t.Errorf("arm64 args: %s", got)
	}
}

func TestSpecArchAndSecureBoot(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.qcow2")
	if err := os.WriteFile(img, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Spec{Image: img, SecureBoot: true}.withDefaults()
	if err != nil || s.Firmware != "uefi" || s.Arch != "amd64" || s.QEMU != "qemu-system-x86_64" {
		t.Errorf("secure boot defaults: %+v %v", s, err)
	}
	if _, err := (Spec{Image: img, SecureBoot: true, Firmware: "bios"}).withDefaults(); err == nil || !strings.Contains(err.Error(), "needs UEFI") {
		t.Errorf("secure boot with bios: %v", err)
	}
	s, err = Spec{Image: img, Arch: "aarch64"}.withDefaults()
	if err != nil || s.Arch != "arm64" || s.Firmware != "uefi" || s.QEMU != "qemu-system-aarch64" {
		t.Errorf("arm64 defaults: %+v %v", s, err)
	}
	for _, bad := range []Spec{{Image: img, Arch: "arm64", Firmware: "bios"}, {Image: img, Arch: "arm64", SecureBoot: true}, {Image: img, Arch: "ppc64el"}} {
		var ue *UsageError
		if _, err := bad.withDefaults(); !errors.As(err, &ue) {
			t.Errorf("%+v: %v, want a usage error", bad, err)
		}
	}
}

func TestFindOVMF(t *testing.T) {
	code, vars, err := findOVMF()
	if err != nil {
		testreq.Missing(t, "no OVMF installed: %v", err)
	}
	if !strings.Contains(code, "CODE") || !strings.Contains(vars, "VARS") {
		t.Errorf("code %s vars %s", code, vars)
	}
	t.Logf("OVMF: %s + %s", code, vars)
}

// fakeQEMU writes a script that behaves like QEMU as far as process
// handling goes: it writes the pid file (its last argument), starts a child
// in its process group, prints some console output and waits.
func fakeQEMU(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fake-qemu")
	script := `#!/bin/sh
for a; do last=$a; done
echo $$ > "$last"
sleep 300 &
echo $! > "` + dir + `/child.pid"
printf 'SeaBIOS (fake)\r\n[    0.000000] Linux version 6.1 (fake)\r\n'
wait
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// dead reports whether pid is gone or a zombie (PID 1 here may not reap
// orphans quickly).
func dead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func waitDead(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !dead(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pid, err := readPidFile(path); err == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill ends the whole process group, not only the process it started.
func TestQEMUKillKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	bin := fakeQEMU(t, dir)
	pidFile := filepath.Join(dir, "qemu.pid")
	p, err := startQEMU(context.Background(), bin, []string{"-pidfile", pidFile}, dir, filepath.Join(dir, "stderr"), pidFile)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConsole()
	for c.Stage() < StageKernel {
		select {
		case b := <-p.chunks:
			c.Feed(b)
		case <-time.After(5 * time.Second):
			t.Fatal("no output from fake QEMU")
		}
	}
	child := readPid(t, filepath.Join(dir, "child.pid"))
	qpid := readPid(t, pidFile)
	if err := p.Kill(); err != nil {
		t.Errorf("Kill: %v", err)
	}
	waitDead(t, qpid, "fake QEMU")
	waitDead(t, child, "fake QEMU's child")
	if err := p.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
}

// Cancelling the context kills the group too (exec.CommandContext + Cancel).
func TestQEMUContextCancelKills(t *testing.T) {
	dir := t.TempDir()
	bin := fakeQEMU(t, dir)
	pidFile := filepath.Join(dir, "qemu.pid")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := startQEMU(ctx, bin, []string{"-pidfile", pidFile}, dir, filepath.Join(dir, "stderr"), pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child := readPid(t, filepath.Join(dir, "child.pid"))
	cancel()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("fake QEMU still running after cancel")
	}
	waitDead(t, child, "fake QEMU's child")
	_ = p.Kill()
}

// If the Go process dies without cleaning up (a test binary hitting its
// -timeout exits the process), the parent-death signal kills QEMU.
func TestQEMUDiesWithParent(t *testing.T) {
	if os.Getenv("BOOTTEST_HELPER_DIR") != "" {
		return // this is the helper run, handled in TestMain
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestQEMUDiesWithParent$")
	cmd.Env = append(os.Environ(), "BOOTTEST_HELPER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	pid := 0
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "QEMU-PID "); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid == 0 {
		t.Fatalf("helper printed no pid: %s", out)
	}
	waitDead(t, pid, "fake QEMU of a dead parent")
}

func TestMain(m *testing.M) {
	if dir := os.Getenv("BOOTTEST_HELPER_DIR"); dir != "" {
		// Helper: start a fake QEMU and exit abruptly, without Kill.
		bin := filepath.Join(dir, "fake-qemu")
		_ = os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 300\n"), 0o755)
		p, err := startQEMU(context.Background(), bin, nil, dir, filepath.Join(dir, "stderr"), filepath.Join(dir, "qemu.pid"))
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(3)
		}
		fmt.Printf("QEMU-PID %d\n", p.cmd.Process.Pid)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestOwnerAndSweep(t *testing.T) {
	work := t.TempDir()
	mine := filepath.Join(work, runDirPrefix+"mine")
	stale := filepath.Join(work, runDirPrefix+"stale")
	other := filepath.Join(work, "not-ours")
	for _, d := range []string{mine, stale, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeOwner(mine); err != nil {
		t.Fatal(err)
	}
	if !ownerAlive(mine) {
		t.Fatal("own run directory looks abandoned")
	}
	// A process that has exited: same pid number cannot match its start time.
	st, _ := processStartTime(os.Getpid())
	if err := os.WriteFile(filepath.Join(stale, ownerFile), fmt.Appendf(nil, "%d %s0\n", os.Getpid(), st), 0o600); err != nil {
		t.Fatal(err)
	}
	if ownerAlive(stale) {
		t.Fatal("stale directory looks alive")
	}
	removed := sweepStale(work)
	if !slices.Equal(removed, []string{stale}) {
		t.Errorf("removed %v, want only %s", removed, stale)
	}
	for _, d := range []string{mine, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed", d)
		}
	}
}

// Unless asked for, a guest under emulation gets one vCPU and a KVM guest
// the host's cores up to MaxCPUs; what the user asks for (within the cap
// withDefaults applies) is kept.
func TestGuestCPUs(t *testing.T) {
	kvm := min(runtime.NumCPU(), MaxCPUs)
	for _, c := range []struct {
		requested int
		accel     string
		want      int
	}{{0, "tcg", 1}, {0, "kvm", kvm}, {2, "tcg", 2}, {1, "kvm", 1}} {
		if got := guestCPUs(c.requested, c.accel); got != c.want {
			t.Errorf("guestCPUs(%d, %s) = %d, want %d", c.requested, c.accel, got, c.want)
		}
	}
	img := filepath.Join(t.TempDir(), "x.qcow2")
	if err := os.WriteFile(img, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for requested, want := range map[int]int{0: 0, -1: 0, 1: 1, 64: min(runtime.NumCPU(), MaxCPUs)} {
		s, err := Spec{Image: img, CPUs: requested}.withDefaults()
		if err != nil || s.CPUs != want {
			t.Errorf("--cpus %d: %d (%v), want %d", requested, s.CPUs, err, want)
		}
	}
}
