package e2e

// The fault-injection suite's tools (faults_test.go has the faults): a
// private cache on a filesystem of its own, a local server for the base
// image, builds that can be killed at a known point, image listings, and
// the search for anything a fault left behind.

import (
	"archive/tar"
	"builder/sbom"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"builder/internal/testreq"
)

// faultSuite is what every fault shares. Everything it makes lives under
// root, a path no one else uses, so anything left behind (a process, a
// mount, a loop device, a lock) is found by that path.
type faultSuite struct {
	root     string
	cache    string // the image cache: an ext4 filesystem of its own (loop-mounted file)
	cacheImg string // the file behind it
	elements string
	base     *baseServer
	ref      listing // the undisturbed image
	refB     listing // the undisturbed second image (concurrency)
	refDisk  listing // the undisturbed image of a build with a disk output

	mu     sync.Mutex
	faults map[string]int // faults injected, by kind
	checks int            // assertions made after faults
	seq    int
	live   []*build // builds not yet waited for (killed at cleanup)
}

// newFaultSuite makes the cache filesystem and starts the base image
// server.
func newFaultSuite(t *testing.T) *faultSuite {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "mount", "umount", "fallocate", "truncate", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			testreq.Missing(t, tool+" is missing (hack/setup.sh installs it)")
		}
	}
	f := &faultSuite{root: t.TempDir(), elements: testElements(t), faults: map[string]int{}}
	// The cache gets a filesystem of its own so that a test can fill it
	// (ENOSPC). Sparse: only what is written takes room on the host, and
	// a full disk is made with fallocate, which writes nothing.
	f.cacheImg = filepath.Join(f.root, "cache.ext4")
	f.cache = filepath.Join(f.root, "cache")
	mustRun(t, "truncate", "-s", "16G", f.cacheImg)
	mustRun(t, "mkfs.ext4", "-q", "-F", "-m", "0", f.cacheImg)
	os.MkdirAll(f.cache, 0o755)
	// -o loop detaches the loop device at unmount.
	mustRun(t, "mount", "-o", "loop", f.cacheImg, f.cache)
	t.Cleanup(func() {
		f.stopAll() // what a failed test left running holds the filesystem
		unmount(t, f.cache)
	})
	f.base = startBaseServer(t, minbaseTar(t))
	return f
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unmount unmounts dir, waiting a little for whatever still uses it (a
// failed test's build) to go.
func unmount(t *testing.T, dir string) {
	for i := 0; ; i++ {
		out, err := exec.Command("umount", dir).CombinedOutput()
		if err == nil {
			return
		}
		if i == 20 {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// count records one fault of a kind.
func (f *faultSuite) count(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[kind]++
}

// check counts one assertion made after a fault (for the suite's summary).
func (f *faultSuite) check(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks += n
}

// dir makes a new directory under the suite's root.
func (f *faultSuite) dir(t *testing.T, what string) string {
	f.mu.Lock()
	f.seq++
	d := filepath.Join(f.root, fmt.Sprintf("%s-%02d", what, f.seq))
	f.mu.Unlock()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// baseServer serves the minbase tarball builds use as DIB_LOCAL_IMAGE, with
// its SHA256SUMS beside it. Under /slow/ it can stop half way through the
// body (stall), so a build can be killed while downloading.
type baseServer struct {
	url, slowURL string
	data         []byte
	gets         atomic.Int32 // full or partial GETs of the tarball
	stall        atomic.Bool
	stalled      chan struct{} // a stalled download has sent half the file
}

func startBaseServer(t *testing.T, tarball string) *baseServer {
	t.Helper()
	data, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	s := &baseServer{data: data, stalled: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, r *http.Request) {
		switch filepath.Base(r.URL.Path) {
		case "SHA256SUMS":
			fmt.Fprintf(w, "%s  minbase.tar\n", hex.EncodeToString(sum[:]))
		case "minbase.tar":
			s.gets.Add(1)
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			if strings.HasPrefix(r.URL.Path, "/slow/") && s.stall.Load() {
				w.Write(data[:len(data)/2])
				w.(http.Flusher).Flush()
				select {
				case s.stalled <- struct{}{}:
				default:
				}
				<-r.Context().Done()
				return
			}
			w.Write(data)
		default:
			http.NotFound(w, r)
		}
	}
	mux.HandleFunc("/", serve)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	s.url = "http://" + l.Addr().String() + "/images/minbase.tar"
	s.slowURL = "http://" + l.Addr().String() + "/slow/minbase.tar"
	return s
}

// build is one builder run, in its own process group so that a kill takes
// everything builder started in it.
type build struct {
	label string
	out   string // output directory (builder runs there, -o img)
	tmp   string // its TMP_DIR
	cmd   *exec.Cmd
	done  chan struct{}
	code  int
	// more is signalled when output arrives: a kill point reacts at once.
	more chan struct{}

	mu  sync.Mutex
	log bytes.Buffer
}

// buildOpts say what to build; the zero value is the reference image.
type buildOpts struct {
	env   []string // more variables (FAULT_* of the fault-points element...)
	args  []string // more arguments before the elements
	types string   // -t, default tar
	extra []string // more elements
	out   string   // output directory, default a new one
	// bootstrap: no DIB_LOCAL_IMAGE, the base is bootstrapped with
	// mmdebstrap from the mirror.
	bootstrap bool
}

// start runs `builder image debian-minimal vm fault-points` on the suite's
// cache. Builds write -o img in their own directory, so the command line
// (which the image's dib-manifests record) is the same for all of them.
func (f *faultSuite) start(t *testing.T, label string, o buildOpts) *build {
	t.Helper()
	if o.out == "" {
		o.out = f.dir(t, "out")
	}
	if o.types == "" {
		o.types = "tar"
	}
	b := &build{label: label, out: o.out, tmp: f.dir(t, "tmp"), done: make(chan struct{}), more: make(chan struct{}, 1)}
	args := []string{"image", "-v", "-t", o.types, "-o", "img", "--image-cache", f.cache}
	args = append(args, o.args...)
	args = append(args, "debian-minimal", "vm", "fault-points")
	args = append(args, o.extra...)
	b.cmd = exec.Command(builderBin, args...)
	b.cmd.Dir = o.out
	b.cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME"),
		// TMPDIR too: whatever builder or its tools leave in TMPDIR is
		// then found in the build's own directory.
		"TMP_DIR=" + b.tmp, "TMPDIR=" + b.tmp, "ELEMENTS_PATH=" + f.elements,
		"OVERWRITE_OLD_IMAGE=1",
	}
	if !o.bootstrap {
		b.cmd.Env = append(b.cmd.Env, "DIB_LOCAL_IMAGE="+f.base.url)
	}
	// Last: a variable given twice takes its last value.
	b.cmd.Env = append(b.cmd.Env, o.env...)
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b.cmd.Stdout, b.cmd.Stderr = pw, pw
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	f.mu.Lock()
	f.live = append(f.live, b)
	f.mu.Unlock()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := pr.Read(buf)
			b.mu.Lock()
			b.log.Write(buf[:n])
			b.mu.Unlock()
			select {
			case b.more <- struct{}{}:
			default:
			}
			if err != nil {
				break
			}
		}
		pr.Close()
		err := b.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			b.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				b.code = 128 + int(ws.Signal())
			}
		case err != nil:
			b.code = -1
		}
		close(b.done)
	}()
	return b
}

