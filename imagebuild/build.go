package imagebuild

import (
	"builder/cache"
	"builder/internal/units"
	"builder/internal/workspace"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"golang.org/x/sync/errgroup"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"builder/assemble"
	"builder/elements"
	"builder/internal/cleanup"
	"builder/internal/doctor"
	"builder/internal/fsutil"
	"builder/internal/progress"
	"builder/rootfs"
)

// Result is what a build produced.
type Result struct {
	Outputs  []string
	Elements []string
	Image    rootfs.Image
	Disk     *assemble.Disk
}

// minFreeBytes is the free space a build wants in the cache and the temp
// dir: a base, the steps of a small image and its disk.
const minFreeBytes = 2 << 30

// defaultBlockDevice is the layout vm gets when none is named: one GPT disk
// that boots under BIOS and UEFI.
const defaultBlockDevice = "block-device-efi"

// Run builds the image described by req.
func Run(ctx context.Context, req Request) (res *Result, err error) {
	rep := progress.New(req.Out)
	var stack cleanup.Stack
	defer func() {
		if cerr := stack.Run(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		err = noSpace(err, req)
		rep.Summary()
	}()
	req = withDefaults(req)
	if req.runID, err = newRunID(); err != nil {
		return nil, err
	}
	outs, err := planOutputs(req)
	if err != nil {
		return nil, inputError(err)
	}
	if err := checkArch(req.Arch); err != nil {
		return nil, inputError(err)
	}
	ws := workspace.Workspace{Cache: req.ImageCache, RunRoot: req.RunRoot}
	if err := os.MkdirAll(ws.Cache, 0o755); err != nil {
		return nil, inputError(fmt.Errorf("image cache %s: %w; give --image-cache (or DIB_IMAGE_CACHE) a directory you can write", ws.Cache, err))
	}
	// A cache that exists but cannot be written (read-only, full of
	// inodes) is named as such, not by the first file a step fails on.
	if probe, err := os.CreateTemp(ws.Cache, ".builder-probe-*"); err != nil {
		return nil, inputError(fmt.Errorf("image cache %s is not writable: %v; give --image-cache (or DIB_IMAGE_CACHE) a directory you can write", ws.Cache, err))
	} else {
		probe.Close()
		os.Remove(probe.Name())
	}
	run, err := startRun(req.runID, req.TmpDir, ws.Runs(), !req.NoTmpfs, &stack)
	if err != nil {
		return nil, err
	}
	// Should this build be killed outright, the next one stops what it
	// started and removes its temporary outputs and store files.
	defer run.markProcesses()()
	if err := run.record(filepath.Dir(absOutput(req))); err != nil {
		return nil, err
	}
	if err := run.recordStore(ws.Store()); err != nil {
		return nil, err
	}

	// Elements.
	t := rep.Phase("resolve", strings.Join(req.Elements, " "))
	plan, err := resolve(ctx, req, ws, run.Work)
	if err != nil {
		t.Fail(err)
		return nil, inputError(err)
	}
	// Ramdisk builds and no-final-image change the outputs (ramdisk.go).
	if outs, err = plan.ramdiskOutputs(req, outs); err != nil {
		t.Fail(err)
		return nil, inputError(err)
	}
	t.Done(fmt.Sprintf("%d elements: %s", len(plan.res.Elements), strings.Join(plan.res.Names(), " ")))
	for _, w := range plan.warnings {
		t.Printf("warning: %s", w)
	}
	// What this build needs of the machine, before any work: the same
	// checks and words as `builder doctor`.
	if err := doctor.Err(doctor.Run(ctx, doctor.Options{CacheDir: ws.Cache, TmpDir: req.TmpDir, Build: true, VM: plan.vm, MinFreeBytes: minFreeBytes, StorageDrivers: rootfs.DriverOrder()})); err != nil {
		return nil, err
	}

	// Store and base.
	// While it runs, the build holds the cache shared: a prune waits.
	cacheLock, err := cache.LockShared(ctx, ws)
	if err != nil {
		return nil, err
	}
	lockHandle := stack.Push("cache lock", cacheLock.Unlock)
	store, err := rootfs.OpenStore(ctx, rootfs.StoreOptions{Dir: ws.Store(), RunRoot: ws.StoreRunRoot(), RunID: run.ID, Arch: req.Arch})
	if err != nil {
		return nil, err
	}
	storeHandle := stack.Push("container store", store.Close)
	t.Printf("container store: %s storage driver", store.Driver())
	if n, err := reapStaleRuns(ws.Runs(), store, ws.Store(), func() {
		t.Printf("waiting: another build is cleaning up after killed builds")
	}); err != nil {
		t.Printf("warning: cleaning up after earlier killed builds: %v", err)
	} else if n > 0 {
		t.Printf("removed what %d killed build(s) left behind", n)
	}

	// The registry cache pushes in the background while the build goes on.
	plan.registry = &rootfs.RegistryCache{From: req.CacheFrom, To: req.CacheTo, TLSVerify: req.CacheTLSVerify,
		Note: func(s string) { rep.Note("%s", s) }}
	plan.registry.Start(ctx, store)
	stack.Push("registry cache pushes", func() error { plan.registry.Abort(); return nil })

	base, err := plan.ensureBase(ctx, rep, store, req, ws, run)
	if err != nil {
		return nil, err
	}

	if err := checkSizeAgainstBase(req, store, base); err != nil {
		return nil, inputError(err)
	}
	if err := plan.setEpoch(ctx, req, store, base); err != nil {
		return nil, err
	}
	used := []cache.Step{{Phase: "base", Image: base.Name, Key: base.Key}}
	plan.onStep = func(st rootfs.Step, img rootfs.Image) {
		used = append(used, cache.Step{Phase: st.Name, Image: img.Name, Key: img.Key})
	}
	final, err := plan.runPhases(ctx, req, rep, store, base, run, &stack)
	if err != nil {
		return nil, keepLogs(plan.redact.Error(err), run, outs)
	}
	if err := checkNoSecrets(ctx, store, final, plan.secrets, ws.State()); err != nil {
		return nil, err
	}

	res = &Result{Elements: plan.res.Names(), Image: final}
	disk, err := writeOutputs(ctx, req, rep, store, final, plan, run, outs, &stack)
	if err != nil {
		return nil, err
	}
	res.Disk = disk
	for _, o := range outs {
		res.Outputs = append(res.Outputs, o.Final)
	}
	if req.CacheTo != "" {
		// Pushes ran beside the outputs; what is left is waited for here.
		ct := rep.Phase("cache push", req.CacheTo)
		n, took, perr := plan.registry.Wait()
		if perr != nil {
			ct.Done(fmt.Sprintf("%d images pushed; not all: %v (the build is complete; the next one pushes again)", n, plan.redact.Error(perr)))
		} else {
			ct.Done(fmt.Sprintf("%d images pushed (%s since the build began pushing)", n, took.Round(100*time.Millisecond)))
		}
	}
	if err := cache.RecordBuild(ws, filepath.Base(imageName(req)), cache.Build{Time: time.Now(), Steps: used}); err != nil {
		rep.Note("warning: %v", err)
	}
	// The bound: after the build, with this build's steps kept; only when no
	// other build is running (the next one prunes otherwise).
	if req.CacheMaxBytes > 0 {
		lockHandle.Release()
		autoPrune(ctx, rep, ws, store, req.CacheMaxBytes)
		storeHandle.Release()
	}
	return res, nil
}

// autoPrune prunes the cache to its bound, keeping the last build of every
// image name; it gives way to running builds.
func autoPrune(ctx context.Context, rep *progress.Reporter, ws workspace.Workspace, store *rootfs.Store, max int64) {
	lock, err := cache.LockAlone(ctx, ws, false, nil)
	if err != nil {
		rep.Note("cache: not pruned now (%v); a later build will", err)
		return
	}
	defer lock.Unlock()
	t := rep.Phase("cache", "bound "+units.Format(max))
	res, err := cache.OpenWith(ws, store).Prune(ctx, cache.Policy{MaxBytes: max, Keep: 1})
	if err != nil {
		t.Fail(err)
		return
	}
	if len(res.Removed) == 0 {
		t.Done(units.Format(res.TotalAfter) + " held")
		return
	}
	t.Done(fmt.Sprintf("%d entries pruned, %s freed, %s held", len(res.Removed), units.Format(res.FreedBytes), units.Format(res.TotalAfter)))
}

// InputError is a build refused for what it was given (elements, their
// files, settings, the output path), before any of its work started: the
// command reports it as a usage error.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// inputError marks err as the input's fault; an interruption or a full
// disk stays what it is.
func inputError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device") {
		return err
	}
	return &InputError{Err: err}
}

