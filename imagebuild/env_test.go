package imagebuild

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The caller's environment reaches hooks as with DIB's sudo -E, except the
// caller's session and terminal and builder's own controls and publishing
// credentials; secret-looking values are known as such (redacted, kept out
// of the image).
func TestUserEnvPassesTheCallersVariables(t *testing.T) {
	got := UserEnv([]string{"DIB_RELEASE=trixie", "HOME=/root", "AWS_SECRET_ACCESS_KEY=abcdefgh", "http_proxy=http://p:3128",
		"ELEMENTS_PATH=/e", "GUEST_USER=alice", "SOME_SSH_PUBLIC_KEY=ssh-ed25519 AAAA", "TERM=xterm", "SSH_AUTH_SOCK=/run/x",
		"XDG_RUNTIME_DIR=/run/user/0", "OS_PASSWORD=hunter22", "BUILDER_BIN=/x", "_CONTAINERS_USERNS_CONFIGURED=1", "BAD-NAME=1",
		"LD_PRELOAD=/usr/$LIB/faketime/libfaketime.so.1", "LD_LIBRARY_PATH=/opt/lib", "FAKETIME=+2d", "NO_FAKE_STAT=1"})
	for _, k := range []string{"DIB_RELEASE", "http_proxy", "ELEMENTS_PATH", "GUEST_USER", "SOME_SSH_PUBLIC_KEY", "AWS_SECRET_ACCESS_KEY"} {
		if _, ok := got[k]; !ok {
			t.Errorf("%s does not reach the hooks: %v", k, got)
		}
	}
	for _, k := range []string{"HOME", "TERM", "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR", "OS_PASSWORD", "BUILDER_BIN", "_CONTAINERS_USERNS_CONFIGURED", "BAD-NAME",
		"LD_PRELOAD", "LD_LIBRARY_PATH", "FAKETIME", "NO_FAKE_STAT"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s reached the hooks: %v", k, got)
		}
	}
	sec := secretValues(got)
	if len(sec) != 1 || sec["AWS_SECRET_ACCESS_KEY"] != "abcdefgh" {
		t.Errorf("secret-looking values: %v", sec)
	}
}

func TestEvalEnvironmentSourcesInOrderAndNamesFailures(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "10-a.bash")
	b := filepath.Join(dir, "20-b.bash")
	os.WriteFile(a, []byte("export X=${X:-one}\nexport Y=$X-two\n"), 0o644)
	os.WriteFile(b, []byte("export Y=$Y-three\n"), 0o644)
	env, err := evalEnvironment(context.Background(), []string{a, b}, map[string]string{"PATH": hostPath})
	if err != nil {
		t.Fatal(err)
	}
	if env["Y"] != "one-two-three" {
		t.Fatalf("Y = %q", env["Y"])
	}
	bad := filepath.Join(dir, "30-bad.bash")
	os.WriteFile(bad, []byte("echo 'DIB_INIT_SYSTEM is not set' >&2\nexit 1\n"), 0o644)
	_, err = evalEnvironment(context.Background(), []string{a, bad}, map[string]string{"PATH": hostPath})
	if err == nil || !strings.Contains(err.Error(), "DIB_INIT_SYSTEM is not set") {
		t.Fatalf("err = %v, want the file's message", err)
	}
}

func TestHostAptMirrors(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/apt/sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/apt/sources.list.d/debian.sources"), []byte(`Types: deb
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian-security/
Suites: bookworm-security
`), 0o644)
	os.WriteFile(filepath.Join(root, "etc/apt/sources.list.d/other.list"), []byte("deb [arch=amd64] https://packages.example/apt stable main\n"), 0o644)
	d, s := hostAptMirrors(root)
	if d != "http://mirror.example/debian" || s != "http://mirror.example/debian-security" {
		t.Fatalf("got %q %q", d, s)
	}
}
