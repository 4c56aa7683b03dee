package boottest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// ImageInfo is the part of `qemu-img info --output=json` the test uses.
type ImageInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	ActualSize      int64  `json:"actual-size"`
	BackingFilename string `json:"backing-filename"`
	FormatSpecific  struct {
		Data struct {
			Corrupt bool `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// InspectImage runs `qemu-img info --output=json`: the format comes from
// the file's contents, never from its name (a raw file called x.qcow2 must
// not be booted as qcow2, and the reverse would expose the host to a
// backing-file reference hidden in a "raw" image).
func InspectImage(ctx context.Context, qemuImg, path string) (ImageInfo, error) {
	cmd := exec.CommandContext(ctx, qemuImg, "info", "--output=json", path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if strings.Contains(msg, "lock") {
			msg += " (another process has the image open for writing; wait until it is done)"
		}
		return ImageInfo{}, fmt.Errorf("qemu-img info %s: %w: %s", path, err, msg)
	}
	var info ImageInfo
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		return ImageInfo{}, fmt.Errorf("parsing qemu-img info for %s: %w", path, err)
	}
	if info.Format == "" || info.VirtualSize <= 0 {
		return ImageInfo{}, fmt.Errorf("qemu-img info for %s gave no format or size", path)
	}
	return info, nil
}

// overlaySize is the guest disk size: the image plus grow, rounded up to
// whole 512-byte sectors as qcow2 requires.
func overlaySize(virtual, grow int64) int64 {
	return (virtual + grow + 511) &^ 511
}

// CreateOverlay makes a qcow2 file at overlay that is backed by image (read
// only) and has the given virtual size. The guest writes go to the overlay,
// so the image itself is never modified.
func CreateOverlay(ctx context.Context, qemuImg, image, format, overlay string, size int64) error {
	cmd := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2",
		"-F", format, "-b", image, overlay, strconv.FormatInt(size, 10))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("qemu-img create overlay on %s: %w: %s", image, err, strings.TrimSpace(out.String()))
	}
	return nil
}