// checkSizeAgainstBase refuses an --image-size that cannot even hold the
// base root filesystem, before the slow steps run. The exact check, against
// the finished tree, happens again before assembly.
func checkSizeAgainstBase(req Request, store *rootfs.Store, base rootfs.Image) error {
	if req.ImageSizeGiB <= 0 || base.Name == "scratch" {
		return nil
	}
	size, err := store.ImageSize(base.Name)
	if err != nil || size <= 0 {
		return nil
	}
	// ext4 metadata and journal, the BIOS boot and EFI partitions.
	need := size + size/20 + (64+101)<<20
	want := int64(req.ImageSizeGiB * (1 << 30))
	if want < need {
		return fmt.Errorf("image size %.2f GiB is too small: the base system alone needs %s; use --image-size %.1f or more, or leave it out to size from the content",
			req.ImageSizeGiB, units.Format(need), float64(need)/(1<<30)+0.5)
	}
	return nil
}

// runPhases runs the phases in DIB's order: root.d, DIB's create_base
// (resolv.conf kept as .ORIG), extra-data.d on every build keyed by what it
// changed (it copies host data in, whose identity is only known then), the
// rest as cached steps, and DIB's finalise_base after cleanup.d.
func (p *plan) runPhases(ctx context.Context, req Request, rep *progress.Reporter, store *rootfs.Store, base rootfs.Image, run *runDir, stack *cleanup.Stack) (rootfs.Image, error) {
	opts := rootfs.ChainOptions{
		Isolation:  rootfs.Isolation(req.Isolation),
		Runtime:    req.Runtime,
		RunID:      run.ID,
		Cleanup:    stack,
		NoCache:    req.NoCache,
		DebugShell: req.DebugShell,
		DebugOut:   req.DebugOut,
		Warn:       func(s string) { rep.Note("warning: %s", p.redact.String(s)) },
		OnStep:     p.onStep,
		Registry:   p.registry,
		Note:       func(s string) { rep.Note("%s", s) },
	}
	if req.ExplainKeys != "" {
		f, err := os.OpenFile(req.ExplainKeys, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return rootfs.Image{}, fmt.Errorf("--explain-keys: %w", err)
		}
		defer f.Close()
		opts.ExplainKeys = f
	}
	if err := p.startAptRun(run, stack); err != nil {
		return rootfs.Image{}, err
	}
	early, err := p.steps(req, rep, run, base.Key, "root.d", "root.d")
	if err != nil {
		return rootfs.Image{}, err
	}
	if base.Name == "scratch" && len(early) == 0 {
		return rootfs.Image{}, fmt.Errorf("operating-system element %s has neither a rootfs-source.yaml nor root.d hooks: nothing makes the root filesystem", p.res.OS.Name)
	}
	early = append(early, treeStep(rep, "create-base", "resolv.conf kept as resolv.conf.ORIG", rootfs.SaveResolvConf))
	img, err := store.RunChain(ctx, base, early, opts)
	if err != nil {
		return rootfs.Image{}, err
	}
	extra, ok, err := p.hookStep(req, rep, run, elements.Phase{Name: "extra-data.d"}, copyEnv(p.hookEnv))
	if err != nil {
		return rootfs.Image{}, err
	}
	if ok {
		if img, err = store.RunChain(ctx, img, []rootfs.Step{extra}, opts); err != nil {
			return rootfs.Image{}, err
		}
		// extra-data.d may have added hooks (DIB lists phases when they run).
		if err := p.tree.Rescan(); err != nil {
			return rootfs.Image{}, err
		}
	}
	rest, err := p.steps(req, rep, run, img.Key, "pre-install.d", "cleanup.d")
	if err != nil {
		return rootfs.Image{}, err
	}
	fin := treeStep(rep, "finalise-base", "resolv.conf, /tmp, logs", rootfs.FinaliseBaseAt(p.epoch))
	fin.Identity = fmt.Sprintf("epoch=%d", p.epoch)
	rest = append(rest, fin)
	return store.RunChain(ctx, img, rest, opts)
}

