package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFaults injects faults into real builds of `debian-minimal vm
// fault-points` on a private cache: SIGKILL of builder's process group
// during a download and mmdebstrap's bootstrap, in every phase's hook
// (outside the image and in its container), while a step's outputs are
// kept in the cache, during a commit, during assembly, conversion, the
// renames and pruning; SIGINT (to the group, as Ctrl-C) and SIGTERM (to
// builder) at several of those points; a full cache disk and a full
// output disk; a read-only output directory, TMP_DIR and cache; a damaged
// layer and a damaged download; two builds at once of the same image and
// of different images. After each: a build stopped by SIGINT or SIGTERM
// has cleaned up itself; the next build gets past the point of the fault
// and removes what a killed build left;
// the next undisturbed build succeeds and makes the same image as the
// undisturbed reference build; outputs are complete or absent; nothing is
// left behind (processes, mounts, loop devices, containers, locks,
// temporary files); `builder cache verify` finds only what the test
// damaged. The counts of faults and checks are logged at the end
// ("faults: ..."), for the CI log.
func TestFaults(t *testing.T) {
	needE2EOwnLane(t)
	start := time.Now()
	f := newFaultSuite(t)
	ownRoot(f.root)

	// The reference: an undisturbed cold build from the served base.
	ref := f.start(t, "reference build", buildOpts{})
	if ref.wait(t, 30*time.Minute) != 0 {
		t.Fatalf("the reference build failed")
	}
	f.ref = f.outputsComplete(t, ref, true)
	if f.base.gets.Load() != 1 {
		t.Errorf("the base was downloaded %d times, want 1", f.base.gets.Load())
	}
	f.noLeftovers(t, "the reference build")

	t.Run("kill", f.killFaults)
	t.Run("full disk", f.fullDisks)
	t.Run("read-only", f.unwritable)
	t.Run("corruption", f.corruption)
	t.Run("concurrent", f.concurrent)

	// Whatever happened, the cache is whole in the end.
	if out := f.verifyCache(t); !strings.Contains(out, "none damaged") {
		t.Errorf("the cache is damaged after the faults:\n%s", out)
	}
	f.noLeftovers(t, "all faults")

	var kinds []string
	total := 0
	for k, n := range f.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	t.Logf("faults: %d injected (%s); %d checks after them; %s", total, strings.Join(kinds, ", "), f.checks, time.Since(start).Round(time.Second))
}

// killPoint is where a build is killed: after its output matched wait
// (then after delay), or when poll says so; stop is the variable that
// makes a hook stop there (no_proxy: in no step's key).
type killPoint struct {
	name  string
	kind  string // what the count calls it
	stop  string
	wait  string
	delay time.Duration
	// poll, when set, is checked every 10 ms after wait matched; the
	// kill comes when it returns true.
	poll func(b *build) bool
	// sig is how the build is stopped: SIGKILL (the zero value) leaves
	// the cleaning up to the next build; after SIGINT or SIGTERM builder
	// stops and cleans up itself.
	sig syscall.Signal
}

// killChain is a series of builds of one command, each killed at its
// point, ended by the same command undisturbed. Each build after a kill
// has the same step keys as the killed one: it looks up what the killed
// build was making, gets past the point it was killed at, and removes
// what it left; the last one must make the undisturbed image.
type killChain struct {
	name   string
	opts   buildOpts
	points []killPoint
	// sameSteps: the builds reuse the reference's steps, so the image must
	// be the same byte for byte.
	sameSteps bool
	// finish, when set, is the command of the last, undisturbed build
	// (the reference's when the killed builds' command is too costly to
	// build whole).
	finish *buildOpts
}

