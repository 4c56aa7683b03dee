package imagebuild

import (
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
