package imagebuild

// Ramdisk builds: DIB's ramdisk-image-create, and disk-image-create with a
// ramdisk element (as ironic-python-agent-builder runs it). A build whose
// elements include ramdisk-base writes NAME.kernel and NAME.initramfs from
// the committed root filesystem; no-final-image drops the disk outputs (and
// the disk assembly with them). The initramfs is a cpio archive builder
// writes itself (assemble.WriteInitramfs): no loop device, no mount, no
// root beyond the build's own user namespace.

import (
	"builder/internal/units"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"builder/assemble"
	"builder/elements"
	"builder/internal/fsutil"
	"builder/internal/progress"
)

// ramdiskTypes are the files a ramdisk build writes, under DIB's names.
var ramdiskTypes = map[string]bool{"kernel": true, "initramfs": true}

const (
	// ramdiskBaseElement marks a ramdisk build: every ramdisk element
	// depends on it.
	ramdiskBaseElement = "ramdisk-base"
	noFinalImage       = "no-final-image"
)

// hasElement reports whether the resolution includes name, by name or
// through element-provides.
func hasElement(res *elements.Resolution, name string) bool {
	return contains(res.Names(), name) || res.ProvidedBy[name] != ""
}

// ramdiskOutputs adjusts the outputs to the resolved elements: with
// no-final-image the disk outputs go (DIB skips their conversion; builder
// does not assemble the disk at all), and a ramdisk build adds NAME.kernel
// and NAME.initramfs. Tree outputs (tar, squashfs) and docker stay, as in
// DIB.
func (p *plan) ramdiskOutputs(req Request, outs []output) ([]output, error) {
	ramdisk := hasElement(p.res, ramdiskBaseElement)
	if !ramdisk && !hasElement(p.res, noFinalImage) {
		return outs, nil
	}
	var dropped []string
	var out []output
	for _, o := range outs {
		if diskTypes[o.Type] {
			dropped = append(dropped, o.Type)
			continue
		}
		out = append(out, o)
	}
	p.disk = false
	if ramdisk {
		name := imageName(req)
		abs, err := filepath.Abs(name)
		if err != nil {
			return nil, err
		}
		for _, t := range []string{"kernel", "initramfs"} {
			final := abs + "." + t
			if fi, err := os.Stat(final); err == nil && fi.IsDir() {
				return nil, fmt.Errorf("output %s is a directory: change -o", final)
			}
			out = append(out, output{
				Type:  t,
				Final: final,
				Temp:  outputTemp(abs, t, req.runID),
			})
		}
	}
	if len(dropped) > 0 && !(len(req.Types) == 1 && req.Types[0] == "qcow2") {
		// Only worth a word when the user asked for disk types: qcow2
		// alone is the default -t.
		p.warnings = append(p.warnings, fmt.Sprintf("no-final-image: no disk is made, so -t %s is not written", strings.Join(dropped, ",")))
	}
	if len(out) == 0 && !req.wantsDocker() {
		p.warnings = append(p.warnings, "no-final-image and no other output type: this build writes nothing but its cached steps (add -t tar for the tree)")
	}
	return out, nil
}

// ramdiskSettings are the DIB_RAMDISK_* variables after environment.d
// (ramdisk-base's README documents them).
type ramdiskSettings struct {
	root        string // the directory of the image that becomes the initramfs
	exclude     []string
	compression assemble.Compression
}

func (p *plan) ramdiskSettings() (ramdiskSettings, error) {
	c, err := assemble.ParseCompression(p.env["DIB_RAMDISK_COMPRESS"])
	if err != nil {
		return ramdiskSettings{}, fmt.Errorf("DIB_RAMDISK_COMPRESS: %w", err)
	}
	root := strings.Trim(filepath.Clean("/"+p.env["DIB_RAMDISK_ROOT"]), "/")
	return ramdiskSettings{root: root, exclude: strings.Fields(p.env["DIB_RAMDISK_EXCLUDE"]), compression: c}, nil
}

// writeRamdiskOutput writes one of NAME.kernel and NAME.initramfs from the
// mounted final tree at root, to o.Temp.
func (p *plan) writeRamdiskOutput(ctx context.Context, root string, o output, t *progress.Task) error {
	kernel, version, err := selectBootKernel(root, p.env)
	if err != nil {
		return err
	}
	if o.Type == "kernel" {
		if err := fsutil.CopyFile(kernel, o.Temp, 0o644); err != nil {
			return fmt.Errorf("copy the kernel: %w", err)
		}
		t.Printf("kernel %s", strings.TrimPrefix(kernel, root))
		return nil
	}
	s, err := p.ramdiskSettings()
	if err != nil {
		return err
	}
	if s.compression != assemble.CompressGzip {
		// Every kernel unpacks gzip; the others need the kernel's
		// decompressor, which its configuration says.
		cfg, err := kernelConfig(root, version)
		if err != nil {
			return fmt.Errorf("DIB_RAMDISK_COMPRESS=%s: %w", s.compression, err)
		}
		if err := assemble.KernelSupports(cfg, s.compression); err != nil {
			return fmt.Errorf("DIB_RAMDISK_COMPRESS=%s: kernel %s: %w", s.compression, version, err)
		}
	}
	dir := filepath.Join(root, s.root)
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("DIB_RAMDISK_ROOT=/%s is not a directory of the image: the element that sets it must fill it", s.root)
	}
	if _, err := os.Lstat(filepath.Join(dir, "init")); err != nil {
		return fmt.Errorf("the ramdisk has no /init (in /%s of the image), so the kernel would not start it: the ramdisk element installs one (is ramdisk or dracut-ramdisk in the elements?)", s.root)
	}
	opts := assemble.InitramfsOptions{Exclude: s.exclude, Compression: s.compression}
	if st, err := os.Lstat(filepath.Join(dir, "dev")); err == nil && st.IsDir() {
		opts.Extra = assemble.DefaultDeviceNodes
	}
	st, err := assemble.WriteInitramfs(ctx, dir, o.Temp, opts)
	if err != nil {
		return err
	}
	t.Printf("initramfs of /%s: %d entries (%d hard links, %d device nodes, %d paths excluded), %s of cpio, %s",
		s.root, st.Entries, st.HardLinks, st.Devices, st.Excluded, units.Format(st.CpioBytes), s.compression)
	return nil
}

