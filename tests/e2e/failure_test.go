package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testElements(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "elements")
}

// A failing hook stops the build with its element, phase, script, exit code
// and output; nothing is left behind and an existing image is untouched.
func TestFailingHookLeavesNothing(t *testing.T) {
	needE2E(t)
	out, tmp := t.TempDir(), t.TempDir()
	existing := filepath.Join(out, "img.qcow2")
	if err := os.WriteFile(existing, []byte("the previous image"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"TMP_DIR=" + tmp, "ELEMENTS_PATH=" + testElements(t)}
	r := runBuilder(t, withTimeout(t, 20*time.Minute), env, "image", "debian-minimal", "vm", "fail-install",
		"-o", filepath.Join(out, "img"), "--image-cache", cacheDir)
	if r.code != 1 {
		t.Fatalf("exit code %d, want 1", r.code)
	}
	for _, want := range []string{
		"hook install.d/50-fail (element fail-install) failed with exit code 7",
		"about to fail on purpose",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if data, _ := os.ReadFile(existing); string(data) != "the previous image" {
		t.Errorf("the existing output was changed")
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if e.Name() != "img.qcow2" && e.Name() != "img.d" {
			t.Errorf("unexpected file in the output directory: %s", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(out, "img.d", "logs", "install.d-50-fail.log")); err != nil {
		t.Errorf("the failing hook's log was not kept next to the output: %v", err)
	}
	if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// Ctrl-C or SIGTERM in the middle of a hook stops it and every process it
// started, and cleans up.
func TestInterruptLeavesNothing(t *testing.T) {
	needE2E(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			out, tmp := t.TempDir(), t.TempDir()
			ctx := withTimeout(t, 20*time.Minute)
			cmd := exec.CommandContext(ctx, builderBin, "image", "debian-minimal", "vm", "slow-install", "-v",
				"-o", filepath.Join(out, "img"), "--image-cache", cacheDir)
			cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME"),
				"TMP_DIR=" + tmp, "ELEMENTS_PATH=" + testElements(t)}
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			started := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stdout)
				once := false
				for sc.Scan() {
					if !once && strings.Contains(sc.Text(), "slow hook started") {
						once = true
						close(started)
					}
				}
				io.Copy(io.Discard, stdout)
			}()
			select {
			case <-started:
			case <-time.After(15 * time.Minute):
				cmd.Process.Kill()
				t.Fatal("the slow hook never started")
			}
			sent := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			took := time.Since(sent)
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			t.Logf("exit %d after %s; stderr:\n%s", code, took.Round(time.Millisecond), stderr.String())
			if code == 0 {
				t.Fatalf("an interrupted build exited 0")
			}
			if took > 60*time.Second {
				t.Errorf("took %s to stop", took)
			}
			if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
				t.Errorf("left behind: %v", l)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("output directory not empty: %v", ents)
			}
		})
	}
}

// --debug-shell opens a shell in the failing hook's container (the hooks
// tree mounted as the hook saw it); when it exits the build fails and
// cleans up as usual.
func TestDebugShellAtFailingHook(t *testing.T) {
	needE2E(t)
	out, tmp := t.TempDir(), t.TempDir()
	cmd := exec.CommandContext(withTimeout(t, 20*time.Minute), builderBin, "image", "debian-minimal", "vm", "fail-install",
		"--debug-shell", "-o", filepath.Join(out, "img"), "--image-cache", cacheDir)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME"),
		"TMP_DIR=" + tmp, "ELEMENTS_PATH=" + testElements(t)}
	cmd.Stdin = strings.NewReader("echo in-debug-shell $(cat /etc/debian_version) $(ls /tmp/in_target.d/install.d | grep fail)\nexit 3\n")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1", err)
	}
	if !strings.Contains(stderr.String(), "debug shell at the failure of install.d") {
		t.Errorf("no debug shell announced")
	}
	if !strings.Contains(stderr.String()+stdout.String(), "in-debug-shell 12.") ||
		!strings.Contains(stderr.String()+stdout.String(), "50-fail") {
		t.Errorf("the shell did not run in the image with the hooks tree")
	}
	if l := leftovers(t, tmp, cacheDir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// DIB's break=before-PHASE and after-PHASE open a shell there: in the
// image for an inside phase, on the host with TARGET_ROOT for an outside
// one; the build then goes on. What a shell did is never cached under the
// normal keys: the next build without a break reuses the earlier steps.
func TestBreakBeforeAndAfterPhases(t *testing.T) {
	needE2E(t)
	ctx := withTimeout(t, 30*time.Minute)
	out, tmp := t.TempDir(), t.TempDir()
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME"), "TMP_DIR=" + tmp}
	build := func(brk, stdin string) (string, error) {
		// --cache-max-size 0: the shared test cache may be at its bound,
		// and a prune between these builds would evict what the last one
		// must reuse.
		cmd := exec.CommandContext(ctx, builderBin, "image", "debian-minimal", "vm", "-t", "tar", "-o", filepath.Join(out, "img"), "--image-cache", cacheDir, "--cache-max-size", "0")
		cmd.Env = append(append([]string(nil), env...), "OVERWRITE_OLD_IMAGE=1")
		if brk != "" {
			cmd.Env = append(cmd.Env, "break="+brk)
		}
		cmd.Stdin = strings.NewReader(stdin)
		var b strings.Builder
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		t.Logf("break=%s:\n%s", brk, b.String())
		return b.String(), err
	}
	if _, err := build("", ""); err != nil {
		t.Fatalf("plain build: %v", err)
	}
	o, err := build("before-install", "echo inside-shell $(cat /etc/debian_version) $(ls /tmp/in_target.d/install.d | head -1)\necho marked > /etc/from-break\nexit\n")
	if err != nil {
		t.Fatalf("build with break=before-install: %v", err)
	}
	if !strings.Contains(o, "debug shell at break=before-install.d") || !strings.Contains(o, "inside-shell 12.") {
		t.Errorf("no shell in the image before install.d")
	}
	if readFromTar(t, filepath.Join(out, "img.tar"), "./etc/from-break") != "marked\n" {
		t.Errorf("what the shell did is not in the image (DIB keeps it)")
	}
	o, err = build("after-cleanup", "echo outside-shell $(test -f \"$TARGET_ROOT/etc/debian_version\" && echo target-ok)\nexit\n")
	if err != nil {
		t.Fatalf("build with break=after-cleanup: %v", err)
	}
	if !strings.Contains(o, "debug shell at break=after-cleanup.d") || !strings.Contains(o, "outside-shell target-ok") {
		t.Errorf("no shell with TARGET_ROOT after cleanup.d")
	}
	o, err = build("", "")
	if err != nil {
		t.Fatalf("plain build after the breaks: %v", err)
	}
	if phases := phaseLines(o); !strings.HasSuffix(phases["install.d"], "cached") || !strings.HasSuffix(phases["cleanup.d"], "cached") {
		t.Errorf("a build without breaks did not reuse the normal steps: %v", phases)
	}
	if readFromTar(t, filepath.Join(out, "img.tar"), "./etc/from-break") != "<missing>" {
		t.Errorf("the break's change leaked into the normal cache")
	}
	if _, err := build("before-bogus", ""); err == nil {
		t.Errorf("break=before-bogus was accepted")
	}
}
