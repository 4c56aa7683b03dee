package pipeline

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"builder/imagebuild"
)

// FuzzParse: the pipeline file (hack/test.sh fuzzes it for a fixed time;
// `go test` runs the seeds). Parse must never panic or hang, its errors
// are one line, and a file it accepts is what a run relies on: the same on
// every parse, unique valid names, elements, known formats, a build
// request for every image, publish settings Glance takes.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "hack", "pipeline", "pipeline.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(twoImages))
	for _, s := range []string{
		"images:\n  - name: a\n    elements: [debian, vm]\n    boot_test: false\n",
		"defaults:\n  isolation: oci\n  checksum: true\n  size: 3\nimages:\n  - {name: a, elements: [debian, vm], formats: [raw, tar]}\n",
		"images:\n  - name: a\n    elements: [debian, vm]\n    variables: {DIB_IMAGE_SIZE: \"2\"}\n    boot_test: {enabled: true, firmware: uefi, timeout: 20m}\n",
		"defaults:\n  publish: {clouds: [env, prod], keep: 2, rotate: rename}\nimages:\n  - name: a\n    elements: [debian, vm]\n    publish: {format: qcow2, properties: {k: v}}\n",
		"images:\n  - name: up\n    source: {url: \"https://example.org/d.qcow2\", checksum: \"sha256:" + strings.Repeat("ab", 32) + "\"}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "/etc/builder")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error on more than one line: %q", err)
			}
			return
		}
		again, err := Parse(data, "/etc/builder")
		if err != nil || !reflect.DeepEqual(file, again) {
			t.Fatalf("a second parse differs: %v", err)
		}
		if len(file.Images) == 0 {
			t.Fatal("accepted without images")
		}
		seen := map[string]bool{}
		for _, img := range file.Images {
			if !nameRE.MatchString(img.Name) || seen[img.Name] || strings.ContainsAny(img.Name, "/\n") || strings.HasPrefix(img.Name, ".") {
				t.Errorf("image name %q accepted", img.Name)
			}
			seen[img.Name] = true
			for _, ft := range file.formats(img) {
				if !slices.Contains(imagebuild.OutputTypes(), ft) {
					t.Errorf("image %q: format %q accepted", img.Name, ft)
				}
			}
			if img.Source != nil {
				// Downloaded, not built.
				if len(img.Elements) > 0 || img.Source.URL == "" {
					t.Errorf("image %q: source %+v with elements %v", img.Name, img.Source, img.Elements)
				}
			} else if len(img.Elements) == 0 {
				t.Errorf("image %q has no elements", img.Name)
			} else if req, err := file.Request(img, nil, "/var/cache/builder", "/srv/images/"+img.Name); err != nil {
				t.Errorf("image %q: accepted, but no build request: %v", img.Name, err)
			} else if !slices.Equal(req.Elements, img.Elements) || req.Output != "/srv/images/"+img.Name {
				t.Errorf("image %q: request %v -> %s", img.Name, req.Elements, req.Output)
			}
			if p := file.publishFor(img); p != nil {
				if err := checkPublish(p, file.formats(img)); err != nil {
					t.Errorf("image %q: publish accepted, then refused: %v", img.Name, err)
				}
				if p.Name == "" || !slices.Contains(diskFormats, p.Format) {
					t.Errorf("image %q: publish %+v", img.Name, p)
				}
			}
			if bt := file.bootTest(img); bt.Timeout < 0 || (bt.Firmware != "" && bt.Firmware != "bios" && bt.Firmware != "uefi") {
				t.Errorf("image %q: boot test %+v", img.Name, bt)
			}
		}
	})
}
