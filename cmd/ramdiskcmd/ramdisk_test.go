package ramdiskcmd

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"builder/cmd/imagecmd"
)

func execute(t *testing.T, args ...string) *imagecmd.Options {
	t.Helper()
	var got *imagecmd.Options
	cmd := NewCmdRamdisk(func(_ context.Context, o *imagecmd.Options) error {
		got = o
		return nil
	})
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	return got
}

// builder ramdisk is ramdisk-image-create: the ramdisk element first, the
// image options unchanged.
func TestRamdiskRequest(t *testing.T) {
	o := execute(t, "-o", "deploy", "-x", "debian-minimal", "dhcp-all-interfaces")
	if !o.Ramdisk || o.Values["output"] != "deploy" || o.Values["trace"] != "1" {
		t.Fatalf("options %+v", o)
	}
	o.Environ = []string{"DIB_RAMDISK_COMPRESS=zstd", "HOME=/root"}
	req, err := o.Request()
	if err != nil {
		t.Fatal(err)
	}
	if req.RamdiskElement != "ramdisk" || req.Output != "deploy" || req.Trace != 1 {
		t.Fatalf("request %+v", req)
	}
	if got := strings.Join(req.Elements, " "); got != "ramdisk debian-minimal dhcp-all-interfaces" {
		t.Errorf("elements %q", got)
	}
	if req.Env["DIB_RAMDISK_COMPRESS"] != "zstd" {
		t.Errorf("DIB_RAMDISK_COMPRESS lost: %v", req.Env)
	}

	o = execute(t, "--ramdisk-element", "dracut-ramdisk", "centos")
	req, err = o.Request()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(req.Elements, " "); got != "dracut-ramdisk centos" {
		t.Errorf("elements %q", got)
	}

	o = execute(t, "--ramdisk-element", "", "centos")
	if _, err := o.Request(); err == nil || !strings.Contains(err.Error(), "--ramdisk-element") {
		t.Errorf("empty --ramdisk-element: %v", err)
	}
}

// builder image accepts --ramdisk-element, as disk-image-create does, and
// adds nothing.
func TestImageAcceptsRamdiskElement(t *testing.T) {
	var got *imagecmd.Options
	cmd := imagecmd.NewCmdImage(func(_ context.Context, o *imagecmd.Options) error {
		got = o
		return nil
	})
	cmd.SetArgs([]string{"--ramdisk-element", "dracut-ramdisk", "debian", "vm"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	req, err := got.Request()
	if err != nil {
		t.Fatal(err)
	}
	if got.Ramdisk || strings.Join(req.Elements, " ") != "debian vm" {
		t.Errorf("builder image with --ramdisk-element: ramdisk %v, elements %v", got.Ramdisk, req.Elements)
	}
}