// killFaults stops builds with SIGKILL, SIGINT and SIGTERM at known
// points.
func (f *faultSuite) killFaults(t *testing.T) {
	stop := func(phase string) string { return "no_proxy=fault-stop-" + phase }
	hook := func(phase string, sig syscall.Signal) killPoint {
		kind := "kill in a hook"
		if sig != 0 {
			kind = "stop in a hook"
		}
		return killPoint{name: phase + sigName(sig), kind: kind, stop: stop(phase), wait: "fault-point " + phase + " reached", sig: sig}
	}
	store := filepath.Join(f.cache, "builder", "containers")
	staged := func(min int64) func(*build) bool { return func(*build) bool { return stagedBlob(store, min) } }
	chains := []killChain{
		// A download that is half done: nothing of it may be trusted.
		{name: "download", opts: buildOpts{env: []string{"DIB_LOCAL_IMAGE=" + f.base.slowURL}}, sameSteps: true, points: []killPoint{
			{name: "download", kind: "kill in a download"},
			{name: "download (SIGTERM)", kind: "stop in a download", sig: syscall.SIGTERM},
		}},
		// mmdebstrap bootstrapping the base from the mirror, killed once
		// it has mounted /proc and /dev into its tree: mmdebstrap runs in
		// a process group of its own and outlives a SIGKILL of builder's;
		// after SIGTERM builder kills it and detaches its mounts. A whole
		// bootstrap is costly: the last build is the reference's.
		{name: "bootstrap", opts: buildOpts{bootstrap: true}, finish: &buildOpts{}, sameSteps: true, points: []killPoint{
			{name: "bootstrap", kind: "kill in the bootstrap", poll: mountsIn},
			{name: "bootstrap (SIGTERM)", kind: "stop in the bootstrap", poll: mountsIn, sig: syscall.SIGTERM},
		}},
		// In every phase's hook, outside the image (root.d, extra-data.d,
		// cleanup.d) and in its container. FAULT_ROUND_ROOT makes every
		// phase run again (they were cached); the stop points do not
		// change keys.
		{name: "hooks", opts: buildOpts{env: []string{"FAULT_ROUND_ROOT=k1"}}, points: []killPoint{
			hook("root.d", 0), hook("extra-data.d", syscall.SIGTERM), hook("pre-install.d", 0), hook("install.d", syscall.SIGINT),
			hook("install.d", 0), hook("post-install.d", 0), hook("finalise.d", syscall.SIGTERM), hook("finalise.d", 0),
			hook("cleanup.d", 0),
		}},
		// cleanup.d made big: an output of 64 MiB killed while it is
		// copied into the cache, then 100 MiB of ballast killed during
		// the commit: while the layer's blob is staged, and once it is
		// complete, while the layer is being made from it.
		{name: "commit", opts: buildOpts{env: []string{"FAULT_ROUND_CLEANUP=k2", "FAULT_BALLAST_MB=100", "FAULT_OUTPUT_MB=64"}}, points: []killPoint{
			{name: "keeping outputs", kind: "kill while keeping outputs", wait: "fault big output written", poll: keepingOutputs(store)},
			{name: "commit, staging (SIGINT)", kind: "stop in a commit", wait: "fault big output written", poll: staged(0), sig: syscall.SIGINT},
			{name: "commit, staging", kind: "kill in a commit", wait: "fault big output written", poll: staged(0)},
			{name: "commit, applying", kind: "kill in a commit", wait: "fault big output written", poll: staged(100 << 20)},
		}},
		// builder's own work, on a build whose steps are all cached.
		{name: "assembly and outputs", opts: buildOpts{types: "qcow2,tar"}, sameSteps: true, points: []killPoint{
			{name: "assemble", kind: "kill in builder's work", wait: "==> assemble", delay: 300 * time.Millisecond},
			{name: "assemble (SIGINT)", kind: "stop in builder's work", wait: "==> assemble", delay: 300 * time.Millisecond, sig: syscall.SIGINT},
			{name: "write qcow2", kind: "kill in builder's work", wait: "==> write qcow2", delay: 500 * time.Millisecond},
			{name: "write qcow2 (SIGTERM)", kind: "stop in builder's work", wait: "==> write qcow2", delay: 500 * time.Millisecond, sig: syscall.SIGTERM},
			{name: "outputs", kind: "kill in builder's work", wait: "==> outputs"},
		}},
		// Pruning to a bound of 1 MiB: everything but the steps of the
		// last build of each image goes.
		{name: "prune", opts: buildOpts{env: []string{"BUILDER_CACHE_MAX_SIZE=1M"}}, sameSteps: true, points: []killPoint{
			{name: "prune", kind: "kill in builder's work", wait: "==> cache"},
		}},
	}
	for _, c := range chains {
		t.Run(c.name, func(t *testing.T) { f.runKillChain(t, c) })
	}
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return " (SIGINT)"
	case syscall.SIGTERM:
		return " (SIGTERM)"
	}
	return ""
}

