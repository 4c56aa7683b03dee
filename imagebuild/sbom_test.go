package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builder/elements"
	"builder/internal/cleanup"
	"builder/internal/progress"
	"builder/sbom"
)

// The build's SBOM: staged beside the outputs under the run's name, put in
// place with them, the previous image's SBOM and inventory kept under its
// date (or overwritten with OVERWRITE_OLD_IMAGE), the outputs' digests and
// the elements' hashes recorded, SOURCE_DATE_EPOCH as its time.
func TestBuildSBOM(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=12\n"), 0o644)
	elDir := filepath.Join(t.TempDir(), "my-el")
	os.MkdirAll(filepath.Join(elDir, "install.d"), 0o755)
	os.WriteFile(filepath.Join(elDir, "install.d/10-x"), []byte("#!/bin/sh\n"), 0o755)
	osDir := filepath.Join(t.TempDir(), "debian-minimal")
	os.MkdirAll(osDir, 0o755)
	os.WriteFile(filepath.Join(osDir, rootfsSourceFile), []byte("method: image\nimage: docker.io/library/debian:bookworm\n"), 0o644)
	osEl := &elements.Element{Name: "debian-minimal", Dir: osDir, Origin: elements.OriginBuiltin}
	p := &plan{
		res:     &elements.Resolution{Elements: []*elements.Element{osEl, {Name: "my-el", Dir: elDir, Origin: elements.OriginPath}}, OS: osEl},
		env:     map[string]string{"SOURCE_DATE_EPOCH": "1717243200"},
		baseKey: strings.Repeat("b", 64),
	}
	out := t.TempDir()
	build := func(runID string, env map[string]string, content string) (*cleanup.Stack, []output) {
		t.Helper()
		req := withDefaults(Request{Output: filepath.Join(out, "img"), Types: []string{"qcow2", "raw"}, SBOM: true, Env: env})
		req.runID = runID
		outs, err := planOutputs(req)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs {
			os.WriteFile(o.Temp, []byte(content+o.Type), 0o644)
		}
		// --checksum's .sha256 is read, not computed again.
		if err := writeChecksums(outs[0], "sha256"); err != nil {
			t.Fatal(err)
		}
		var stack cleanup.Stack
		job := startSBOM(ctx, root, req)
		place, err := job.write(ctx, req, progress.New(io.Discard), p, outs, &stack)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(out, ".img.spdx.json.builder."+runID+".tmp")); err != nil {
			t.Errorf("not staged under the run's name: %v", err)
		}
		for _, o := range outs {
			if err := keepOld(o.Final, env["OVERWRITE_OLD_IMAGE"]); err != nil {
				t.Fatal(err)
			}
			os.Rename(o.Temp, o.Final)
			os.Remove(o.Temp + ".sha256")
		}
		if err := place(); err != nil {
			t.Fatal(err)
		}
		return &stack, outs
	}
	stack, outs := build("r1", map[string]string{}, "one")
	if err := stack.Run(); err != nil {
		t.Fatal(err)
	}
	doc, err := sbom.Read(filepath.Join(out, "img.spdx.json"))
	if err != nil || doc.Files == nil {
		t.Fatalf("%v %q", err, doc.InventoryNote)
	}
	data, _ := os.ReadFile(filepath.Join(out, "img.spdx.json"))
	for _, o := range outs {
		b, _ := os.ReadFile(o.Final)
		sum := sha256.Sum256(b)
		if !strings.Contains(string(data), `"checksumValue": "`+hex.EncodeToString(sum[:])) {
			t.Errorf("%s: its digest is not in the SBOM", o.Final)
		}
	}
	elSum, _ := sbom.DirDigest(elDir)
	for _, want := range []string{
		`"created": "2024-06-01T12:00:00Z"`,
		`"name": "container image docker.io/library/debian:bookworm (base key ` + strings.Repeat("b", 64) + `)"`,
		`"checksumValue": "` + strings.TrimPrefix(elSum, "sha256:"),
		`"comment": "element, from ELEMENTS_PATH ` + filepath.Dir(elDir),
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("SBOM lacks %s", want)
		}
	}

	// A rebuild keeps the previous SBOM and inventory under the previous
	// image's date, as the image itself.
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	os.Chtimes(filepath.Join(out, "img.qcow2"), old, old)
	build("r2", map[string]string{}, "two")
	for _, p := range []string{"img-2026.01.02-03.04.05.qcow2", "img-2026.01.02-03.04.05.spdx.json", "img-2026.01.02-03.04.05.d/files.json", "img.spdx.json", "img.d/files.json"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if kept, err := sbom.Read(filepath.Join(out, "img-2026.01.02-03.04.05.spdx.json")); err != nil || kept.Files == nil {
		t.Errorf("the kept SBOM lost its inventory: %v %q", err, kept.InventoryNote)
	}
	// OVERWRITE_OLD_IMAGE replaces it.
	build("r3", map[string]string{"OVERWRITE_OLD_IMAGE": "1"}, "three")
	if m, _ := filepath.Glob(filepath.Join(out, "img-*.spdx.json")); len(m) != 1 {
		t.Errorf("kept SBOMs %v", m)
	}

	// --sbom=false: nothing is started or written.
	req := withDefaults(Request{Output: filepath.Join(out, "none"), Types: []string{"qcow2"}})
	job := startSBOM(ctx, root, req)
	place, err := job.write(ctx, req, nil, p, nil, &cleanup.Stack{})
	job.stop()
	if job != nil || err != nil || place() != nil {
		t.Errorf("--sbom=false: %v %v", job, err)
	}
	if _, err := os.Stat(filepath.Join(out, "none.spdx.json")); err == nil {
		t.Errorf("an SBOM without --sbom")
	}

	// A failed build: stop ends the scan, the stack removes what was staged.
	req = withDefaults(Request{Output: filepath.Join(out, "failed"), Types: []string{"qcow2"}, SBOM: true})
	req.runID = "r4"
	outs, _ = planOutputs(req)
	os.WriteFile(outs[0].Temp, []byte("x"), 0o644)
	var st cleanup.Stack
	job = startSBOM(ctx, root, req)
	if _, err := job.write(ctx, req, nil, p, outs, &st); err != nil {
		t.Fatal(err)
	}
	job.stop()
	if err := st.Run(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(out, ".failed*")); len(m) != 1 || m[0] != outs[0].Temp {
		t.Errorf("left behind: %v", m)
	}
}
