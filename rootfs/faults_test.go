package rootfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"builder/internal/cleanup"
	"builder/internal/testreq"
)

// A step's image committed under its key but never recorded complete (a
// build killed between the commit and recording the step's mounts and
// outputs) is made again, never used: the outputs the step writes are not
// silently lost. Once made, the step is a cache hit with its outputs.
func TestChainRedoesStepCommittedButNotRecorded(t *testing.T) {
	s, base := testStore(t)
	ctx := context.Background()
	work := t.TempDir()
	var ran int
	st := Step{Name: "outside", Kind: Outside, Identity: "1",
		Command: []string{"/bin/sh", "-c", `echo note > img.note && echo made > "$TARGET_ROOT/etc/step"`},
		Env:     []string{"PATH=/usr/bin:/bin"},
		Dir:     filepath.Join(work, "outputs"), DirIsOutputs: true,
		Writable: []string{work},
		End: func(cached bool, err error) {
			if !cached && err == nil {
				ran++
			}
		},
	}
	// What the killed build left: the step's image under its name, made
	// from an unchanged tree, with nothing recorded about it.
	c, err := s.NewContainer(ctx, base.Name, "builder-killed-00-outside", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, CacheImageName(StepKey(base.Key, st)), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		var stack cleanup.Stack
		img, err := s.RunChain(ctx, base, []Step{st}, ChainOptions{RunID: "t-incomplete", Cleanup: &stack})
		if serr := stack.Run(); err == nil {
			err = serr
		}
		if err != nil {
			t.Fatal(err)
		}
		if ran != 1 {
			t.Fatalf("round %d: the step ran %d times, want once (the unrecorded image must not be used, the recorded one must)", round, ran)
		}
		outs, err := StepOutputs(img)
		if err != nil || outs["img.note"] == "" {
			t.Errorf("round %d: the step's outputs are missing: %v %v", round, outs, err)
		}
		if got := readInImage(t, s, img, "etc/step"); got != "made\n" {
			t.Errorf("round %d: the step's image holds %q", round, got)
		}
	}
}

// KillRun stops what a killed build left running, whatever process group it
// is in, and only that; RemoveRun removes its containers and staging files.
func TestKillRunAndRemoveRun(t *testing.T) {
	s, base := testStore(t)
	start := func(mark string) *exec.Cmd {
		cmd := exec.Command("/bin/sh", "-c", "sleep 600 & sleep 600")
		cmd.Env = []string{"PATH=/usr/bin:/bin", RunMarkVar + "=" + mark}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	dead := start(RunMark("deadbeef0001") + "-03-install-d-123")
	other := start(RunMark("deadbeef0002"))
	defer func() {
		syscall.Kill(-other.Process.Pid, syscall.SIGKILL)
		other.Wait()
	}()
	time.Sleep(200 * time.Millisecond)
	KillRun("deadbeef0001")
	if err := dead.Wait(); err == nil {
		t.Errorf("the dead run's hook was not killed")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("another run's process was killed")
	}
	if n := marked("deadbeef0001"); n != 0 {
		t.Errorf("%d processes of the dead run survived (its hook's background child)", n)
	}
	if n := marked("deadbeef0002"); n != 3 {
		t.Errorf("the other run has %d processes, want 3", n)
	}

	c, err := s.NewContainer(context.Background(), base.Name, "builder-deadbeef0001-03-install-d", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mount(); err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(s.dir, "tmp", "builder.deadbeef0001.commit", "container_images_storage1")
	kept := filepath.Join(s.dir, "step-outputs", "0123"+runTemp("deadbeef0001")+"ab")
	for _, d := range []string{staged, kept} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveRun("deadbeef0001"); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.ContainerNames(); len(names) > 0 {
		t.Errorf("containers left: %v", names)
	}
	for _, d := range []string{staged, kept} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s was not removed", d)
		}
	}
}

// marked counts the live processes that carry a run's mark.
func marked(runID string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && strings.Contains(string(env), RunMarkVar+"="+RunMark(runID)) {
			n++
		}
	}
	return n
}

// mmdebstrap killed half way (the build was stopped) leaves the host's
// directories bound into the tree it was making: removing its temporary
// directory detaches them first and never deletes what they show.
func TestRemoveBootstrapDirDetachesBinds(t *testing.T) {
	if os.Geteuid() != 0 {
		testreq.Missing(t, "mounting needs root")
	}
	host := t.TempDir()
	keep := filepath.Join(host, "other-build-scratch")
	if err := os.WriteFile(keep, []byte("not mmdebstrap's"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bootstrap-1")
	shm := filepath.Join(dir, "mmdebstrap.x", "dev", "shm")
	if err := os.MkdirAll(shm, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(host, shm, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	// A bind inside the bind, as /sys's rbind has: deepest first.
	inner := filepath.Join(t.TempDir(), "inner")
	os.MkdirAll(inner, 0o755)
	sub := filepath.Join(host, "sub")
	os.MkdirAll(sub, 0o755)
	if err := syscall.Mount(inner, filepath.Join(shm, "sub"), "", syscall.MS_BIND, ""); err != nil {
		syscall.Unmount(shm, syscall.MNT_DETACH)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Unmount(filepath.Join(shm, "sub"), syscall.MNT_DETACH)
		syscall.Unmount(shm, syscall.MNT_DETACH)
	})
	removeBootstrapDir(dir)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the bootstrap directory is still there: %v", err)
	}
	if data, err := os.ReadFile(keep); err != nil || string(data) != "not mmdebstrap's" {
		t.Errorf("a file of the bound host directory was removed: %v", err)
	}
	if _, err := os.Stat(sub); err != nil {
		t.Errorf("a directory of the bound host directory was removed: %v", err)
	}
}

// The temporary file of a download whose build was killed is removed by
// the next download into the cache; one still being written (its
// downloader holds the lock) is left alone.
func TestRemoveStaleDownloads(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, ".download-dead")
	live := filepath.Join(dir, ".download-live")
	done := filepath.Join(dir, "0123-base.tar")
	for _, p := range []string{dead, live, done} {
		if err := os.WriteFile(p, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lock := lockDownload(live)
	if lock == nil {
		t.Fatal("cannot lock a fresh temporary file")
	}
	defer lock.Close()
	removeStaleDownloads(dir)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("a dead download's temporary file was kept")
	}
	for _, p := range []string{live, done} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
}
