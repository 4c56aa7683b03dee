package pipeline

import (
	"builder/internal/hosttools"
	"builder/internal/redact"
	"builder/internal/version"
	"builder/internal/workspace"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"builder/boottest"
	"builder/imagebuild"
	"builder/internal/flock"
	"builder/publish"
)

// Options tune a run. The zero value runs every image with the real steps.
type Options struct {
	// ImageCache and OutputDir override the file's settings.
	ImageCache string
	OutputDir  string
	// Only limits the run to these image names.
	Only []string
	// Shard limits the run to this runner's part of the images (a CI
	// matrix, a Kubernetes Indexed Job).
	Shard Shard
	// Settings override every image's settings of the file, by their
	// names in imagebuild.Settings (cache_from, cache_to ...).
	Settings map[string]string
	// Group runs the file's schedule group of that name: its images,
	// published to its clouds with its settings.
	Group string
	// StopOnFailure leaves the remaining images out after a failure.
	StopOnFailure bool
	// Jobs is how many images are built at once (0: one; the command
	// defaults to DefaultJobs()).
	Jobs int
	// Wait waits for an image's lock held by another run instead of
	// skipping the image.
	Wait bool
	// DryRun prints what would be built and published, and does nothing.
	DryRun bool
	// Force boot-tests and uploads images whose content a cloud already
	// has under their name (otherwise they are unchanged: no boot test,
	// no upload).
	Force   bool
	Verbose bool
	// Environ is the environment: DIB_* variables for the builds, OS_*
	// for publishing to the "env" cloud (nil: os.Environ()).
	Environ []string
	// Out receives progress, prefixed with the image's name. It should be
	// redacting (see publish.Redactor); Run adds the clouds' secrets to
	// Redact as it learns them.
	Out    io.Writer
	Redact *redact.Redactor
	// Steps replaces the real build, boot test, inspection or cloud
	// connection (unit tests); nil fields mean the real ones.
	Steps Steps
}

// Publisher is what a cloud connection must do for the pipeline.
type Publisher interface {
	Publish(context.Context, *publish.LocalImage, publish.Request) (*publish.Result, error)
}

// OrphanCleaner is a Publisher that can also remove what crashed runs
// left (publish.Cloud is one); the run asks each of its clouds first.
type OrphanCleaner interface {
	CleanupOrphans(context.Context, publish.CleanupRequest) (*publish.CleanupResult, error)
}

// Steps are the pipeline's moving parts.
type Steps struct {
	Build    func(context.Context, imagebuild.Request) (*imagebuild.Result, error)
	BootTest func(context.Context, boottest.Spec) (*boottest.Report, error)
	Inspect  func(context.Context, string, publish.InspectOptions) (*publish.LocalImage, []string, error)
	Connect  func(context.Context, publish.Credentials) (Publisher, error)
}

func (s Steps) withDefaults() Steps {
	if s.Build == nil {
		s.Build = imagebuild.Run
	}
	if s.BootTest == nil {
		s.BootTest = boottest.Run
	}
	if s.Inspect == nil {
		s.Inspect = publish.Inspect
	}
	if s.Connect == nil {
		s.Connect = func(ctx context.Context, cr publish.Credentials) (Publisher, error) {
			return publish.Connect(ctx, cr)
		}
	}
	return s
}

// Outcomes of an image and of its stages.
const (
	OK      = "ok"
	Failed  = "FAILED"
	Skipped = "skipped" // another run holds its lock
	NotRun  = "not run" // --stop-on-failure, or interrupted
	DryRun  = "dry run"
	None    = "-" // stage not configured or not reached
)

// ImageResult is one image's line of the summary.
type ImageResult struct {
	Name      string      `json:"name"`
	Result    string      `json:"result"`
	Build     string      `json:"build"`
	BootTest  string      `json:"boot_test"`
	Publish   string      `json:"publish"`
	Error     string      `json:"error,omitempty"`
	Outputs   []string    `json:"outputs,omitempty"`
	Published []Published `json:"published,omitempty"`
	Seconds   float64     `json:"seconds"`
}

// Published is where an image went.
type Published struct {
	Cloud      string `json:"cloud"`
	Name       string `json:"name"`
	ImageID    string `json:"image_id,omitempty"`
	Visibility string `json:"visibility,omitempty"`
	Uploaded   bool   `json:"uploaded"`
	// Unchanged: the name had this very content already.
	Unchanged bool   `json:"unchanged"`
	Error     string `json:"error,omitempty"`
	// SmokeTest is what the smoke test in the cloud saw, when it ran.
	SmokeTest *publish.SmokeResult `json:"smoke_test,omitempty"`
}

