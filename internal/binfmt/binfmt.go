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
	return fmt.Sprintf("apt-get install qemu-user-static: builder image then registers it itself, as root on the host and rootless in the build's own user namespace (Linux 6.7 or later); "+
		"on older kernels register it on the host as root: mount -t binfmt_misc binfmt_misc %s (if not mounted) and "+
		"cat /usr/lib/binfmt.d/qemu-%s.conf > %s/register (or systemctl restart systemd-binfmt)", Dir, q, Dir)
}

// packaged reads qemu-<name>.conf, the packaged definition of arch's
// interpreter: its register line and where it was found.
func packaged(arch string) (line, from string, err error) {
	q, ok := qemuNames[arch]
	if !ok {
		return "", "", fmt.Errorf("no QEMU user-mode emulator is known for architecture %q", arch)
	}
	for _, d := range confDirs {
		p := filepath.Join(d, "qemu-"+q+".conf")
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ";") {
				return l, p, nil
			}
		}
		return "", "", fmt.Errorf("%s holds no definition: %s", p, Fix(arch))
	}
	return "", "", fmt.Errorf("no qemu-%s.conf in %s: %s", q, strings.Join(confDirs, ", "), Fix(arch))
}

// interpreterOf is the interpreter field of a register line
// (:name:type:offset:magic:mask:interpreter:flags).
func interpreterOf(line string) string {
	if len(line) < 2 {
		return ""
	}
	f := strings.Split(line[1:], line[:1])
	if len(f) < 6 {
		return ""
	}
	return f[5]
}

// PackagedInterpreter is the interpreter qemu-user-static's definition of
// arch names, checked to be present: the F flag opens it at registration,
// from the registering mount namespace (the image's root need not have it).
func PackagedInterpreter(arch string) (string, error) {
	line, from, err := packaged(arch)
	if err != nil {
		return "", err
	}
	ip := interpreterOf(line)
	if ip == "" {
		return "", fmt.Errorf("%s: no interpreter in %q", from, line)
	}
	if _, err := os.Stat(ip); err != nil {
		return "", fmt.Errorf("%s names the interpreter %s: %w; fix: apt-get install qemu-user-static", from, ip, err)
	}
	return ip, nil
}

// register writes line to the binfmt_misc instance mounted at Dir,
// replacing an entry of the same name that is disabled or lacks the F
// flag. A working entry is kept: replacing it would fail the programs
// another build of this process starts meanwhile.
func register(arch, line, from string) (Status, error) {
	if st, err := Lookup(arch); err == nil {
		return st, nil
	}
	entry := filepath.Join(Dir, "qemu-"+qemuNames[arch])
	if _, err := os.Stat(entry); err == nil {
		// A disabled or flag-less entry of someone else's: replace it
		// with the packaged one.
		if err := os.WriteFile(entry, []byte("-1"), 0); err != nil {
			return Status{Arch: arch}, fmt.Errorf("remove the old %s entry: %w", entry, err)
		}
	}
	if err := os.WriteFile(filepath.Join(Dir, "register"), []byte(line), 0); err != nil {
		// Another build of this process may have registered it first.
		if st, lerr := Lookup(arch); lerr == nil {
			return st, nil
		}
		return Status{Arch: arch}, fmt.Errorf("register %s (from %s): %w", entry, from, err)
	}
	st, err := Lookup(arch)
	if err != nil {
		return st, errors.Join(fmt.Errorf("registered from %s but", from), err)
	}
	return st, nil
}

// Register registers arch's interpreter from the installed
// qemu-<name>.conf, mounting binfmt_misc first when it is not. It needs
// root in the initial namespaces; the entry is the host's, as if
// systemd-binfmt had loaded it at boot.
func Register(arch string) (Status, error) {
	line, from, err := packaged(arch)
	if err != nil {
		return Status{Arch: arch}, err
	}
	if _, err := os.Stat(filepath.Join(Dir, "register")); err != nil {
		if err := unix.Mount("binfmt_misc", Dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return Status{Arch: arch}, fmt.Errorf("mount binfmt_misc on %s: %w", Dir, err)
		}
	}
	return register(arch, line, from)
}

// InitialUserNamespace reports whether this process runs in the host's
// user namespace (all ids mapped to themselves), where binfmt_misc is the
// host's.
func InitialUserNamespace() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	f := strings.Fields(string(data))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// RegisterOwn registers arch's packaged interpreter in a binfmt_misc of
// this process's own user namespace, mounted over Dir in its own mount
// namespace (a rootless build after its re-exec, or builder in an
// unprivileged container). Linux 6.7 and later allow it. The host's
// registrations are neither needed nor touched, and the entry goes away
// with the namespace. Its programs and their children (the build's
// containers, in nested user namespaces) use it; from then on the host's
// entries are not seen by this process, which is why everything that can
// fail is checked before the mount.
func RegisterOwn(arch string) (Status, error) {
	if InitialUserNamespace() {
		return Status{Arch: arch}, fmt.Errorf("not in a user namespace of its own: the binfmt_misc at %s is the host's", Dir)
	}
	line, from, err := packaged(arch)
	if err != nil {
		return Status{Arch: arch}, err
	}
	if _, err := PackagedInterpreter(arch); err != nil {
		return Status{Arch: arch}, err
	}
	// The kernel keeps one instance per user namespace and refuses to
	// mount a filesystem on top of itself: EBUSY says Dir shows this
	// namespace's instance already (another build of this process).
	if err := unix.Mount("binfmt_misc", Dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return Status{Arch: arch}, fmt.Errorf("mount a binfmt_misc of this user namespace on %s (the kernel allows it from Linux 6.7): %w", Dir, err)
	}
	return register(arch, line, from)
}
