package boottestcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRamdiskArguments(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"deploy.kernel", "deploy.initramfs", "disk.qcow2", "half.kernel"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	base := filepath.Join(dir, "deploy")
	for arg, want := range map[string]string{
		base:                             base,
		base + ".kernel":                 base,
		base + ".initramfs":              base,
		filepath.Join(dir, "disk.qcow2"): "", // a disk image
		filepath.Join(dir, "half"):       "", // no half.initramfs
		filepath.Join(dir, "none"):       "",
	} {
		if got := ramdiskPair(arg); got != want {
			t.Errorf("ramdiskPair(%s) = %q, want %q", arg, got, want)
		}
	}

	// NAME: the pair, and guest memory sized from the initramfs unless
	// --memory says otherwise.
	o, _, err := execute(t, base)
	if err != nil {
		t.Fatal(err)
	}
	if o.Image != base || o.Memory != 0 {
		t.Errorf("NAME: image %q memory %d; want NAME kept for Run and memory 0 (from the initramfs)", o.Image, o.Memory)
	}
	o, _, err = execute(t, "--kernel", "k", "--initramfs", "i", "--append", "ipa-debug=1", "--ready", "login", "--memory", "3000")
	if err != nil {
		t.Fatal(err)
	}
	if o.Image != "" || o.Kernel != "k" || o.Initramfs != "i" || o.Append != "ipa-debug=1" || o.Ready != "login" || o.Memory != 3000 {
		t.Errorf("flags: %+v", o)
	}
	// Run's usage errors, before anything starts.
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Image: filepath.Join(dir, "disk.qcow2"), Kernel: base + ".kernel", Initramfs: base + ".initramfs"}, "not both"},
		{Options{Kernel: base + ".kernel"}, "needs both --kernel and --initramfs"},
		{Options{}, "no IMAGE given"},
	} {
		var stderr strings.Builder
		o := NewOptions()
		o.Image, o.Kernel, o.Initramfs = c.opts.Image, c.opts.Kernel, c.opts.Initramfs
		o.Out, o.ErrOut = &strings.Builder{}, &stderr
		err := Run(t.Context(), o)
		if ee, ok := err.(*ExitError); !ok || ee.Code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%+v: %v, stderr %q; want exit 2 saying %q", c.opts, err, stderr.String(), c.want)
		}
	}
}