// Summary is the outcome of a run.
type Summary struct {
	File    string        `json:"file"`
	Group   string        `json:"group,omitempty"`
	Started time.Time     `json:"started"`
	Seconds float64       `json:"seconds"`
	Images  []ImageResult `json:"images"`
}

// Failed counts the images that failed.
func (s *Summary) Failed() []string {
	var names []string
	for _, r := range s.Images {
		if r.Result == Failed {
			names = append(names, r.Name)
		}
	}
	return names
}

// Run builds, boot-tests and publishes the images of f, one after the
// other, and returns the summary. The error is non-nil when an image
// failed (or the run was interrupted); the summary is complete either way.
func Run(ctx context.Context, f *File, o Options) (*Summary, error) {
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Redact == nil {
		o.Redact = redact.New()
	}
	steps := o.Steps.withDefaults()
	env := publish.EnvMap(o.Environ)
	o.Redact.Add(env["OS_PASSWORD"], env["OS_TOKEN"], env["OS_AUTH_TOKEN"], env["OS_APPLICATION_CREDENTIAL_SECRET"])

	todo, err := f.Select(Selection{Group: o.Group, Only: o.Only, Shard: o.Shard})
	if err != nil {
		return nil, err
	}
	var group *Group
	if o.Group != "" {
		group, _ = f.Group(o.Group)
	}
	if len(o.Settings) > 0 {
		// A bad override is the command line's fault: say so before any work.
		for _, img := range todo {
			if img.Source == nil {
				if _, err := f.request(img, nil, "", "", o.Settings); err != nil {
					return nil, err
				}
			}
		}
	}
	r := &runner{f: f, o: o, steps: steps, env: env}
	r.cache = firstOf(o.ImageCache, f.path(f.Defaults.ImageCache), env["DIB_IMAGE_CACHE"], workspace.DefaultCache())
	r.outDir = firstOf(o.OutputDir, f.path(f.Defaults.OutputDir), f.Dir)
	if !o.DryRun {
		if err := os.MkdirAll(r.outDir, 0o755); err != nil {
			return nil, fmt.Errorf("output directory %s: %w (set output_dir in the pipeline file or --output-dir)", r.outDir, err)
		}
	}

	sum := &Summary{File: f.Path, Group: o.Group, Started: time.Now()}
	if o.Group != "" {
		r.say("pipeline", "group %s: %d images to %s", o.Group, len(todo), strings.Join(group.Clouds, ", "))
	}
	if o.Shard.Count > 0 {
		var names []string
		for _, img := range todo {
			names = append(names, img.Name)
		}
		if len(names) == 0 {
			names = []string{"no image (more runners than images)"}
		}
		r.say("pipeline", "shard %s: %s", o.Shard, strings.Join(names, ", "))
	}
	r.cleanupOrphans(ctx, todo)
	sum.Images = r.all(ctx, todo)
	sum.Seconds = time.Since(sum.Started).Seconds()
	if err := ctx.Err(); err != nil {
		return sum, fmt.Errorf("pipeline interrupted: %w", err)
	}
	if failed := sum.Failed(); len(failed) > 0 {
		return sum, fmt.Errorf("%d of %d images failed: %s", len(failed), len(sum.Images), strings.Join(failed, ", "))
	}
	return sum, nil
}

