package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"builder/imagebuild"
	"builder/internal/testreq"
	"builder/publish"
)

const scheduled = `
defaults:
  output_dir: out
  publish: {clouds: [env], keep: 2, description: "{{.Name}}, built {{.Date}}"}
images:
  - name: built
    elements: [debian, vm]
    convert: compat=0.10
  - name: upstream
    source: {url: "https://cloud.example.org/img/upstream.qcow2", checksum: "sha256:%s"}
    convert: [compat=0.10, compression_type=zlib]
    boot_test: false
    publish: {smoke_test: {flavor: m1.small, timeout: 5m}}
schedule:
  prod:
    clouds: [prod, prod2]
    convert: [compat=1.1]
    publish: {visibility: community, keep: 3, smoke_test: true}
  dev:
    clouds: [dev]
    images: [upstream]
    publish: {visibility: private, smoke_test: false, description: "dev build {{.Date}}"}
`

var zeroSum = strings.Repeat("0", 64)

// A file with a downloaded image, convert options, a description
// template, a smoke test and schedule groups: each group's settings go
// over the image's and the defaults', its clouds replace theirs.
func TestParseSourcesAndSchedule(t *testing.T) {
	f, err := Parse([]byte(fmt.Sprintf(scheduled, zeroSum)), "/etc/builder")
	if err != nil {
		t.Fatal(err)
	}
	built, up := f.Images[0], f.Images[1]
	if up.Source == nil || up.Source.URL != "https://cloud.example.org/img/upstream.qcow2" || f.convert(up).String() != "compat=0.10,compression_type=zlib" {
		t.Errorf("source entry: %+v", up)
	}
	req, err := f.Request(built, nil, "/cache", "/out/built")
	if err != nil || req.QemuImgOpts != "compat=0.10" {
		t.Errorf("convert of a built image is its qemu-img options: %q, %v", req.QemuImgOpts, err)
	}
	p := f.publishFor(up)
	if p.SmokeTest == nil || !p.SmokeTest.Enabled || p.SmokeTest.Flavor != "m1.small" || p.SmokeTest.Timeout != 5*time.Minute ||
		p.Description != "{{.Name}}, built {{.Date}}" || p.Clouds[0] != "env" {
		t.Errorf("publish of upstream: %+v", p)
	}

	prod, err := f.Group("prod")
	if err != nil {
		t.Fatal(err)
	}
	if imgs := f.groupImages(prod); len(imgs) != 2 {
		t.Errorf("prod runs %d images, want all 2", len(imgs))
	}
	g := f.inGroup(up, prod)
	p = f.publishFor(g)
	if strings.Join(p.Clouds, ",") != "prod,prod2" || p.Visibility != "community" || *p.Keep != 3 || !p.SmokeTest.Enabled ||
		p.SmokeTest.Flavor != "" || f.convert(g).String() != "compat=1.1" || p.Description != "{{.Name}}, built {{.Date}}" {
		t.Errorf("upstream in prod: %+v, convert %v", p, f.convert(g))
	}
	dev, _ := f.Group("dev")
	if imgs := f.groupImages(dev); len(imgs) != 1 || imgs[0].Name != "upstream" {
		t.Errorf("dev runs %v", imgs)
	}
	p = f.publishFor(f.inGroup(up, dev))
	if p.Visibility != "private" || p.SmokeTest.Enabled || *p.Keep != 2 || p.Description != "dev build {{.Date}}" {
		t.Errorf("upstream in dev: %+v", p)
	}
	if _, err := f.Group("staging"); err == nil || !strings.Contains(err.Error(), "groups: dev, prod") {
		t.Errorf("unknown group: %v", err)
	}
	if f.orphanAge() != publish.DefaultOrphanAge {
		t.Errorf("orphan age %s", f.orphanAge())
	}
}

