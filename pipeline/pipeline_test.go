package pipeline

import (
	"builder/assemble"
	"builder/internal/redact"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"builder/boottest"
	"builder/imagebuild"
	"builder/internal/flock"
	"builder/publish"
)

const twoImages = `
defaults:
  output_dir: out
  variables: {DIB_RELEASE: bookworm}
  publish: {clouds: [env], keep: 2}
images:
  - name: good
    elements: [debian, vm]
    variables: {DIB_IMAGE_EXTRA_SIZE: "100"}
    boot_test: {firmware: uefi, timeout: 5m}
    publish: {name: "Good Image", clouds: [env, prod], rotate: rename}
  - name: bad
    elements: [debian, vm, fails]
    boot_test: false
`

func TestParseMergesDefaults(t *testing.T) {
	f, err := Parse([]byte(twoImages), "/etc/builder")
	if err != nil {
		t.Fatal(err)
	}
	good, bad := f.Images[0], f.Images[1]
	if v := f.variables(good); v["DIB_RELEASE"] != "bookworm" || v["DIB_IMAGE_EXTRA_SIZE"] != "100" {
		t.Errorf("variables %v", v)
	}
	p := f.publishFor(good)
	if p.Name != "Good Image" || len(p.Clouds) != 2 || *p.Keep != 2 || p.Rotate != "rename" || p.Format != "qcow2" {
		t.Errorf("publish %+v", p)
	}
	if p := f.publishFor(bad); p.Name != "bad" || p.Clouds[0] != "env" {
		t.Errorf("defaults' publish %+v", p)
	}
	if b := f.bootTest(good); !b.Enabled || b.Firmware != "uefi" || b.Timeout != 5*time.Minute {
		t.Errorf("boot test %+v", b)
	}
	if b := f.bootTest(bad); b.Enabled {
		t.Error("boot_test: false ignored")
	}
	if got := f.path(f.Defaults.OutputDir); got != "/etc/builder/out" {
		t.Errorf("output dir %s", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"images: []", "no images"},
		{"images:\n  - name: a b\n    elements: [x]", "must be letters"},
		{"images:\n  - name: a\n", "no elements"},
		{"images:\n  - name: a\n    elements: [x]\n  - name: a\n    elements: [x]", "listed twice"},
		{"images:\n  - name: a\n    elemnts: [x]", `unknown key "elemnts"`},
		{"images:\n  - name: a\n    elements: [x]\n    formats: [tar]\n    publish: {clouds: [c]}", "not a disk image Glance takes"},
		{"images:\n  - name: a\n    elements: [x]\n    publish: {clouds: [c], visibility: world}", "visibility"},
		{"images:\n  - name: a\n    elements: [x]\n    publish: {clouds: [c], format: raw}", "not among"},
		{"images:\n  - name: a\n    elements: [x]\n    boot_test: {timeout: soon}", "duration"},
		{"images:\n  - name: a\n    elements: [x]\n    variables: {OS_PASSWORD: x}", "do not belong in build variables"},
	} {
		_, err := Parse([]byte(c.yaml), "/")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
}

// fakeCloud records what was published.
type fakeCloud struct {
	name string
	mu   *sync.Mutex
	got  *[]string
	fail bool
	// firmware receives the Glance properties the request's firmware
	// facts give.
	firmware *[]map[string]string
}

func (f fakeCloud) Publish(_ context.Context, li *publish.LocalImage, req publish.Request) (*publish.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.got = append(*f.got, f.name+":"+req.Name+":"+filepath.Base(li.Path)+":"+req.Rotate)
	if f.firmware != nil && req.Meta.Firmware != nil {
		*f.firmware = append(*f.firmware, publish.FirmwareProperties(*req.Meta.Firmware))
	}
	if f.fail {
		return nil, errors.New("cloud " + f.name + " refused, password hunter2")
	}
	return &publish.Result{ImageID: "id-" + f.name, Visibility: "public", Uploaded: true}, nil
}

type fakes struct {
	mu        sync.Mutex
	built     []string
	booted    []string
	published []string
	failCloud string
	buildGate chan struct{}  // when set, builds wait for it
	disk      *assemble.Disk // what builds report they assembled
	specs     []boottest.Spec
	firmware  []map[string]string
}

func (fk *fakes) steps() Steps {
	return Steps{
		Build: func(ctx context.Context, req imagebuild.Request) (*imagebuild.Result, error) {
			fk.mu.Lock()
			fk.built = append(fk.built, filepath.Base(req.Output)+":"+req.Env["OVERWRITE_OLD_IMAGE"]+":"+req.Env["DIB_RELEASE"])
			gate := fk.buildGate
			fk.mu.Unlock()
			if gate != nil {
				<-gate
			}
			for _, e := range req.Elements {
				if e == "fails" {
					return nil, errors.New("hook install.d/10-fail exited 1")
				}
			}
			return &imagebuild.Result{Outputs: []string{req.Output + ".qcow2"}, Disk: fk.disk}, nil
		},
		BootTest: func(ctx context.Context, s boottest.Spec) (*boottest.Report, error) {
			fk.mu.Lock()
			defer fk.mu.Unlock()
			fk.booted = append(fk.booted, filepath.Base(s.Image)+":"+s.Firmware)
			fk.specs = append(fk.specs, s)
			return &boottest.Report{Passed: true}, nil
		},
		Inspect: func(ctx context.Context, path string, _ publish.InspectOptions) (*publish.LocalImage, []string, error) {
			return &publish.LocalImage{Path: path, Firmware: "bios+uefi"}, nil, nil
		},
		Connect: func(ctx context.Context, cr publish.Credentials) (Publisher, error) {
			name := cr.Cloud
			if name == "" {
				name = "env"
			}
			return fakeCloud{name: name, mu: &fk.mu, got: &fk.published, fail: name == fk.failCloud, firmware: &fk.firmware}, nil
		},
	}
}

func load(t *testing.T, text string) *File {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// One failing image does not stop the next; the error and the summary say
// which failed; a scheduled build overwrites its previous output.
func TestRunContinuesAfterFailure(t *testing.T) {
	f := load(t, strings.Replace(twoImages, "  - name: good", "  - name: bad0\n    elements: [x, fails]\n  - name: good", 1))
	fk := &fakes{}
	var out strings.Builder
	sum, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: fk.steps(), Out: &out, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "2 of 3 images failed: bad0, bad") {
		t.Fatalf("error %v", err)
	}
	if got := strings.Join(fk.built, " "); got != "bad0:1:bookworm good:1:bookworm bad:1:bookworm" {
		t.Errorf("built %s", got)
	}
	if got := strings.Join(fk.booted, " "); got != "good.qcow2:uefi" {
		t.Errorf("booted %s", got)
	}
	if got := strings.Join(fk.published, " "); got != "env:Good Image:good.qcow2:rename prod:Good Image:good.qcow2:rename" {
		t.Errorf("published %s", got)
	}
	var table strings.Builder
	sum.WriteTable(&table)
	for _, want := range []string{"good    ok     ok         ok: env,prod  ok", "bad     FAILED  -", "bad: build: hook install.d/10-fail exited 1", "1 ok, 2 failed"} {
		if !strings.Contains(strings.Join(strings.Fields(table.String()), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("summary lacks %q:\n%s", want, table.String())
		}
	}
}

func TestStopOnFailure(t *testing.T) {
	f := load(t, "images:\n  - name: a\n    elements: [x, fails]\n  - name: b\n    elements: [x]\n")
	fk := &fakes{}
	sum, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: fk.steps(), StopOnFailure: true, Environ: []string{}})
	if err == nil || len(fk.built) != 1 || sum.Images[1].Result != NotRun {
		t.Fatalf("err %v built %v summary %+v", err, fk.built, sum.Images)
	}
}