// mountsIn says whether something is mounted in the build's TMP_DIR or
// its own tmpfs scratch directory (mmdebstrap's /proc, /dev and /sys in
// the tree it bootstraps; a root build bootstraps on /dev/shm).
func mountsIn(b *build) bool {
	scratch := "\x00" // matches nothing until the build has its run lock
	if id := b.runID(); id != "" {
		scratch = "/dev/shm/builder." + id + "."
	}
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if fl := strings.Fields(line); len(fl) > 4 && (strings.HasPrefix(fl[4], b.tmp+"/") || strings.HasPrefix(fl[4], scratch)) {
			return true
		}
	}
	return false
}

// keepingOutputs says whether a build is copying a step's outputs into
// the cache (a temporary directory of the run in step-outputs).
func keepingOutputs(store string) func(*build) bool {
	return func(*build) bool {
		m, _ := filepath.Glob(filepath.Join(store, "step-outputs", "*.builder.*.tmp-*"))
		return len(m) > 0
	}
}

func (f *faultSuite) runKillChain(t *testing.T, c killChain) {
	// With a disk output the tree has the bootloader's files: its
	// undisturbed image is another one.
	ref := f.ref
	if c.opts.types != "" {
		ref = f.diskReference(t)
	}
	out := f.dir(t, "out")
	var killed []*build
	var ids []string
	for _, p := range c.points {
		o := c.opts
		o.out = out
		if p.stop != "" {
			o.env = append(append([]string(nil), o.env...), p.stop)
		}
		download := strings.Contains(p.kind, "download")
		f.base.stall.Store(download)
		b := f.start(t, "build stopped at "+p.name, o)
		if download {
			select {
			case <-f.base.stalled:
			case <-time.After(10 * time.Minute):
				b.kill(t)
				t.Fatalf("the download never started")
			}
		} else if !b.waitFor(p.wait, 20*time.Minute) {
			b.kill(t)
			t.Fatalf("%s: %q never came", p.name, p.wait)
		}
		time.Sleep(p.delay)
		if p.poll != nil {
			for deadline := time.Now().Add(10 * time.Minute); !p.poll(b); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.kill(t)
					t.Fatalf("%s: the kill point never came", p.name)
				}
			}
		}
		id := b.runID()
		sig := p.sig
		if sig == 0 {
			sig = syscall.SIGKILL
		}
		sent := time.Now()
		b.signal(t, sig)
		f.count(p.kind)
		switch {
		case sig == syscall.SIGKILL && b.code != 137, sig != syscall.SIGKILL && (b.code == 0 || b.code == 137):
			t.Fatalf("%s: the build ended (exit %d) before it was stopped", p.name, b.code)
		case sig != syscall.SIGKILL:
			// Stopped, not killed: it said so, stopped soon, and left
			// nothing for the next build to clean.
			if !strings.Contains(b.output(), "stopping and cleaning up") {
				t.Errorf("%s: builder did not say it was stopping", p.name)
			}
			if took := time.Since(sent); took > time.Minute {
				t.Errorf("%s: took %s to stop", p.name, took.Round(time.Second))
			}
			if l := f.runLeftovers(b, id); len(l) > 0 {
				t.Errorf("the build stopped by %s at %s left:\n%s", sig, p.name, strings.Join(l, "\n"))
			}
			f.check(3)
		}
		if sig == syscall.SIGKILL {
			// What the next build must clean up (for the log: a kill
			// point whose list is empty came between two pieces of work).
			t.Logf("the kill at %s left: %s", p.name, strings.Join(f.runLeftovers(b, id), " "))
		}
		// What the stopped build wrote is complete or absent.
		f.outputsCompleteOrPartial(t, b)
		// This build got past the previous kill point and cleaned up
		// after the build killed there.
		if n := len(killed); n > 0 {
			if l := f.runLeftovers(killed[n-1], ids[n-1]); len(l) > 0 {
				t.Errorf("the build after the kill at %s did not remove what the killed one left:\n%s", c.points[n-1].name, strings.Join(l, "\n"))
			}
			f.check(1)
		}
		killed, ids = append(killed, b), append(ids, id)
	}

	// The same command, undisturbed, into the same directory.
	f.base.stall.Store(false)
	o := c.opts
	if c.finish != nil {
		o = *c.finish
	}
	o.out = out
	next := f.start(t, "build after the kills ("+c.name+")", o)
	if next.wait(t, 30*time.Minute) != 0 {
		t.Fatalf("the build after the kills failed")
	}
	f.check(1)
	got := f.outputsComplete(t, next, true)
	f.sameImage(t, "after the kills ("+c.name+")", got, ref, c.sameSteps)
	if c.name == "commit" {
		// Killed before its commit was whole, the step is made again
		// (were the kill late, a complete step would be reused).
		t.Logf("cleanup.d after the kills during its commit: %s", strings.TrimSpace(phaseLines(next.output())["cleanup.d"]))
	}
	for i, b := range killed {
		if l := f.runLeftovers(b, ids[i]); len(l) > 0 {
			t.Errorf("the kill at %s left:\n%s", c.points[i].name, strings.Join(l, "\n"))
		}
	}
	f.noLeftovers(t, "the kills ("+c.name+")", ids...)
}

