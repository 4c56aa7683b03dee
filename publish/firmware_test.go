package publish

import (
	"reflect"
	"testing"
)

func TestFirmwareProperties(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    FirmwareFacts
		want map[string]string
	}{
		{"bios and uefi, unsigned: any firmware boots it", FirmwareFacts{BIOS: true, UEFI: true}, map[string]string{}},
		{"bios only", FirmwareFacts{BIOS: true}, map[string]string{}},
		{"uefi only", FirmwareFacts{UEFI: true}, map[string]string{"hw_firmware_type": "uefi"}},
		{"secure boot (BIOS too)", FirmwareFacts{BIOS: true, UEFI: true, SecureBoot: true, Arch: "amd64"},
			map[string]string{"hw_firmware_type": "uefi", "os_secure_boot": "required", "hw_machine_type": "q35"}},
		{"arm64", FirmwareFacts{UEFI: true, Arch: "arm64"}, map[string]string{"hw_firmware_type": "uefi", "architecture": "aarch64"}},
		{"secure boot claimed without UEFI is ignored", FirmwareFacts{BIOS: true, SecureBoot: true}, map[string]string{}},
	} {
		if got := FirmwareProperties(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
