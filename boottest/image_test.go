package boottest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/testreq"
)

func needQEMUImg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		testreq.Missing(t, "qemu-img not installed (qemu-utils)")
	}
	return p
}

func TestOverlaySize(t *testing.T) {
	for _, tc := range []struct{ virtual, grow, want int64 }{
		{1754923008, 2 << 30, 1754923008 + 2<<30},
		{1 << 30, 0, 1 << 30},
		{1 << 30, 1000, 1<<30 + 1024}, // rounded up to whole sectors
	} {
		if got := overlaySize(tc.virtual, tc.grow); got != tc.want {
			t.Errorf("overlaySize(%d, %d) = %d, want %d", tc.virtual, tc.grow, got, tc.want)
		}
	}
}

// The overlay is backed by the image with the detected format, is bigger by
// grow, and leaves the image untouched. The format comes from the content:
// a raw file named .qcow2 is raw.
func TestCreateOverlay(t *testing.T) {
	qimg := needQEMUImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	img := filepath.Join(dir, "really-raw.qcow2")
	if out, err := exec.Command(qimg, "create", "-q", "-f", "raw", img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	before, _ := os.Stat(img)
	info, err := InspectImage(ctx, qimg, img)
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "raw" || info.VirtualSize != 64<<20 || info.BackingFilename != "" {
		t.Fatalf("info %+v", info)
	}
	ov := filepath.Join(dir, "overlay.qcow2")
	size := overlaySize(info.VirtualSize, 2<<30)
	if err := CreateOverlay(ctx, qimg, img, info.Format, ov, size); err != nil {
		t.Fatal(err)
	}
	oi, err := InspectImage(ctx, qimg, ov)
	if err != nil {
		t.Fatal(err)
	}
	if oi.Format != "qcow2" || oi.VirtualSize != 64<<20+2<<30 || oi.BackingFilename != img {
		t.Errorf("overlay %+v", oi)
	}
	out, _ := exec.Command(qimg, "info", "--output=json", ov).Output()
	if !strings.Contains(string(out), `"backing-filename-format": "raw"`) {
		t.Errorf("overlay backing format is not raw:\n%s", out)
	}
	after, _ := os.Stat(img)
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Error("creating the overlay changed the image")
	}
}

// An image with a backing file of its own is refused (with the reason and
// the fix) unless AllowBacking; a missing image is a usage error too. Both
// are decided before QEMU starts.
func TestRunRefusesBadImages(t *testing.T) {
	qimg := needQEMUImg(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testreq.Missing(t, "qemu-system-x86_64 not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	child := filepath.Join(dir, "child.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", base, "64M"},
		{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, child},
	} {
		if out, err := exec.Command(qimg, args...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	work := t.TempDir()
	rep, err := Run(ctx, Spec{Image: child, WorkDir: work, CacheDir: t.TempDir()})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "has a backing file") || !strings.Contains(err.Error(), "--allow-backing") {
		t.Fatalf("backing file: err = %v", err)
	}
	if rep == nil || rep.Passed || rep.Reason == "" {
		t.Errorf("report %+v", rep)
	}
	_, err = Run(ctx, Spec{Image: filepath.Join(dir, "missing.qcow2"), WorkDir: work})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "missing.qcow2 does not exist") {
		t.Errorf("missing image: err = %v", err)
	}
	_, err = Run(ctx, Spec{Image: base, Firmware: "coreboot", WorkDir: work})
	if !errors.As(err, &ue) {
		t.Errorf("unknown firmware: err = %v", err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work directory not empty: %v", ents)
	}
}