// A cloud that fails fails the image (publish FAILED 1/2) without keeping
// it from the other cloud, and secrets stay out of the summary.
func TestOneCloudFails(t *testing.T) {
	f := load(t, "images:\n  - name: a\n    elements: [x]\n    boot_test: false\n    publish: {clouds: [env, prod]}\n")
	fk := &fakes{failCloud: "env"}
	red := redact.New()
	sum, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: fk.steps(), Redact: red, Environ: []string{"OS_PASSWORD=hunter2"}})
	if err == nil || sum.Images[0].Publish != "FAILED 1/2" || len(fk.published) != 2 {
		t.Fatalf("err %v summary %+v published %v", err, sum.Images[0], fk.published)
	}
	if strings.Contains(sum.Images[0].Error, "hunter2") || strings.Contains(sum.Images[0].Published[0].Error, "hunter2") {
		t.Errorf("password in the summary: %+v", sum.Images[0])
	}

	// A build variable holding that password is refused before the build.
	f = load(t, "images:\n  - name: a\n    elements: [x]\n    variables: {DIB_SECRET: hunter2}\n")
	fk = &fakes{}
	sum, err = Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: fk.steps(), Environ: []string{"OS_PASSWORD=hunter2"}})
	if err == nil || len(fk.built) != 0 || !strings.Contains(sum.Images[0].Error, "variable DIB_SECRET holds a cloud credential") {
		t.Errorf("credential in a variable: err %v, built %v, %+v", err, fk.built, sum.Images[0])
	}
}