func (b *build) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// waitFor waits until the build printed pattern (a regular expression);
// false when it ended first or took longer than d.
func (b *build) waitFor(pattern string, d time.Duration) bool {
	re := regexp.MustCompile(pattern)
	timeout := time.After(d)
	for {
		if re.MatchString(b.output()) {
			return true
		}
		select {
		case <-b.more:
		case <-b.done:
			return re.MatchString(b.output())
		case <-timeout:
			return false
		}
	}
}

// kill sends SIGKILL to the build's whole process group and waits for
// builder to be gone. Processes that builder put in groups of their own
// (hook sandboxes, tools) are not touched: cleaning up after them is the
// next build's job.
func (b *build) kill(t *testing.T) {
	t.Helper()
	b.signal(t, syscall.SIGKILL)
}

// signal stops the build as its user or its supervisor would: SIGKILL and
// SIGINT (a terminal's Ctrl-C) go to builder's whole process group,
// SIGTERM (kill PID, a service manager) to builder alone. It waits for
// builder to be gone: at once after SIGKILL, within a minute after the
// others (builder stops and cleans up).
func (b *build) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	pid := -b.cmd.Process.Pid
	if sig == syscall.SIGTERM {
		pid = b.cmd.Process.Pid
	}
	// ESRCH: it has ended already (the caller sees its exit code).
	if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
		t.Fatalf("%s to %s: %v", sig, b.label, err)
	}
	b.wait(t, time.Minute)
}

