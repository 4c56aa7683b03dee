package assemble

import (
	"io/fs"

	"builder/elements"
)

// defaultLayoutFile is block-device-efi's layout in the element library.
const defaultLayoutFile = "block-device-efi/block-device-default.yaml"

// DefaultLayout is block-device-efi's layout, DIB's default for vm
// images: GPT with an ESP (550 MiB, vfat at /boot/efi), a BIOS boot
// partition (8 MiB) and the root filesystem (ext4) filling the rest. It
// is read from the element's own block-device-default.yaml in the
// embedded library, so the element is the one place that says what the
// default disk is.
func DefaultLayout() *Layout {
	data, err := fs.ReadFile(elements.Builtin(), defaultLayoutFile)
	if err != nil {
		panic("assemble: the built-in element library lacks " + defaultLayoutFile + ": " + err.Error())
	}
	l, err := ParseBlockDeviceConfigFrom("block-device-efi", data)
	if err != nil {
		panic("assemble: built-in block-device-efi layout: " + err.Error())
	}
	return l
}
