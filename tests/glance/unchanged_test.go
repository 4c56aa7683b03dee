package glance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builder/internal/testreq"
)

// A nightly rebuild that changed nothing publishes nothing: the pipeline
// builds, boot-tests and publishes an image; the same pipeline again gives
// the same bytes, which the cloud has under the name already: no boot
// test, no upload, one image, "unchanged" in the report. One more package:
// a new image, and builder diff of the two SBOMs names that package. The
// published image carries its SBOM's digest.
func TestPublishOnlyWhatChanged(t *testing.T) {
	needServices(t)
	t.Parallel()
	if _, err := os.Stat(testCache); err != nil {
		testreq.Missing(t, "image cache %s: %v (the test builds with the warm test cache)", testCache, err)
	}
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	c := noauthCloud(t, "")
	dir := t.TempDir()
	name := unique("nightly")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()

	run := func(label, extra string) (string, pipelineReport) {
		t.Helper()
		file := filepath.Join(dir, label+".yaml")
		yaml := fmt.Sprintf(`defaults:
  image_cache: %s
  output_dir: out
  publish: {clouds: [env], visibility: public, keep: 0}
images:
  - name: nightly
    elements: [debian-minimal, vm]
%s    publish: {name: %q}
`, testCache, extra, name)
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		report := filepath.Join(dir, label+".json")
		cmd := runHelper(ctx, c.env, "pipeline", "run", "--report", report, file)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: pipeline run: %v\n%s", label, err, out)
		}
		t.Logf("%s:\n%s", label, out)
		var rep pipelineReport
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("%s: report: %v", label, err)
		}
		return string(out), rep
	}

	// 1. Built, boot-tested, published.
	_, rep1 := run("first", "")
	if got := rep1.only(t).BootTest; got != "ok" {
		t.Errorf("first run: boot test %q, want ok", got)
	}
	first := one(t, "first publish", c.resolve(t, name, "public", fileSHA512(t, filepath.Join(dir, "out", "nightly.qcow2"))))
	sbomFirst := filepath.Join(dir, "first.spdx.json")
	copyFile(t, filepath.Join(dir, "out", "nightly.spdx.json"), sbomFirst)
	if got, want := propOf(first, "builder_sbom_sha256"), fileSHA256(t, sbomFirst); got != want {
		t.Errorf("the image's builder_sbom_sha256 is %q, want the SBOM's %s", got, want)
	}

	// 2. Unchanged: no boot test, no upload, the same single image.
	out2, rep2 := run("again", "")
	r2 := rep2.only(t)
	if r2.BootTest != "unchanged" || len(r2.Published) != 1 || r2.Published[0].Uploaded || !r2.Published[0].Unchanged {
		t.Errorf("unchanged rebuild: boot test %q, published %+v; want unchanged, nothing uploaded", r2.BootTest, r2.Published)
	}
	if strings.Contains(out2, "boot test (") || !strings.Contains(out2, "unchanged") {
		t.Errorf("unchanged rebuild booted the image or did not say unchanged:\n%s", out2)
	}
	if imgs := c.series(t, name); len(imgs) != 1 || imgs[0].ID != first.ID {
		t.Errorf("after the unchanged rebuild: %d images in the series, want the first one only", len(imgs))
	}

	// 3. One more package: a new image, and the diff names the package.
	_, rep3 := run("changed", "    packages: [hello]\n    boot_test: false\n")
	if r3 := rep3.only(t); len(r3.Published) != 1 || !r3.Published[0].Uploaded {
		t.Errorf("changed rebuild: published %+v, want an upload", r3.Published)
	}
	second := one(t, "after the change", c.resolve(t, name, "public", fileSHA512(t, filepath.Join(dir, "out", "nightly.qcow2"))))
	if second.ID == first.ID {
		t.Errorf("the changed image was not published")
	}
	diff := runHelper(ctx, c.env, "diff", sbomFirst, filepath.Join(dir, "out", "nightly.spdx.json"))
	d, err := diff.CombinedOutput()
	if code := diff.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(d), "hello") {
		t.Errorf("builder diff (exit %d, %v) does not name the added package hello:\n%s", code, err, d)
	}
}

// pipelineReport is what --report writes, as far as the test reads it.
type pipelineReport struct {
	Images []reportImage `json:"images"`
}

type reportImage struct {
	Name      string `json:"name"`
	BootTest  string `json:"boot_test"`
	Published []struct {
		Uploaded  bool `json:"uploaded"`
		Unchanged bool `json:"unchanged"`
	} `json:"published"`
}

func (r pipelineReport) only(t *testing.T) reportImage {
	t.Helper()
	if len(r.Images) != 1 {
		t.Fatalf("report lists %d images, want 1", len(r.Images))
	}
	return r.Images[0]
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