// treeStep is one of builder's own edits of the tree: what it does is
// builder's code, which every step key holds (version.CodeID).
func treeStep(rep *progress.Reporter, name, what string, edit func(context.Context, string) error) rootfs.Step {
	var t *progress.Task
	return rootfs.Step{
		Name: name, Kind: rootfs.Tree, Edit: edit,
		Begin: func() { t = rep.Phase(name, what) },
		End: func(cached bool, err error) {
			switch {
			case err != nil:
				t.Fail(err)
			case cached:
				t.Done("cached")
			default:
				t.Done("")
			}
		},
	}
}

func withDefaults(req Request) Request {
	if req.Arch == "" {
		req.Arch = "amd64"
	}
	if req.Arch == "x86_64" {
		req.Arch = "amd64"
	}
	if req.ImageCache == "" {
		req.ImageCache = workspace.DefaultCache()
	}
	if req.TmpDir == "" {
		req.TmpDir = os.TempDir()
	}
	if req.RunRoot == "" {
		req.RunRoot = workspace.DefaultRunRoot()
	}
	if req.Isolation == "" {
		req.Isolation = "chroot"
	}
	if req.RootLabel == "" {
		req.RootLabel = req.Env["ROOT_LABEL"]
	}
	if req.Env == nil {
		req.Env = map[string]string{}
	}
	if req.Out == nil {
		req.Out = io.Discard
	}
	return req
}

