// Package hosttools finds the programs builder runs on the host, and says
// which Debian package to install when one is missing.
package hosttools

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Packages names the Debian package that ships each host tool builder
// runs, so a missing tool's error says what to install.
var Packages = map[string]string{
	"mkfs.ext4":          "e2fsprogs",
	"debugfs":            "e2fsprogs",
	"mkfs.vfat":          "dosfstools",
	"mmd":                "mtools",
	"mcopy":              "mtools",
	"grub-mkimage":       "grub-common",
	"qemu-img":           "qemu-utils",
	"qemu-system-x86_64": "qemu-system-x86",
	"mkfs.xfs":           "xfsprogs",
	"losetup":            "mount",
	"unshare":            "util-linux",
	"blkid":              "util-linux",
	"lvm":                "lvm2",
	"mmdebstrap":         "mmdebstrap",
	"openssl":            "openssl",
	"tar":                "tar",
	"mksquashfs":         "squashfs-tools",
	"git":                "git",
	"curl":               "curl",
}

// Look finds a host tool in PATH, then in the sbin directories a non-root
// PATH often lacks (mkfs.* and debugfs live there). The error names the
// package to install.
func Look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if pkg := Packages[name]; pkg != "" {
		return "", &MissingError{Tool: name, Package: pkg}
	}
	return "", &MissingError{Tool: name}
}

// MissingError is a tool that is not installed.
type MissingError struct {
	Tool, Package string
}

func (e *MissingError) Error() string {
	if e.Package == "" {
		return fmt.Sprintf("%s not found in PATH", e.Tool)
	}
	return fmt.Sprintf("%s not found in PATH: install the %s package", e.Tool, e.Package)
}

func (e *MissingError) Unwrap() error { return exec.ErrNotFound }