// diskReference is the undisturbed image of a build with a disk output
// (-t qcow2,tar), made the first time it is asked for.
func (f *faultSuite) diskReference(t *testing.T) listing {
	if f.refDisk == nil {
		b := f.start(t, "undisturbed build with a disk", buildOpts{types: "qcow2,tar"})
		if b.wait(t, 30*time.Minute) != 0 {
			t.Fatalf("the undisturbed build with a disk failed")
		}
		f.refDisk = f.outputsComplete(t, b, true)
	}
	return f.refDisk
}

// withoutStops drops the stop points (no_proxy) from env.
func withoutStops(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "no_proxy=") {
			out = append(out, e)
		}
	}
	return out
}

// stagedBlob says whether a commit is staging a layer blob in the store's
// temporary directory (with min, once the blob is at least that big).
func stagedBlob(store string, min int64) bool {
	found := false
	filepath.Walk(filepath.Join(store, "tmp"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if strings.Contains(p, "container_images_storage") && (min == 0 || (fi.Mode().IsRegular() && fi.Size() >= min)) {
			found = true
		}
		return nil
	})
	return found
}

// outputsCompleteOrPartial checks a killed build's output directory: its
// outputs are complete where present; temporary files may be there (the
// next build removes them).
func (f *faultSuite) outputsCompleteOrPartial(t *testing.T, b *build) {
	t.Helper()
	ents, _ := os.ReadDir(b.out)
	for _, e := range ents {
		p := filepath.Join(b.out, e.Name())
		switch e.Name() {
		case "img.tar":
			tarListing(t, p)
		case "img.qcow2":
			if out, err := exec.Command("qemu-img", "check", "-q", p).CombinedOutput(); err != nil {
				t.Errorf("the killed build left a damaged %s: %v\n%s", e.Name(), err, out)
			}
		case "img.fault-big":
			checkBigOutput(t, b, p)
		case "img.spdx.json":
			checkSBOM(t, b, p)
		}
	}
	f.check(1)
}

