package imagebuild

import (
	"builder/internal/hosttools"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	"go.podman.io/storage/pkg/unshare"

	"builder/internal/cleanup"
	"builder/internal/fsutil"
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

// newRunID names a build: its work directories, working containers,
// temporary outputs and run lock carry it (see runTag).
func newRunID() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// runTag is in the name of everything a run makes that must not outlive
// it: builder.<ID>. starts its directories and is inside its temporary
// outputs (.NAME.TYPE.builder.<ID>.tmp). The next build removes them
// should this one be killed outright (reapStaleRuns).
func runTag(id string) string { return "builder." + id + "." }

// startRun creates the work directory under tmpDir and takes the run lock
// in runs (the workspace's). Both are released through stack.
func startRun(id, tmpDir, runs string, useTmpfs bool, stack *cleanup.Stack) (*runDir, error) {
	r := &runDir{ID: id, locks: runs}
	if err := os.MkdirAll(r.locks, 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, inputError(fmt.Errorf("TMP_DIR %s: %w; set TMP_DIR to a directory you can write", tmpDir, err))
	}
	// The lock comes first and goes last: every directory of the run is
	// named in it for as long as the directory exists, so a build killed
	// even while cleaning up leaves nothing the next one cannot find.
	lockPath := filepath.Join(r.locks, r.ID+".lock")
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	r.lock = f
	stack.Push("run lock", func() error {
		os.Remove(lockPath)
		return f.Close()
	})
	work, err := os.MkdirTemp(tmpDir, "builder."+r.ID+".")
	if err != nil {
		return nil, inputError(fmt.Errorf("create work directory in %s: %w (set TMP_DIR to a writable directory)", tmpDir, err))
	}
	r.Work = work
	stack.Push("work directory "+work, func() error { return removeRunDir(work) })
	if err := r.record(work); err != nil {
		return nil, err
	}
	r.Scratch = work
	if useTmpfs {
		if shm := tmpfsWithRoom(scratchNeed); shm != "" {
			if d, err := os.MkdirTemp(shm, "builder."+r.ID+"."); err == nil {
				r.Scratch = d
				stack.Push("scratch directory "+d, func() error { return removeRunDir(d) })
				if err := r.record(d); err != nil {
					return nil, err
				}
			}
		}
	}
	return r, nil
}

// bootstrapDir is where mmdebstrap builds the base tree: the scratch
// space (tmpfs, much faster), except rootless: in a user namespace the
// host's /dev/shm is a locked mount, and mmdebstrap's bind of it into a
// tree that is itself under /dev/shm fails.
func (r *runDir) bootstrapDir() string {
	if unshare.IsRootless() && strings.HasPrefix(r.Scratch, "/dev/shm/") {
		return r.Work
	}
	return r.Scratch
}

// record adds a path to what the next build removes should this one be
// killed: a directory named builder.<ID>.* is removed; in any other
// directory (the outputs'), the entries whose names hold runTag(ID).
func (r *runDir) record(dir string) error {
	if r.lock == nil {
		return nil
	}
	if _, err := r.lock.WriteString(dir + "\n"); err != nil {
		return fmt.Errorf("run lock: %w", err)
	}
	return nil
}

// recordStore names the container store the run uses: its containers and
// staging files are removed by a build of the same store.
func (r *runDir) recordStore(dir string) error {
	return r.record(storeLine + dir)
}

const storeLine = "store "

// reapLock, in the runs directory, is held while a build reaps dead runs
// (not a run lock: those end in .lock).
const reapLock = ".reaping"

// reapStaleRuns removes what builds killed without cleanup left behind:
// the processes they started (hooks and tools in process groups of their
// own outlive a SIGKILL of builder's group), their working containers (and
// mounts) and staging files in store, their work directories and their
// temporary outputs. A dead run of another store keeps its lock, naming
// only that store, until a build of that store removes what it left there.
func reapStaleRuns(dir string, store *rootfs.Store, storeDir string, waiting func()) (int, error) {
	// Reapers take turns: a dead run's lock that another build's reaper
	// holds for a moment looks alive, and a build of the dead run's store
	// would pass it by, leaving its store files to a later build.
	if rl, err := os.OpenFile(filepath.Join(dir, reapLock), os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		defer rl.Close()
		if syscall.Flock(int(rl.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			if waiting != nil {
				waiting()
			}
			_ = syscall.Flock(int(rl.Fd()), syscall.LOCK_EX)
		}
	}
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
		rootfs.KillRun(id)
		tag, runStore := runTag(id), ""
		for _, line := range strings.Split(string(data), "\n") {
			if s, ok := strings.CutPrefix(line, storeLine); ok {
				runStore = s
				continue
			}
			if line == "" {
				continue
			}
			if strings.HasPrefix(filepath.Base(line), tag) {
				if err := removeRunDir(line); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			// A directory the run wrote its outputs in.
			outs, _ := os.ReadDir(line)
			for _, o := range outs {
				if strings.Contains(o.Name(), tag) {
					if err := removeAll(filepath.Join(line, o.Name())); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
		if runStore != "" && runStore != storeDir {
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(storeLine+runStore+"\n"), 0)
			f.Close()
			continue
		}
		if store != nil {
			if err := store.RemoveRun(id); err != nil {
				errs = append(errs, err)
			}
		}
		os.Remove(p)
		f.Close()
		n++
	}
	return n, errors.Join(errs...)
}

// markProcesses makes every process this build starts carry its run mark
// (rootfs.KillRun finds them after a SIGKILL) and puts what builder's
// tools write in TMPDIR into the run's work directory (removed by the next
// build should this one be killed). It returns the function that restores
// the environment.
func (r *runDir) markProcesses() func() {
	restore := func(k string) func() {
		old, had := os.LookupEnv(k)
		return func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		}
	}
	mark, tmp := restore(rootfs.RunMarkVar), restore("TMPDIR")
	os.Setenv(rootfs.RunMarkVar, rootfs.RunMark(r.ID))
	os.Setenv("TMPDIR", r.Work)
	return func() { mark(); tmp() }
}

// noSpace names the full disk when a build failed for room, and what to
// do about it, in one line; other errors are returned as they are. A tool
// that ran out of room does not always say so (tar: "Wrote only 4096 of
// 10240 bytes"): a disk of the build with less than 1 MiB left counts too.
func noSpace(err error, req Request) error {
	if err == nil {
		return err
	}
	enospc := errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device")
	for _, d := range []struct{ what, dir, fix string }{
		{"the image cache", req.ImageCache, "free space there, prune the cache (builder cache prune --max-size SIZE) or lower --cache-max-size"},
		{"the output directory", filepath.Dir(absOutput(req)), "free space there or write the image elsewhere (-o)"},
		{"TMP_DIR", req.TmpDir, "free space there or set TMP_DIR to a larger disk"},
		{"the scratch space", "/dev/shm", "free memory or build with --no-tmpfs"},
	} {
		if d.dir == "" {
			continue
		}
		named := enospc && strings.Contains(err.Error(), strings.TrimSuffix(d.dir, "/")+"/")
		var st syscall.Statfs_t
		full := syscall.Statfs(d.dir, &st) == nil && int64(st.Bavail)*st.Bsize < 1<<20
		if named || full {
			return &noSpaceError{fmt.Sprintf("no space left on the disk of %s (%s): %s", d.what, d.dir, d.fix), err}
		}
	}
	if enospc {
		return &noSpaceError{"no space left on a disk the build writes to", err}
	}
	return err
}

// noSpaceError is a build that failed for room: what is full and what to
// do, then the failure itself, on one line.
type noSpaceError struct {
	what string
	err  error
}

func (e *noSpaceError) Error() string {
	return e.what + "; " + strings.Join(strings.Fields(e.err.Error()), " ")
}
func (e *noSpaceError) Unwrap() error { return e.err }

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

// removeRunDir removes a run's own directory. Whatever is mounted inside
// it was mounted by the run (a bootstrap tool that failed half way leaves
// its /dev, /proc and /sys binds): those are detached first, deepest
// first, so neither the removal nor a later one walks into them.
func removeRunDir(dir string) error {
	// Whatever stays mounted, removeAll refuses to cross.
	_, _ = fsutil.DetachMounts(dir)
	return removeAll(dir)
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
	if hosttools.MemAvailable() < 2*need {
		return ""
	}
	if unix := syscall.Access(shm, 2 /* W_OK */); unix != nil {
		return ""
	}
	return shm
}
