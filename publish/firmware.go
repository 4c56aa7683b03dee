package publish

// FirmwareFacts are what a build knows about how its image boots (from
// its assembled disk: the boot loaders installed, whether the UEFI chain
// is the distribution's signed one, the architecture).
type FirmwareFacts struct {
	BIOS, UEFI bool
	// SecureBoot: the ESP boots through the signed shim and GRUB.
	SecureBoot bool
	// Arch is builder's name: amd64 (or ""), arm64, ...
	Arch string
}

// glanceArch maps builder's architecture names to Glance's (libosinfo's,
// what Nova's ImagePropertiesFilter compares with the host).
var glanceArch = map[string]string{"arm64": "aarch64", "i386": "i686", "ppc64el": "ppc64le"}

// FirmwareProperties are the Glance properties that make a cloud boot the
// image as it was built: hw_firmware_type=uefi for an image that cannot
// boot with BIOS, and for a Secure Boot image os_secure_boot=required with
// UEFI on a q35 machine (Nova's libvirt driver boots Secure Boot only
// there); architecture for images not built for amd64.
func FirmwareProperties(f FirmwareFacts) map[string]string {
	m := map[string]string{}
	if f.UEFI && (!f.BIOS || f.SecureBoot) {
		m["hw_firmware_type"] = "uefi"
	}
	if f.SecureBoot && f.UEFI {
		m["os_secure_boot"] = "required"
		if f.Arch == "" || f.Arch == "amd64" {
			m["hw_machine_type"] = "q35"
		}
	}
	if a, ok := glanceArch[f.Arch]; ok {
		m["architecture"] = a
	}
	return m
}
