// Package e2e drives the builder binary as a user would: real buildah
// containers, real mkfs/GRUB/qemu-img, real QEMU boots. Long: skipped with
// -short. Needs root (the rootless path has its own tests).
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"builder/internal/testreq"
)

var (
	builderBin string
	cacheDir   string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() || os.Getenv("BUILDER_E2E") == "0" {
		return m.Run()
	}
	builderBin = os.Getenv("BUILDER_BIN")
	if builderBin == "" {
		_, file, _, _ := runtime.Caller(0)
		repo := filepath.Join(filepath.Dir(file), "..", "..")
		out, err := os.MkdirTemp("", "builder-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(out)
		// Some cases run the binary as another user (nobody, the rootless user).
		if err := os.Chmod(out, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		builderBin = filepath.Join(out, "builder")
		cmd := exec.Command("go", "build", "-o", builderBin, "./cmd/builder")
		cmd.Dir = repo
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building builder:", err)
			return 1
		}
	}
	cacheDir = os.Getenv("BUILDER_TEST_CACHE")
	if cacheDir == "" {
		cacheDir = "/var/tmp/builder-test-cache"
	}
	code := m.Run()
	stopGitDaemon()
	return code
}

func needE2E(t *testing.T) {
	t.Helper()
	testreq.Short(t, "end-to-end test: skipped with -short")
	if os.Geteuid() != 0 {
		testreq.Missing(t, "end-to-end tests run as root (see tests/rootless for the rootless path)")
	}
}

// result of one builder run.
type result struct {
	code   int
	stdout string
	stderr string
}

// runBuilder runs the binary with a clean environment plus env.
func runBuilder(t *testing.T, ctx context.Context, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, builderBin, args...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME")}, env...)
	return runLogged(t, cmd, "builder "+strings.Join(args, " "))
}

// runLogged runs cmd, logs what it printed under label and returns its
// exit code and output.
func runLogged(t *testing.T, cmd *exec.Cmd, label string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", label, err)
	}
	t.Logf("%s -> exit %d\nstdout:\n%s\nstderr:\n%s", label, code, out.String(), errb.String())
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// leftovers lists what a build may leak: working containers, mounts under
// the given directories, and files in the temp dir.
func leftovers(t *testing.T, tmpDir string, dirs ...string) []string {
	t.Helper()
	var found []string
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, d := range append(dirs, tmpDir) {
			if strings.HasPrefix(f[4], d+"/") {
				found = append(found, "mount "+f[4])
			}
		}
	}
	ents, _ := os.ReadDir(tmpDir)
	for _, e := range ents {
		found = append(found, "temp "+filepath.Join(tmpDir, e.Name()))
	}
	// Scratch data on tmpfs (bootstrap tree, raw disk).
	shm, _ := filepath.Glob("/dev/shm/builder.*")
	for _, d := range shm {
		found = append(found, "scratch "+d)
	}
	cs, err := filepath.Glob(filepath.Join(cacheDir, "builder", "containers", "storage-*", "overlay-containers", "*", "userdata"))
	if err == nil {
		for _, c := range cs {
			found = append(found, "container "+filepath.Base(filepath.Dir(c)))
		}
	}
	found = append(found, hookProcesses()...)
	if out, _ := exec.Command("pgrep", "-a", "qemu-system").Output(); len(bytes.TrimSpace(out)) > 0 {
		found = append(found, "qemu "+strings.TrimSpace(string(out)))
	}
	return found
}

// hookProcesses finds processes started by a builder hook (they carry
// builder's run marker in their environment).
func hookProcesses() []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte("BUILDER_RUN_MARK=")) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		found = append(found, fmt.Sprintf("process %s %s", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return found
}
