package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"builder/assemble"
	"builder/internal/fsutil"
	"builder/internal/progress"
	"builder/rootfs"
)

// Host GRUB: the boot images are made from it at assembly, so its modules go
// into the image too (GRUB and the modules it loads must be one version).
var grubPlatforms = []struct{ host, inImage string }{
	{"/usr/lib/grub/i386-pc", "boot/grub/i386-pc"},
	{"/usr/lib/grub/x86_64-efi", "boot/grub/x86_64-efi"},
}

// kernelCmdline is DIB's bootloader contract: consoles, then
// DIB_BOOTLOADER_DEFAULT_CMDLINE.
func kernelCmdline(env map[string]string) string {
	// root=UUID= comes first, from assemble.GrubConfig.
	parts := []string{"ro"}
	if vt := env["DIB_BOOTLOADER_VIRTUAL_TERMINAL"]; vt != "" {
		parts = append(parts, "console="+vt)
	}
	if isTrue(env["DIB_BOOTLOADER_USE_SERIAL_CONSOLE"], true) {
		if sc := env["DIB_BOOTLOADER_SERIAL_CONSOLE"]; sc != "" {
			parts = append(parts, "console="+sc)
		}
	}
	if isTrue(env["DIB_NO_TIMER_CHECK"], true) {
		parts = append(parts, "no_timer_check")
	}
	if d := strings.TrimSpace(env["DIB_BOOTLOADER_DEFAULT_CMDLINE"]); d != "" {
		parts = append(parts, d)
	}
	return strings.Join(parts, " ")
}

func isTrue(v string, def bool) bool {
	if v == "" {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "y":
		return true
	}
	return false
}

func grubTimeout(env map[string]string) int {
	n, err := strconv.Atoi(env["DIB_GRUB_TIMEOUT"])
	if err != nil || n < 0 {
		return 5
	}
	return n
}

