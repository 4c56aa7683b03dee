package rootfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extraSettingsBase is a bootstrapped Debian tree as far as the settings
// are concerned: os-release, mmdebstrap's sources, dpkg's database.
func extraSettingsBase(t *testing.T, settings string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"usr/lib/os-release": "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
		"etc/apt/sources.list": "deb http://mirror.example/debian bookworm main\n" +
			"deb http://mirror.example/debian bookworm-updates main\ndeb http://security.example/debian-security bookworm-security main\n",
		"var/lib/dpkg/status": "Package: systemd-sysv\nStatus: install ok installed\nVersion: 252\n\n" +
			"Package: sysvinit-core\nStatus: deinstall ok config-files\nVersion: 3\n",
		"etc/resolv.conf": "",
	}
	if settings != "" {
		files[extraSettings] = settings
	}
	for rel, data := range files {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestExtraSettings(t *testing.T) {
	for _, c := range []struct {
		settings string
		want     string // "" when the base fits; else the setting named in the error
	}{
		{"DIB_DEBIAN_ALT_INIT_PACKAGE=systemd-sysv\n", ""}, // debian-systemd's
		{"export DIB_RELEASE='bookworm'\n# a comment\n\nDIB_DISTRIBUTION_MIRROR=\"http://mirror.example/debian/\"\nDIB_DEBIAN_COMPONENTS=main\n", ""},
		// Settings of DIB's bootstrap tools alone do not concern builder's.
		{"DIB_DEBOOTSTRAP_EXTRA_ARGS=--no-check-gpg\nDIB_DOCKER_IMAGE=debian:bookworm\n", ""},
		{"DIB_DEBIAN_ALT_INIT_PACKAGE=upstart\n", "DIB_DEBIAN_ALT_INIT_PACKAGE=upstart"},
		{"DIB_DEBIAN_ALT_INIT_PACKAGE=sysvinit-core\n", "DIB_DEBIAN_ALT_INIT_PACKAGE=sysvinit-core"},
		{"DIB_RELEASE=trixie\n", "set DIB_RELEASE=trixie for the build"},
		{"DIB_DISTRIBUTION_MIRROR=http://other.example/debian\n", "set DIB_DISTRIBUTION_MIRROR=http://other.example/debian"},
		{"DIB_DEBIAN_COMPONENTS=main,contrib\n", "set DIB_DEBIAN_COMPONENTS=main,contrib"},
		{"DIB_RELEASE=$(lsb_release -cs)\n", `line 1: "DIB_RELEASE=$(lsb_release -cs)" is not a NAME=VALUE assignment`},
		{"if true; then DIB_RELEASE=x; fi\n", "line 1:"},
	} {
		root := extraSettingsBase(t, c.settings)
		err := SaveResolvConf(context.Background(), root)
		_, statErr := os.Lstat(filepath.Join(root, extraSettings))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.settings, err)
		case c.want == "" && !os.IsNotExist(statErr):
			t.Errorf("%q: /%s is still in the tree", c.settings, extraSettings)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want one with %q", c.settings, err, c.want)
		}
		if c.want != "" && strings.HasPrefix(c.want, "set ") {
			var ee *ExtraSettingsError
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), "builder's base, made before root.d, has") {
				t.Errorf("%q: %v is not an ExtraSettingsError saying what the base has", c.settings, err)
			}
		}
	}
	// No file: nothing to do, resolv.conf still kept as .ORIG.
	root := extraSettingsBase(t, "")
	if err := SaveResolvConf(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, resolvConfOrig)); err != nil {
		t.Errorf("resolv.conf.ORIG: %v", err)
	}
}

// A container image's base (deb822 sources, no os-release codename check
// needed) and an rpm tree (no dpkg database: the init package is not
// Debian's question there).
func TestExtraSettingsOtherBases(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/apt/sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/apt/sources.list.d/debian.sources"),
		[]byte("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"), 0o644)
	if err := checkExtraSettings(root, map[string]string{"DIB_DISTRIBUTION_MIRROR": "http://deb.debian.org/debian", "DIB_DEBIAN_COMPONENTS": "main"}); err != nil {
		t.Errorf("deb822 sources: %v", err)
	}
	if err := checkExtraSettings(root, map[string]string{"DIB_DEBIAN_COMPONENTS": "main,non-free"}); err == nil {
		t.Errorf("deb822 sources: a missing component passed")
	}
	if err := checkExtraSettings(t.TempDir(), map[string]string{"DIB_DEBIAN_ALT_INIT_PACKAGE": "systemd-sysv"}); err != nil {
		t.Errorf("a tree without dpkg: %v", err)
	}
}
