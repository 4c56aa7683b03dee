package glance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builder/internal/flock"

	"builder/internal/testreq"
)

// A pipeline of two images, one failing (an unknown element): the other
// is built (debian-minimal vm, warm cache), boot-tested under QEMU and
// published to two projects of the Keystone cloud (clouds.yaml and OS_*);
// the summary says which failed, the exit code is 1, and Glance has the
// good image only. Then a second run finds the image locked by "another
// run" and skips it.
func TestPipelineTwoImagesOneFails(t *testing.T) {
	needServices(t)
	t.Parallel()
	if _, err := os.Stat(testCache); err != nil {
		testreq.Missing(t, "image cache %s: %v (the pipeline test builds with the warm test cache)", testCache, err)
	}
	keystone.mu.RLock()
	defer keystone.mu.RUnlock()
	admin := keystoneCloud(t, "admin-openrc")
	member := keystoneCloud(t, "builder-openrc")
	dir := t.TempDir()
	good, broken := unique("good"), unique("broken")
	file := filepath.Join(dir, "pipeline.yaml")
	yaml := fmt.Sprintf(`defaults:
  image_cache: %s
  output_dir: out
  publish:
    clouds: [ci-admin, env]
    visibility: community
    keep: 2
images:
  - name: %s
    elements: [debian-minimal, vm, no-such-element]
  - name: %s
    elements: [debian-minimal, vm]
    publish:
      properties: {hw_qemu_guest_agent: "no"}
`, testCache, broken, good)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(append([]string{}, member.env...), "OS_CLIENT_CONFIG_FILE="+filepath.Join(keystone.dir, "clouds.yaml"))
	// The run leaves its lock files in the shared cache (locks are never
	// removed while in use); this test's are removed at the end.
	started := time.Now()
	t.Cleanup(func() {
		locks, _ := filepath.Glob(filepath.Join(testCache, "builder", "locks", "*.lock"))
		for _, l := range locks {
			if st, err := os.Stat(l); err == nil && !st.ModTime().Before(started) {
				os.Remove(l)
			}
		}
	})
	report := filepath.Join(dir, "report.json")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := runHelper(ctx, env, "pipeline", "run", file, "--report", report)
	out, err := cmd.CombinedOutput()
	t.Logf("pipeline run (%.0f s):\n%s", time.Since(start).Seconds(), out)
	var ee *exec.ExitError
	if err == nil || !asExit(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want exit status 1", err)
	}
	text := string(out)
	for _, want := range []string{
		"builder: 1 of 2 images failed: " + broken,
		fmt.Sprintf("%s: build: element \"no-such-element\" not found", broken),
		"1 ok, 1 failed, 0 skipped, 0 not run",
		"boot test passed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	rows := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 6 && (f[0] == good || f[0] == broken) {
			rows[f[0]] = strings.Join(f[1:len(f)-1], " ") // without the time
		}
	}
	if rows[good] != "ok ok ok: ci-admin,env ok" || rows[broken] != "FAILED - - FAILED" {
		t.Errorf("summary rows: %q", rows)
	}

	var rep struct {
		Images []struct {
			Name, Result string
			Outputs      []string
			Published    []struct{ Cloud, ImageID string }
		}
	}
	b, _ := os.ReadFile(report)
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Images) != 2 || rep.Images[1].Result != "ok" || len(rep.Images[1].Published) != 2 {
		t.Fatalf("report: %v\n%s", err, b)
	}
	if strings.Contains(string(b), "builderpw") || strings.Contains(string(b), "adminpw") {
		t.Error("a password is in the report")
	}
	output := filepath.Join(dir, "out", good+".qcow2")
	sha := fileSHA512(t, output)

	// Glance: the good image in both projects, verified, with the build's
	// facts; nothing of the broken one.
	for _, c := range []*cloud{admin, member} {
		img := one(t, c.name, c.resolve(t, good, "community", sha))
		for k, v := range map[string]string{"os_distro": "debian", "os_version": "12", "builder_elements": "debian-minimal vm",
			"hw_qemu_guest_agent": "no", "builder_state": "current"} {
			if got := propOf(img, k); got != v {
				t.Errorf("%s: %s = %q, want %q", c.name, k, got, v)
			}
		}
		if img.DiskFormat != "qcow2" || img.MinDiskGigabytes < 1 {
			t.Errorf("%s: disk_format %s, min_disk %d", c.name, img.DiskFormat, img.MinDiskGigabytes)
		}
		if n := len(c.series(t, broken)); n != 0 {
			t.Errorf("%s: %d images of the failed %s", c.name, n, broken)
		}
	}

	// An overlapping run: the image is locked, the run skips it and says
	// so, and that is not a failure.
	lock, err := flock.TryLock(filepath.Join(testCache, "builder", "locks", "pipeline-"+good+".lock"), "the test, as another run")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	cmd = runHelper(ctx, env, "pipeline", "run", file, "--only", good)
	out, err = cmd.CombinedOutput()
	t.Logf("overlapping run:\n%s", out)
	if err != nil || !strings.Contains(string(out), "skipped: another pipeline run is working on it (held by pid") ||
		!strings.Contains(string(out), "0 ok, 0 failed, 1 skipped") {
		t.Errorf("overlapping run: %v", err)
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}