// hostGrubID identifies the host's GRUB build, part of the boot step's key.
func hostGrubID() (string, error) {
	h := sha256.New()
	for _, p := range grubPlatforms {
		for _, f := range []string{"kernel.img", "moddep.lst", "boot.img"} {
			data, err := os.ReadFile(filepath.Join(p.host, f))
			if err != nil {
				if os.IsNotExist(err) && f == "boot.img" {
					continue
				}
				return "", fmt.Errorf("GRUB is not installed on this host (%v): run hack/setup.sh or apt-get install grub-pc-bin grub-efi-amd64-bin", err)
			}
			h.Write(data)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bootStep writes what the disk's boot needs into the tree before the
// finalise phases see it, as DIB does: /etc/fstab, /boot/grub/grub.cfg and
// GRUB's modules. The layout gets its identifiers here, from the content
// key, so that fstab, grub.cfg and the disk agree.
func (p *plan) bootStep(req Request, rep *progress.Reporter, startKey string, prev []rootfs.Step) (rootfs.Step, error) {
	key := startKey
	for _, s := range prev {
		key = rootfs.StepKey(key, s)
	}
	p.layout.AssignIDs(key)
	fstab := p.layout.Fstab()
	if !p.vm {
		// A filesystem image without a bootloader: only fstab.
		id := sha256.Sum256([]byte(fstab))
		var t *progress.Task
		return rootfs.Step{
			Name: "fstab", Kind: rootfs.Tree, Identity: hex.EncodeToString(id[:]),
			Edit: func(ctx context.Context, root string) error {
				if err := dropDeviceNodes(root); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(root, "etc/fstab"), []byte(fstab), 0o644)
			},
			Begin: func() { t = rep.Phase("fstab", "") },
			End: func(cached bool, err error) {
				if err != nil {
					t.Fail(err)
				} else {
					t.Done(map[bool]string{true: "cached"}[cached])
				}
			},
		}, nil
	}
	// arm64 boots with the image's own GRUB (grub-efi-arm64-signed, see
	// assemble.EFILoader): no host GRUB and no host modules in the image.
	hostGrub := req.Arch != "arm64"
	grubID := "image GRUB " + req.Arch
	if hostGrub {
		var err error
		if grubID, err = hostGrubID(); err != nil {
			return rootfs.Step{}, err
		}
	}
	cmdline := kernelCmdline(p.env)
	root := p.layout.Root()
	spec := assemble.GrubConfigSpec{
		RootUUID:      root.UUID,
		KernelCmdline: cmdline,
		Timeout:       grubTimeout(p.env),
		Serial:        serialCommand(p.env),
		Title:         prettyName(p.env),
	}
	// With /boot on a filesystem of its own GRUB finds the kernel there,
	// through links builder keeps in /boot (see writeBootFiles).
	separateBoot := p.layout.FilesystemAt("/boot") != nil
	if boot := p.layout.BootFilesystem(); boot != nil && boot != root {
		spec.BootUUID = boot.UUID
	}
	grubCfg := assemble.GrubConfig(spec)
	id := sha256.Sum256([]byte(strings.Join([]string{grubID, grubCfg, fstab, fmt.Sprint(separateBoot)}, "\x00")))
	var t *progress.Task
	return rootfs.Step{
		Name:     "boot-config",
		Kind:     rootfs.Tree,
		Identity: hex.EncodeToString(id[:]),
		Edit: func(ctx context.Context, root string) error {
			return writeBootFiles(root, fstab, grubCfg, separateBoot, hostGrub)
		},
		Begin: func() { t = rep.Phase("boot-config", "fstab, grub.cfg, GRUB modules") },
		End: func(cached bool, err error) {
			switch {
			case cached:
				t.Done("cached")
			case err != nil:
				t.Fail(err)
			default:
				t.Done(cmdline)
			}
		},
	}, nil
}

func serialCommand(env map[string]string) string {
	if !isTrue(env["DIB_BOOTLOADER_USE_SERIAL_CONSOLE"], true) || env["DIB_BOOTLOADER_SERIAL_CONSOLE"] == "" {
		return ""
	}
	speed := "115200"
	if _, s, ok := strings.Cut(env["DIB_BOOTLOADER_SERIAL_CONSOLE"], ","); ok && s != "" {
		speed = s
	}
	return "serial --speed=" + speed + " --unit=0 --word=8 --parity=no --stop=1"
}

func prettyName(env map[string]string) string {
	d := env["DISTRO_NAME"]
	if d == "" {
		return "Linux"
	}
	return strings.ToUpper(d[:1]) + d[1:] + " " + env["DIB_RELEASE"]
}

func writeBootFiles(root, fstab, grubCfg string, separateBoot, hostGrub bool) error {
	if err := dropDeviceNodes(root); err != nil {
		return err
	}
	if separateBoot {
		if err := bootLinks(root); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/fstab"), []byte(fstab), 0o644); err != nil {
		return fmt.Errorf("write /etc/fstab: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "boot/efi"), 0o755); err != nil {
		return err
	}
	grubDir := filepath.Join(root, "boot/grub")
	if err := os.MkdirAll(grubDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(grubDir, "grub.cfg"), []byte(grubCfg), 0o644); err != nil {
		return fmt.Errorf("write /boot/grub/grub.cfg: %w", err)
	}
	for _, p := range grubPlatforms {
		if !hostGrub {
			break
		}
		dst := filepath.Join(root, p.inImage)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		ents, err := os.ReadDir(p.host)
		if err != nil {
			return err
		}
		for _, e := range ents {
			n := e.Name()
			if e.IsDir() || !(strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst")) {
				continue
			}
			if err := fsutil.CopyFile(filepath.Join(p.host, n), filepath.Join(dst, n), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropDeviceNodes removes the device nodes a bootstrap leaves in /dev. The
// booted system mounts devtmpfs there, and a rootless build cannot make
// them at all: without them root and rootless builds give the same image.
func dropDeviceNodes(root string) error {
	dev := filepath.Join(root, "dev")
	return filepath.WalkDir(dev, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type()&(fs.ModeDevice|fs.ModeCharDevice) != 0 {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove device node: %w", err)
			}
		}
		return nil
	})
}

// bootLinks makes /boot/vmlinuz and /boot/initrd.img point at the newest
// kernel, and tells Debian's kernel packages to keep them there
// (link_in_boot), so that grub.cfg on a separate /boot survives kernel
// updates as it does with the links in /.
func bootLinks(root string) error {
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		return fmt.Errorf("no kernel in /boot: the operating-system element must install one")
	}
	sort.Slice(kernels, func(i, j int) bool { return versionLess(kernels[i], kernels[j]) })
	// Rescue images (rpm's vmlinuz-0-rescue-MACHINEID) are not kernels.
	var real []string
	for _, k := range kernels {
		if !strings.Contains(filepath.Base(k), "-rescue-") {
			real = append(real, k)
		}
	}
	if len(real) == 0 {
		return fmt.Errorf("no kernel in /boot (only rescue images): the operating-system element must install one")
	}
	kernels = real
	newest := filepath.Base(kernels[len(kernels)-1])
	version := strings.TrimPrefix(newest, "vmlinuz-")
	for link, target := range map[string]string{"vmlinuz": newest, "initrd.img": initrdName(root, version)} {
		p := filepath.Join(root, "boot", link)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/dpkg")); err != nil {
		// rpm distributions: their kernel packages do not read
		// kernel-img.conf (rpm-boot's hooks keep the links instead).
		return nil
	}
	conf := filepath.Join(root, "etc", "kernel-img.conf")
	data, _ := os.ReadFile(conf)
	if !strings.Contains(string(data), "link_in_boot") {
		data = append(data, []byte("link_in_boot = yes\n")...)
		if err := os.WriteFile(conf, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// initrdName is the initramfs of a kernel version in /boot: the file that
// exists (Debian's initrd.img-V, rpm's initramfs-V.img, openSUSE's
// initrd-V), else Debian's name, or rpm's on a tree without dpkg.
func initrdName(root, version string) string {
	for _, n := range []string{"initrd.img-" + version, "initramfs-" + version + ".img", "initrd-" + version} {
		if _, err := os.Lstat(filepath.Join(root, "boot", n)); err == nil {
			return n
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/dpkg")); err != nil {
		return "initramfs-" + version + ".img"
	}
	return "initrd.img-" + version
}

// versionLess orders kernel file names by their version numbers.
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	return len(na) < len(nb)
}

func numbers(s string) []int {
	var out []int
	n, in := 0, false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n = n*10 + int(r-'0')
			in = true
		} else if in {
			out = append(out, n)
			n, in = 0, false
		}
	}
	if in {
		out = append(out, n)
	}
	return out
}
