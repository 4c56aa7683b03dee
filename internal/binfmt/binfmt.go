// Package binfmt finds, and as root registers, the QEMU user-mode
// interpreter the kernel runs foreign programs with (binfmt_misc), so that
// an arm64 image's programs run on an amd64 build host: mmdebstrap's
// second stage and every hook inside the image.
package binfmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where binfmt_misc is mounted.
const Dir = "/proc/sys/fs/binfmt_misc"

// qemuNames maps Debian architectures to QEMU's (and binfmt entries')
// names.
var qemuNames = map[string]string{"arm64": "aarch64", "i386": "i386", "ppc64el": "ppc64le", "amd64": "x86_64"}

// confDirs hold systemd-binfmt's definitions (Debian's qemu-user-static
// ships qemu-<name>.conf there).
var confDirs = []string{"/etc/binfmt.d", "/run/binfmt.d", "/usr/lib/binfmt.d", "/lib/binfmt.d"}

// Native reports whether the host runs arch's programs itself.
func Native(arch string) bool {
	host := runtime.GOARCH
	return arch == host || (host == "amd64" && arch == "i386")
}

// Status is how the kernel runs arch's programs.
type Status struct {
	Arch   string
	Native bool
	// Entry is the binfmt_misc entry (qemu-aarch64) and Interpreter its
	// interpreter when registered and enabled; Fixed is its F flag (the
	// interpreter is opened at registration, so it works inside the
	// image's root, where the host's file is not).
	Entry, Interpreter string
	Fixed              bool
}

// Lookup reads binfmt_misc for arch's interpreter.
func Lookup(arch string) (Status, error) {
	st := Status{Arch: arch, Native: Native(arch)}
	if st.Native {
		return st, nil
	}
	q, ok := qemuNames[arch]
	if !ok {
		return st, fmt.Errorf("no QEMU user-mode emulator is known for architecture %q", arch)
	}
	st.Entry = "qemu-" + q
	data, err := os.ReadFile(filepath.Join(Dir, st.Entry))
	if err != nil {
		if _, merr := os.Stat(filepath.Join(Dir, "register")); merr != nil {
			return st, fmt.Errorf("binfmt_misc is not mounted at %s, so %s programs cannot run on this %s host", Dir, arch, runtime.GOARCH)
		}
		return st, fmt.Errorf("no interpreter for %s programs is registered in %s (no %s entry)", arch, Dir, st.Entry)
	}
	enabled := false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case l == "enabled":
			enabled = true
		case strings.HasPrefix(l, "interpreter "):
			st.Interpreter = strings.TrimPrefix(l, "interpreter ")
		case strings.HasPrefix(l, "flags: "):
			st.Fixed = strings.Contains(strings.TrimPrefix(l, "flags: "), "F")
		}
	}
	if !enabled {
		return st, fmt.Errorf("the %s entry in %s is disabled", st.Entry, Dir)
	}
	if !st.Fixed {
		return st, fmt.Errorf("the %s entry in %s lacks the F (fix-binary) flag: %s is not found inside the image's root", st.Entry, Dir, st.Interpreter)
	}
	return st, nil
}

// Fix says how to make arch's programs run, for error messages and
// builder doctor.
func Fix(arch string) string {
	q := qemuNames[arch]
	return fmt.Sprintf("apt-get install qemu-user-static, then as root: mount -t binfmt_misc binfmt_misc %s (if not mounted) and "+
		"cat /usr/lib/binfmt.d/qemu-%s.conf > %s/register (or systemctl restart systemd-binfmt); builder image does this itself when run as root", Dir, q, Dir)
}

// Register registers arch's interpreter from the installed
// qemu-<name>.conf, mounting binfmt_misc first when it is not. It needs
// root in the initial namespaces; the entry is the host's, as if
// systemd-binfmt had loaded it at boot.
func Register(arch string) (Status, error) {
	q, ok := qemuNames[arch]
	if !ok {
		return Status{Arch: arch}, fmt.Errorf("no QEMU user-mode emulator is known for architecture %q", arch)
	}
	var conf []byte
	var from string
	for _, d := range confDirs {
		p := filepath.Join(d, "qemu-"+q+".conf")
		if data, err := os.ReadFile(p); err == nil {
			conf, from = data, p
			break
		}
	}
	if conf == nil {
		return Status{Arch: arch}, fmt.Errorf("no qemu-%s.conf in %s: %s", q, strings.Join(confDirs, ", "), Fix(arch))
	}
	line := ""
	for _, l := range strings.Split(string(conf), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ";") {
			line = l
			break
		}
	}
	if _, err := os.Stat(filepath.Join(Dir, "register")); err != nil {
		if err := unix.Mount("binfmt_misc", Dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return Status{Arch: arch}, fmt.Errorf("mount binfmt_misc on %s: %w", Dir, err)
		}
	}
	entry := filepath.Join(Dir, "qemu-"+q)
	if _, err := os.Stat(entry); err == nil {
		// A disabled or flag-less entry of someone else's: replace it
		// with the packaged one.
		if err := os.WriteFile(entry, []byte("-1"), 0); err != nil {
			return Status{Arch: arch}, fmt.Errorf("remove the old %s entry: %w", entry, err)
		}
	}
	if err := os.WriteFile(filepath.Join(Dir, "register"), []byte(line), 0); err != nil {
		return Status{Arch: arch}, fmt.Errorf("register %s (from %s): %w", entry, from, err)
	}
	st, err := Lookup(arch)
	if err != nil {
		return st, errors.Join(fmt.Errorf("registered from %s but", from), err)
	}
	return st, nil
}
