package imagebuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveArch(t *testing.T) {
	for in, want := range map[string]string{"amd64": "amd64", "x86_64": "amd64", "aarch64": "arm64", "ARM64": "arm64", "i686": "i386", "ppc64le": "ppc64el"} {
		if got, err := resolveArch(in); got != want || err != nil {
			t.Errorf("%s: %q %v, want %s", in, got, err, want)
		}
	}
	if _, err := resolveArch("sparc"); err == nil || !strings.Contains(err.Error(), `"sparc"`) {
		t.Errorf("sparc: %v", err)
	}
	for _, a := range []string{"amd64", "arm64"} {
		if err := checkArch(a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	// Recognised, and the message says why it is not built.
	for a, why := range map[string]string{"i386": "i386-pc/i386-efi", "ppc64el": "PReP"} {
		if err := checkArch(a); err == nil || !strings.Contains(err.Error(), "recognised but not built") || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: %v", a, err)
		}
	}
}

// A foreign bootstrap names arch-test, which mmdebstrap needs for it,
// before anything runs; a native one does not need it.
func TestForeignBootstrapNeedsArchTest(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rootfs-source.yaml"), []byte("method: mmdebstrap\nsuite: bookworm\nvariant: minbase\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir()) // no arch-test here
	if err := checkBaseSource("debian", dir, map[string]string{}, "arm64"); err == nil || !strings.Contains(err.Error(), "apt-get install arch-test") {
		t.Errorf("arm64 without arch-test: %v", err)
	}
	if err := checkBaseSource("debian", dir, map[string]string{}, "amd64"); err != nil {
		t.Errorf("amd64: %v", err)
	}
}
