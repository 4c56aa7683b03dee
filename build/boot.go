package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"builder/assemble"
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
// GRUB's modules.
func (p *plan) bootStep(req Request, rep *progress.Reporter, startKey string, prev []rootfs.Step) (rootfs.Step, error) {
	key := startKey
	for _, s := range prev {
		key = rootfs.StepKey(key, s)
	}
	p.ids = deriveIDs(key)
	grubID, err := hostGrubID()
	if err != nil {
		return rootfs.Step{}, err
	}
	cmdline := kernelCmdline(p.env)
	grubCfg := assemble.GrubConfig(assemble.GrubConfigSpec{
		RootUUID:      p.ids.RootUUID,
		RootLabel:     req.RootLabel,
		KernelCmdline: cmdline,
		Timeout:       grubTimeout(p.env),
		Serial:        serialCommand(p.env),
		Title:         prettyName(p.env),
	})
	fstab := assemble.Fstab(req.RootLabel, "ext4", p.ids.ESPID, true)
	id := sha256.Sum256([]byte(strings.Join([]string{"boot-v1", grubID, grubCfg, fstab}, "\x00")))
	var t *progress.Task
	return rootfs.Step{
		Name:     "boot-config",
		Kind:     rootfs.Tree,
		Identity: hex.EncodeToString(id[:]),
		Edit: func(ctx context.Context, root string) error {
			return writeBootFiles(root, fstab, grubCfg)
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

func writeBootFiles(root, fstab, grubCfg string) error {
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
			if err := copyFile(filepath.Join(p.host, n), filepath.Join(dst, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
