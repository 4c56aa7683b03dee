package imagebuild

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"builder/internal/binfmt"
)

// archAliases are the names -a (ARCH) accepts, DIB's included, and the
// Debian architecture each means: hooks get that name as ARCH, the mirror
// and the kernel package use it, and it is part of every step's key.
var archAliases = map[string]string{
	"amd64": "amd64", "x86_64": "amd64",
	"arm64": "arm64", "aarch64": "arm64",
	"i386": "i386", "i686": "i386", "x86": "i386",
	"ppc64el": "ppc64el", "ppc64le": "ppc64el",
}

// resolveArch turns an -a value into builder's (Debian's) name.
func resolveArch(v string) (string, error) {
	if a, ok := archAliases[strings.ToLower(strings.TrimSpace(v))]; ok {
		return a, nil
	}
	return "", fmt.Errorf("architecture %q is not one builder knows: use amd64 (x86_64) or arm64 (aarch64); i386 and ppc64el are recognised but not built", v)
}

// checkArch says plainly what builder does not build.
func checkArch(arch string) error {
	switch arch {
	case "amd64", "arm64":
		return nil
	case "i386":
		return fmt.Errorf("architecture i386 is recognised but not built: builder assembles GRUB and boot-tests for amd64 and arm64 only (32-bit x86 would need i386-pc/i386-efi GRUB and a 686 kernel); build -a amd64")
	case "ppc64el":
		return fmt.Errorf("architecture ppc64el is recognised but not built: Power machines boot from a PReP partition with GRUB for powerpc-ieee1275, which builder does not write, and builder cannot boot-test them; use diskimage-builder for Power images")
	}
	return fmt.Errorf("architecture %q is not supported: use -a amd64 or -a arm64", arch)
}

// ensureEmulation makes sure the kernel runs the image's programs: natively,
// or through QEMU user-mode emulation registered in binfmt_misc. A build
// in a user namespace (rootless, or in an unprivileged container)
// registers the packaged qemu-user-static definition in a binfmt_misc of
// its own, where the kernel allows it, and uses the host's entry
// otherwise; as root builder registers it on the host when none is. It
// returns a note for the build's warnings.
func ensureEmulation(arch string) (string, error) {
	if binfmt.Native(arch) {
		return "", nil
	}
	const slow = "builds are several times slower than native"
	if !binfmt.InitialUserNamespace() {
		st, ownErr := binfmt.RegisterOwn(arch)
		if ownErr == nil {
			// In a container ($container, which podman sets) buildah
			// registers every binfmt.d definition itself when a step's
			// image is another architecture's, mounting binfmt_misc where
			// this one already is: that would only warn that the mount
			// is busy. $container means nothing else to the build.
			os.Unsetenv("container")
			return fmt.Sprintf("%s programs run under emulation: builder registered %s (interpreter %s) in the build's own user namespace; %s", arch, st.Entry, st.Interpreter, slow), nil
		}
		st, err := binfmt.Lookup(arch)
		if err != nil {
			return "", fmt.Errorf("%s image on this %s host: registering an interpreter in the build's user namespace failed (%v), and the host has none: %v; fix: %s", arch, runtime.GOARCH, ownErr, err, binfmt.Fix(arch))
		}
		return fmt.Sprintf("%s programs run under emulation (the host's %s, interpreter %s; the build's own user namespace could not register one: %v); %s", arch, st.Entry, st.Interpreter, ownErr, slow), nil
	}
	st, err := binfmt.Lookup(arch)
	if err == nil {
		return fmt.Sprintf("%s programs run under emulation (%s, interpreter %s): %s", arch, st.Entry, st.Interpreter, slow), nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%s image on this %s host: %v; fix: %s", arch, runtime.GOARCH, err, binfmt.Fix(arch))
	}
	st, rerr := binfmt.Register(arch)
	if rerr != nil {
		return "", fmt.Errorf("%s image on this %s host: %v, and registering it failed: %v; fix: %s", arch, runtime.GOARCH, err, rerr, binfmt.Fix(arch))
	}
	return fmt.Sprintf("%s programs run under emulation: builder registered %s (interpreter %s) in %s", arch, st.Entry, st.Interpreter, binfmt.Dir), nil
}