// all runs the images, up to Jobs at once (their common steps are built
// once: the store's step locks), and returns their results in the file's
// order.
func (r *runner) all(ctx context.Context, todo []Image) []ImageResult {
	jobs := max(r.o.Jobs, 1)
	results := make([]ImageResult, len(todo))
	var (
		mu   sync.Mutex
		stop bool
		wg   sync.WaitGroup
	)
	slots := make(chan struct{}, jobs)
	for i, img := range todo {
		slots <- struct{}{}
		mu.Lock()
		halted := stop || ctx.Err() != nil
		mu.Unlock()
		if halted {
			<-slots
			results[i] = ImageResult{Name: img.Name, Result: NotRun, Build: None, BootTest: None, Publish: None}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			res := r.image(ctx, img)
			results[i] = res
			if res.Result == Failed && r.o.StopOnFailure {
				mu.Lock()
				if !stop {
					r.say(img.Name, "stopping: --stop-on-failure")
				}
				stop = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return results
}

// DefaultJobs is how many images a pipeline builds at once unless told:
// one per two cores and per 4 GiB of available memory, at least one (an
// image build keeps about a core busy and its tmpfs scratch in memory).
func DefaultJobs() int {
	n := runtime.NumCPU() / 2
	if m := hosttools.MemAvailable() / (4 << 30); m < int64(n) {
		n = int(m)
	}
	return max(n, 1)
}

type runner struct {
	f      *File
	o      Options
	steps  Steps
	env    map[string]string
	cache  string
	outDir string
	mu     sync.Mutex
}

func (r *runner) say(name, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.o.Out, "[%s] "+format+"\n", append([]any{name}, args...)...)
}

// image runs one image under its lock and never returns an error: the
// outcome is in the result.
func (r *runner) image(ctx context.Context, img Image) (res ImageResult) {
	start := time.Now()
	res = ImageResult{Name: img.Name, Result: OK, Build: None, BootTest: None, Publish: None}
	defer func() { res.Seconds = time.Since(start).Seconds() }()
	fail := func(stage string, err error) ImageResult {
		res.Result = Failed
		res.Error = r.o.Redact.String(stage + ": " + err.Error())
		r.say(img.Name, "FAILED at %s: %v", stage, r.o.Redact.Error(err))
		return res
	}
	pub := r.f.publishFor(img)
	bootCfg := r.f.bootTest(img)
	formats := r.f.formats(img)
	out := filepath.Join(r.outDir, img.Name)

	if r.o.DryRun {
		res.Result = DryRun
		if img.Source != nil {
			r.say(img.Name, "would download %s (verified by %s) into %s.{%s}%s", img.Source.URL, verifiedBy(img.Source), out, strings.Join(formats, ","), convertText(r.f.convert(img)))
		} else {
			r.say(img.Name, "would build %s (%s) into %s.{%s}%s", strings.Join(img.Elements, " "), sizeText(img.Size), out, strings.Join(formats, ","), convertText(r.f.convert(img)))
		}
		if bootCfg.Enabled {
			r.say(img.Name, "would boot-test it (firmware %s)", orDefault(bootCfg.Firmware, "from the disk"))
		}
		if pub != nil {
			r.say(img.Name, "would publish %s.%s as %q to %s (visibility %s, rotate %s, keep %s)", out, pub.Format, pub.Name,
				strings.Join(pub.Clouds, ", "), orDefault(pub.Visibility, "public"), orDefault(pub.Rotate, "private"), keepText(pub.Keep))
			if pub.SmokeTest != nil && pub.SmokeTest.Enabled {
				r.say(img.Name, "would smoke-test it in each cloud before promoting it (flavor %s)", orDefault(pub.SmokeTest.Flavor, "the smallest that fits"))
			}
			if pub.Description != "" {
				r.say(img.Name, "would describe it as %q", pub.Description)
			}
		}
		return res
	}

	// Two overlapping scheduled runs must never build the same image at
	// once: the lock lives in the image cache they share.
	lockPath := filepath.Join(workspace.New(r.cache).PipelineLocks(), "pipeline-"+img.Name+".lock")
	lock, err := flock.TryLock(lockPath, "pipeline "+img.Name)
	if errors.Is(err, flock.ErrBusy) {
		if !r.o.Wait {
			res.Result = Skipped
			res.Error = "another pipeline run is working on it (" + flock.Holder(lockPath) + ")"
			r.say(img.Name, "skipped: %s; --wait waits for it instead", res.Error)
			return res
		}
		lock, err = flock.Wait(ctx, lockPath, "pipeline "+img.Name, func(holder string) {
			r.say(img.Name, "waiting: another pipeline run is working on it (%s)", holder)
		})
	}
	if err != nil {
		return fail("lock", err)
	}
	defer lock.Unlock()

	// Build, or download.
	var src source
	tmpDir, arch := "", ""
	var firmware *publish.FirmwareFacts // what the build's disk boots with
	if img.Source != nil {
		r.say(img.Name, "download: %s", img.Source.URL)
		outputs, digest, err := r.fetchSource(ctx, img, r.f.convert(img), out, &prefixWriter{w: r.o.Out, prefix: "[" + img.Name + "] ", mu: &r.mu})
		if err != nil {
			res.Build = Failed
			return fail("download", err)
		}
		res.Build = OK
		res.Outputs = outputs
		src = source{url: img.Source.URL, digest: digest.String()}
	} else {
		r.say(img.Name, "build: %s", strings.Join(img.Elements, " "))
		req, err := r.f.request(img, r.o.Environ, r.cache, out, r.o.Settings)
		if err != nil {
			res.Build = Failed
			return fail("build", err)
		}
		req.Verbose = r.o.Verbose
		for k, v := range req.Env {
			// Build variables end up in the image's manifests (and hooks
			// see them): a cloud credential must never be one.
			if r.o.Redact.String(v) != v {
				res.Build = Failed
				return fail("build", fmt.Errorf("variable %s holds a cloud credential, which would be recorded in the image and its manifests: remove it from the variables", k))
			}
		}
		req.Out = &prefixWriter{w: r.o.Out, prefix: "[" + img.Name + "] ", mu: &r.mu}
		built, err := r.steps.Build(ctx, req)
		if err != nil {
			res.Build = Failed
			return fail("build", err)
		}
		res.Build = OK
		res.Outputs = built.Outputs
		tmpDir = req.TmpDir
		arch = req.Arch
		if d := built.Disk; d != nil {
			firmware = &publish.FirmwareFacts{BIOS: d.Spec.BIOS, UEFI: d.Spec.UEFI, Arch: req.Arch,
				SecureBoot: d.EFILoader != nil && d.EFILoader.SecureBoot}
		}
	}
	secureBoot := pub != nil && pub.SecureBoot != nil && *pub.SecureBoot
	if secureBoot && (firmware == nil || !firmware.SecureBoot) {
		res.Build = Failed
		return fail("build", errors.New("publish.secure_boot is set, but the image does not boot through a signed shim (a UEFI layout of a Debian-family image has one)"))
	}
	if firmware != nil && !secureBoot {
		// The image can boot with Secure Boot; it is published so only
		// when the file asks (the cloud must support it).
		firmware.SecureBoot = false
	}
	buildDate := time.Now()
	if img.Source != nil {
		// Its date is the download's, which the outputs carry.
		buildDate = time.Time{}
	}

	// The file to test and publish.
	target := out + "." + formats[0]
	if pub != nil {
		target = out + "." + pub.Format
	}
	li, warnings, err := r.steps.Inspect(ctx, target, publish.InspectOptions{TempDir: tmpDir})
	if err != nil {
		res.Build = Failed
		return fail("build", fmt.Errorf("the output is not a usable image: %w", err))
	}
	for _, w := range warnings {
		r.say(img.Name, "warning: %s", w)
	}

	// An image every cloud already has under its name, with this very
	// content, is unchanged: no boot test, no upload.
	unchanged := pub != nil && !r.o.Force && r.unchangedEverywhere(ctx, img, pub, li)

	// Boot test (a pass of this very file under the same conditions is
	// remembered).
	spec := boottest.Spec{Image: target, Firmware: boottest.FirmwareFor(bootCfg.Firmware, li.Firmware, secureBoot), Arch: arch, SecureBoot: secureBoot,
		Timeout: bootCfg.Timeout, CacheDir: r.cache, Progress: &prefixWriter{w: r.o.Out, prefix: "[" + img.Name + "] ", mu: &r.mu}}
	passes := workspace.New(r.cache).BootTest()
	if unchanged {
		res.BootTest = "unchanged"
		r.say(img.Name, "unchanged: every cloud has this very file as %q already: no boot test, no upload", pub.Name)
	} else if p, ok := boottest.PassedBefore(passes, li.SHA512, boottest.Conditions(spec), version.Version()); bootCfg.Enabled && ok {
		res.BootTest = OK
		r.say(img.Name, "boot test passed before for this very file (%s): %s", p.At.Format(time.RFC3339), p.Summary)
	} else if bootCfg.Enabled {
		r.say(img.Name, "boot test (%s)", boottest.Conditions(spec))
		rep, err := r.steps.BootTest(ctx, spec)
		if err != nil {
			res.BootTest = Failed
			return fail("boot test", err)
		}
		res.BootTest = OK
		r.say(img.Name, "boot test passed: %s", rep.Summary())
		if err := boottest.RememberPass(passes, li.SHA512, boottest.Conditions(spec), version.Version(), rep); err != nil {
			r.say(img.Name, "note: the pass is not remembered: %v", err)
		}
	} else {
		res.BootTest = "skipped"
	}

	// Publish, to each cloud; one cloud failing does not keep the image
	// from the others.
	if pub == nil {
		return res
	}
	var errs []string
	for _, cloud := range pub.Clouds {
		p := Published{Cloud: cloud, Name: pub.Name}
		pr, err := r.publish(ctx, img, pub, cloud, li, buildDate, src, firmware)
		if pr != nil {
			p.ImageID, p.Visibility, p.Uploaded, p.SmokeTest, p.Unchanged = pr.ImageID, pr.Visibility, pr.Uploaded, pr.SmokeTest, pr.Already
		}
		if err != nil {
			p.Error = r.o.Redact.String(err.Error())
			errs = append(errs, fmt.Sprintf("%s: %s", cloud, p.Error))
			r.say(img.Name, "publish to %s FAILED: %s", cloud, p.Error)
		}
		res.Published = append(res.Published, p)
	}
	if len(errs) > 0 {
		res.Publish = Failed
		if len(errs) < len(pub.Clouds) {
			res.Publish = fmt.Sprintf("FAILED %d/%d", len(errs), len(pub.Clouds))
		}
		return fail("publish", errors.New(strings.Join(errs, "; ")))
	}
	res.Publish = OK
	return res
}

// connect reaches one of the file's clouds: "env" is the OS_* variables,
// any other name a clouds.yaml entry.
func (r *runner) connect(ctx context.Context, cloud string) (Publisher, error) {
	cr := publish.Credentials{Env: r.env, UserAgent: "builder/" + version.Version(), Redact: r.o.Redact}
	if cloud != EnvCloud {
		cr.Cloud = cloud
	}
	return r.steps.Connect(ctx, cr)
}

// unchangedEverywhere says whether every cloud of pub has li's very
// content under pub's name. A cloud that cannot be asked counts as
// changed: the full publish then says what is wrong.
func (r *runner) unchangedEverywhere(ctx context.Context, img Image, pub *Publish, li *publish.LocalImage) bool {
	for _, cloud := range pub.Clouds {
		c, err := r.connect(ctx, cloud)
		if err != nil {
			return false
		}
		cc, ok := c.(interface {
			Current(context.Context, *publish.LocalImage, publish.Request) (string, error)
		})
		if !ok {
			return false
		}
		id, err := cc.Current(ctx, li, publish.Request{Name: pub.Name, Visibility: pub.Visibility, Rotate: pub.Rotate, Properties: pub.Properties})
		if err != nil || id == "" {
			return false
		}
	}
	return len(pub.Clouds) > 0
}

func (r *runner) publish(ctx context.Context, img Image, pub *Publish, cloud string, li *publish.LocalImage, date time.Time, src source, firmware *publish.FirmwareFacts) (*publish.Result, error) {
	r.say(img.Name, "publish to %s as %q", cloud, pub.Name)
	c, err := r.connect(ctx, cloud)
	if err != nil {
		return nil, err
	}
	keep := 0
	if pub.Keep != nil {
		keep = *pub.Keep
	}
	var smoke *publish.SmokeTest
	if st := pub.SmokeTest; st != nil && st.Enabled {
		s := st.SmokeTest
		smoke = &s
	}
	return c.Publish(ctx, li, publish.Request{
		Force:       r.o.Force,
		Description: pub.Description,
		SmokeTest:   smoke,
		Name:        pub.Name,
		Visibility:  pub.Visibility,
		Rotate:      pub.Rotate,
		Keep:        keep,
		Properties:  pub.Properties,
		// The elements as listed: what the user wrote identifies the image
		// (the build adds their dependencies).
		Meta: publish.Metadata{Elements: img.Elements, BuildDate: date, BuilderVersion: version.Version(),
			Source: src.url, SourceDigest: src.digest, Firmware: firmware},
		LockDir: workspace.New(r.cache).PublishLocks(),
		Out:     &prefixWriter{w: r.o.Out, prefix: "[" + img.Name + "] ", mu: &r.mu},
	})
}

// Request is the build of one image, through builder image's settings
// table: the image's own settings, then the defaults', then the build
// variables (the environment's, then the file's), then the table's
// defaults. cache and out are where this run builds and writes.
func (f *File) Request(img Image, environ []string, cache, out string) (imagebuild.Request, error) {
	return f.request(img, environ, cache, out, nil)
}

// request is Request with overrides: settings that win over the file's.
func (f *File) request(img Image, environ []string, cache, out string, overrides map[string]string) (imagebuild.Request, error) {
	env := imagebuild.EnvMap(environ)
	for k, v := range f.variables(img) {
		env[k] = v
	}
	// A scheduled rebuild replaces its output; DIB's default of keeping
	// every old one under its date would fill the disk.
	if _, ok := env["OVERWRITE_OLD_IMAGE"]; !ok {
		env["OVERWRITE_OLD_IMAGE"] = "1"
	}
	values := imagebuild.Values{}
	for k, v := range settingValues(f.Defaults.Settings) {
		values[k] = v
	}
	for k, v := range settingValues(img.Settings) {
		values[k] = v
	}
	if img.Size > 0 {
		values["size"] = fmt.Sprint(img.Size)
	}
	values["formats"] = strings.Join(f.formats(img), ",")
	if len(img.Packages) > 0 {
		values["packages"] = strings.Join(img.Packages, ",")
	}
	if c := f.convert(img); len(c) > 0 {
		// convert is the pipeline's name for qemu_img_options.
		if _, ok := values["qemu_img_options"]; ok {
			return imagebuild.Request{}, fmt.Errorf("image %q: convert and qemu_img_options both set qemu-img's options: keep one", img.Name)
		}
		values["qemu_img_options"] = c.String()
	}
	for k, v := range overrides {
		values[k] = v
	}
	values["output"] = out
	values["image_cache"] = cache
	req, err := imagebuild.NewRequest(img.Elements, values, env, imagebuild.ByKey)
	if err != nil {
		return req, fmt.Errorf("image %q: %w", img.Name, err)
	}
	// ELEMENTS_PATH entries relative to the file are the file's.
	for i, p := range req.ElementsPath {
		req.ElementsPath[i] = f.path(p)
	}
	return req, nil
}

// prefixWriter prefixes every line; lines from concurrent writers (build
// progress, boot test) stay whole.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mu     *sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return 0, err
		}
	}
}

