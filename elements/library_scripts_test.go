package elements

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The in-image pkg-map command reads the maps builder resolved: mapped names,
// "" meaning nothing, --missing-ok, and DIB's exit codes.
func TestPkgMapScript(t *testing.T) {
	maps := t.TempDir()
	os.WriteFile(filepath.Join(maps, "el"), []byte("vim\tvim-nox vim-runtime\nskipme\t\n"), 0o644)
	script := filepath.Join("library", "pkg-map", "bin", "pkg-map")
	run := func(args ...string) (string, int) {
		cmd := exec.Command("/bin/bash", append([]string{script}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "BUILDER_PKG_MAP_DIR=" + maps, "DISTRO_NAME=debian"}
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return strings.TrimSpace(string(out)), code
	}
	if out, code := run("--element", "el", "vim"); code != 0 || out != "vim-nox\nvim-runtime" {
		t.Errorf("vim -> %q (%d)", out, code)
	}
	if out, code := run("--element", "el", "skipme"); code != 0 || out != "" {
		t.Errorf(`"" mapping -> %q (%d), want nothing`, out, code)
	}
	if _, code := run("--element", "el", "unknown"); code != 1 {
		t.Errorf("unmapped name without --missing-ok: exit %d, want 1", code)
	}
	if out, code := run("--element", "el", "--missing-ok", "--prefix", "-", "unknown"); code != 0 || out != "-unknown" {
		t.Errorf("--missing-ok --prefix -> %q (%d)", out, code)
	}
	if _, code := run("--element", "nomap", "x"); code != 2 {
		t.Errorf("element without a map: exit %d, want 2", code)
	}
	if _, code := run("--element", "el", "--distro", "centos", "vim"); code != 1 {
		t.Errorf("--distro other than the image's: exit %d, want 1", code)
	}
}
