package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// imageReader reads files from the root filesystem of a built image without
// mounting it: qemu-img to raw, sfdisk for the root partition, debugfs.
type imageReader struct {
	raw    string
	offset int64
}

func openImage(t *testing.T, qcow2 string) *imageReader {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", qcow2, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	out, err := exec.Command("sfdisk", "--json", raw).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var pt struct {
		PartitionTable struct {
			Partitions []struct {
				Start int64  `json:"start"`
				Type  string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		t.Fatal(err)
	}
	parts := pt.PartitionTable.Partitions
	if len(parts) == 0 {
		t.Fatalf("no partitions in %s", qcow2)
	}
	// The root partition is the last one.
	return &imageReader{raw: raw, offset: parts[len(parts)-1].Start * 512}
}

func (r *imageReader) cat(t *testing.T, path string) (string, bool) {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, fmt.Sprintf("%s?offset=%d", r.raw, r.offset)).CombinedOutput()
	s := string(out)
	// debugfs prints its banner on stderr and an error on failure.
	if err != nil || strings.Contains(s, "File not found by ext2_lookup") {
		return "", false
	}
	if i := strings.Index(s, "\n"); i >= 0 && strings.HasPrefix(s, "debugfs ") {
		s = s[i+1:]
	}
	return s, true
}

// An element written the DIB way, on ELEMENTS_PATH, changes the image as DIB
// would: install.d script, package-installs.yaml with pkg-map, static/,
// environment.d, an outside cleanup.d hook, element-deps on built-ins.
// The caller's variables reach the hooks (a secret too, which stays out of
// the logs).
func TestDIBStyleElementChangesImage(t *testing.T) {
	needE2E(t)
	out, tmp := t.TempDir(), t.TempDir()
	env := []string{"TMP_DIR=" + tmp, "ELEMENTS_PATH=" + testElements(t),
		"DIB_STYLE_GREETING=from-the-environment", "SECRET_TOKEN=must-not-leak", "TERM=xterm-from-the-caller"}
	r := runBuilder(t, withTimeout(t, 30*time.Minute), env, "image", "debian-minimal", "vm", "dib-style",
		"-o", filepath.Join(out, "img"), "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	if !strings.Contains(r.stdout, "10-skipped.sh") {
		t.Errorf("no warning about the hook dib-run-parts skips (10-skipped.sh)")
	}
	img := openImage(t, filepath.Join(out, "img.qcow2"))
	checks := []struct {
		path, want string
	}{
		{"/etc/dib-style.conf", "greeting=from-the-environment distro=debian release=bookworm devuser=yes\nsecret-given=yes"},
		{"/etc/dib-style/static.txt", "static file from dib-style"},
		{"/etc/dib-style-outside", "outside"},
		{"/etc/passwd", "dibstyle:"},
	}
	for _, c := range checks {
		got, ok := img.cat(t, c.path)
		if !ok {
			t.Errorf("%s is missing from the image", c.path)
			continue
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s = %q, want it to contain %q", c.path, got, c.want)
		}
	}
	if _, ok := img.cat(t, "/usr/bin/tree"); !ok {
		t.Errorf("package-installs (dib-style-tree mapped to tree by pkg-map) did not install tree")
	}
	if _, ok := img.cat(t, "/etc/dib-style-skipped-ran"); ok {
		t.Errorf("10-skipped.sh ran, DIB would skip it")
	}
	hookEnv, _ := img.cat(t, "/etc/dib-style.env")
	if strings.Contains(hookEnv, "must-not-leak") || strings.Contains(r.stdout+r.stderr, "must-not-leak") {
		t.Errorf("the secret reached the image or the output")
	}
	if strings.Contains(hookEnv, "xterm-from-the-caller") {
		t.Errorf("the caller's terminal reached the hooks")
	}
	for _, v := range []string{"IMAGE_ELEMENT=", "DIB_RELEASE=bookworm", "ARCH=amd64", "DISTRO_NAME=debian", "DIB_INIT_SYSTEM=systemd", "TMP_HOOKS_PATH=/tmp/in_target.d"} {
		if !strings.Contains(hookEnv, v) {
			t.Errorf("hooks lack %s", v)
		}
	}
	manifest, err := os.ReadFile(filepath.Join(out, "img.d", "dib-manifests", "dib_environment"))
	if err != nil || !strings.Contains(string(manifest), "DIB_STYLE_GREETING") {
		t.Errorf("manifest next to the image: %v %q", err, manifest)
	}
}