// selectBootKernel finds the kernel a ramdisk boots, with the rules of
// DIB's select_boot_kernel_initrd: DIB_BAREMETAL_KERNEL_PATTERN (a glob in
// /boot) when set, DIB_KERNEL_VERSION when set, else the newest kernel in
// /boot (Debian: a -generic one first; rpm: PAE first, never debug or
// rescue kernels; openSUSE: the /boot/vmlinuz link).
func selectBootKernel(root string, env map[string]string) (path, version string, err error) {
	boot := filepath.Join(root, "boot")
	pick := func(cands []string) string {
		var ok []string
		for _, c := range cands {
			if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
				ok = append(ok, c)
			}
		}
		if len(ok) == 0 {
			return ""
		}
		sort.Slice(ok, func(i, j int) bool { return versionLess(ok[i], ok[j]) })
		return ok[len(ok)-1]
	}
	var k string
	switch {
	case env["DIB_BAREMETAL_KERNEL_PATTERN"] != "":
		pat := env["DIB_BAREMETAL_KERNEL_PATTERN"]
		m, err := filepath.Glob(filepath.Join(boot, pat))
		if err != nil {
			return "", "", fmt.Errorf("DIB_BAREMETAL_KERNEL_PATTERN %q: %w", pat, err)
		}
		if k = pick(m); k == "" {
			return "", "", fmt.Errorf("DIB_BAREMETAL_KERNEL_PATTERN %q matches no kernel in /boot of the image", pat)
		}
	case env["DIB_KERNEL_VERSION"] != "":
		v := env["DIB_KERNEL_VERSION"]
		if k = pick([]string{filepath.Join(boot, "vmlinuz-"+v), filepath.Join(boot, "vmlinux-"+v)}); k == "" {
			return "", "", fmt.Errorf("DIB_KERNEL_VERSION=%s: no /boot/vmlinuz-%s in the image", v, v)
		}
	case pathExists(filepath.Join(root, "etc/SuSE-release")) || env["DISTRO_NAME"] == "opensuse":
		if t, err := os.Readlink(filepath.Join(boot, "vmlinuz")); err == nil {
			k = pick([]string{filepath.Join(boot, filepath.Base(t))})
		}
	}
	if k == "" {
		all, _ := filepath.Glob(filepath.Join(boot, "vmlinu[zx]-*"))
		var kernels, generic, pae []string
		for _, c := range all {
			b := filepath.Base(c)
			if strings.Contains(b, "-rescue-") || strings.Contains(b, "debug") || strings.HasSuffix(b, ".hmac") {
				continue
			}
			kernels = append(kernels, c)
			if strings.HasSuffix(b, "generic") {
				generic = append(generic, c)
			}
			if strings.Contains(b, "PAE") {
				pae = append(pae, c)
			}
		}
		switch {
		case len(generic) > 0 && pathExists(filepath.Join(root, "etc/debian_version")):
			k = pick(generic)
		case len(pae) > 0 && pathExists(filepath.Join(root, "etc/redhat-release")):
			k = pick(pae)
		default:
			k = pick(kernels)
		}
	}
	if k == "" {
		return "", "", fmt.Errorf("no kernel in /boot of the image: a ramdisk needs one (the operating-system element installs it; DIB_DEBIAN_KERNEL, DIB_KERNEL_VERSION)")
	}
	b := filepath.Base(k)
	version = strings.TrimPrefix(strings.TrimPrefix(b, "vmlinuz-"), "vmlinux-")
	return k, version, nil
}

// kernelConfig reads the configuration of a kernel in the image: Debian's
// /boot/config-VERSION, or /lib/modules/VERSION/config (rpm).
func kernelConfig(root, version string) ([]byte, error) {
	for _, p := range []string{"boot/config-" + version, "lib/modules/" + version + "/config", "usr/lib/modules/" + version + "/config"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("kernel %s has no configuration file in the image (/boot/config-%s), so its decompressors are unknown: use gzip", version, version)
}

func pathExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