// fullDisks fills the cache's filesystem while a step is being made, and
// the output's while the image is written: the build fails with a clear
// message and leaves nothing half-written; with room again the same build
// succeeds.
func (f *faultSuite) fullDisks(t *testing.T) {
	t.Run("cache", func(t *testing.T) {
		// cleanup.d writes 100 MiB, then waits 4 s (the stop point is in
		// no_proxy: not in any key) while the test takes all but 16 MiB
		// of the cache's disk: its commit needs twice the ballast.
		o := buildOpts{env: []string{"FAULT_ROUND_CLEANUP=enospc", "FAULT_BALLAST_MB=100", "no_proxy=fault-stop-ballast"}}
		b := f.start(t, "build on a cache disk that fills up", o)
		if !b.waitFor("fault-point ballast reached", 20*time.Minute) {
			b.kill(t)
			t.Fatalf("the ballast was never written")
		}
		filler := fill(t, f.cache, 16<<20)
		f.count("full disk")
		code := b.wait(t, 20*time.Minute)
		f.leftDuringFull(t, b, "full cache disk")
		os.Remove(filler)
		if code == 0 {
			t.Fatalf("the build succeeded on a full cache disk")
		}
		f.failedClearly(t, b, "no space left on the disk of the image cache")
		f.noLeftovers(t, "a full cache disk")

		o.out, o.env = b.out, withoutStops(o.env)
		next := f.start(t, "the same build with room again", o)
		if next.wait(t, 30*time.Minute) != 0 {
			t.Fatalf("the build after the full disk failed")
		}
		f.sameImage(t, "after a full cache disk", f.outputsComplete(t, next, true), f.ref, false)
		f.noLeftovers(t, "the build after a full cache disk")
	})
	t.Run("output", func(t *testing.T) {
		// A 700 MiB tmpfs holds the tar (about 450 MiB) only when the
		// filler is gone.
		dir := filepath.Join(f.root, "outfs")
		os.MkdirAll(dir, 0o755)
		mustRun(t, "mount", "-t", "tmpfs", "-o", "size=700m", "builder-fault-out", dir)
		t.Cleanup(func() { unmount(t, dir) })
		filler := fill(t, dir, 100<<20)
		b := f.start(t, "build onto a full output disk", buildOpts{out: dir})
		code := b.wait(t, 20*time.Minute)
		f.count("full disk")
		os.Remove(filler)
		if code == 0 {
			t.Fatalf("the build succeeded on a full output disk")
		}
		f.failedClearly(t, b, "no space left on the disk of the output directory")
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("a build that failed for room left in its output directory: %v", names)
		}
		f.check(1)
		f.noLeftovers(t, "a full output disk")
		next := f.start(t, "the same build with room again", buildOpts{out: dir})
		if next.wait(t, 30*time.Minute) != 0 {
			t.Fatalf("the build after the full disk failed")
		}
		f.sameImage(t, "after a full output disk", f.outputsComplete(t, next, true), f.ref, true)
		f.noLeftovers(t, "the build after a full output disk")
	})
}

// unwritable runs builds whose output directory, TMP_DIR or image cache
// is on a read-only filesystem (as root, modes do not stop a write): each
// fails at once, exit 2, with one line that names the directory and what
// to do, and leaves nothing.
func (f *faultSuite) unwritable(t *testing.T) {
	ro := filepath.Join(f.root, "readonly")
	os.MkdirAll(ro, 0o755)
	mustRun(t, "mount", "-t", "tmpfs", "-o", "ro,size=1m", "builder-fault-ro", ro)
	mounted := true
	defer func() {
		if mounted {
			unmount(t, ro)
		}
	}()
	for _, c := range []struct {
		what, want string
		opts       buildOpts
	}{
		{"output directory", "output directory " + ro + " is not writable", buildOpts{out: ro}},
		{"TMP_DIR", "create work directory in " + ro, buildOpts{env: []string{"TMP_DIR=" + ro}}},
		{"image cache", "image cache " + ro + " is not writable", buildOpts{args: []string{"--image-cache", ro}}},
	} {
		b := f.start(t, "build with a read-only "+c.what, c.opts)
		code := b.wait(t, 5*time.Minute)
		f.count("read-only directory")
		if code != 2 {
			t.Errorf("%s: exit %d, want 2", b.label, code)
		}
		f.failedClearly(t, b, c.want)
		if last := tailLines(b.output(), 1); !strings.Contains(last, "; ") && !strings.Contains(last, "(set ") {
			t.Errorf("%s: the line says no fix: %q", b.label, last)
		}
	}
	unmount(t, ro)
	mounted = false
	f.noLeftovers(t, "read-only directories")
}

// leftDuringFull notes what a build on a full disk left (it may not be
// able to clean up until there is room again; the next build must).
func (f *faultSuite) leftDuringFull(t *testing.T, b *build, what string) {
	if l := f.leftovers(t); len(l) > 0 {
		t.Logf("while the disk is full (%s), left: %v", what, l)
	}
}