// Two runs never build one image at once: the second skips it (and says
// who holds it), or with Wait waits for it.
func TestLockSkipsOrWaits(t *testing.T) {
	f := load(t, "images:\n  - name: a\n    elements: [x]\n    boot_test: false\n")
	cache := t.TempDir()
	held, err := flock.TryLock(filepath.Join(cache, "builder", "locks", "pipeline-a.lock"), "the other run")
	if err != nil {
		t.Fatal(err)
	}
	fk := &fakes{}
	var out strings.Builder
	sum, err := Run(context.Background(), f, Options{ImageCache: cache, Steps: fk.steps(), Out: &out, Environ: []string{}})
	if err != nil || sum.Images[0].Result != Skipped || len(fk.built) != 0 {
		t.Fatalf("err %v summary %+v built %v", err, sum.Images[0], fk.built)
	}
	if !strings.Contains(out.String(), "skipped: another pipeline run is working on it (held by pid") || !strings.Contains(out.String(), "the other run") {
		t.Errorf("output:\n%s", out.String())
	}

	done := make(chan error, 1)
	var out2 strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out2.Write(p) })
	go func() {
		_, err := Run(context.Background(), f, Options{ImageCache: cache, Steps: fk.steps(), Out: w, Wait: true, Environ: []string{}})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		waiting := strings.Contains(out2.String(), "waiting: another pipeline run is working on it")
		mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second run did not say it waits")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fk.mu.Lock()
	n := len(fk.built)
	fk.mu.Unlock()
	if n != 0 {
		t.Fatal("built while the lock was held")
	}
	held.Unlock()
	if err := <-done; err != nil || len(fk.built) != 1 {
		t.Fatalf("after the lock was released: err %v built %v", err, fk.built)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// The example shipped in hack/pipeline stays a valid pipeline file.
func TestExamplePipelineFile(t *testing.T) {
	f, err := Load(filepath.Join("..", "hack", "pipeline", "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p := f.publishFor(f.Images[1])
	if len(f.Images) != 3 || p.Name != "Debian 12 minimal" || len(p.Clouds) != 2 || *p.Keep != 3 || p.Rotate != "rename" {
		t.Errorf("example: %d images, second publishes %+v", len(f.Images), p)
	}
}

// With Jobs 2 both images build at once (each build waits until the other
// has started), and the summary keeps the file's order.
func TestRunBuildsConcurrently(t *testing.T) {
	f := load(t, twoImages)
	fk := &fakes{buildGate: make(chan struct{})}
	both := make(chan bool, 1)
	go func() {
		// Opens the gate once both builds are in it, or gives up.
		deadline := time.Now().Add(20 * time.Second)
		seen := false
		for !seen && time.Now().Before(deadline) {
			fk.mu.Lock()
			seen = len(fk.built) == 2
			fk.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
		both <- seen
		close(fk.buildGate)
	}()
	sum, _ := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: fk.steps(), Out: io.Discard, Environ: []string{}, Jobs: 2})
	if !<-both {
		t.Fatalf("the second build did not start while the first was running")
	}
	if len(sum.Images) != 2 || sum.Images[0].Name != "good" || sum.Images[1].Name != "bad" {
		t.Fatalf("summary %+v", sum.Images)
	}
	if sum.Images[0].Result != OK || sum.Images[1].Result != Failed {
		t.Errorf("results %s %s", sum.Images[0].Result, sum.Images[1].Result)
	}
}

// DefaultJobs is at least one.
func TestDefaultJobs(t *testing.T) {
	if n := DefaultJobs(); n < 1 {
		t.Errorf("DefaultJobs() = %d", n)
	}
}

// publish.secure_boot: the image is boot-tested with Secure Boot enforced
// and published with the properties that make the cloud boot it so; an
// image without the signed chain is refused before anything is published.
// Without the key a Secure Boot capable image is published as UEFI+BIOS.
func TestSecureBootPublish(t *testing.T) {
	const file = `
defaults:
  output_dir: out
  publish: {clouds: [env]}
images:
  - name: sb
    elements: [debian, vm]
    publish: {secure_boot: true}
  - name: plain
    elements: [debian, vm]
`
	f := load(t, file)
	fk := &fakes{disk: &assemble.Disk{Spec: assemble.DiskSpec{BIOS: true, UEFI: true}, EFILoader: &assemble.EFILoader{SecureBoot: true}}}
	if _, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: fk.steps(), Out: io.Discard, Environ: []string{}}); err != nil {
		t.Fatal(err)
	}
	if len(fk.specs) != 2 || !fk.specs[0].SecureBoot || fk.specs[0].Firmware != "uefi" || fk.specs[1].SecureBoot {
		t.Errorf("boot tests: %+v", fk.specs)
	}
	if len(fk.firmware) != 2 || fk.firmware[0]["os_secure_boot"] != "required" || fk.firmware[0]["hw_machine_type"] != "q35" ||
		fk.firmware[1]["os_secure_boot"] != "" || fk.firmware[1]["hw_firmware_type"] != "" {
		t.Errorf("firmware properties: %v", fk.firmware)
	}

	// No signed chain: refused.
	fk = &fakes{disk: &assemble.Disk{Spec: assemble.DiskSpec{BIOS: true, UEFI: true}}}
	sum, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: fk.steps(), Out: io.Discard, Environ: []string{}})
	if err == nil || sum.Images[0].Result != Failed || !strings.Contains(sum.Images[0].Error, "does not boot through a signed shim") || len(fk.published) != 1 {
		t.Errorf("secure_boot without a signed chain: %v, %+v, published %v", err, sum.Images, fk.published)
	}
}
