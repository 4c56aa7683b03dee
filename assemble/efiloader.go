package assemble

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// EFILoader is the UEFI boot chain taken from the image's own packages
// instead of a GRUB made from the host's: the distribution's signed shim
// and signed GRUB (Secure Boot), or on arm64 the image's GRUB alone.
type EFILoader struct {
	// Arch is the tree's architecture as UEFI names it: "x64" or "aa64".
	Arch string
	// Shim and Grub are paths in the tree ("" for no shim).
	Shim, Grub string
	// Vendor is the ESP directory the signed GRUB's prefix names
	// (/EFI/<Vendor>): it reads grub.cfg from there.
	Vendor string
	// SecureBoot is true when the chain is signed end to end (shim and
	// signed GRUB): firmware with Secure Boot on boots it.
	SecureBoot bool
}

// Debian's and Ubuntu's signed boot files (packages shim-signed and
// grub-efi-<arch>-signed).
var efiLoaderFiles = map[string]struct{ shim, grub, grubPkg string }{
	"x64":  {"usr/lib/shim/shimx64.efi.signed", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grub-efi-amd64-signed"},
	"aa64": {"usr/lib/shim/shimaa64.efi.signed", "usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed", "grub-efi-arm64-signed"},
}

// ELF machine numbers (e_machine) of the architectures builder knows.
const (
	elfX8664   = 62
	elfAArch64 = 183
)

// TreeMachine returns the ELF machine of the tree's programs (read from
// /usr/bin/env, which every distribution has), or 0 when it cannot tell.
func TreeMachine(root string) uint16 {
	for _, p := range []string{"usr/bin/env", "bin/env"} {
		f, err := os.Open(filepath.Join(root, p))
		if err != nil {
			continue
		}
		var h [20]byte
		_, err = io.ReadFull(f, h[:])
		f.Close()
		if err != nil || !bytes.Equal(h[:4], []byte("\x7fELF")) {
			continue
		}
		if h[5] == 2 {
			return binary.BigEndian.Uint16(h[18:])
		}
		return binary.LittleEndian.Uint16(h[18:])
	}
	return 0
}

var vendorPrefixRE = regexp.MustCompile(`/EFI/([A-Za-z0-9_.-]+)\x00`)

// findEFILoader picks the image's own UEFI boot chain: on arm64 always
// (the host's GRUB is for x86), on x86_64 when the image has both the
// signed shim and the signed GRUB. nil means GRUB from the host.
func findEFILoader(root string) (*EFILoader, error) {
	arch := "x64"
	if TreeMachine(root) == elfAArch64 {
		arch = "aa64"
	}
	files := efiLoaderFiles[arch]
	has := func(p string) bool {
		st, err := os.Stat(filepath.Join(root, p))
		return err == nil && st.Mode().IsRegular()
	}
	l := &EFILoader{Arch: arch}
	if has(files.grub) {
		l.Grub = "/" + files.grub
	}
	if has(files.shim) {
		l.Shim = "/" + files.shim
	}
	switch {
	case arch == "aa64" && l.Grub == "":
		return nil, fmt.Errorf("an arm64 image boots with its own GRUB, and %s has no /%s: install %s in the image (the bootloader element does for UEFI layouts)", root, files.grub, files.grubPkg)
	case arch == "x64" && (l.Grub == "" || l.Shim == ""):
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(root, l.Grub))
	if err != nil {
		return nil, err
	}
	// grub-mkimage -p /EFI/<vendor> stores the prefix as a NUL-terminated
	// string; Debian's is /EFI/debian.
	l.Vendor = "debian"
	if m := vendorPrefixRE.FindSubmatch(data); m != nil {
		l.Vendor = string(m[1])
	}
	l.SecureBoot = l.Shim != ""
	return l, nil
}

// efiFiles are the ESP's boot files for the loader: the removable-media
// path EFI/BOOT/BOOT<ARCH>.EFI (shim, else GRUB), GRUB beside shim, and
// the grub.cfg that takes the signed GRUB (which embeds no search for our
// filesystems) to /boot/grub/grub.cfg, both where its prefix points and
// beside it ($cmdpath, its fallback).
func (l *EFILoader) efiFiles(root, earlyConfig string) ([]File, error) {
	read := func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(root, p)) }
	grub, err := read(l.Grub)
	if err != nil {
		return nil, err
	}
	boot := "/EFI/BOOT/BOOT" + upper(l.Arch) + ".EFI"
	var out []File
	if l.Shim != "" {
		shim, err := read(l.Shim)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Path: boot, Data: shim}, File{Path: "/EFI/BOOT/grub" + l.Arch + ".efi", Data: grub})
	} else {
		out = append(out, File{Path: boot, Data: grub})
	}
	cfg := []byte(earlyConfig + "configfile $prefix/grub.cfg\n")
	out = append(out, File{Path: "/EFI/" + l.Vendor + "/grub.cfg", Data: cfg}, File{Path: "/EFI/BOOT/grub.cfg", Data: cfg})
	return out, nil
}

func upper(s string) string { return string(bytes.ToUpper([]byte(s))) }
