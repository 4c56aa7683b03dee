package boottest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dibImage is a BIOS/MBR Debian image made by the real diskimage-builder
// (no cloud-init, serial console on ttyS0). Tests boot copies of it.
const dibImage = "/var/tmp/dibrun/debian-minimal.qcow2"

// cloudImageEnv names a cloud-init image for TestRealBootCloudInit (for
// example one built by builder); that test is skipped without it.
const cloudImageEnv = "BUILDER_BOOTTEST_CLOUD_IMAGE"

func needQEMU(t *testing.T) {
	t.Helper()
	for _, b := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
}

// copyImage copies src into a test directory and returns the copy and its
// SHA-256, so the test can show that booting did not change it.
func copyImage(t *testing.T, src string) (string, []byte) {
	t.Helper()
	if _, err := os.Stat(src); err != nil {
		t.Skipf("test image %s not available: %v", src, err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if out, err := exec.Command("cp", "--reflink=auto", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v: %s", src, err, out)
	}
	return dst, fileSHA(t, dst)
}

func fileSHA(t *testing.T, p string) []byte {
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
	return h.Sum(nil)
}

// logWriter sends progress lines to the test log.
type logWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// assertClean checks what must hold after every Run: no process refers to
// the work directory (every QEMU we start names files in it) and the run
// directory is gone.
func assertClean(t *testing.T, work string) {
	t.Helper()
	if pids := processesReferringTo(work); len(pids) > 0 {
		for _, pid := range pids {
			b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
			t.Errorf("process %d still running: %s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	ents, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left in the work directory: %s", e.Name())
	}
}

// TestRealBootDIB boots a copy of the diskimage-builder image with
// accel=auto and an empty cache: on this host KVM stalls, so it also proves
// the probe, the fallback to TCG and the cached verdict. It then checks the
// verdict, that the image copy is byte-for-byte unchanged, and that no QEMU
// and no temporary directory is left.
func TestRealBootDIB(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under TCG (1-3 min); skipped in -short")
	}
	needQEMU(t)
	img, sum := copyImage(t, dibImage)
	work, cache := t.TempDir(), t.TempDir()
	consoleLog := filepath.Join(t.TempDir(), "console.log")
	start := time.Now()
	rep, err := Run(context.Background(), Spec{
		Image:         img,
		Timeout:       8 * time.Minute,
		ExpectCmdline: "console=tty0 console=ttyS0,115200",
		WorkDir:       work,
		CacheDir:      cache,
		ConsoleLog:    consoleLog,
		Progress:      &logWriter{t: t},
	})
	t.Logf("report: %s (total %.0f s)", rep.Summary(), time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("Run: %v\nconsole tail:\n%s", err, strings.Join(rep.ConsoleTail, "\n"))
	}
	if !rep.Passed || !rep.LoginSeen || rep.CloudInit.Present || rep.Probe != nil {
		t.Errorf("report %+v", rep)
	}
	if rep.ImageFormat != "qcow2" || rep.DiskBytes != rep.ImageBytes+DefaultGrow {
		t.Errorf("image %s %d bytes, disk %d bytes", rep.ImageFormat, rep.ImageBytes, rep.DiskBytes)
	}
	if rep.KVM != nil && rep.KVM.Tried && !rep.KVM.Works {
		if rep.Accel != "tcg" {
			t.Errorf("KVM failed but accel is %s", rep.Accel)
		}
		kernel, qv, err := hostKey(context.Background(), "qemu-system-x86_64")
		if err != nil {
			t.Fatal(err)
		}
		v, err := LoadKVMVerdict(cache, verdictKey(kernel, qv, "bios"))
		if err != nil || v == nil || v.Works {
			t.Errorf("KVM verdict not cached as failing: %+v, %v", v, err)
		}
	}
	t.Logf("accel %s, kernel after %.0f s, login after %.0f s, KVM %+v", rep.Accel, rep.KernelSeconds, rep.LoginSeconds, rep.KVM)
	if b, err := os.ReadFile(consoleLog); err != nil || !bytes.Contains(b, []byte("login:")) {
		t.Errorf("console log: %v, %d bytes, no login prompt", err, len(b))
	}
	if !bytes.Equal(fileSHA(t, img), sum) {
		t.Error("the image changed during the boot test")
	}
	assertClean(t, work)
}

// A boot that cannot finish in time fails cleanly: a timeout reason, the
// timeout as the cause, no QEMU and no temporary directory left.
func TestRealBootTimeout(t *testing.T) {
	needQEMU(t)
	img, _ := copyImage(t, dibImage)
	work := t.TempDir()
	start := time.Now()
	rep, err := Run(context.Background(), Spec{
		Image: img, Accel: "tcg", Timeout: 5 * time.Second,
		WorkDir: work, CacheDir: t.TempDir(), Progress: &logWriter{t: t},
	})
	took := time.Since(start)
	var bf *BootFailure
	if !errors.As(err, &bf) || !errors.Is(err, errBootTimeout) {
		t.Fatalf("err = %v, want a BootFailure caused by the timeout", err)
	}
	if !strings.HasPrefix(rep.Reason, "timeout: no login prompt within 5 s") || rep.Passed {
		t.Errorf("reason %q", rep.Reason)
	}
	if took > 20*time.Second {
		t.Errorf("a 5 s timeout took %s", took)
	}
	t.Logf("%s (in %s)", rep.Summary(), took.Round(time.Millisecond))
	assertClean(t, work)
}

// Cancelling the context (Ctrl-C, SIGTERM in the command) stops the boot at
// once, whichever attempt is running, and cleans up the same way.
func TestRealBootInterrupted(t *testing.T) {
	needQEMU(t)
	img, _ := copyImage(t, dibImage)
	work := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(3*time.Second, cancel)
	rep, err := Run(ctx, Spec{Image: img, WorkDir: work, CacheDir: t.TempDir(), Progress: &logWriter{t: t}})
	if !errors.Is(err, context.Canceled) || rep.Reason != "interrupted" {
		t.Fatalf("err = %v, reason %q", err, rep.Reason)
	}
	assertClean(t, work)
}

// TestRealBootCloudInit boots a cloud-init image (Debian 12, NoCloud, serial
// console) named by $BUILDER_BOOTTEST_CLOUD_IMAGE and checks every
// criterion: login, cloud-init finished, probe (cmdline, grown root, user).
func TestRealBootCloudInit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under TCG (2-3 min); skipped in -short")
	}
	src := os.Getenv(cloudImageEnv)
	if src == "" {
		t.Skipf("set %s to a cloud-init image to run this test", cloudImageEnv)
	}
	needQEMU(t)
	img, sum := copyImage(t, src)
	work := t.TempDir()
	rep, err := Run(context.Background(), Spec{
		Image: img, Timeout: 10 * time.Minute,
		ExpectCmdline:    "console=tty0 console=ttyS0,115200",
		RequireCloudInit: true,
		WorkDir:          work, CacheDir: t.TempDir(), Progress: &logWriter{t: t},
	})
	t.Logf("report: %s", rep.Summary())
	if err != nil {
		t.Fatalf("Run: %v\nconsole tail:\n%s", err, strings.Join(rep.ConsoleTail, "\n"))
	}
	if !rep.CloudInit.Present || !rep.CloudInit.Finished || rep.CloudInit.Datasource != "DataSourceNoCloud" || rep.Probe == nil {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(rep.Probe.User, "(builder)") || rep.Probe.Sudo != "yes" {
		t.Errorf("probe user %q sudo %q", rep.Probe.User, rep.Probe.Sudo)
	}
	if rep.Password != "" {
		t.Error("password in the report without ShowPassword")
	}
	if !bytes.Equal(fileSHA(t, img), sum) {
		t.Error("the image changed during the boot test")
	}
	assertClean(t, work)
}
