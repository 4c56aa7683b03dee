package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUserEnvKeepsOnlyBuildVariables(t *testing.T) {
	got := UserEnv([]string{"DIB_RELEASE=trixie", "HOME=/root", "AWS_SECRET_ACCESS_KEY=x", "http_proxy=http://p:3128", "ELEMENTS_PATH=/e"})
	if got["DIB_RELEASE"] != "trixie" || got["http_proxy"] == "" || got["ELEMENTS_PATH"] != "/e" {
		t.Fatalf("missing build variables: %v", got)
	}
	if _, ok := got["AWS_SECRET_ACCESS_KEY"]; ok {
		t.Fatalf("a host secret leaked into the build environment: %v", got)
	}
	if _, ok := got["HOME"]; ok {
		t.Fatalf("HOME leaked: %v", got)
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