// wait waits for the build to end and logs the end of its output.
func (b *build) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(d):
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
		t.Errorf("%s took longer than %s", b.label, d)
	}
	out := b.output()
	switch {
	case b.code != 0 && b.code != 137:
		t.Logf("%s -> exit %d:\n%s", b.label, b.code, out)
	case strings.Contains(b.label, "undisturbed") || strings.HasPrefix(b.label, "reference"):
		// The timing table: where the suite's time goes.
		t.Logf("%s -> exit %d:\n%s", b.label, b.code, out[strings.LastIndex(out, "\ntiming")+1:])
	default:
		t.Logf("%s -> exit %d:\n%s", b.label, b.code, tailLines(out, 6))
	}
	return b.code
}

// stopAll kills builds a failed test left running, so the cache can be
// unmounted.
func (f *faultSuite) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.live {
		select {
		case <-b.done:
		default:
			syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
		}
	}
	killUnder(f.root)
}

// runID is the run lock builder took for b (its ID names the run's
// containers, scratch directories and temporary files), "" if none.
func (b *build) runID() string {
	locks, _ := filepath.Glob("/run/builder/runs/*.lock")
	for _, l := range locks {
		data, err := os.ReadFile(l)
		if err == nil && bytes.Contains(data, []byte(b.tmp+"/")) {
			return strings.TrimSuffix(filepath.Base(l), ".lock")
		}
	}
	return ""
}

// entry is one member of an image's tree.
type entry struct {
	meta string // type, mode, owner, link target
	sum  string // content digest of a regular file
}

type listing map[string]entry

// tarListing reads an image's tar output to its end (a truncated archive
// fails) and lists its members.
func tarListing(t *testing.T, path string) listing {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("listing %s: %v", path, err)
	}
	defer f.Close()
	l := listing{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not a complete tar archive: %v", path, err)
		}
		e := entry{meta: fmt.Sprintf("%c %o %d:%d %s", h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname)}
		if h.Typeflag == tar.TypeReg {
			hs := sha256.New()
			if _, err := io.Copy(hs, tr); err != nil {
				t.Fatalf("%s is not a complete tar archive: %v", path, err)
			}
			e.sum = hex.EncodeToString(hs.Sum(nil))
		}
		l["/"+strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")] = e
	}
	if len(l) < 1000 {
		t.Fatalf("%s holds only %d files", path, len(l))
	}
	return l
}

// volatileContent are files whose content records the command line and
// the environment (DIB's manifests), not what the image is made of.
var volatileContent = map[string]bool{"/etc/dib-manifests/dib_arguments": true, "/etc/dib-manifests/dib_environment": true}

// sameImage compares an image with an undisturbed one: the same files with
// the same types, modes, owners and link targets; with sameSteps (the build
// reused the undisturbed build's steps) also the same contents. Files the
// fault-points element writes always have their contents checked.
func (f *faultSuite) sameImage(t *testing.T, label string, got, want listing, sameSteps bool) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, p+": missing")
		case g.meta != w.meta:
			diffs = append(diffs, fmt.Sprintf("%s: %s, want %s", p, g.meta, w.meta))
		case g.sum != w.sum && (sameSteps || strings.HasPrefix(p, "/etc/fault-")) && !volatileContent[p]:
			diffs = append(diffs, p+": different content")
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, p+": not in the undisturbed image")
		}
	}
	for _, p := range []string{"/etc/fault-points-extra", "/etc/fault-points-post"} {
		if _, ok := got[p]; !ok {
			diffs = append(diffs, p+": the fault-points element's file is missing")
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("... and %d more", len(diffs)-20))
		}
		t.Errorf("%s: the image differs from the undisturbed one in %d file(s):\n%s", label, len(diffs), strings.Join(diffs, "\n"))
	}
	f.check(1)
}

