// Package ramdiskcmd is `builder ramdisk`: diskimage-builder's
// ramdisk-image-create. It is `builder image` with the same options and
// variables, plus the ramdisk element (--ramdisk-element, default ramdisk)
// added first; the build writes NAME.kernel and NAME.initramfs and no disk.
package ramdiskcmd

import (
	"context"

	"github.com/spf13/cobra"

	"builder/cmd/imagecmd"
)

// NewCmdRamdisk returns the command; run replaces Run in tests and gets the
// options with Ramdisk set.
func NewCmdRamdisk(run func(context.Context, *imagecmd.Options) error) *cobra.Command {
	cmd := imagecmd.NewCmdImage(func(ctx context.Context, o *imagecmd.Options) error {
		o.Ramdisk = true
		if run != nil {
			return run(ctx, o)
		}
		return Run(ctx, o)
	})
	cmd.Use = "ramdisk [options] ELEMENT..."
	cmd.Short = "Build a kernel and initramfs that boot from the network (diskimage-builder's ramdisk-image-create)"
	cmd.Long = `Build a deploy ramdisk from diskimage-builder elements: NAME.kernel and
NAME.initramfs (and NAME.d/ with the manifests), no disk.

  builder ramdisk debian-minimal -o deploy             # deploy.kernel, deploy.initramfs
  builder ramdisk --ramdisk-element dracut-ramdisk debian-minimal -o small
  builder boot-test deploy                             # boots the pair under QEMU

The options and variables are builder image's. The element named by
--ramdisk-element (default ramdisk: the whole root filesystem, booting
systemd from memory, as Ironic Python Agent ramdisks do) is added before the
others. The initramfs is gzip (DIB's format); DIB_RAMDISK_COMPRESS=zstd
makes a smaller one that unpacks faster, for kernels that support it.
Outputs other than tar, tgz, squashfs and docker are not written: a ramdisk
build makes no disk (no-final-image).`
	return cmd
}

// Run builds the ramdisk: the options are image's, with Ramdisk set.
func Run(ctx context.Context, o *imagecmd.Options) error {
	o.Ramdisk = true
	return imagecmd.Run(ctx, o)
}