// failedClearly: a failed build says why, naming the cause, in its last
// line.
func (f *faultSuite) failedClearly(t *testing.T, b *build, cause string) {
	t.Helper()
	last := tailLines(b.output(), 1)
	if !strings.HasPrefix(last, "builder: ") || !strings.Contains(last, cause) {
		t.Errorf("%s: no clear error naming %q; it ended with %q", b.label, cause, last)
	}
	f.check(1)
}

// corruption damages a layer of the reference image and the cached base
// download. A build never uses the damaged download (it fetches it again);
// `builder cache verify` names and removes both, only them and what is
// built on the layer; the next build makes the same image.
func (f *faultSuite) corruption(t *testing.T) {
	sum := sha256.Sum256([]byte(f.base.url))
	dl := filepath.Join(f.cache, "downloads", hex.EncodeToString(sum[:8])+"-minbase.tar")
	damage(t, dl, 1<<20)
	f.count("damaged download")
	gets := f.base.gets.Load()
	b := f.start(t, "build with a damaged download in the cache", buildOpts{})
	if b.wait(t, 30*time.Minute) != 0 {
		t.Fatalf("the build with a damaged download failed")
	}
	if !strings.Contains(b.output(), "does not match its checksum") || f.base.gets.Load() != gets+1 {
		t.Errorf("the damaged download was not fetched again (%d downloads, want %d)", f.base.gets.Load(), gets+1)
	}
	f.sameImage(t, "after a damaged download", f.outputsComplete(t, b, true), f.ref, true)

	// finalise.d's layer holds the initramfs, the largest file damaged.
	name, layer := f.stepLayer(t, "finalise.d")
	on := f.imagesOn(t, filepath.Base(layer))
	damageLargestFile(t, filepath.Join(layer, "diff"))
	f.count("damaged layer")
	damage(t, dl, 2<<20)
	f.count("damaged download")
	out := f.verifyCache(t)
	if !strings.Contains(out, name+": ") {
		t.Errorf("verify did not name the damaged step %s", name)
	}
	if !strings.Contains(out, filepath.Base(dl)) {
		t.Errorf("verify did not name the damaged download %s", filepath.Base(dl))
	}
	if _, err := os.Stat(dl); err == nil {
		t.Errorf("verify kept the damaged download")
	}
	for _, line := range strings.Split(out, "\n") {
		what := strings.SplitN(line, ": ", 2)[0]
		if strings.Contains(line, "removed") && !on[what] && !strings.Contains(line, filepath.Base(dl)) && !strings.HasPrefix(line, "builder: ") {
			t.Errorf("verify removed what was not damaged: %s", line)
		}
	}
	if f.storeImage(t, name).ID != "" {
		t.Errorf("verify kept the damaged step %s", name)
	}
	f.check(5)
	b = f.start(t, "build after verify removed the damaged layer and download", buildOpts{})
	if b.wait(t, 30*time.Minute) != 0 {
		t.Fatalf("the build after verify failed")
	}
	if f.base.gets.Load() != gets+2 {
		t.Errorf("the removed download was not fetched again")
	}
	if l := phaseLines(b.output())["finalise.d"]; strings.HasSuffix(l, "cached") {
		t.Errorf("finalise.d was not made again: %s", l)
	}
	f.sameImage(t, "after verify removed a damaged layer", f.outputsComplete(t, b, true), f.ref, false)
	f.noLeftovers(t, "a damaged layer and download")
}

// stepLayer finds the image and layer directory of a phase of the last
// recorded build of img.
func (f *faultSuite) stepLayer(t *testing.T, phase string) (name, dir string) {
	t.Helper()
	var rec struct {
		Builds []struct {
			Steps []struct{ Phase, Image string }
		}
	}
	data, err := os.ReadFile(filepath.Join(f.cache, "builder", "state", "builds", "img.json"))
	if err != nil || json.Unmarshal(data, &rec) != nil || len(rec.Builds) == 0 {
		t.Fatalf("no build record of img: %v", err)
	}
	for _, s := range rec.Builds[len(rec.Builds)-1].Steps {
		if s.Phase == phase {
			name = s.Image
		}
	}
	img := f.storeImage(t, name)
	if img.Layer == "" {
		t.Fatalf("no image %q for %s in the store", name, phase)
	}
	return name, filepath.Join(f.cache, "builder", "containers", "storage-overlay", "overlay", img.Layer)
}