// outputsComplete checks a build's output directory: every output is
// complete (a tar to its end, a qcow2 that qemu-img checks clean) or
// absent, nothing half-written is left, and with want the expected
// outputs are all there. It returns the tar listing when there is one.
func (f *faultSuite) outputsComplete(t *testing.T, b *build, want bool) listing {
	t.Helper()
	ents, _ := os.ReadDir(b.out)
	var l listing
	have := map[string]bool{}
	for _, e := range ents {
		n := e.Name()
		have[n] = true
		p := filepath.Join(b.out, n)
		switch {
		case n == "img.tar":
			l = tarListing(t, p)
		case n == "img.qcow2":
			if out, err := exec.Command("qemu-img", "check", "-q", p).CombinedOutput(); err != nil {
				t.Errorf("%s: %s is damaged: %v\n%s", b.label, n, err, out)
			}
		case n == "img.fault-note":
			if data, _ := os.ReadFile(p); string(data) != "fault note of img\n" {
				t.Errorf("%s: %s holds %q", b.label, n, data)
			}
		case n == "img.fault-big":
			checkBigOutput(t, b, p)
		case n == "img.d":
		case n == "img.spdx.json":
			checkSBOM(t, b, p)
		default:
			t.Errorf("%s: left in the output directory: %s", b.label, n)
		}
	}
	if want {
		for _, n := range []string{"img.tar", "img.fault-note", "img.d"} {
			if !have[n] {
				t.Errorf("%s: %s was not written", b.label, n)
			}
		}
	}
	// Checked and listed, the images are not needed any more: some fifty
	// builds' would take 20 GiB of the host's disk.
	for _, n := range []string{"img.tar", "img.qcow2", "img.fault-big"} {
		os.Remove(filepath.Join(b.out, n))
	}
	f.check(1)
	return l
}

// checkSBOM checks that an SBOM beside the outputs is whole: it parses,
// and its file inventory is the one it names.
func checkSBOM(t *testing.T, b *build, p string) {
	t.Helper()
	if _, err := sbom.Read(p); err != nil {
		t.Errorf("%s: %s is not whole: %v", b.label, filepath.Base(p), err)
	}
}

// checkBigOutput checks the fault-points element's big output
// (FAULT_OUTPUT_MB): zeros, whole MiBs.
func checkBigOutput(t *testing.T, b *build, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil || len(data) == 0 || len(data)%(1<<20) != 0 || bytes.Count(data, []byte{0}) != len(data) {
		t.Errorf("%s: %s is not whole (%d bytes, %v)", b.label, filepath.Base(p), len(data), err)
	}
}