// keepLogs moves the per-hook logs of a failed build next to the output,
// where they survive the work directory's removal.
func keepLogs(err error, run *runDir, outs []output) error {
	var he *rootfs.HookError
	if !errors.As(err, &he) || len(outs) == 0 {
		return err
	}
	src := filepath.Join(run.Work, "logs")
	if _, serr := os.Stat(src); serr != nil {
		return err
	}
	base := strings.TrimSuffix(outs[0].Final, "."+outs[0].Type)
	dst := base + ".d"
	if mkerr := os.MkdirAll(dst, 0o755); mkerr != nil {
		return err
	}
	dstLogs := filepath.Join(dst, "logs")
	os.RemoveAll(dstLogs)
	if rerr := os.Rename(src, dstLogs); rerr == nil && he.Log != "" {
		he.Log = filepath.Join(dstLogs, filepath.Base(he.Log))
	}
	return err
}

// writeOutputs makes every output from the final image: the disk (once) and
// its conversions, the tree archives and the container image, in parallel,
// then puts them all in place together.
func writeOutputs(ctx context.Context, req Request, rep *progress.Reporter, store *rootfs.Store, final rootfs.Image, plan *plan, run *runDir, outs []output, stack *cleanup.Stack) (*assemble.Disk, error) {
	root, release, err := store.MountImage(final.Name)
	if err != nil {
		return nil, err
	}
	h := stack.Push("image mount", release)
	defer h.Release()

	placeManifests, err := stageManifests(root, plan.env["DIB_MANIFEST_IMAGE_DIR"], outs, req.runID, stack)
	if err != nil {
		return nil, err
	}
	tempHandles := map[string]cleanup.Handle{}
	for _, o := range outs {
		o := o
		tempHandles[o.Temp] = stack.Push("partial output "+o.Temp, func() error {
			var errs []error
			for _, p := range []string{o.Temp, o.Temp + ".md5", o.Temp + ".sha256"} {
				if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		})
	}

	var disk *assemble.Disk
	// The same image and options as the last build of this name: its
	// outputs again, without laying out and converting (reuse.go).
	reuseKey := plan.reuseKey(req, final, outs)
	reused := false
	var kept *reuseRecord
	if rec, ok := plan.reusable(req, reuseKey, outs); ok && !req.NoCache {
		rt := rep.Phase("outputs reused", "same image and output options as the last build of "+filepath.Base(imageName(req)))
		if err := rec.place(plan.reuseDir(req), outs); err != nil {
			rt.Done(fmt.Sprintf("not reused: %v", err))
			for _, o := range outs {
				for _, ext := range []string{"", ".md5", ".sha256"} {
					os.Remove(o.Temp + ext)
				}
			}
		} else {
			rt.Done("")
			reused, disk, kept = true, rec.Disk, rec
		}
	}
	if !reused && plan.epoch > 0 {
		// Same inputs, same bytes: the outputs are written from a view
		// of the image whose times are no later than SOURCE_DATE_EPOCH.
		vt := rep.Phase("reproducible", fmt.Sprintf("SOURCE_DATE_EPOCH=%d (%s)", plan.epoch, time.Unix(plan.epoch, 0).UTC().Format(time.RFC3339)))
		view, release, err := store.View(ctx, final, fmt.Sprintf("builder-%s-outputs", run.ID))
		if err != nil {
			vt.Fail(err)
			return nil, err
		}
		vh := stack.Push("output view", release)
		defer vh.Release()
		n, err := rootfs.NormalizeTree(view, plan.epoch)
		if err != nil {
			vt.Fail(err)
			return nil, err
		}
		root = view
		msg := fmt.Sprintf("%d times clamped", n.Times)
		if n.Xattrs > 0 {
			msg += fmt.Sprintf("; extended attributes put in name order on %d", n.Xattrs)
		}
		vt.Done(msg)
	}
	// The bill of materials reads the final tree while the disk is made.
	// Reused outputs keep the one written with them (reading the tree
	// would take seconds an unchanged rebuild does not have), and when
	// they go somewhere new they are described from the tree's reading
	// kept with them.
	var sb *sbomJob
	if _, err := os.Stat(absOutput(req) + ".spdx.json"); !reused || err != nil {
		if reused {
			sb = keptSBOM(req, kept.scan(plan.reuseDir(req)))
		}
		if sb == nil {
			sb = startSBOM(ctx, root, req)
		}
	}
	defer sb.stop()
	rawPath := ""
	if plan.disk && !reused {
		if disk, rawPath, err = buildDisk(ctx, req, rep, root, plan, run, outs); err != nil {
			return nil, err
		}
	}

	// Everything below reads the raw disk or the mounted tree only.
	// One failed output stops the others (errgroup cancels their context).
	g, gctx := errgroup.WithContext(ctx)
	for _, o := range outs {
		if o.Type == "raw" || reused {
			continue
		}
		g.Go(func() error {
			ct := rep.Phase("write "+o.Type, filepath.Base(o.Final))
			var err error
			if treeTypes[o.Type] {
				err = assemble.WriteTree(gctx, root, o.Temp, assemble.TreeFormat(o.Type), plan.epoch)
			} else if ramdiskTypes[o.Type] {
				err = plan.writeRamdiskOutput(gctx, root, o, ct) // ramdisk.go
			} else {
				var note string
				note, err = assemble.ConvertWithNote(gctx, rawPath, o.Temp, assemble.Format(o.Type), assemble.ConvertOptions{
					Compress:       !req.Uncompressed,
					Compression:    "zstd",
					QemuImgOptions: req.QemuImgOpts,
					Reproducible:   plan.epoch > 0,
				})
				if note != "" {
					ct.Printf("%s", note)
				}
			}
			if err != nil {
				ct.Fail(err)
				return err
			}
			size := int64(0)
			if fi, err := os.Stat(o.Temp); err == nil {
				size = fi.Size()
			}
			ct.Done(units.Format(size))
			return nil
		})
	}
	if req.wantsDocker() {
		g.Go(func() error {
			ct := rep.Phase("write docker", req.DockerTarget)
			storage, err := rootfs.LocalStorage()
			if err == nil {
				err = store.ExportImage(gctx, final.Name, storage, req.DockerTarget, nil)
			}
			if err != nil {
				ct.Fail(err)
				return err
			}
			ct.Done("container storage " + storage)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	if req.Checksum != "" && !reused {
		ct := rep.Phase("checksum", req.Checksum)
		for _, o := range outs {
			if err := writeChecksums(o, req.Checksum); err != nil {
				ct.Fail(err)
				return nil, err
			}
		}
		ct.Done("")
	}
	if !reused && len(outs) > 0 {
		if err := plan.keep(req, reuseKey, outs, disk, sb.result()); err != nil {
			rep.Note("note: outputs are not kept for reuse: %v", err)
		}
	}
	placeSBOM, err := sb.write(ctx, req, rep, plan, outs, stack)
	if err != nil {
		return nil, err
	}
	return placeOutputs(ctx, req, rep, final, plan, outs, disk, tempHandles, func() error {
		if err := placeSBOM(); err != nil {
			return err
		}
		return placeManifests()
	}, stack)
}

// placeOutputs stages the files hooks wrote as outputs and puts every
// complete output in place together.
func placeOutputs(ctx context.Context, req Request, rep *progress.Reporter, final rootfs.Image, plan *plan, outs []output,
	disk *assemble.Disk, tempHandles map[string]cleanup.Handle, placeManifests func() error, stack *cleanup.Stack) (*assemble.Disk, error) {
	// Files hooks wrote as outputs (DIB's $IMAGE_NAME.* in their working
	// directory), staged beside the others.
	hooked, err := collectHookOutputs(final, req)
	if err != nil {
		return nil, err
	}
	taken := map[string]bool{}
	for _, o := range outs {
		taken[o.Final] = true
	}
	outDir := filepath.Dir(absOutput(req))
	placeHooked, err := hooked.stage(outDir, taken, req.Env["OVERWRITE_OLD_IMAGE"], req.runID, stack)
	if err != nil {
		return nil, err
	}
	// Every output is complete: put them all in place.
	pt := rep.Phase("outputs", fmt.Sprintf("%d files", len(outs)+len(hooked.files)))
	for _, n := range hooked.skip {
		pt.Printf("note: a hook left %s in its working directory; only files named after the image (%s.*) become outputs", n, filepath.Base(imageName(req)))
	}
	for _, o := range outs {
		// A reused output that is still in place is the same file: no
		// dated copy of it.
		if !sameFile(o.Final, o.Temp) {
			if err := keepOld(o.Final, req.Env["OVERWRITE_OLD_IMAGE"]); err != nil {
				return nil, err
			}
		}
		if err := os.Rename(o.Temp, o.Final); err != nil {
			return nil, fmt.Errorf("put %s in place: %w", o.Final, err)
		}
		tempHandles[o.Temp].Forget()
		for _, ext := range []string{".md5", ".sha256"} {
			if _, err := os.Stat(o.Temp + ext); err == nil {
				if err := os.Rename(o.Temp+ext, o.Final+ext); err != nil {
					return nil, err
				}
			}
		}
		pt.Printf("%s", o.Final)
	}
	if err := placeManifests(); err != nil {
		pt.Fail(err)
		return nil, err
	}
	placed, err := placeHooked()
	for _, p := range placed {
		pt.Printf("%s (written by a hook)", p)
	}
	if err != nil {
		pt.Fail(err)
		return nil, err
	}
	pt.Done("")
	return disk, nil
}

// buildDisk plans and writes the raw disk: in place when raw is an output,
// else as a scratch file the conversions read.
func buildDisk(ctx context.Context, req Request, rep *progress.Reporter, root string, plan *plan, run *runDir, outs []output) (*assemble.Disk, string, error) {
	t := rep.Phase("assemble", layoutName(plan.layout.Source))
	spec := assemble.DiskSpec{RootDir: root, Layout: plan.layout, HeadroomBytes: 256 << 20, Epoch: plan.epoch}
	if req.ImageSizeGiB > 0 {
		spec.SizeBytes = int64(req.ImageSizeGiB * (1 << 30))
	}
	if mb, err := strconv.ParseInt(plan.env["DIB_IMAGE_EXTRA_SIZE"], 10, 64); err == nil && mb > 0 {
		spec.HeadroomBytes += mb << 20
	}
	disk, err := assemble.PlanDisk(ctx, spec)
	if err != nil {
		t.Fail(err)
		return nil, "", err
	}
	rawPath := filepath.Join(run.Scratch, "disk.raw")
	for _, o := range outs {
		if o.Type == "raw" {
			rawPath = o.Temp
		}
	}
	if err := assemble.BuildDisk(ctx, disk, rawPath); err != nil {
		t.Fail(err)
		return nil, "", err
	}
	t.Printf("%s assembler: %s", disk.Assembler, disk.AssemblerReason)
	t.Done(fmt.Sprintf("%s disk, root %s (%d files)", units.Format(disk.Table.DiskSizeBytes), units.Format(disk.RootFSBytes), disk.Usage.Files))
	return disk, rawPath, nil
}

// layoutName shortens a layout's source for progress lines.
func layoutName(src string) string {
	if filepath.IsAbs(src) {
		return filepath.Base(filepath.Dir(src)) + "/" + filepath.Base(src)
	}
	return src
}

// stageManifests copies the image's manifest directory (DIB's manifests
// element: /etc/dib-manifests unless DIB_MANIFEST_IMAGE_DIR says otherwise)
// beside the outputs; the returned function puts the copy in place as
// NAME.d/dib-manifests, together with the outputs.
func stageManifests(root, manifestDir string, outs []output, runID string, stack *cleanup.Stack) (func() error, error) {
	if manifestDir == "" {
		manifestDir = "/etc/dib-manifests"
	}
	src := filepath.Join(root, filepath.Clean("/"+manifestDir))
	if _, err := os.Stat(src); err != nil || len(outs) == 0 {
		return func() error { return nil }, nil
	}
	dir := strings.TrimSuffix(outs[0].Final, "."+outs[0].Type) + ".d"
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+"."+runTag(runID)+"tmp-")
	if err != nil {
		return nil, fmt.Errorf("manifests: %w", err)
	}
	h := stack.Push("staged manifests "+tmp, func() error { return os.RemoveAll(tmp) })
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := fsutil.CopyFile(filepath.Join(src, e.Name()), filepath.Join(tmp, e.Name()), 0o644); err != nil {
			return nil, fmt.Errorf("manifests: %w", err)
		}
	}
	return func() error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		final := filepath.Join(dir, "dib-manifests")
		if err := os.RemoveAll(final); err != nil {
			return err
		}
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("manifests: %w", err)
		}
		h.Forget()
		return nil
	}, nil
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// keepOld renames an existing output with its date, as DIB does, unless
// OVERWRITE_OLD_IMAGE is set.
func keepOld(final, overwrite string) error {
	fi, err := os.Stat(final)
	if err != nil {
		return nil
	}
	if overwrite != "" && overwrite != "0" {
		return nil
	}
	ext := filepath.Ext(final)
	old := strings.TrimSuffix(final, ext) + "-" + fi.ModTime().Format("2006.01.02-15.04.05") + ext
	if err := os.Rename(final, old); err != nil {
		return fmt.Errorf("keep the previous %s: %w", final, err)
	}
	return nil
}

// writeChecksums writes OUTPUT.md5 and OUTPUT.sha256 ("<hex>  <name>") next
// to the temporary output; they move into place with it. which is a comma
// list of md5 and sha256 (Request.Checksum).
func writeChecksums(o output, which string) error {
	want := map[string]bool{}
	for _, w := range strings.Split(which, ",") {
		want[strings.TrimSpace(w)] = true
	}
	f, err := os.Open(o.Temp)
	if err != nil {
		return err
	}
	defer f.Close()
	hs := map[string]hash.Hash{}
	var ws []io.Writer
	for _, n := range []string{"md5", "sha256"} {
		if !want[n] {
			continue
		}
		if n == "md5" {
			hs[n] = md5.New()
		} else {
			hs[n] = sha256.New()
		}
		ws = append(ws, hs[n])
	}
	if _, err := io.Copy(io.MultiWriter(ws...), f); err != nil {
		return fmt.Errorf("checksum %s: %w", o.Final, err)
	}
	names := make([]string, 0, len(hs))
	for n := range hs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		line := hex.EncodeToString(hs[n].Sum(nil)) + "  " + filepath.Base(o.Final) + "\n"
		if err := os.WriteFile(o.Temp+"."+n, []byte(line), 0o644); err != nil {
			return err
		}
	}
	return nil
}