type storeImage struct {
	ID    string   `json:"id"`
	Names []string `json:"names"`
	Layer string   `json:"layer"`
}

func (f *faultSuite) storeImages(t *testing.T) []storeImage {
	var imgs []storeImage
	data, err := os.ReadFile(filepath.Join(f.cache, "builder", "containers", "storage-overlay", "overlay-images", "images.json"))
	if err != nil || json.Unmarshal(data, &imgs) != nil {
		t.Fatalf("reading the store's images: %v", err)
	}
	return imgs
}

func (f *faultSuite) storeImage(t *testing.T, name string) storeImage {
	for _, img := range f.storeImages(t) {
		if contains(img.Names, name) {
			return img
		}
	}
	return storeImage{}
}

// imagesOn lists the images built on a layer (their layer chains hold it).
func (f *faultSuite) imagesOn(t *testing.T, layer string) map[string]bool {
	var layers []struct {
		ID     string `json:"id"`
		Parent string `json:"parent"`
	}
	data, err := os.ReadFile(filepath.Join(f.cache, "builder", "containers", "storage-overlay", "overlay-layers", "layers.json"))
	if err != nil || json.Unmarshal(data, &layers) != nil {
		t.Fatalf("reading the store's layers: %v", err)
	}
	parent := map[string]string{}
	for _, l := range layers {
		parent[l.ID] = l.Parent
	}
	on := map[string]bool{}
	for _, img := range f.storeImages(t) {
		for l := img.Layer; l != ""; l = parent[l] {
			if l == layer {
				for _, n := range img.Names {
					on[n] = true
				}
				on[img.ID[:12]] = true
			}
		}
	}
	return on
}

// damageLargestFile overwrites part of the largest file under dir.
func damageLargestFile(t *testing.T, dir string) {
	t.Helper()
	var big string
	var size int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			big, size = p, fi.Size()
		}
		return nil
	})
	if big == "" {
		t.Fatalf("no file to damage in %s", dir)
	}
	damage(t, big, size/2)
	t.Logf("damaged %s (%d bytes)", big, size)
}

// damage overwrites 4 KiB of a file at off.
func damage(t *testing.T, path string, off int64) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("damage: %v", err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt([]byte(strings.Repeat("damaged!", 512)), off); err != nil {
		t.Fatal(err)
	}
}

// concurrent runs two builds at once: of the same image (they make the
// same steps at the same time) and of two different images (the second
// has the fault-other element: a file more, written in cleanup.d).
func (f *faultSuite) concurrent(t *testing.T) {
	both := func(t *testing.T, what string, oa, ob buildOpts, refA, refB listing) {
		a := f.start(t, "first of "+what, oa)
		b := f.start(t, "second of "+what, ob)
		f.count("two builds at once")
		ca, cb := a.wait(t, 40*time.Minute), b.wait(t, 40*time.Minute)
		if ca != 0 || cb != 0 {
			t.Fatalf("%s: exit %d and %d", what, ca, cb)
		}
		f.sameImage(t, "first of "+what, f.outputsComplete(t, a, true), refA, false)
		f.sameImage(t, "second of "+what, f.outputsComplete(t, b, true), refB, false)
		f.noLeftovers(t, what)
	}
	t.Run("same image", func(t *testing.T) {
		o := buildOpts{env: []string{"FAULT_ROUND_FINALISE=c1"}}
		both(t, "two builds of one image", o, o, f.ref, f.ref)
	})
	t.Run("different images", func(t *testing.T) {
		ob := buildOpts{extra: []string{"fault-other"}}
		b := f.start(t, "undisturbed build of the second image", ob)
		if b.wait(t, 30*time.Minute) != 0 {
			t.Fatalf("the second image's build failed")
		}
		f.refB = f.outputsComplete(t, b, true)
		if _, ok := f.refB["/etc/fault-other"]; !ok {
			t.Fatalf("the second image lacks its file")
		}
		oa := buildOpts{env: []string{"FAULT_ROUND_FINALISE=c2"}}
		ob.env = oa.env
		both(t, "two builds of different images", oa, ob, f.ref, f.refB)
	})
}