func TestParseSourceAndScheduleErrors(t *testing.T) {
	img := "images:\n  - name: a\n    "
	src := img + "source: {url: \"http://h/a.qcow2\", checksum: \"sha256:" + zeroSum + "\"}\n    "
	for _, c := range []struct{ yaml, want string }{
		{img + "source: http://h/a.qcow2", "a download is verified"},
		{img + "source: {url: \"http://h/a.qcow2\"}", "source without a checksum"},
		{img + "source: {url: \"ftp://h/a.qcow2\", checksum: \"sha256:" + zeroSum + "\"}", "give the http(s) URL"},
		{img + "source: {url: \"http://h/a\", checksum: md5:abc}", "give sha256:HEX"},
		{img + "source: {url: \"http://h/a\", checksums: \"http://h/SUMS\", signature: \"http://h/SUMS.gpg\"}", "needs source.keyring"},
		{img + "source: {url: \"http://h/a\", checksums: \"http://h/SUMS\", keyring: /nonexistent.gpg}", "source.keyring"},
		{img + "source: {url: \"http://h/a\", checksum: \"sha256:" + zeroSum + "\", checksums: \"http://h/SUMS\"}", "not both"},
		{img + "source: {url: \"http://h/a\", sha: x}", `unknown key "sha"`},
		{src + "elements: [debian, vm]", "is not built"},
		{src + "formats: [tar]", "is written as one of"},
		{src + "formats: [raw]\n    convert: compat=0.10", "do not apply to raw"},
		{img + "elements: [x]\n    convert: compat 0.10", "is not a qemu-img option"},
		{img + "elements: [x]\n    convert: [compat=0.10]\n    qemu_img_options: compat=1.1", "keep one"},
		{img + "elements: [x]\n    publish: {clouds: [c], description: \"built {{.When}}\"}", "description template"},
		{img + "elements: [x]\n    publish: {clouds: [c], smoke_test: {console: [\"(\"]}}", "console pattern"},
		{img + "elements: [x]\n    publish: {clouds: [c], smoke_test: {timeout: soon}}", "duration"},
		{img + "elements: [x]\nschedule:\n  prod: {images: [a]}", "no clouds"},
		{img + "elements: [x]\nschedule:\n  prod: {clouds: [p], images: [b]}", `image "b" is not among`},
		{img + "elements: [x]\nschedule:\n  prod: {clouds: [p], publish: {clouds: [q]}}", "a group's clouds are its clouds"},
		{img + "elements: [x]\nschedule:\n  prod: {clouds: [p], publish: {visibility: world}}", "visibility"},
		{img + "elements: [x]\nschedule:\n  pr od: {clouds: [p]}", "name must be"},
		{"defaults:\n  cleanup_orphans: soon\n" + img + "elements: [x]", "cleanup_orphans"},
	} {
		_, err := Parse([]byte(c.yaml), "/")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
	f, err := Parse([]byte("defaults:\n  cleanup_orphans: false\n"+img+"elements: [x]"), "/")
	if err != nil || f.orphanAge() != 0 {
		t.Errorf("cleanup_orphans: false: %v %v", f, err)
	}
	f, err = Parse([]byte("defaults:\n  cleanup_orphans: 2h\n"+img+"elements: [x]"), "/")
	if err != nil || f.orphanAge() != 2*time.Hour {
		t.Errorf("cleanup_orphans: 2h: %v %v", f, err)
	}
}

// recordingCloud keeps every request and cleanup it was given.
type recordingCloud struct {
	name string
	mu   *sync.Mutex
	log  *[]string
	reqs *[]publish.Request
}

func (c recordingCloud) Publish(_ context.Context, li *publish.LocalImage, req publish.Request) (*publish.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.log = append(*c.log, "publish "+c.name+" "+req.Name+" "+filepath.Base(li.Path))
	*c.reqs = append(*c.reqs, req)
	return &publish.Result{ImageID: "id", Visibility: req.Visibility, Uploaded: true}, nil
}

func (c recordingCloud) CleanupOrphans(_ context.Context, req publish.CleanupRequest) (*publish.CleanupResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.log = append(*c.log, fmt.Sprintf("cleanup %s %s", c.name, req.OlderThan))
	return &publish.CleanupResult{Cloud: c.name, Changes: []publish.Change{{Action: "delete-orphan", ImageName: "x.uploading-1"}}}, nil
}

// qcow2Version is the version field of a qcow2 header: 2 for compat=0.10,
// 3 for compat=1.1.
func qcow2Version(t *testing.T, b []byte) int {
	t.Helper()
	if len(b) < 8 || string(b[:4]) != "QFI\xfb" {
		t.Fatalf("not a qcow2 file")
	}
	return int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7])
}