// leftovers lists what builds of this suite left behind: processes and
// mounts that name the suite's paths or belong to a known run, loop
// devices on its files, working containers and temporary files in the
// cache, run locks, scratch directories, and files in the builds' TMP_DIRs.
func (f *faultSuite) leftovers(t *testing.T, runIDs ...string) []string {
	t.Helper()
	var found []string
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		fl := strings.Fields(line)
		if len(fl) < 5 {
			continue
		}
		mp := fl[4]
		if strings.HasPrefix(mp, f.root+"/") && mp != f.cache && !strings.HasPrefix(mp, f.root+"/outfs") {
			found = append(found, "mount "+mp)
		}
	}
	found = append(found, processesUnder(f.root, runIDs)...)
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, l := range loops {
		data, _ := os.ReadFile(l)
		back := strings.TrimSpace(string(data))
		if strings.HasPrefix(back, f.root+"/") && back != f.cacheImg {
			found = append(found, "loop device on "+back)
		}
	}
	store := filepath.Join(f.cache, "builder", "containers")
	for _, names := range storeContainers(store) {
		found = append(found, fmt.Sprintf("container %v", names))
	}
	// Temporary files in the cache: commit staging, kept outputs being
	// copied, downloads, package-cache views.
	filepath.WalkDir(filepath.Join(store, "tmp"), func(p string, d os.DirEntry, err error) error {
		if err == nil && p != filepath.Join(store, "tmp") {
			found = append(found, "temporary file "+p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	for _, pattern := range []string{
		filepath.Join(store, "step-outputs", "*tmp*"),
		filepath.Join(f.cache, "downloads", ".download-*"),
		filepath.Join(f.cache, "apt", "*", "builder.*"),
		filepath.Join(f.cache, "builder", "state", "builds", ".record-*"),
	} {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			found = append(found, "temporary file "+p)
		}
	}
	locks, _ := filepath.Glob("/run/builder/runs/*.lock")
	for _, l := range locks {
		data, _ := os.ReadFile(l)
		id := strings.TrimSuffix(filepath.Base(l), ".lock")
		if bytes.Contains(data, []byte(f.root+"/")) || contains(runIDs, id) {
			found = append(found, "run lock "+l)
		}
	}
	for _, id := range runIDs {
		m, _ := filepath.Glob("/dev/shm/builder." + id + ".*")
		for _, p := range m {
			found = append(found, "scratch "+p)
		}
	}
	tmps, _ := filepath.Glob(filepath.Join(f.root, "tmp-*", "*"))
	for _, p := range tmps {
		found = append(found, "temp "+p)
	}
	f.check(1)
	return found
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// processesUnder lists processes whose command line or environment names
// a path under root, or that carry the run mark of one of runIDs.
func processesUnder(root string, runIDs []string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == fmt.Sprint(os.Getpid()) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		hit := bytes.Contains(cmdline, []byte(root+"/")) || bytes.Contains(env, []byte(root+"/"))
		for _, id := range runIDs {
			if id != "" && bytes.Contains(env, []byte("BUILDER_RUN_MARK=builder-"+id)) {
				hit = true
			}
		}
		if hit {
			found = append(found, fmt.Sprintf("process %s: %.200s", e.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

// killUnder kills what processesUnder finds (a failed test's leftovers),
// so that the suite's filesystems can be unmounted.
func killUnder(root string) {
	for _, p := range processesUnder(root, nil) {
		var pid int
		fmt.Sscanf(strings.TrimPrefix(p, "process "), "%d", &pid)
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// runLeftovers lists what one killed build (run id) still has: processes
// with its mark or naming its TMP_DIR, its run lock, scratch directories,
// working containers, temporary files in its output directory and in the
// store, and anything in its TMP_DIR.
func (f *faultSuite) runLeftovers(b *build, id string) []string {
	var found []string
	if id == "" {
		return []string{"no run lock was found for " + b.label}
	}
	found = append(found, processesUnder(b.tmp, []string{id})...)
	tag := "builder." + id + "."
	store := filepath.Join(f.cache, "builder", "containers")
	for _, pattern := range []string{
		"/run/builder/runs/" + id + ".lock",
		"/dev/shm/" + tag + "*",
		filepath.Join(b.tmp, "*"),
		filepath.Join(b.out, "*"+tag+"*"),
		filepath.Join(store, "tmp", tag+"*"),
		filepath.Join(store, "step-outputs", "*"+tag+"*"),
	} {
		m, _ := filepath.Glob(pattern)
		found = append(found, m...)
	}
	for _, names := range storeContainers(store) {
		for _, n := range names {
			if strings.HasPrefix(n, "builder-"+id+"-") {
				found = append(found, "working container "+n)
			}
		}
	}
	return found
}

// storeContainers lists the names of the working containers in the
// store: buildah makes them volatile, recorded in volatile-containers.json
// beside containers.json.
func storeContainers(store string) [][]string {
	var all [][]string
	for _, f := range []string{"containers.json", "volatile-containers.json"} {
		data, err := os.ReadFile(filepath.Join(store, "storage-overlay", "overlay-containers", f))
		if err != nil {
			continue
		}
		var cs []struct {
			Names []string `json:"names"`
		}
		json.Unmarshal(data, &cs)
		for _, c := range cs {
			all = append(all, c.Names)
		}
	}
	return all
}

// noLeftovers fails the test with what was left behind.
func (f *faultSuite) noLeftovers(t *testing.T, after string, runIDs ...string) {
	t.Helper()
	if l := f.leftovers(t, runIDs...); len(l) > 0 {
		t.Errorf("after %s, left behind:\n%s", after, strings.Join(l, "\n"))
	}
}

// verifyCache runs `builder cache verify` and returns what it printed.
func (f *faultSuite) verifyCache(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(builderBin, "cache", "verify", "--image-cache", f.cache)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME")}
	out, err := cmd.CombinedOutput()
	t.Logf("builder cache verify:\n%s", out)
	if err != nil {
		t.Fatalf("builder cache verify: %v", err)
	}
	return string(out)
}

// freeBytes is the room left on the filesystem of path.
func freeBytes(t *testing.T, path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill takes all but leave bytes of the filesystem of dir with one file,
// returned for removal.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, ".fault-filler")
	n := freeBytes(t, dir) - leave
	if n <= 0 {
		return p
	}
	mustRun(t, "fallocate", "-l", fmt.Sprint(n), p)
	return p
}
