package imagebuild

import (
	"builder/internal/workspace"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/progress"
)

// resolveRamdisk resolves names with the built-in library for output types
// types, and applies ramdiskOutputs as Run does.
func resolveRamdisk(t *testing.T, env map[string]string, types []string, names ...string) (*plan, []output) {
	t.Helper()
	cache := t.TempDir()
	out := filepath.Join(t.TempDir(), "deploy")
	req := withDefaults(Request{Elements: names, Types: types, Output: out, ImageCache: cache, Env: env})
	outs, err := planOutputs(req)
	if err != nil {
		t.Fatal(err)
	}
	p, err := resolve(context.Background(), req, workspace.Workspace{Cache: cache, RunRoot: t.TempDir()}, t.TempDir())
	if err != nil {
		t.Fatalf("resolve %v: %v", names, err)
	}
	outs, err = p.ramdiskOutputs(req, outs)
	if err != nil {
		t.Fatal(err)
	}
	return p, outs
}

func outputTypes(outs []output) string {
	var ts []string
	for _, o := range outs {
		ts = append(ts, o.Type)
		if !strings.HasPrefix(filepath.Base(o.Temp), ".") || filepath.Dir(o.Temp) != filepath.Dir(o.Final) {
			ts = append(ts, "(temp not beside: "+o.Temp+")")
		}
	}
	return strings.Join(ts, ",")
}

func TestRamdiskOutputsAndVariables(t *testing.T) {
	// builder ramdisk debian-minimal: the default -t qcow2 goes silently.
	p, outs := resolveRamdisk(t, nil, []string{"qcow2"}, "ramdisk", "debian-minimal")
	if got := outputTypes(outs); got != "kernel,initramfs" {
		t.Errorf("outputs %s, want kernel,initramfs", got)
	}
	if p.disk || len(p.warnings) != 0 {
		t.Errorf("disk %v, warnings %v: a ramdisk makes no disk, and the default -t needs no warning", p.disk, p.warnings)
	}
	for _, o := range outs {
		if !strings.HasSuffix(o.Final, "/deploy."+o.Type) {
			t.Errorf("%s output at %s, want NAME.%s", o.Type, o.Final, o.Type)
		}
	}
	if !hasElement(p.res, "no-final-image") {
		t.Errorf("ramdisk does not bring no-final-image: %v", p.res.Names())
	}
	s, err := p.ramdiskSettings()
	if err != nil {
		t.Fatal(err)
	}
	if s.root != "" || s.compression != "gzip" || !contains(s.exclude, "boot/*") || !contains(s.exclude, "*.pyc") {
		t.Errorf("ramdisk settings %+v: want the whole tree, gzip, boot/* and *.pyc excluded", s)
	}
	if p.env["DIB_RAMDISK_READY_TIMEOUT"] != "300" {
		t.Errorf("DIB_RAMDISK_READY_TIMEOUT=%q", p.env["DIB_RAMDISK_READY_TIMEOUT"])
	}

	// Explicit disk types are dropped with a word; tar stays.
	p, outs = resolveRamdisk(t, map[string]string{"DIB_RAMDISK_COMPRESS": "zstd", "DIB_RAMDISK_EXCLUDE": ""},
		[]string{"qcow2", "raw", "tar"}, "ramdisk", "debian-minimal")
	if got := outputTypes(outs); got != "tar,kernel,initramfs" {
		t.Errorf("outputs %s, want tar,kernel,initramfs", got)
	}
	if len(p.warnings) != 1 || !strings.Contains(p.warnings[0], "qcow2,raw") {
		t.Errorf("warnings %v: want one naming qcow2,raw", p.warnings)
	}
	if s, _ := p.ramdiskSettings(); s.compression != "zstd" || len(s.exclude) != 0 {
		t.Errorf("the user's DIB_RAMDISK_COMPRESS and empty DIB_RAMDISK_EXCLUDE lost: %+v", s)
	}

	// dracut-ramdisk packs dracut's tree, not the image.
	p, _ = resolveRamdisk(t, nil, []string{"qcow2"}, "dracut-ramdisk", "debian-minimal")
	if s, _ := p.ramdiskSettings(); s.root != "var/lib/dracut-ramdisk/root" || len(s.exclude) != 0 {
		t.Errorf("dracut-ramdisk settings %+v", s)
	}
	if !hasElement(p.res, "dracut-network") || !hasElement(p.res, "ramdisk-base") {
		t.Errorf("dracut-ramdisk elements: %v", p.res.Names())
	}
	pis, _ := os.ReadFile(filepath.Join(p.tree.Dir, "builder", "package-installs"))
	for _, w := range []string{"install dracut-ramdisk dracut-core", "install dracut-network dracut-core dracut-network", "install ramdisk-base iproute2"} {
		if !strings.Contains(string(pis), w) {
			t.Errorf("Debian package installs lack %q:\n%s", w, pis)
		}
	}

	// The rpm side: NetworkManager and dracut's network package.
	p, _ = resolveRamdisk(t, nil, []string{"qcow2"}, "ramdisk", "dracut-network", "centos")
	pis, _ = os.ReadFile(filepath.Join(p.tree.Dir, "builder", "package-installs"))
	for _, w := range []string{"install ramdisk NetworkManager", "install dracut-network dracut-network", "install ramdisk-base iproute"} {
		if !strings.Contains(string(pis), w) {
			t.Errorf("CentOS package installs lack %q:\n%s", w, pis)
		}
	}

	// no-final-image alone: no disk, tree outputs stay.
	p, outs = resolveRamdisk(t, nil, []string{"qcow2", "tar"}, "debian-minimal", "vm", "no-final-image")
	if got := outputTypes(outs); got != "tar" || p.disk {
		t.Errorf("no-final-image: outputs %s, disk %v; want tar only", got, p.disk)
	}
	_, outs = resolveRamdisk(t, nil, []string{"qcow2"}, "debian-minimal", "no-final-image")
	if len(outs) != 0 {
		t.Errorf("no-final-image with -t qcow2: outputs %v, want none", outs)
	}
	// Without either, nothing changes.
	p, outs = resolveRamdisk(t, nil, []string{"qcow2"}, "debian-minimal", "vm")
	if got := outputTypes(outs); got != "qcow2" || !p.disk {
		t.Errorf("plain image: outputs %s, disk %v", got, p.disk)
	}
}