func sizeText(gib float64) string {
	if gib <= 0 {
		return "size from the content"
	}
	return fmt.Sprintf("%g GiB", gib)
}

func keepText(k *int) string {
	if k == nil || *k == 0 {
		return "all"
	}
	return fmt.Sprint(*k)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// source is where a downloaded image came from, for its properties.
type source struct{ url, digest string }

// cleanupOrphans rids each cloud the run publishes to of what crashed runs
// left (temporary uploads, smoke-test servers), before anything is built.
// A cloud it cannot reach is only noted: its publishes will say why.
func (r *runner) cleanupOrphans(ctx context.Context, todo []Image) {
	age := r.f.orphanAge()
	var clouds []string
	for _, img := range todo {
		if p := r.f.publishFor(img); p != nil {
			for _, c := range p.Clouds {
				if !contains(clouds, c) {
					clouds = append(clouds, c)
				}
			}
		}
	}
	if age == 0 || len(clouds) == 0 {
		return
	}
	for _, cloud := range clouds {
		if r.o.DryRun {
			r.say("pipeline", "would remove from %s the temporary uploads and smoke-test servers older than %s that crashed runs left", cloud, age)
			continue
		}
		c, err := r.connect(ctx, cloud)
		if err != nil {
			r.say("pipeline", "cleanup of %s skipped: %v", cloud, r.o.Redact.Error(err))
			continue
		}
		oc, ok := c.(OrphanCleaner)
		if !ok {
			continue
		}
		res, err := oc.CleanupOrphans(ctx, publish.CleanupRequest{OlderThan: age, Out: &prefixWriter{w: r.o.Out, prefix: "[pipeline] " + cloud + ": ", mu: &r.mu}})
		if err != nil {
			r.say("pipeline", "cleanup of %s failed: %v", cloud, r.o.Redact.Error(err))
			continue
		}
		n := 0
		for _, ch := range res.Changes {
			if strings.HasPrefix(ch.Action, "delete-orphan") {
				n++
			}
		}
		r.say("pipeline", "cleanup of %s: removed %d leftovers of crashed runs older than %s", cloud, n, age)
	}
}

func verifiedBy(s *Source) string {
	switch {
	case s.Checksum != "":
		return "checksum " + s.Checksum
	case s.Signature != "" || s.Keyring != "":
		return "the signed checksums file " + s.Checksums
	}
	return "the checksums file " + s.Checksums
}

func convertText(c Convert) string {
	if len(c) == 0 {
		return ""
	}
	return " with qemu-img options " + c.String()
}
