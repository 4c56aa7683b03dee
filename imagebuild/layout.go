package imagebuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"builder/assemble"
	"builder/elements"
)

// loadLayout picks the disk layout as DIB does: DIB_BLOCK_DEVICE_CONFIG
// (inline YAML or file://PATH), else the block-device element's
// block-device-<ARCH>.yaml or block-device-default.yaml, else builder's
// default (block-device-efi's). The image-wide root options are merged
// into mkfs_root.
func loadLayout(req Request, res *elements.Resolution, env map[string]string, vm bool) (*assemble.Layout, error) {
	var layout *assemble.Layout
	var err error
	switch file := elementLayoutFile(res, req.Arch); {
	case env["DIB_BLOCK_DEVICE_CONFIG"] != "":
		layout, err = assemble.LoadBlockDeviceConfig(env["DIB_BLOCK_DEVICE_CONFIG"])
	case file != "":
		layout, err = assemble.ReadBlockDeviceConfig(file)
	case vm:
		layout = assemble.DefaultLayout()
	default:
		// DIB's fallback without vm: one filesystem, no partition table.
		layout, err = assemble.ParseBlockDeviceConfigFrom("bare filesystem (no vm element)", []byte(bareConfig))
	}
	if err != nil {
		return nil, err
	}
	var opts []string
	if req.MkfsOptions != "" {
		opts = strings.Fields(req.MkfsOptions)
	}
	if err := layout.MergeRoot(env["FS_TYPE"], req.RootLabel, opts); err != nil {
		return nil, err
	}
	if layout.Root() == nil {
		return nil, fmt.Errorf("%s: no filesystem is mounted at /: the layout needs a root filesystem", layout.Source)
	}
	return layout, nil
}

// bareConfig is DIB's block-device fallback: the whole image is the root
// filesystem.
const bareConfig = `- local_loop:
    name: image0
    mkfs:
      name: mkfs_root
      mount:
        mount_point: /
        fstab:
          options: defaults
          fsck-passno: 1
`

// elementLayoutFile finds the layout an element ships: the provider of
// block-device first, then any other element (in name order).
func elementLayoutFile(res *elements.Resolution, arch string) string {
	names := []string{"block-device-" + arch + ".yaml", "block-device-default.yaml"}
	if arch == "ppc64le" || arch == "ppc64el" {
		names[0] = "block-device-ppc64el.yaml"
	}
	var order []*elements.Element
	if p, ok := res.ProvidedBy["block-device"]; ok {
		for _, e := range res.Elements {
			if e.Name == p {
				order = append(order, e)
			}
		}
	}
	order = append(order, res.Elements...)
	for _, e := range order {
		for _, n := range names {
			f := filepath.Join(e.Dir, n)
			if _, err := os.Stat(f); err == nil {
				return f
			}
		}
	}
	return ""
}
