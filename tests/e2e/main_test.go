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
	"regexp"
	"runtime"
	"strings"
	"sync"
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
	// The lanes (see inLane) bound how many tests run at once; without
	// this, go test's -parallel (the number of CPUs) would count the tests
	// waiting for their lane and keep the other lane idle.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "1000")
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
	sharedLane.enter(t)
}

// needE2EOwnLane is needE2E for a test of the own lane: its builds, caches,
// TMP_DIRs and checks stay in directories of its own, which it registers
// with ownRoot before its first build.
func needE2EOwnLane(t *testing.T) {
	t.Helper()
	testreq.Short(t, "end-to-end test: skipped with -short")
	if os.Geteuid() != 0 {
		testreq.Missing(t, "end-to-end tests run as root (see tests/rootless for the rootless path)")
	}
	ownLaneTests.Store(t.Name(), true)
	ownLane.enter(t)
}

// ownLaneTests are the tests of the own lane, by name.
var ownLaneTests sync.Map

// ownLaneCache is the image cache the own lane's tests share (one at a
// time): the shared lane's checks look at the shared cache's containers.
func ownLaneCache() string { return filepath.Join(cacheDir, "own-lane") }

// ownLaneDirs registers a test's directories, and the own lane's cache,
// as own roots.
func ownLaneDirs(dirs ...string) {
	for _, d := range append(dirs, ownLaneCache()) {
		ownRoot(d)
	}
}

// The end-to-end tests run in two lanes side by side, one test at a time
// in each, in the order they are declared: most of a build waits on the
// network, on dpkg's one core or on a guest booting under emulation, and
// the machine has two cores.
//   - the shared lane: tests that build with the shared test cache and
//     look for leftovers machine-wide (leftovers);
//   - the own lane: long tests whose builds and checks stay in their own
//     directories (ownRoot); leftovers passes their runs by.
var sharedLane, ownLane = newLane(), newLane()

type lane struct {
	mu        sync.Mutex
	turn      *sync.Cond
	next, now int // the next ticket to hand out, the ticket whose turn it is
}

func newLane() *lane {
	l := &lane{}
	l.turn = sync.NewCond(&l.mu)
	return l
}

// enter waits for t's turn in the lane and holds it until t ends. The
// ticket is taken before t.Parallel, while go test still runs the tests
// one by one, so turns follow the order of declaration.
func (l *lane) enter(t *testing.T) {
	l.mu.Lock()
	ticket := l.next
	l.next++
	l.mu.Unlock()
	t.Parallel()
	waitStart := time.Now()
	l.mu.Lock()
	for l.now != ticket {
		l.turn.Wait()
	}
	l.mu.Unlock()
	// go test's time for t includes the wait.
	start := time.Now()
	t.Logf("waited %s for its lane", start.Sub(waitStart).Round(time.Second))
	t.Cleanup(func() {
		t.Logf("ran for %s in its lane", time.Since(start).Round(time.Second))
		l.mu.Lock()
		l.now++
		l.turn.Broadcast()
		l.mu.Unlock()
	})
}

// ownRoots are the directories of the own lane's tests.
var ownRoots struct {
	sync.Mutex
	dirs []string
}

// ownRoot registers dir as an own-lane test's: mounts under it, and the
// scratch directories and processes of builds whose run lock names a path
// under it, are that test's to check.
func ownRoot(dir string) {
	ownRoots.Lock()
	defer ownRoots.Unlock()
	ownRoots.dirs = append(ownRoots.dirs, dir)
}

func ownLaneRunning() bool {
	ownRoots.Lock()
	defer ownRoots.Unlock()
	return len(ownRoots.dirs) > 0
}

func underOwnRoot(p string) bool {
	ownRoots.Lock()
	defer ownRoots.Unlock()
	for _, d := range ownRoots.dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// mentionsOwnRoot says whether s (an argument, an environment entry)
// names a path under an own root.
func mentionsOwnRoot(s string) bool {
	ownRoots.Lock()
	defer ownRoots.Unlock()
	for _, d := range ownRoots.dirs {
		if strings.HasSuffix(s, d) || strings.Contains(s, d+"/") {
			return true
		}
	}
	return false
}

// ownLaneRun says whether run id is an own-lane test's: its lock (which
// names the run's directories for as long as they exist) names a path
// under an own root.
func ownLaneRun(id string) bool {
	data, err := os.ReadFile(filepath.Join("/run/builder/runs", id+".lock"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if underOwnRoot(strings.TrimPrefix(line, "store ")) {
			return true
		}
	}
	return false
}

// runOfScratch is the run ID in a scratch directory's name
// (/dev/shm/builder.<ID>.<random>).
func runOfScratch(p string) string {
	f := strings.Split(filepath.Base(p), ".")
	if len(f) < 3 {
		return ""
	}
	return f[1]
}

var runMarkID = regexp.MustCompile(`BUILDER_RUN_MARK=builder-([0-9a-f]+)`)

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
// the given directories, and files in the temp dir. For a test of the own
// lane, only what is its own: the shared lane's builds and boots run
// beside it, and what an own-lane build leaves on tmpfs or running once it
// ended, the shared lane's checks find (as no live run of the own lane
// names it).
func leftovers(t *testing.T, tmpDir string, dirs ...string) []string {
	t.Helper()
	_, own := ownLaneTests.Load(t.Name())
	store := cacheDir
	if own {
		store = ownLaneCache()
	}
	var found []string
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, d := range append(dirs, tmpDir) {
			if strings.HasPrefix(f[4], d+"/") && (own || !underOwnRoot(f[4])) {
				found = append(found, "mount "+f[4])
			}
		}
	}
	ents, _ := os.ReadDir(tmpDir)
	for _, e := range ents {
		found = append(found, "temp "+filepath.Join(tmpDir, e.Name()))
	}
	// Scratch data on tmpfs (bootstrap tree, raw disk).
	cs, err := filepath.Glob(filepath.Join(store, "builder", "containers", "storage-*", "overlay-containers", "*", "userdata"))
	if err == nil {
		for _, c := range cs {
			found = append(found, "container "+filepath.Base(filepath.Dir(c)))
		}
	}
	if own {
		return found
	}
	for _, d := range scratchDirs() {
		found = append(found, "scratch "+d)
	}
	found = append(found, hookProcesses()...)
	out, _ := exec.Command("pgrep", "-a", "qemu-system").Output()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// An own-lane test's guest has its files under its own root.
		if l != "" && !mentionsOwnRoot(l) {
			found = append(found, "qemu "+l)
		}
	}
	return found
}

// scratchDirs lists builds' scratch directories on tmpfs, but the own
// lane's. A run names its scratch directory in its lock a moment after
// making it: one not named yet is looked at again.
func scratchDirs() []string {
	var found []string
	for again := 0; again < 2; again++ {
		found = nil
		shm, _ := filepath.Glob("/dev/shm/builder.*")
		for _, d := range shm {
			if !ownLaneRun(runOfScratch(d)) {
				found = append(found, d)
			}
		}
		if len(found) == 0 || !ownLaneRunning() {
			break
		}
		time.Sleep(time.Second)
	}
	return found
}

// hookProcesses finds processes started by a builder hook (they carry
// builder's run marker in their environment), but the own lane's.
func hookProcesses() []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte("BUILDER_RUN_MARK=")) {
			continue
		}
		if m := runMarkID.FindSubmatch(env); m != nil && ownLaneRun(string(m[1])) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		found = append(found, fmt.Sprintf("process %s %s", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return found
}