// Downloaded images: verified, written as they are or converted with
// their options, boot-tested and published like built ones, with their
// source recorded; a download that fails its checksum fails the image and
// nothing of it is published. Every run first cleans its clouds.
func TestRunDownloadsSources(t *testing.T) {
	testreq.Tool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	up := filepath.Join(dir, "upstream.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", up, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	body, _ := os.ReadFile(up)
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	xz := append([]byte("\xfd7zXZ\x00"), body...) // qemu-img would call it raw
	xsum := sha256.Sum256(xz)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/img/upstream.qcow2", "/img/other.qcow2":
			w.Write(body)
		case "/img/upstream.qcow2.xz":
			w.Write(xz)
		case "/img/SHA256SUMS":
			fmt.Fprintf(w, "%s  upstream.qcow2\n%s  other.qcow2\n", good, zeroSum)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f := load(t, fmt.Sprintf(`
defaults:
  output_dir: out
  publish: {clouds: [env], description: "{{.Name}} from upstream, {{.Date}}"}
images:
  - name: asis
    source: {url: "%[1]s/img/upstream.qcow2", checksums: "%[1]s/img/SHA256SUMS"}
  - name: old-qemu
    source: {url: "%[1]s/img/upstream.qcow2", checksum: "sha256:%[2]s"}
    convert: [compat=0.10]
  - name: tampered
    source: {url: "%[1]s/img/other.qcow2", checksums: "%[1]s/img/SHA256SUMS"}
  - name: compressed
    source: {url: "%[1]s/img/upstream.qcow2.xz", checksum: "%[3]s"}
`, srv.URL, good, hex.EncodeToString(xsum[:])))
	fk := &fakes{}
	var mu sync.Mutex
	var log []string
	var reqs []publish.Request
	steps := fk.steps()
	steps.Connect = func(ctx context.Context, cr publish.Credentials) (Publisher, error) {
		return recordingCloud{name: "env", mu: &mu, log: &log, reqs: &reqs}, nil
	}
	var out bytes.Buffer
	sum2, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: steps, Out: &out, Environ: []string{}})
	t.Logf("output:\n%s", out.String())
	if err == nil || !strings.Contains(err.Error(), "2 of 4 images failed: tampered, compressed") {
		t.Fatalf("error %v", err)
	}
	if r := sum2.Images[3]; !strings.Contains(r.Error, "the download is xz-compressed, not a disk image") {
		t.Errorf("compressed: %+v", r)
	}
	if r := sum2.Images[2]; r.Build != Failed || !strings.Contains(r.Error, "download: ") || !strings.Contains(r.Error, "expected "+zeroSum) {
		t.Errorf("tampered: %+v", r)
	}
	outDir := filepath.Join(f.Dir, "out")
	asis, _ := os.ReadFile(filepath.Join(outDir, "asis.qcow2"))
	if !bytes.Equal(asis, body) {
		t.Error("asis.qcow2 is not the upstream file")
	}
	old, _ := os.ReadFile(filepath.Join(outDir, "old-qemu.qcow2"))
	if v := qcow2Version(t, old); v != 2 {
		t.Errorf("old-qemu.qcow2 is qcow2 version %d, want 2 (compat=0.10)", v)
	}
	if got := strings.Join(fk.booted, " "); got != "asis.qcow2:bios old-qemu.qcow2:bios" {
		t.Errorf("booted %s", got)
	}
	if got := strings.Join(log, "; "); got != "cleanup env 6h0m0s; publish env asis asis.qcow2; publish env old-qemu old-qemu.qcow2" {
		t.Errorf("cloud calls: %s", got)
	}
	if len(reqs) == 2 {
		r := reqs[0]
		if r.Meta.Source != srv.URL+"/img/upstream.qcow2" || r.Meta.SourceDigest != "sha256:"+good || r.Description != "{{.Name}} from upstream, {{.Date}}" || len(r.Meta.Elements) != 0 {
			t.Errorf("request of asis: %+v", r)
		}
	}
	if len(fk.built) != 0 {
		t.Errorf("built %v: downloaded images are not built", fk.built)
	}
}