// The output-only ramdisk variables do not reach the step keys.
func TestRamdiskVariablesAreOutputOnly(t *testing.T) {
	for _, v := range []string{"DIB_RAMDISK_COMPRESS", "DIB_RAMDISK_EXCLUDE"} {
		if !contains(outputOnlyVars, v) {
			t.Errorf("%s would rebuild the tree when it changes", v)
		}
	}
	if contains(outputOnlyVars, "DIB_RAMDISK_ROOT") {
		t.Errorf("DIB_RAMDISK_ROOT is where dracut-ramdisk's hook writes: it shapes the tree")
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(data, "->") {
			if err := os.Symlink(strings.TrimPrefix(data, "->"), full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSelectBootKernel(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		env   map[string]string
		want  string // kernel file name, "" for an error
	}{
		{"debian newest by version", map[string]string{"etc/debian_version": "12", "boot/vmlinuz-6.1.0-9-amd64": "k",
			"boot/vmlinuz-6.1.0-10-amd64": "k", "boot/vmlinuz-6.1.0-10-amd64.hmac": "x"}, nil, "vmlinuz-6.1.0-10-amd64"},
		{"ubuntu generic first", map[string]string{"etc/debian_version": "bookworm/sid", "boot/vmlinuz-6.8.0-40-generic": "k",
			"boot/vmlinuz-6.8.0-41-lowlatency": "k"}, nil, "vmlinuz-6.8.0-40-generic"},
		{"rpm: PAE first, no debug or rescue", map[string]string{"etc/redhat-release": "x",
			"boot/vmlinuz-5.14.0-9.el9.x86_64": "k", "boot/vmlinuz-5.14.0-8.el9.x86_64.PAE": "k",
			"boot/vmlinuz-5.14.0-99.el9.x86_64+debug": "k", "boot/vmlinuz-0-rescue-abcdef": "k"}, nil, "vmlinuz-5.14.0-8.el9.x86_64.PAE"},
		{"rpm without PAE", map[string]string{"etc/redhat-release": "x", "boot/vmlinuz-5.14.0-9.el9.x86_64": "k",
			"boot/vmlinuz-5.14.0-10.el9.x86_64": "k", "boot/vmlinuz-0-rescue-abcdef": "k"}, nil, "vmlinuz-5.14.0-10.el9.x86_64"},
		{"opensuse link", map[string]string{"boot/vmlinuz": "->vmlinuz-5.14.21-1-default", "boot/vmlinuz-5.14.21-1-default": "k",
			"boot/vmlinuz-6.4.0-1-default": "k"}, map[string]string{"DISTRO_NAME": "opensuse"}, "vmlinuz-5.14.21-1-default"},
		{"DIB_KERNEL_VERSION", map[string]string{"etc/debian_version": "12", "boot/vmlinuz-6.1.0-9-amd64": "k",
			"boot/vmlinuz-6.1.0-10-amd64": "k"}, map[string]string{"DIB_KERNEL_VERSION": "6.1.0-9-amd64"}, "vmlinuz-6.1.0-9-amd64"},
		{"DIB_KERNEL_VERSION missing", map[string]string{"boot/vmlinuz-1": "k"}, map[string]string{"DIB_KERNEL_VERSION": "2"}, ""},
		{"DIB_BAREMETAL_KERNEL_PATTERN", map[string]string{"boot/vmlinuz-1-cloud": "k", "boot/vmlinuz-2-cloud": "k", "boot/vmlinuz-3-rt": "k"},
			map[string]string{"DIB_BAREMETAL_KERNEL_PATTERN": "vmlinuz-*-cloud"}, "vmlinuz-2-cloud"},
		{"no kernel", map[string]string{"etc/debian_version": "12", "boot/initrd.img-1": "i"}, nil, ""},
	}
	for _, c := range cases {
		root := t.TempDir()
		writeFiles(t, root, c.files)
		k, v, err := selectBootKernel(root, c.env)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%s: got %s, want an error", c.name, k)
		case c.want == "":
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case filepath.Base(k) != c.want || v != strings.TrimPrefix(c.want, "vmlinuz-"):
			t.Errorf("%s: %s (version %s), want %s", c.name, filepath.Base(k), v, c.want)
		}
	}
}

func TestWriteRamdiskOutput(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"etc/debian_version":  "12",
		"boot/vmlinuz-6.1.0":  "KERNEL",
		"boot/initrd.img-6.1": "OLD-INITRD",
		"boot/config-6.1.0":   "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n",
		"sbin/init":           "#!/bin/sh\n",
		"init":                "->/sbin/init",
		"usr/share/doc/x":     "doc",
	})
	if err := os.Mkdir(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	task := progress.New(io.Discard).Phase("test", "")
	dir := t.TempDir()
	p := &plan{env: map[string]string{"DIB_RAMDISK_ROOT": "/", "DIB_RAMDISK_EXCLUDE": "boot/* usr/share/doc/*"}}
	for _, typ := range []string{"kernel", "initramfs"} {
		o := output{Type: typ, Temp: filepath.Join(dir, "t."+typ)}
		if err := p.writeRamdiskOutput(context.Background(), root, o, task); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	if k, _ := os.ReadFile(filepath.Join(dir, "t.kernel")); string(k) != "KERNEL" {
		t.Errorf("kernel %q", k)
	}
	ir, _ := os.ReadFile(filepath.Join(dir, "t.initramfs"))
	if len(ir) < 2 || ir[0] != 0x1f || ir[1] != 0x8b {
		t.Errorf("initramfs is not gzip: % x", ir[:min(len(ir), 4)])
	}

	// A kernel without zstd refuses a zstd archive; a tree without /init
	// or a missing DIB_RAMDISK_ROOT is an error that says so.
	p.env["DIB_RAMDISK_COMPRESS"] = "zstd"
	err := p.writeRamdiskOutput(context.Background(), root, output{Type: "initramfs", Temp: filepath.Join(dir, "z")}, task)
	if err == nil || !strings.Contains(err.Error(), "CONFIG_RD_ZSTD") {
		t.Errorf("zstd for a kernel without it: %v", err)
	}
	p.env["DIB_RAMDISK_COMPRESS"] = "gzip"
	os.Remove(filepath.Join(root, "init"))
	err = p.writeRamdiskOutput(context.Background(), root, output{Type: "initramfs", Temp: filepath.Join(dir, "n")}, task)
	if err == nil || !strings.Contains(err.Error(), "no /init") {
		t.Errorf("tree without /init: %v", err)
	}
	p.env["DIB_RAMDISK_ROOT"] = "/var/lib/dracut-ramdisk/root"
	err = p.writeRamdiskOutput(context.Background(), root, output{Type: "initramfs", Temp: filepath.Join(dir, "r")}, task)
	if err == nil || !strings.Contains(err.Error(), "DIB_RAMDISK_ROOT") {
		t.Errorf("missing DIB_RAMDISK_ROOT: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "[nrz]")); len(left) != 0 {
		t.Errorf("failed writes left %v", left)
	}
}
