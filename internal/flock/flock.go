// Package flock is an advisory file lock that names its holder, so that a
// second process can say who it is waiting for or why it skipped. The lock
// is flock(2) on a file that is never removed: removing it would let two
// processes lock two different inodes of the same path.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrBusy is returned by TryLock when another process holds the lock.
var ErrBusy = errors.New("locked by another process")

// Lock is a held lock; Unlock releases it.
type Lock struct {
	f    *os.File
	path string
}

// TryLock takes the lock at path without waiting. When another process
// holds it, the error wraps ErrBusy and names the holder.
func TryLock(path, owner string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock directory %s: %w (use a writable directory)", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (%s)", path, ErrBusy, Holder(path))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Who holds it, for the messages of whoever comes next.
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d (%s) since %s\n", os.Getpid(), owner, time.Now().Format(time.RFC3339))
	}
	return &Lock{f: f, path: path}, nil
}

// Wait takes the lock at path, polling until it is free or ctx ends. busy is
// called once, with the holder, when the lock is not free at first.
func Wait(ctx context.Context, path, owner string, busy func(holder string)) (*Lock, error) {
	told := false
	for {
		l, err := TryLock(path, owner)
		if !errors.Is(err, ErrBusy) {
			return l, err
		}
		if !told && busy != nil {
			busy(Holder(path))
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Holder describes who holds (or last held) the lock at path.
func Holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return "holder unknown"
	}
	return "held by " + strings.TrimSpace(string(b))
}

// Unlock releases the lock. The file stays (see the package comment).
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Shared takes the lock at path shared, waiting while someone holds it
// exclusively: many holders of a shared lock exclude one exclusive holder
// (builds share the cache; pruning takes it alone).
func Shared(ctx context.Context, path string, busy func()) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock directory %s: %w (use a writable directory)", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f: f, path: path}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told && busy != nil {
			busy()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
