package imagebuild

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"builder/internal/cleanup"
)

// A build killed outright leaves its run lock: the next build removes its
// work directories and the temporary outputs named after it, and nothing
// else; a dead run of another store keeps a lock naming only that store,
// for a build of that store to finish; a live run is left alone.
func TestReapStaleRunsRemovesWhatTheRunLeft(t *testing.T) {
	runs, tmp, out := t.TempDir(), t.TempDir(), t.TempDir()
	start := func(id, store string) (*runDir, *cleanup.Stack) {
		var stack cleanup.Stack
		r, err := startRun(id, tmp, runs, false, &stack)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.record(out); err != nil {
			t.Fatal(err)
		}
		if err := r.recordStore(store); err != nil {
			t.Fatal(err)
		}
		return r, &stack
	}
	// "Kill" a run: its lock is released without the cleanup running.
	kill := func(r *runDir) { r.lock.Close() }
	write := func(name string) string {
		p := filepath.Join(out, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	dead, _ := start("0000000000d1", "/cache-a/store")
	partial := write(".img.tar." + runTag(dead.ID) + "tmp")
	inner := write("..img.raw." + runTag(dead.ID) + "tmp.tmp-123")
	os.MkdirAll(filepath.Join(out, ".img.d."+runTag(dead.ID)+"tmp-77"), 0o755)
	kill(dead)
	foreign, _ := start("0000000000f1", "/cache-b/store")
	foreignPartial := write(".other.qcow2." + runTag(foreign.ID) + "tmp")
	kill(foreign)
	live, liveStack := start("0000000000a1", "/cache-a/store")
	defer liveStack.Run()
	livePartial := write(".img.tar." + runTag(live.ID) + "tmp")
	kept := write("img.tar")

	n, err := reapStaleRuns(runs, nil, "/cache-a/store", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("reaped %d runs, want 1 (the dead run of this store)", n)
	}
	for _, p := range []string{dead.Work, partial, inner, filepath.Join(out, ".img.d."+runTag(dead.ID)+"tmp-77"), foreign.Work, foreignPartial} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was left", p)
		}
	}
	for _, p := range []string{live.Work, livePartial, kept} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(runs, dead.ID+".lock")); err == nil {
		t.Errorf("the dead run's lock is left")
	}
	data, err := os.ReadFile(filepath.Join(runs, foreign.ID+".lock"))
	if err != nil || string(data) != storeLine+"/cache-b/store\n" {
		t.Errorf("the other store's dead run's lock holds %q (%v), want only its store", data, err)
	}
	// A build of that store finishes it.
	if n, err := reapStaleRuns(runs, nil, "/cache-b/store", nil); err != nil || n != 1 {
		t.Errorf("the other store's build reaped %d runs (%v), want 1", n, err)
	}
	if _, err := os.Stat(filepath.Join(runs, foreign.ID+".lock")); err == nil {
		t.Errorf("the other store's dead run's lock is left")
	}
}

// A build that failed for room says which disk is full and what to do, in
// one line; other failures are left as they are.
func TestNoSpaceNamesTheFullDisk(t *testing.T) {
	req := Request{ImageCache: "/var/cache/x", TmpDir: "/var/tmp", Output: "/srv/images/debian"}
	full := fmt.Errorf("commit: %w", &os.PathError{Op: "write", Path: "/var/cache/x/builder/containers/tmp/1", Err: syscall.ENOSPC})
	err := noSpace(full, req)
	if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "no space left on the disk of the image cache (/var/cache/x): free space there") {
		t.Errorf("got %q", err)
	}
	out := noSpace(errors.New("write /srv/images/.debian.qcow2.tmp: no space left on device\nmore"), req)
	if !strings.HasPrefix(out.Error(), "no space left on the disk of the output directory (/srv/images)") || strings.Contains(out.Error(), "\n") {
		t.Errorf("got %q", out)
	}
	other := errors.New("hook failed")
	if noSpace(other, req) != other {
		t.Errorf("an unrelated failure was changed")
	}
}

// Two builds reap one at a time: while one reaps, a dead run's lock it
// holds would look alive to the other, which must wait and then see it
// reaped (or handed over to its store) rather than pass it by.
func TestReapersTakeTurns(t *testing.T) {
	runs := t.TempDir()
	if _, err := reapStaleRuns(runs, nil, "/cache-a/store", nil); err != nil {
		t.Fatal(err)
	}
	hold, err := os.OpenFile(filepath.Join(runs, reapLock), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if err := syscall.Flock(int(hold.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		reapStaleRuns(runs, nil, "/cache-a/store", nil)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("a reaper did not wait for the one reaping")
	case <-time.After(300 * time.Millisecond):
	}
	syscall.Flock(int(hold.Fd()), syscall.LOCK_UN)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the reaper did not go on once the other was done")
	}
}
