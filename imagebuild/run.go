package imagebuild

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/moby/sys/mountinfo"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"builder/internal/cleanup"
	"builder/rootfs"
)

// runDir is one build's private state: a work directory for the hooks tree
// and the raw disk, and a lock file that says the build is alive. A later
// build that can take the lock knows the owner died and removes its leftovers.
type runDir struct {
	ID   string
	Work string
	// Scratch holds bulky transient data (the bootstrap tree and tarball,
	// the raw disk): on tmpfs when there is room, as DIB's build dirs are,
	// else the same as Work.
	Scratch string
	locks   string
	lock    *os.File
}

// startRun creates the work directory under tmpDir and takes the run lock
// in runs (the workspace's). Both are released through stack.
func startRun(tmpDir, runs string, useTmpfs bool, stack *cleanup.Stack) (*runDir, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	r := &runDir{ID: hex.EncodeToString(b), locks: runs}
	if err := os.MkdirAll(r.locks, 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("TMP_DIR %s: %w", tmpDir, err)
	}
	work, err := os.MkdirTemp(tmpDir, "builder."+r.ID+".")
	if err != nil {
		return nil, fmt.Errorf("create work directory in %s: %w (set TMP_DIR to a writable directory)", tmpDir, err)
	}
	r.Work = work
	stack.Push("work directory "+work, func() error { return removeAll(work) })
	r.Scratch = work
	if useTmpfs {
		if shm := tmpfsWithRoom(scratchNeed); shm != "" {
			if d, err := os.MkdirTemp(shm, "builder."+r.ID+"."); err == nil {
				r.Scratch = d
				stack.Push("scratch directory "+d, func() error { return removeAll(d) })
			}
		}
	}

	lockPath := filepath.Join(r.locks, r.ID+".lock")
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	// The lock file names the directories, for whoever cleans up after us.
	_, _ = f.WriteString(work + "\n")
	if r.Scratch != work {
		_, _ = f.WriteString(r.Scratch + "\n")
	}
	r.lock = f
	stack.Push("run lock", func() error {
		os.Remove(lockPath)
		return f.Close()
	})
	return r, nil
}

// record adds a directory to what the next build removes should this one
// be killed (it must be named builder.<ID>.*).
func (r *runDir) record(dir string) error {
	if r.lock == nil {
		return nil
	}
	if _, err := r.lock.WriteString(dir + "\n"); err != nil {
		return fmt.Errorf("run lock: %w", err)
	}
	return nil
}

// reapStaleRuns removes what builds killed without cleanup left behind:
// their working containers (and mounts) and work directories.
func reapStaleRuns(dir string, store *rootfs.Store) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // alive
			continue
		}
		data, _ := os.ReadFile(p)
		if store != nil {
			if _, err := store.RemoveContainersWithPrefix("builder-" + id + "-"); err != nil {
				errs = append(errs, err)
			}
		}
		for _, dir := range strings.Fields(string(data)) {
			if !strings.HasPrefix(filepath.Base(dir), "builder."+id+".") {
				continue
			}
			if err := removeAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
		os.Remove(p)
		f.Close()
		n++
	}
	return n, errors.Join(errs...)
}

// removeAll removes a tree without ever crossing into another filesystem
// (a leftover bind mount must not lead it into host data).
func removeAll(dir string) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	if err := checkNoMounts(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// checkNoMounts refuses to delete a tree that has something mounted in it.
func checkNoMounts(dir string) error {
	abs, _ := filepath.Abs(dir)
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(abs))
	if err != nil {
		return nil
	}
	for _, m := range ms {
		return fmt.Errorf("not removing %s: %s is still mounted", dir, m.Mountpoint)
	}
	return nil
}

// scratchNeed is the tmpfs room a build wants: the bootstrap tree and its
// tarball, or the raw disk, with margin.
const scratchNeed = 6 << 30

// tmpfsWithRoom returns /dev/shm when it is a tmpfs with need bytes free and
// the machine has twice that in available memory (DIB's rule of thumb:
// tmpfs only when RAM is plentiful), else "".
func tmpfsWithRoom(need int64) string {
	const shm = "/dev/shm"
	var st syscall.Statfs_t
	if err := syscall.Statfs(shm, &st); err != nil || st.Type != 0x01021994 /* TMPFS_MAGIC */ {
		return ""
	}
	if int64(st.Bavail)*st.Bsize < need {
		return ""
	}
	if memAvailable() < 2*need {
		return ""
	}
	if unix := syscall.Access(shm, 2 /* W_OK */); unix != nil {
		return ""
	}
	return shm
}

func memAvailable() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return kb << 10
		}
	}
	return 0
}
