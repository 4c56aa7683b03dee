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
	"unsafe"

	"golang.org/x/sys/unix"

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

// The run lock names every directory of the run for as long as it exists:
// taken before they are made, removed after they are gone.
func TestRunLockOutlivesTheRunsDirectories(t *testing.T) {
	runs, tmp := t.TempDir(), t.TempDir()
	var stack cleanup.Stack
	r, err := startRun("0123456789ab", tmp, runs, true, &stack)
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(runs, "0123456789ab.lock")
	data, err := os.ReadFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{r.Work}
	if r.Scratch != r.Work {
		dirs = append(dirs, r.Scratch)
	}
	for _, d := range dirs {
		if !strings.Contains(string(data), d+"\n") {
			t.Errorf("the run lock does not name %s:\n%s", d, data)
		}
	}
	// The order of removals, as the kernel reports them.
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, p := range append(dirs, lock) {
		if _, err := unix.InotifyAddWatch(fd, filepath.Dir(p), unix.IN_DELETE); err != nil {
			t.Fatal(err)
		}
	}
	if err := stack.Run(); err != nil {
		t.Fatal(err)
	}
	var order []string
	buf := make([]byte, 64<<10)
	n, _ := unix.Read(fd, buf)
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
		for _, p := range append(dirs, lock) {
			if name == filepath.Base(p) {
				order = append(order, p)
			}
		}
		off += unix.SizeofInotifyEvent + int(ev.Len)
	}
	if len(order) != len(dirs)+1 || order[len(order)-1] != lock {
		t.Errorf("removed in the order %v; want the run lock (%s) last, after %v", order, lock, dirs)
	}
}