// --group runs the group's images to the group's clouds with its
// settings, and cleans exactly those clouds first.
func TestRunGroup(t *testing.T) {
	f := load(t, `
defaults:
  publish: {clouds: [env]}
  cleanup_orphans: 3h
images:
  - name: a
    elements: [x]
    boot_test: false
  - name: b
    elements: [x]
    boot_test: false
    publish: {name: "B", properties: {k: v}}
schedule:
  prod:
    clouds: [prod, prod2]
    images: [b]
    convert: [compat=0.10]
    publish: {visibility: community, keep: 3, smoke_test: {flavor: m1.small}, description: "B {{.Date}}"}
`)
	fk := &fakes{}
	var mu sync.Mutex
	var log []string
	var reqs []publish.Request
	steps := fk.steps()
	steps.Connect = func(ctx context.Context, cr publish.Credentials) (Publisher, error) {
		return recordingCloud{name: cr.Cloud, mu: &mu, log: &log, reqs: &reqs}, nil
	}
	var opts []string
	build := steps.Build
	steps.Build = func(ctx context.Context, req imagebuild.Request) (*imagebuild.Result, error) {
		opts = append(opts, req.QemuImgOpts)
		return build(ctx, req)
	}
	var out bytes.Buffer
	sum, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: steps, Group: "prod", Out: &out, Environ: []string{}})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if sum.Group != "prod" || len(sum.Images) != 1 || sum.Images[0].Name != "b" || strings.Join(opts, " ") != "compat=0.10" {
		t.Errorf("summary %+v, qemu-img options %v", sum, opts)
	}
	if got := strings.Join(log, "; "); got != "cleanup prod 3h0m0s; cleanup prod2 3h0m0s; publish prod B b.qcow2; publish prod2 B b.qcow2" {
		t.Errorf("cloud calls: %s", got)
	}
	for _, r := range reqs {
		if r.Visibility != "community" || r.Keep != 3 || r.SmokeTest == nil || r.SmokeTest.Flavor != "m1.small" || r.Description != "B {{.Date}}" || r.Properties["k"] != "v" {
			t.Errorf("request %+v", r)
		}
	}
	if _, err := Run(context.Background(), f, Options{ImageCache: t.TempDir(), Steps: steps, Group: "prod", Only: []string{"a"}, Environ: []string{}}); err == nil || !strings.Contains(err.Error(), "no such image in group prod") {
		t.Errorf("--only outside the group: %v", err)
	}
	var dry bytes.Buffer
	if _, err := Run(context.Background(), f, Options{Steps: steps, Group: "prod", DryRun: true, Out: &dry, Environ: []string{}}); err != nil ||
		!strings.Contains(dry.String(), "would smoke-test it in each cloud before promoting it (flavor m1.small)") ||
		!strings.Contains(dry.String(), "would remove from prod2 the temporary uploads and smoke-test servers older than 3h0m0s") {
		t.Errorf("dry run: %v\n%s", err, dry.String())
	}
}

// The migration guide's pipeline file stays valid: its groups run the
// images it says, with the production cloud's old-QEMU conversion.
func TestFromCronPipelineFile(t *testing.T) {
	f, err := Load(filepath.Join("..", "hack", "pipeline", "from-cron.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := f.Group("production")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := f.Group("development")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.groupImages(prod)) != 3 || len(f.groupImages(dev)) != 2 {
		t.Errorf("production runs %d images, development %d", len(f.groupImages(prod)), len(f.groupImages(dev)))
	}
	up, _ := f.image("debian-12-upstream")
	if up.Source == nil || f.convert(f.inGroup(up, prod)).String() != "compat=0.10" || len(f.convert(f.inGroup(up, dev))) != 0 {
		t.Errorf("upstream image: %+v", up)
	}
	if p := f.publishFor(f.inGroup(up, prod)); p.Visibility != "public" || !p.SmokeTest.Enabled || p.Clouds[0] != "prod" {
		t.Errorf("production publish %+v", p)
	}
}
