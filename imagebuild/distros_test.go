package imagebuild

import (
	"builder/internal/workspace"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var distroCaches = map[string]string{}

// resolveOS resolves "base ELEMENT" (and vm) with the built-in library, as
// a build does, and evaluates environment.d. Types "tar": no disk layout.
func resolveOS(t *testing.T, env map[string]string, names ...string) (*plan, error) {
	t.Helper()
	// One cache per test: the built-in library is extracted once.
	cache, ok := distroCaches[t.Name()]
	if !ok {
		cache = t.TempDir()
		distroCaches[t.Name()] = cache
	}
	req := withDefaults(Request{Elements: names, Types: []string{"tar"}, ImageCache: cache, Env: env})
	return resolve(context.Background(), req, workspace.Workspace{Cache: cache, RunRoot: t.TempDir()}, t.TempDir())
}

// Every operating-system element of DIB's set resolves to exactly one
// operating-system provider with DIB's DISTRO_NAME, the default release and
// its base image reference.
func TestDistroElementsResolve(t *testing.T) {
	cases := []struct {
		element, os, distro, release, method, image string
		env                                         map[string]string
	}{
		{"ubuntu", "ubuntu-minimal", "ubuntu", "noble", "mmdebstrap", "", nil},
		{"ubuntu-minimal", "ubuntu-minimal", "ubuntu", "noble", "mmdebstrap", "", nil},
		{"ubuntu", "ubuntu-minimal", "ubuntu", "jammy", "image", "docker.io/library/ubuntu:jammy",
			map[string]string{"DIB_RELEASE": "jammy", "DIB_UBUNTU_CONTAINER_IMAGE": "docker.io/library/ubuntu:jammy"}},
		{"centos", "centos", "centos", "9-stream", "image", "quay.io/centos/centos:stream9", nil},
		{"centos", "centos", "centos", "10-stream", "image", "quay.io/centos/centos:stream10", map[string]string{"DIB_RELEASE": "10-stream"}},
		{"centos", "centos", "centos", "7", "image", "docker.io/library/centos:7", map[string]string{"DIB_RELEASE": "7"}},
		{"centos", "centos", "centos", "9-stream", "image", "registry.example/my/centos:9",
			map[string]string{"DIB_CENTOS_CONTAINER_IMAGE": "registry.example/my/centos:9"}},
		// centos7 forces release 7 whatever DIB_RELEASE says, as DIB's did.
		{"centos7", "centos", "centos", "7", "image", "docker.io/library/centos:7", map[string]string{"DIB_RELEASE": "9-stream"}},
		{"fedora", "fedora", "fedora", "41", "image", "quay.io/fedora/fedora:41", nil},
		{"fedora", "fedora", "fedora", "40", "image", "quay.io/fedora/fedora:40", map[string]string{"DIB_RELEASE": "40"}},
		{"opensuse", "opensuse", "opensuse", "15.6", "image", "registry.opensuse.org/opensuse/leap:15.6", nil},
		{"rocky", "rocky", "rocky", "9", "image", "docker.io/rockylinux/rockylinux:9", nil},
		{"almalinux", "almalinux", "almalinux", "9", "image", "docker.io/library/almalinux:9", nil},
		{"almalinux", "almalinux", "almalinux", "9", "image", "quay.io/almalinuxorg/almalinux:9",
			map[string]string{"DIB_ALMALINUX_CONTAINER_IMAGE": "quay.io/almalinuxorg/almalinux:9"}},
	}
	for _, c := range cases {
		name := c.element + "/" + c.release + "/" + c.image
		p, err := resolveOS(t, c.env, c.element)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var provides []string
		for _, e := range p.res.Elements {
			for _, pr := range e.Provides {
				if pr == "operating-system" {
					provides = append(provides, e.Name)
				}
			}
		}
		if len(provides) != 1 || provides[0] != c.os || p.res.OS.Name != c.os {
			t.Errorf("%s: operating-system provided by %v (OS %s), want only %s", name, provides, p.res.OS.Name, c.os)
		}
		if got := p.env["DISTRO_NAME"]; got != c.distro {
			t.Errorf("%s: DISTRO_NAME=%q, want %q", name, got, c.distro)
		}
		if got := p.env["DIB_RELEASE"]; got != c.release {
			t.Errorf("%s: DIB_RELEASE=%q, want %q", name, got, c.release)
		}
		if p.env["DIB_INIT_SYSTEM"] != "systemd" || p.env["EFI_BOOT_DIR"] == "" {
			t.Errorf("%s: DIB_INIT_SYSTEM=%q EFI_BOOT_DIR=%q", name, p.env["DIB_INIT_SYSTEM"], p.env["EFI_BOOT_DIR"])
		}
		src, ok, err := readRootfsSource(p.res.OS.Dir, p.env, "amd64")
		if err != nil || !ok {
			t.Errorf("%s: rootfs source: ok=%v err=%v", name, ok, err)
			continue
		}
		if src.Method != c.method || src.Image != c.image {
			t.Errorf("%s: base %s %q, want %s %q", name, src.Method, src.Image, c.method, c.image)
		}
	}
}

// The family elements come with each distribution, with the package tool
// its release uses.
func TestDistroFamilyElements(t *testing.T) {
	cases := []struct {
		element, yum, family string
		env                  map[string]string
	}{
		{"centos", "dnf", "yum", nil},
		{"centos7", "yum", "yum", nil},
		{"fedora", "dnf", "dnf", nil},
		{"rocky", "dnf", "dnf", nil},
		{"almalinux", "dnf", "dnf", nil},
		{"opensuse", "", "zypper", nil},
		{"ubuntu", "", "dpkg", nil},
	}
	for _, c := range cases {
		p, err := resolveOS(t, c.env, c.element)
		if err != nil {
			t.Errorf("%s: %v", c.element, err)
			continue
		}
		names := p.res.Names()
		if !contains(names, c.family) {
			t.Errorf("%s: %s missing from %v", c.element, c.family, names)
		}
		if c.yum != "" {
			for _, want := range []string{"redhat-common", "rpm-distro", "rpm-boot", "yum"} {
				if !contains(names, want) {
					t.Errorf("%s: %s missing from %v", c.element, want, names)
				}
			}
			if p.env["YUM"] != c.yum || p.env["DIB_GRUB_CFG"] != "/boot/grub2/grub.cfg" {
				t.Errorf("%s: YUM=%q DIB_GRUB_CFG=%q", c.element, p.env["YUM"], p.env["DIB_GRUB_CFG"])
			}
		}
		for _, want := range []string{"growroot", "openssh-server"} {
			if !contains(names, want) {
				t.Errorf("%s: %s missing from %v", c.element, want, names)
			}
		}
		// Family element binaries are merged into the hooks tree.
		if _, err := os.Stat(filepath.Join(p.tree.Dir, "bin", "install-packages")); err != nil {
			t.Errorf("%s: no bin/install-packages in the hooks tree: %v", c.element, err)
		}
	}
	// Two operating systems are refused, as DIB refuses them.
	if _, err := resolveOS(t, nil, "centos", "fedora"); err == nil || !strings.Contains(err.Error(), "operating-system") {
		t.Errorf("centos + fedora: %v, want an operating-system conflict", err)
	}
}

// Releases without a published base fail while resolving, naming
// DIB_LOCAL_IMAGE and what it may point at; with it set they resolve.
func TestDistroNeedsLocalImage(t *testing.T) {
	for _, el := range []string{"centos6", "scientific6", "scientific7"} {
		_, err := resolveOS(t, nil, el)
		if err == nil {
			t.Errorf("%s without DIB_LOCAL_IMAGE resolved", el)
			continue
		}
		for _, want := range []string{"needs DIB_LOCAL_IMAGE", "qcow2", "tarball", "OCI archive"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not mention %q", el, err, want)
			}
		}
		// Resolving checks that the file exists; what is in it is read later.
		local := filepath.Join(t.TempDir(), "el.qcow2")
		if err := os.WriteFile(local, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := resolveOS(t, map[string]string{"DIB_LOCAL_IMAGE": local}, el)
		if err != nil {
			t.Errorf("%s with DIB_LOCAL_IMAGE: %v", el, err)
			continue
		}
		wantDistro, wantRelease := "scientific", strings.TrimPrefix(el, "scientific")
		if el == "centos6" {
			wantDistro, wantRelease = "centos", "6"
		}
		if p.env["DISTRO_NAME"] != wantDistro || p.env["DIB_RELEASE"] != wantRelease || p.env["YUM"] != "yum" {
			t.Errorf("%s: DISTRO_NAME=%q DIB_RELEASE=%q YUM=%q", el, p.env["DISTRO_NAME"], p.env["DIB_RELEASE"], p.env["YUM"])
		}
	}
	// An unknown release is refused by the element, by name.
	if _, err := resolveOS(t, map[string]string{"DIB_RELEASE": "5"}, "centos"); err == nil || !strings.Contains(err.Error(), "DIB_RELEASE=5 is not supported") {
		t.Errorf("centos 5: %v", err)
	}
}

// The Ubuntu bootstrap: mirror, suites and components as DIB's, and the
// virtual kernel.
func TestUbuntuBootstrapRecipe(t *testing.T) {
	p, err := resolveOS(t, nil, "ubuntu")
	if err != nil {
		t.Fatal(err)
	}
	src, _, err := readRootfsSource(p.res.OS.Dir, p.env, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"deb http://archive.ubuntu.com/ubuntu noble main universe",
		"deb http://archive.ubuntu.com/ubuntu noble-updates main universe",
		"deb http://archive.ubuntu.com/ubuntu noble-security main universe",
	}
	if strings.Join(src.Bootstrap.Sources, "\n") != strings.Join(want, "\n") {
		t.Errorf("sources %q", src.Bootstrap.Sources)
	}
	if src.Bootstrap.Suite != "noble" || !contains(src.Bootstrap.Packages, "linux-image-virtual") {
		t.Errorf("suite %q packages %v", src.Bootstrap.Suite, src.Bootstrap.Packages)
	}
	if p.aptCache == "" {
		t.Errorf("ubuntu has no apt cache: Debian family not recognised")
	}
}

// bootLinks (separate /boot) finds rpm's initramfs names and skips rescue
// images; Debian trees keep Debian's names and link_in_boot.
func TestBootLinksRPMAndDebian(t *testing.T) {
	rpm := t.TempDir()
	os.MkdirAll(filepath.Join(rpm, "boot"), 0o755)
	os.MkdirAll(filepath.Join(rpm, "etc"), 0o755)
	for _, f := range []string{"vmlinuz-5.14.0-9.el9.x86_64", "initramfs-5.14.0-9.el9.x86_64.img",
		"vmlinuz-5.14.0-10.el9.x86_64", "initramfs-5.14.0-10.el9.x86_64.img",
		"vmlinuz-0-rescue-0123456789abcdef", "initramfs-0-rescue-0123456789abcdef.img"} {
		os.WriteFile(filepath.Join(rpm, "boot", f), nil, 0o644)
	}
	if err := bootLinks(rpm); err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{"vmlinuz": "vmlinuz-5.14.0-10.el9.x86_64", "initrd.img": "initramfs-5.14.0-10.el9.x86_64.img"} {
		if got, _ := os.Readlink(filepath.Join(rpm, "boot", link)); got != want {
			t.Errorf("rpm /boot/%s -> %q, want %q", link, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(rpm, "etc", "kernel-img.conf")); err == nil {
		t.Errorf("kernel-img.conf written on an rpm tree")
	}

	deb := t.TempDir()
	os.MkdirAll(filepath.Join(deb, "boot"), 0o755)
	os.MkdirAll(filepath.Join(deb, "etc"), 0o755)
	os.MkdirAll(filepath.Join(deb, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(deb, "boot", "vmlinuz-6.1.0-10-cloud-amd64"), nil, 0o644)
	if err := bootLinks(deb); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(filepath.Join(deb, "boot", "initrd.img")); got != "initrd.img-6.1.0-10-cloud-amd64" {
		t.Errorf("debian /boot/initrd.img -> %q", got)
	}
	if data, _ := os.ReadFile(filepath.Join(deb, "etc", "kernel-img.conf")); !strings.Contains(string(data), "link_in_boot = yes") {
		t.Errorf("debian kernel-img.conf %q", data)
	}
}
