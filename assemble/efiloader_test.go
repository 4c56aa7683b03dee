package assemble

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree makes a tree whose /usr/bin/env is an ELF header for machine
// and with the given files.
func fakeTree(t *testing.T, machine uint16, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	hdr[18], hdr[19] = byte(machine), byte(machine>>8)
	files["usr/bin/env"] = string(hdr)
	for p, data := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFindEFILoader(t *testing.T) {
	shim, grub := "usr/lib/shim/shimx64.efi.signed", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
	// amd64 without the signed packages: GRUB from the host.
	root := fakeTree(t, elfX8664, map[string]string{shim: "SHIM"})
	if TreeMachine(root) != elfX8664 {
		t.Fatalf("machine %d", TreeMachine(root))
	}
	if l, err := findEFILoader(root); l != nil || err != nil {
		t.Errorf("shim without signed GRUB: %+v %v, want the host's GRUB", l, err)
	}
	// Both: shim as BOOTX64.EFI, GRUB beside it, grub.cfg where the
	// signed GRUB's prefix (read from it) points.
	root = fakeTree(t, elfX8664, map[string]string{shim: "SHIM", grub: "GRUB...\x00/EFI/ubuntu\x00..."})
	l, err := findEFILoader(root)
	if err != nil || l == nil || !l.SecureBoot || l.Vendor != "ubuntu" || l.Arch != "x64" {
		t.Fatalf("signed chain: %+v %v", l, err)
	}
	files, err := l.efiFiles(root, "search.fs_uuid U root\nset prefix=($root)/boot/grub\n")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range files {
		got[f.Path] = string(f.Data)
	}
	if got["/EFI/BOOT/BOOTX64.EFI"] != "SHIM" || !strings.HasPrefix(got["/EFI/BOOT/grubx64.efi"], "GRUB") ||
		!strings.HasSuffix(got["/EFI/ubuntu/grub.cfg"], "configfile $prefix/grub.cfg\n") || got["/EFI/BOOT/grub.cfg"] != got["/EFI/ubuntu/grub.cfg"] {
		t.Errorf("ESP files: %v", got)
	}
	// arm64: the image's GRUB is required, and boots alone without shim.
	if _, err := findEFILoader(fakeTree(t, elfAArch64, map[string]string{})); err == nil || !strings.Contains(err.Error(), "grub-efi-arm64-signed") {
		t.Errorf("arm64 without GRUB: %v", err)
	}
	root = fakeTree(t, elfAArch64, map[string]string{"usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed": "G\x00/EFI/debian\x00"})
	l, err = findEFILoader(root)
	if err != nil || l == nil || l.SecureBoot || l.Arch != "aa64" {
		t.Fatalf("arm64: %+v %v", l, err)
	}
	files, _ = l.efiFiles(root, "")
	if files[0].Path != "/EFI/BOOT/BOOTAA64.EFI" || files[1].Path != "/EFI/debian/grub.cfg" {
		t.Errorf("arm64 ESP files: %+v", files)
	}
}
