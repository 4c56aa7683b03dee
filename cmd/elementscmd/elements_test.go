package elementscmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fixture(t *testing.T) *Options {
	t.Helper()
	dir := t.TempDir()
	mk := func(el, file, content string) {
		p := filepath.Join(dir, el, file)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// "debian" here overrides the built-in element of that name.
	mk("debian", "element-provides", "operating-system\n")
	mk("debian", "README.md", "# my debian\nA local override.\n")
	mk("debian", "install.d/10-x", "#!/bin/bash\n")
	mk("extra", "element-deps", "debian\n")
	return &Options{ElementsPath: []string{dir}, ImageCache: t.TempDir()}
}

func TestListShowsOverridesAndProviders(t *testing.T) {
	o := fixture(t)
	var b bytes.Buffer
	o.Out = &b
	if err := List(o); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	var debianLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "debian ") {
			debianLine = l
		}
	}
	if !strings.Contains(debianLine, "operating-system") || !strings.Contains(debianLine, o.ElementsPath[0]) || !strings.Contains(debianLine, "builder/elements") {
		t.Errorf("debian line %q should say it provides operating-system, comes from %s and overrides the built-in", debianLine, o.ElementsPath[0])
	}
	if !strings.Contains(out, "debian-minimal") || !strings.Contains(out, "built-in") {
		t.Errorf("built-in elements missing:\n%s", out)
	}
}

func TestShowPrintsReadmeAndFiles(t *testing.T) {
	o := fixture(t)
	var b bytes.Buffer
	o.Out = &b
	if err := Show(o, "debian"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"A local override.", "install.d/10-x", "provides  operating-system", "overrides "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, b.String())
		}
	}
	if err := Show(o, "nope"); err == nil || !strings.Contains(err.Error(), `"nope" not found`) {
		t.Errorf("unknown element: %v", err)
	}
}

func TestDepsAndEnv(t *testing.T) {
	o := fixture(t)
	var b bytes.Buffer
	o.Out = &b
	if err := Deps(context.Background(), o, []string{"extra"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(b.String()); strings.Join(got, " ") != "debian extra" {
		t.Errorf("deps = %q, want debian extra", got)
	}
	b.Reset()
	o.Env = true
	if err := Deps(context.Background(), o, []string{"extra"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "export IMAGE_ELEMENT='debian extra'") || !strings.Contains(b.String(), "get_image_element_array") {
		t.Errorf("--env output:\n%s", b.String())
	}
	if err := Deps(context.Background(), o, []string{"extra", "debian-minimal"}); err == nil || !strings.Contains(err.Error(), "operating-system") {
		t.Errorf("two operating systems: %v", err)
	}
}
