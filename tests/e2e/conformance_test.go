package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"builder/elements"
)

// The conformance table of diskimage-builder 3.13's element library: every
// element of the installed python3-diskimage-builder, classified for Debian,
// and every one that applies built with builder (`builder image debian vm
// ELEMENT...`, many elements per build) and checked for its documented
// effect on the built tree. The README's section "DIB element library:
// conformance" is generated from this table and the results; the test fails
// when it differs (BUILDER_UPDATE_README=1 rewrites it).
//
// Inputs that DIB takes from the internet come from a server this test runs
// on 127.0.0.1 (in-process: static files, a PEP 503 package index, git over
// HTTP): it lives on a fixed port with its files under the test cache, so
// that the build steps that see its address stay cached between runs.

type confKind int

const (
	confWorks     confKind = iota // applies to Debian: built and checked
	confNotDebian                 // does not apply to a Debian image
	confFailsDIB                  // applies, fails in DIB 3.13 too; the test expects that failure
	confOffline                   // applies; needs the internet, and nothing local stands in
)

type confElement struct {
	name string
	kind confKind
	// works: what the test checks; otherwise why the element does not
	// apply, fails or cannot be verified.
	note string
	// works: the build it is checked in. confFailsDIB: the failing build
	// it shares with the elements of the same batch (they fail in the
	// same hook, each with its own message), or "" for a build of its own.
	batch string
	vars  []string // NAME=VALUE for its build; {{...}} are the fixture's
	check func(c *confCheck)
	// confFailsDIB: the elements its build starts from (the smallest set
	// that reaches the failing hook: debian-minimal, not debian, keeps
	// these builds short; the same for a batch), and what builder's output
	// must say.
	failBase []string
	failWant string
}

// confFailBuild is one build of confFailsDIB elements.
type confFailBuild struct {
	name  string
	base  []string
	elems []confElement
}

// confFailBuilds groups the confFailsDIB elements into their builds, in
// table order.
func confFailBuilds() []*confFailBuild {
	var out []*confFailBuild
	byName := map[string]*confFailBuild{}
	for _, e := range confTable {
		if e.kind != confFailsDIB {
			continue
		}
		name := confFailName(e)
		b := byName[name]
		if b == nil {
			b = &confFailBuild{name: name, base: e.failBase}
			byName[name] = b
			out = append(out, b)
		}
		b.elems = append(b.elems, e)
	}
	return out
}

// confFailName is the name of a confFailsDIB element's build.
func confFailName(e confElement) string {
	if e.batch == "" {
		return "fails-" + e.name
	}
	return "fails-" + e.batch
}

// args are the build's elements.
func (b *confFailBuild) args() []string {
	out := append([]string(nil), b.base...)
	for _, e := range b.elems {
		out = append(out, e.name)
	}
	return out
}

// confBatch is one build: its elements are base plus the table's elements
// of that batch.
type confBatch struct {
	name  string
	base  []string
	types string
	probe bool // add the conformance-probe test element
}

var confBatches = []confBatch{
	{name: "debian", base: []string{"debian", "vm"}, types: "qcow2,tar", probe: true},
	{name: "minimal", base: []string{"debian-minimal", "vm"}, types: "qcow2,tar"},
	// Its one check reads the disk: no tree to write and read.
	{name: "mbr", base: []string{"debian-minimal", "vm"}, types: "qcow2"},
	{name: "lvm", base: []string{"debian", "vm"}, types: "qcow2,tar"},
	{name: "ramdisk", base: []string{"debian-minimal"}, types: "qcow2,tar"},
	{name: "dracut", base: []string{"debian-minimal"}, types: "tar"},
}

func confNA(name, why string) confElement {
	return confElement{name: name, kind: confNotDebian, note: why}
}

// confTable: one row per element of DIB 3.13's library, in name order.
var confTable = []confElement{
	{name: "apt-conf", batch: "debian", note: "`/etc/apt/apt.conf` is the given file, and apt read it during the build",
		vars: []string{"DIB_APT_CONF={{fix}}/apt.conf"},
		check: func(c *confCheck) {
			c.equals("/etc/apt/apt.conf", confAptConf)
			c.contains("/etc/conformance/apt-config", "Conformance::AptConf")
		}},
	{name: "apt-preferences", batch: "debian", note: "`/etc/apt/preferences` pins the packages of a dpkg manifest (`DIB_DPKG_MANIFEST`), and apt applied the pin during the build",
		vars: []string{"DIB_DPKG_MANIFEST={{fix}}/dpkg-manifest"},
		check: func(c *confCheck) {
			c.equals("/etc/apt/preferences", confAptPreferences)
			c.contains("/etc/conformance/apt-policy-tree", " 1001")
		}},
	{name: "apt-sources", batch: "debian", note: "`/etc/apt/sources.list` is the given file (the host's mirror, with contrib), and a contrib package (crafty-bitmaps, asked for by the test's element) installed from it",
		vars: []string{"DIB_APT_SOURCES={{fix}}/sources.list"},
		check: func(c *confCheck) {
			c.equals("/etc/apt/sources.list", c.fix.sources)
			c.pkgs("crafty-bitmaps")
		}},
	{name: "baremetal", batch: "debian", note: "`NAME.vmlinuz` and `NAME.initrd` beside the image, the image's boot kernel and initramfs",
		check: func(c *confCheck) {
			k, i := c.bootPair()
			c.sameSize(c.img+".vmlinuz", "/boot/"+k)
			c.sameSize(c.img+".initrd", "/boot/"+i)
		}},
	{name: "base", batch: "debian", note: "cloud-init's `manage_etc_hosts` from `DIB_CLOUD_INIT_ETC_HOSTS`; the utility elements it pulls in are checked in their rows",
		vars: []string{"DIB_CLOUD_INIT_ETC_HOSTS=localhost"},
		check: func(c *confCheck) {
			c.equals("/etc/cloud/cloud.cfg.d/10_etc_hosts.cfg", "manage_etc_hosts: localhost\n")
		}},
	{name: "block-device-efi", batch: "debian", note: "the disk: GPT with ESP (`EFI/BOOT/BOOTX64.EFI` in it), BIOS boot partition and root; `/boot/efi` in fstab",
		check: func(c *confCheck) {
			d := c.disk()
			d.want(c, "gpt", confESP, confBIOSBoot, confLinuxFS)
			d.espHas(c, "EFI/BOOT/BOOTX64.EFI")
			c.contains("/etc/fstab", "/boot/efi")
		}},
	{name: "block-device-efi-lvm", batch: "lvm", note: "the disk: GPT with ESP, BIOS boot and a partition that is an LVM physical volume holding `lv_root`, `lv_var`, `lv_home`; XFS `/`, `/var`, `/home` in fstab",
		check: func(c *confCheck) {
			d := c.disk()
			d.want(c, "gpt", confESP, confBIOSBoot, confLinuxFS)
			meta := d.read(c, len(d.parts)-1, 0, 1<<20)
			for _, w := range []string{"LABELONE", "LVM2 001", "lv_root", "lv_var", "lv_home"} {
				if !bytes.Contains(meta, []byte(w)) {
					c.errorf("the root partition's LVM metadata lacks %q", w)
				}
			}
			c.contains("/etc/fstab", "LABEL=img-rootfs / xfs", " /var xfs", " /home xfs")
		}},
	{name: "block-device-gpt", batch: "minimal", note: "the disk: GPT with BIOS boot partition and root, no ESP",
		check: func(c *confCheck) {
			d := c.disk()
			d.want(c, "gpt", confBIOSBoot, confLinuxFS)
		}},
	{name: "block-device-mbr", batch: "mbr", note: "the disk: an MBR (dos) table with one bootable root partition",
		check: func(c *confCheck) {
			d := c.disk()
			d.want(c, "dos", "83")
			if len(d.parts) == 1 && !d.parts[0].Bootable {
				c.errorf("the root partition is not marked bootable")
			}
		}},
	{name: "bootloader", batch: "debian", note: "GRUB in the BIOS boot partition, `/boot/grub/grub.cfg` booting `/vmlinuz` with `DIB_BOOTLOADER_DEFAULT_CMDLINE` on the command line",
		vars: []string{"DIB_BOOTLOADER_DEFAULT_CMDLINE=nofb nomodeset gfxpayload=text conformance.bootloader=1"},
		check: func(c *confCheck) {
			c.contains("/boot/grub/grub.cfg", "menuentry", "linux /vmlinuz", "conformance.bootloader=1")
			d := c.disk()
			if !bytes.Contains(d.read(c, -1, 0, 512), []byte("GRUB")) {
				c.errorf("the disk's first sector is not GRUB's boot.img")
			}
			for i, p := range d.parts {
				if p.Type == confBIOSBoot && bytes.Count(d.read(c, i, 0, 512), []byte{0}) == 512 {
					c.errorf("the BIOS boot partition holds no GRUB core image")
				}
			}
		}},
	{name: "cache-url", batch: "debian", note: "an `extra-data.d` hook of the test's element downloads a file with `cache-url` into the image cache; it reaches the image",
		check: func(c *confCheck) {
			c.equals("/etc/conformance/cache-url.txt", confCacheURLText)
			if data, err := os.ReadFile(filepath.Join(ownLaneCache(), "conformance", "cache-url.txt")); err != nil || string(data) != confCacheURLText {
				c.errorf("the image cache has no conformance/cache-url.txt with the served content (%v)", err)
			}
		}},
	confNA("centos", "another operating system (CentOS, rpm)"),
	confNA("centos-minimal", "another operating system (CentOS, rpm; built with yum on the host)"),
	confNA("centos7", "another operating system (CentOS 7, rpm)"),
	{name: "cleanup-kernel-initrd", batch: "debian", note: "two kernels installed (generic by mellanox, cloud by the test's element): `/boot` keeps only the one the image boots",
		check: func(c *confCheck) {
			var kernels []string
			for p := range c.tree {
				if strings.HasPrefix(p, "/boot/vmlinuz-") {
					kernels = append(kernels, p)
				}
			}
			if len(kernels) != 1 {
				c.errorf("/boot has %d kernels %v, want the one the image boots", len(kernels), kernels)
			}
			generic := c.kernelVersion("generic")
			if !c.has("/usr/lib/modules/" + generic) {
				c.errorf("the second kernel was never installed (no /usr/lib/modules/*-amd64 of the generic kernel): the check proves nothing")
			}
			for p := range c.tree {
				if strings.HasPrefix(p, "/boot/") && strings.HasSuffix(p, "-"+generic) {
					c.errorf("%s of the kernel the image does not boot is still there", p)
				}
			}
		}},
	{name: "cloud-init", batch: "debian", note: "cloud-init's four boot stages enabled; `ssh_genkeytypes` in `cloud.cfg`",
		check: func(c *confCheck) {
			for _, u := range []string{"cloud-init-local.service", "cloud-init.service", "cloud-config.service", "cloud-final.service"} {
				c.enabled("cloud-init.target", u)
			}
			c.contains("/etc/cloud/cloud.cfg", "ssh_genkeytypes: ['rsa', 'ecdsa', 'ed25519']")
		}},
	{name: "cloud-init-datasources", batch: "debian", note: "`datasource_list` from `DIB_CLOUD_INIT_DATASOURCES`",
		vars: []string{"DIB_CLOUD_INIT_DATASOURCES=ConfigDrive, OpenStack"},
		check: func(c *confCheck) {
			c.equals("/etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg", "datasource_list: [ ConfigDrive, OpenStack, None ]\n")
		}},
	{name: "cloud-init-disable-resizefs", batch: "debian", note: "the `resizefs` and `growpart` modules gone from `/etc/cloud/cloud.cfg` (its `sed -ie` also leaves a `cloud.cfge` copy, as in DIB)",
		check: func(c *confCheck) {
			cfg := c.file("/etc/cloud/cloud.cfg")
			if !strings.Contains(cfg, "cloud_init_modules") {
				c.errorf("/etc/cloud/cloud.cfg has no module lists at all: the check proves nothing")
			}
			for _, m := range []string{"resizefs", "growpart"} {
				if regexp.MustCompile(`(?m)^ - ` + m + `$`).MatchString(cfg) {
					c.errorf("/etc/cloud/cloud.cfg still runs %s", m)
				}
			}
		}},
	{name: "cloud-init-nocloud", batch: "lvm", note: "the NoCloud seed (`/var/lib/cloud/seed/nocloud`) and `datasource_list: [ NoCloud, None ]`",
		check: func(c *confCheck) {
			c.equals("/etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg", "datasource_list: [ NoCloud, None ]\n")
			for _, p := range []string{"/var/lib/cloud/seed/nocloud/user-data", "/var/lib/cloud/seed/nocloud/meta-data"} {
				if !c.has(p) {
					c.errorf("%s is missing", p)
				}
			}
		}},
	confNA("containerfile", "an operating-system element of its own (a Containerfile built with podman becomes the root), so it cannot be combined with `debian`; builder's Debian takes a container base with `DIB_DEBIAN_CONTAINER_IMAGE`"),
	{name: "debian", batch: "debian", note: "Debian bookworm (`/etc/os-release`) with cloud-init and openssh-server",
		check: func(c *confCheck) {
			c.contains("/usr/lib/os-release", "ID=debian", "VERSION_CODENAME=bookworm")
			c.pkgs("cloud-init", "openssh-server", "systemd-sysv")
		}},
	{name: "debian-minimal", batch: "minimal", note: "Debian bookworm with a kernel and systemd, without cloud-init",
		check: func(c *confCheck) {
			c.contains("/usr/lib/os-release", "ID=debian", "VERSION_CODENAME=bookworm")
			c.pkgs("linux-image-cloud-amd64", "systemd-sysv", "ifupdown")
			c.notPkgs("cloud-init")
		}},
	{name: "debian-systemd", batch: "debian", note: "systemd is the init (`/sbin/init`), and the `/.extra_settings` its `root.d` hook writes for DIB's debootstrap is gone from the image (DIB's operating-system `root.d` hook reads and deletes it; builder's create-base step does: the base must have the init package it asks for, `systemd-sysv`)",
		check: func(c *confCheck) {
			c.pkgs("systemd-sysv")
			if l := c.link("/usr/sbin/init"); !strings.HasSuffix(l, "/systemd") {
				c.errorf("/sbin/init -> %q, not systemd", l)
			}
			c.absent("/.extra_settings")
		}},
	confNA("debian-upstart", "upstart as init: Debian has no upstart package any more (none in bookworm)"),
	confNA("debootstrap", "the bootstrap of DIB's debian-minimal and ubuntu-minimal; builder's debian-minimal replaces it (mmdebstrap, the same variables) and has hooks of the same names, so builder refuses the pair"),
	{name: "deploy-baremetal", batch: "dracut", note: "tgt in the image, `tgtd`/`tgtadm` and its `init.d` fragment in the dracut ramdisk's init (valid bash), with the ramdisk init functions the fragment calls (`find_disk`, `start_iscsi_target`, `troubleshoot`, `err_msg`: builder's ramdisk-base gives what DIB's gives them, and the variables of its `init.d/20-init-variables`)",
		check: func(c *confCheck) {
			c.pkgs("tgt")
			files := c.initramfs()
			for _, f := range []string{"usr/sbin/tgtd", "usr/sbin/tgtadm"} {
				if !files[f] {
					c.errorf("the ramdisk lacks %s", f)
				}
			}
			init := c.file("/usr/local/lib/builder-ramdisk/init.d")
			if !strings.Contains(init, "start_iscsi_target") {
				c.errorf("deploy-baremetal's init.d fragment is not in the ramdisk's init")
			}
			for _, fn := range []string{"find_disk", "start_iscsi_target", "troubleshoot", "err_msg"} {
				if !regexp.MustCompile(`(?m)^\s*(function\s+)?` + fn + `\s*\(\)`).MatchString(init) {
					c.errorf("the ramdisk's init.d script calls %s, which nothing in the ramdisk defines (ramdisk-base's init functions)", fn)
				}
			}
			for _, v := range []string{"ISCSI_TARGET_IQN=", "DISK=", "BOOT_SERVER="} {
				if !strings.Contains(init, v) {
					c.errorf("the ramdisk's init.d script never sets %s, which deploy-baremetal's fragment reads (ramdisk-base's init.d/20-init-variables)", strings.TrimSuffix(v, "="))
				}
			}
			if out, err := exec.Command("bash", "-n", "-c", init).CombinedOutput(); err != nil {
				c.errorf("the ramdisk's init.d script is not valid bash: %v: %s", err, out)
			}
		}},
	{name: "deploy-kexec", kind: confFailsDIB, failBase: []string{"debian-minimal"}, failWant: `element "deploy" not found (required by "deploy-kexec")`,
		note: "its `element-deps` names `deploy`, an element DIB 3.13's library does not have: DIB stops resolving the elements too"},
	{name: "deploy-targetcli", kind: confFailsDIB, batch: "packages", failBase: []string{"debian-minimal"}, failWant: "Package 'targetcli' has no installation candidate",
		note: "installs the package `targetcli`, which Debian does not have (it is `targetcli-fb`; no pkg-map): the package install fails, in DIB too"},
	{name: "deploy-tgtadm", batch: "ramdisk", note: "tgt installed, and its `iscsi-func` at the ramdisk's root (its `extra-data.d` stages it in `/tmp/ramdisk-build/scripts/d`, from where DIB's ramdisk and builder's take it)",
		check: func(c *confCheck) {
			c.pkgs("tgt")
			if !c.initramfs()["iscsi-func"] {
				c.errorf("no /iscsi-func in the ramdisk: it does not take what elements stage in /tmp/ramdisk-build/scripts/d")
			}
			c.contains("/iscsi-func", "start_iscsi_target()")
		}},
	{name: "devuser", batch: "debian", note: "the user from `DIB_DEV_USER_*`: shell, passwordless sudo, authorized key",
		vars: []string{"DIB_DEV_USER_USERNAME=confdev", "DIB_DEV_USER_SHELL=/bin/bash", "DIB_DEV_USER_PWDLESS_SUDO=yes", "DIB_DEV_USER_AUTHORIZED_KEYS={{fix}}/devuser.pub"},
		check: func(c *confCheck) {
			if !regexp.MustCompile(`(?m)^confdev:x:\d+:\d+::/home/confdev:/bin/bash$`).MatchString(c.file("/etc/passwd")) {
				c.errorf("/etc/passwd has no confdev with /bin/bash")
			}
			c.contains("/etc/sudoers.d/devuser-confdev", "confdev ALL=(ALL) NOPASSWD:ALL")
			c.equals("/home/confdev/.ssh/authorized_keys", confKey+"\n")
		}},
	{name: "dhcp-all-interfaces", batch: "debian", note: "the `dhcp-interface@` unit, its udev rule and script",
		check: func(c *confCheck) {
			c.contains("/usr/lib/systemd/system/dhcp-interface@.service", "dhcp-all-interfaces.sh")
			c.contains("/etc/udev/rules.d/99-dhcp-all-interfaces.rules", "dhcp-interface@")
			c.executable("/usr/local/sbin/dhcp-all-interfaces.sh")
		}},
	{name: "dib-init-system", batch: "debian", note: "`dib-init-system` prints systemd in a hook; elements' `init-scripts/systemd` units are installed",
		check: func(c *confCheck) {
			c.executable("/usr/local/bin/dib-init-system")
			c.probeIs("init-system", "systemd")
			c.contains("/usr/lib/systemd/system/conformance-probe.service", "conformance")
		}},
	{name: "dib-python", batch: "debian", note: "`dib-python` is python 3 in a hook, and gone from the image",
		check: func(c *confCheck) {
			if p := c.probe("dib-python"); !strings.HasPrefix(p, "/usr/bin/python3") {
				c.errorf("dib-python in a hook -> %q, want python 3", p)
			}
			c.absent("/usr/local/bin/dib-python", "/usr/bin/dib-python")
		}},
	{name: "dib-run-parts", batch: "minimal", note: "a `dib-run-parts` command in the image (DIB's element installs the package `dib-utils`, which Debian does not have: it fails there; builder installs its own runner)",
		check: func(c *confCheck) {
			c.executable("/usr/local/bin/dib-run-parts")
			if !strings.HasPrefix(c.file("/usr/local/bin/dib-run-parts"), "#!") {
				c.errorf("/usr/local/bin/dib-run-parts is not a script")
			}
		}},
	{name: "disable-nouveau", batch: "debian", note: "nouveau blacklisted in `/etc/modprobe.d`",
		check: func(c *confCheck) {
			c.contains("/etc/modprobe.d/disable-nouveau.conf", "blacklist nouveau")
		}},
	{name: "disable-selinux", batch: "debian", note: "`SELINUX=disabled` in `/etc/selinux/config` (written before by selinux-permissive; on an image without that file its hook exits 1, in DIB too)",
		check: func(c *confCheck) {
			c.contains("/etc/selinux/config", "SELINUX=disabled")
		}},
	{name: "dkms", batch: "debian", note: "dkms installed (its `post-install.d` builds the registered modules: none here)",
		check: func(c *confCheck) { c.pkgs("dkms") }},
	confNA("docker", "an operating-system element of its own (a docker container exported as the root), so it cannot be combined with `debian`; builder's Debian takes a container base with `DIB_DEBIAN_CONTAINER_IMAGE`"),
	{name: "dpkg", batch: "debian", note: "`install-packages` in `/usr/local/bin`; no `policy-rc.d`, package lists or downloaded packages left",
		check: func(c *confCheck) {
			c.executable("/usr/local/bin/install-packages")
			c.absent("/usr/sbin/policy-rc.d")
			for p, e := range c.tree {
				if (strings.HasPrefix(p, "/var/lib/apt/lists/") && strings.HasSuffix(p, "_Packages")) ||
					(strings.HasPrefix(p, "/var/cache/apt/archives/") && strings.HasSuffix(p, ".deb")) {
					c.errorf("%s (%d bytes) was left in the image", p, e.size)
				}
			}
		}},
	{name: "dracut-network", batch: "dracut", note: "dracut's network modules and `/etc/dracut.conf.d/50-dracut-network.conf` (`network`, `rd.neednet=1 ip=dhcp`). DIB 3.13's element of this name is an empty stub (removed in Pike); builder's is its own",
		check: func(c *confCheck) {
			c.pkgs("dracut-network")
			c.contains("/etc/dracut.conf.d/50-dracut-network.conf", "network", "rd.neednet=1 ip=dhcp")
		}},
	{name: "dracut-ramdisk", batch: "dracut", note: "`NAME.kernel` and a dracut `NAME.initramfs` with builder's module and the elements' `init.d` script",
		check: func(c *confCheck) {
			c.output(".kernel")
			files := c.initramfs()
			var hook bool
			for f := range files {
				if strings.HasSuffix(f, "builder-ramdisk-init.sh") {
					hook = true
				}
			}
			if !hook || !files["usr/local/lib/builder-ramdisk/init.d"] {
				c.errorf("the initramfs lacks builder's dracut module or the init.d script (%d files)", len(files))
			}
		}},
	{name: "dracut-regenerate", batch: "debian", note: "the modules' packages (cryptsetup, lvm2) and `add_dracutmodules` in `/etc/dracut.conf.d`",
		check: func(c *confCheck) {
			c.pkgs("cryptsetup", "lvm2")
			c.contains("/etc/dracut.conf.d/85-dracut-regenerate.conf", `add_dracutmodules+=" crypt lvm "`)
		}},
	{name: "dynamic-login", batch: "debian", note: "`/usr/local/bin/dynamic-login` and its unit, enabled",
		check: func(c *confCheck) {
			c.executable("/usr/local/bin/dynamic-login")
			c.enabled("multi-user.target", "dynamic-login.service")
		}},
	{name: "element-manifest", batch: "debian", note: "the list of the build's elements in `/etc/dib-manifests/dib-element-manifest` and beside the image",
		check: func(c *confCheck) {
			c.contains("/etc/dib-manifests/dib-element-manifest", "\nelement-manifest\n", "\ndebian\n")
			if _, err := os.Stat(c.img + ".d/dib-manifests/dib-element-manifest"); err != nil {
				c.errorf("no dib-element-manifest beside the image: %v", err)
			}
		}},
	{name: "enable-serial-console", batch: "debian", note: "`serial-getty@ttyS0` enabled",
		check: func(c *confCheck) {
			c.enabled("getty.target", "serial-getty@ttyS0.service")
		}},
	{name: "ensure-venv", batch: "debian", note: "`python3-venv` installed",
		check: func(c *confCheck) { c.pkgs("python3-venv") }},
	confNA("epel", "EPEL is a repository for RHEL-like distributions (rpm); builder's version does nothing on Debian, where mellanox and pip-and-virtualenv pull it in"),
	confNA("fedora", "another operating system (Fedora, rpm)"),
	confNA("fedora-container", "another operating system (Fedora, from a container image)"),
	confNA("fedora-minimal", "another operating system (Fedora, built with yum on the host)"),
	confNA("gentoo", "another operating system (Gentoo)"),
	{name: "growroot", batch: "debian", note: "`growroot.service` enabled, its script installed",
		check: func(c *confCheck) {
			c.enabled("local-fs.target", "growroot.service")
			c.executable("/usr/local/sbin/growroot")
		}},
	{name: "growvols", batch: "lvm", note: "`growvols.service` enabled (`DIB_GROWVOLS_TRIGGER=systemd`), its settings and script",
		vars: []string{"DIB_GROWVOLS_TRIGGER=systemd", "DIB_GROWVOLS_ARGS=/var=50%"},
		check: func(c *confCheck) {
			c.enabled("multi-user.target", "growvols.service")
			c.executable("/usr/local/sbin/growvols")
			c.contains("/etc/default/growvols", `GROWVOLS_ARGS="/var=50%"`)
		}},
	{name: "grub2", batch: "debian", note: "GRUB's packages (signed EFI GRUB and shim, BIOS modules) and `/etc/default/grub` for `update-grub` in the guest",
		check: func(c *confCheck) {
			c.pkgs("grub-efi-amd64-signed", "shim-signed", "grub-pc-bin")
			c.contains("/etc/default/grub", "GRUB_CMDLINE_LINUX_DEFAULT=")
		}},
	confNA("hpdsa", "HP's Dynamic Smart Array driver for Ubuntu trusty only (its `root.d` stops any other distribution or release)"),
	{name: "hwburnin", kind: confFailsDIB, batch: "binary-deps", failBase: []string{"debian-minimal", "ramdisk"}, failWant: "spew memtester",
		note: "its `binary-deps.d` needs `spew` and `memtester`, which it does not install: ramdisk-base's binary check stops the build, in DIB too"},
	{name: "hwdiscovery", kind: confFailsDIB, batch: "binary-deps", failBase: []string{"debian-minimal", "ramdisk"}, failWant: "lshw",
		note: "its `binary-deps.d` needs `lshw` and `wget`, which it does not install: ramdisk-base's binary check stops the build, in DIB too"},
	{name: "ibft-interfaces", batch: "debian", note: "`init-ibft-interfaces.service` enabled, iBFT modules loaded at boot",
		check: func(c *confCheck) {
			c.enabled("multi-user.target", "init-ibft-interfaces.service")
			c.contains("/etc/modules-load.d/ibft.conf", "iscsi_ibft")
		}},
	{name: "ilo", batch: "ramdisk", note: "the firmware of `DIB_ILO_FIRMWARE_PATH` unpacked into the ramdisk's `/ilo` (DIB: `extra-data.d` unpacks to `/tmp/ilo`, `ramdisk-install.d` moves it into the ramdisk)",
		vars: []string{"DIB_ILO_FIRMWARE_PATH={{fix}}/ilo"},
		check: func(c *confCheck) {
			if !c.initramfs()["ilo/conformance-fw.scexe/flash_ilo4"] {
				c.errorf("the ramdisk has no ilo/conformance-fw.scexe/flash_ilo4: ilo's ramdisk-install.d hook did not move it there from /tmp/ilo")
			}
		}},
	{name: "install-bin", batch: "debian", note: "an element's `bin/` command in `/usr/local/bin`, callable from hooks",
		check: func(c *confCheck) {
			c.executable("/usr/local/bin/conformance-bin")
			c.probeIs("conformance-bin", "conformance-bin ran")
		}},
	{name: "install-static", batch: "debian", note: "an element's `static/` file in the image",
		check: func(c *confCheck) { c.equals("/etc/conformance/static.txt", "from static/\n") }},
	{name: "install-types", batch: "debian", note: "`DIB_INSTALLTYPE_conformance_probe=package` runs the element's `package-install` hooks, not its `source-install` ones",
		vars:  []string{"DIB_INSTALLTYPE_conformance_probe=package"},
		check: func(c *confCheck) { c.equals("/etc/conformance/install-type", "package\n") }},
	{name: "iscsi-boot", batch: "debian", note: "open-iscsi and `ISCSI_AUTO=true` for the initramfs",
		check: func(c *confCheck) {
			c.pkgs("open-iscsi")
			c.equals("/etc/iscsi/iscsi.initramfs", "ISCSI_AUTO=true\n")
		}},
	{name: "iso", kind: confFailsDIB, failBase: []string{"debian-minimal", "baremetal"}, failWant: "DIB_IMAGE_ROOT_FS_UUID: unbound variable",
		note: "with baremetal its `cleanup.d` puts `root=UUID=$DIB_IMAGE_ROOT_FS_UUID` on the ISO's command line, a variable nothing in DIB 3.13 sets (unbound: the hook stops), in DIB too. With ramdisk it needs `NAME.kernel`/`NAME.initramfs` in `cleanup.d`, which builder writes only after the build; and it loop-mounts a FAT image, which a kernel without vfat (as here) refuses"},
	{name: "journal-to-console", batch: "debian", note: "journald forwards to the console",
		check: func(c *confCheck) {
			c.contains("/etc/systemd/journald.conf.d/log-to-console.conf", "ForwardToConsole=yes")
		}},
	{name: "keylime-agent", batch: "debian", note: "keylime (a stand-in tree on the test's git server, `DIB_REPOLOCATION_keylime`) in the venv `/opt/keylime` from the test's package index, `/etc/keylime.conf` pointing at `DIB_KEYLIME_AGENT_REGISTRAR_*`, the IMA policy, an allowlist and `keylime-agent.service` enabled",
		vars: []string{"DIB_KEYLIME_AGENT_REGISTRAR_IP=192.0.2.10", "DIB_KEYLIME_AGENT_REGISTRAR_PORT=8891",
			"DIB_REPOLOCATION_keylime={{http}}/git/keylime.git", "DIB_REPOREF_keylime=main"},
		check: func(c *confCheck) {
			c.contains("/etc/keylime.conf", "registrar_ip = 192.0.2.10", "registrar_port = 8891", "agent_uuid = dmidecode")
			if l := c.link("/usr/local/bin/keylime_agent"); l != "/opt/keylime/bin/keylime_agent" {
				c.errorf("/usr/local/bin/keylime_agent -> %q", l)
			}
			c.executable("/opt/keylime/bin/keylime_agent")
			c.contains("/etc/ima/ima-policy", "measure func=BPRM_CHECK")
			c.contains("/root/allowlist.txt", "conformance allowlist")
			c.enabled("multi-user.target", "keylime-agent.service")
		}},
	{name: "local-config", batch: "debian", note: "the building user's `~/.ssh/authorized_keys` in root's",
		check: func(c *confCheck) { c.equals("/root/.ssh/authorized_keys", confKey+"\n") }},
	{name: "lvm", batch: "lvm", note: "lvm2 with its initramfs-tools hook",
		check: func(c *confCheck) {
			c.pkgs("lvm2")
			if !c.has("/usr/share/initramfs-tools/hooks/lvm2") {
				c.errorf("lvm2's initramfs-tools hook is missing")
			}
		}},
	{name: "manifests", batch: "debian", note: "`/etc/dib-manifests` (build variables, package list) in the image and beside it",
		check: func(c *confCheck) {
			c.contains("/etc/dib-manifests/dib_environment", "DIB_")
			if !c.has("/etc/dib-manifests/dib-manifest-dpkg-" + filepath.Base(c.img)) {
				c.errorf("no dib-manifest-dpkg-%s in /etc/dib-manifests", filepath.Base(c.img))
			}
			if _, err := os.Stat(c.img + ".d/dib-manifests/dib_environment"); err != nil {
				c.errorf("no manifests beside the image: %v", err)
			}
		}},
	{name: "mellanox", batch: "debian", note: "the drivers loaded at boot, the udev rule and the InfiniBand user space",
		check: func(c *confCheck) {
			c.contains("/etc/modules-load.d/mellanox.conf", "mlx4_ib", "mlx5_ib")
			c.contains("/etc/udev/rules.d/81-mellanox.rules", "modprobe")
			c.pkgs("ibverbs-utils", "infiniband-diags", "opensm", "mstflint")
		}},
	{name: "modprobe", batch: "debian", note: "`DIB_MODPROBE_BLACKLIST` in `/etc/modprobe.d/blacklist.conf`; an element's `modprobe.d` file installed",
		vars: []string{"DIB_MODPROBE_BLACKLIST=floppy pcspkr"},
		check: func(c *confCheck) {
			c.equals("/etc/modprobe.d/blacklist.conf", "blacklist floppy\nblacklist pcspkr\n")
			c.equals("/etc/modprobe.d/conformance.conf", "options loop max_loop=8\n")
		}},
	{name: "modprobe-blacklist", batch: "minimal", note: "`DIB_MODPROBE_BLACKLIST` in `/etc/modprobe.d/blacklist.conf`",
		vars:  []string{"DIB_MODPROBE_BLACKLIST=floppy"},
		check: func(c *confCheck) { c.equals("/etc/modprobe.d/blacklist.conf", "blacklist floppy\n") }},
	{name: "no-final-image", batch: "ramdisk", note: "no disk written although `-t qcow2,tar` asked for one; the tar is",
		check: func(c *confCheck) {
			if _, err := os.Stat(c.img + ".qcow2"); err == nil {
				c.errorf("%s.qcow2 was written", filepath.Base(c.img))
			}
			c.output(".tar")
		}},
	confNA("oat-client", "Fedora only (its README says so): the packages come from a Fedora repository"),
	{name: "openssh-server", batch: "debian", note: "openssh-server installed, `ssh.service` enabled",
		check: func(c *confCheck) {
			c.pkgs("openssh-server")
			c.enabled("multi-user.target", "ssh.service")
		}},
	{name: "openstack-ci-mirrors", batch: "debian", note: "a CI node's `mirror_info.sh`: its Debian mirror in the image's sources during the build, unsigned repositories allowed",
		vars: []string{"DIB_OPENSTACK_CI_MIRROR_INFO={{fix}}/mirror_info.sh"},
		check: func(c *confCheck) {
			c.contains("/etc/conformance/base-sources", "deb "+c.fix.mirror+"/ bookworm main")
			c.contains("/etc/apt/apt.conf.d/99unauthenticated", `AllowInsecureRepositories "true"`)
		}},
	confNA("opensuse", "another operating system (openSUSE, rpm)"),
	confNA("opensuse-minimal", "another operating system (openSUSE, built with zypper on the host)"),
	{name: "package-installs", batch: "debian", note: "an element's `package-installs.yaml` (through its pkg-map) installs the package",
		check: func(c *confCheck) { c.pkgs("tree", "linux-image-cloud-amd64") }},
	{name: "pip-and-virtualenv", batch: "debian", note: "pip and virtualenv for python 3; `DIB_PYTHON_PIP` and `DIB_PYTHON_VIRTUALENV` in hooks",
		check: func(c *confCheck) {
			c.pkgs("python3-pip", "python3-virtualenv")
			if p := c.probe("pip"); !regexp.MustCompile(`^/usr/bin/python3[.0-9]* -m pip$`).MatchString(p) {
				c.errorf("DIB_PYTHON_PIP=%q", p)
			}
			if p := c.probe("virtualenv"); !regexp.MustCompile(`^/usr/bin/python3[.0-9]* -m venv$`).MatchString(p) {
				c.errorf("DIB_PYTHON_VIRTUALENV=%q", p)
			}
		}},
	{name: "pip-cache", batch: "debian", note: "pip's cache is `/tmp/pip` in hooks, a pip install fills it, and it is kept in the image cache (`pip/`), not in the image",
		check: func(c *confCheck) {
			c.probeIs("pip-cache-dir", "/tmp/pip")
			if n, _ := strconv.Atoi(c.probe("pip-cache-files")); n == 0 {
				c.errorf("pip wrote nothing into /tmp/pip during the hook")
			}
			if ents, err := os.ReadDir(filepath.Join(ownLaneCache(), "pip")); err != nil || len(ents) == 0 {
				c.errorf("the image cache's pip/ is empty, although pip filled /tmp/pip in a hook (sysprep's finalise.d/98 empties /tmp through the bind mount)")
			}
			for p := range c.tree {
				if strings.HasPrefix(p, "/tmp/pip/") {
					c.errorf("%s is in the image", p)
					break
				}
			}
		}},
	{name: "pkg-map", batch: "debian", note: "`pkg-map` maps a generic name through an element's `pkg-map` in a hook",
		check: func(c *confCheck) { c.probeIs("pkg-map", "tree") }},
	{name: "posix", batch: "debian", note: "the packages of the POSIX utilities (a sample: at, bc, ed, flex, fort77, cflow, cxref, pax, uucp, vim)",
		check: func(c *confCheck) {
			c.pkgs("at", "bc", "ed", "flex", "fort77", "cflow", "cxref", "pax", "uucp", "vim", "sharutils", "ncompress")
		}},
	{name: "proliant-tools", kind: confFailsDIB, batch: "packages", failBase: []string{"debian-minimal"}, failWant: "Package 'python-dev' has no installation candidate",
		note: "installs `python-dev` (the default of its pkg-map), which bookworm does not have: the package install fails, in DIB too; it would then download HPE's ssacli and proliantutils from the internet"},
	{name: "pypi", batch: "debian", note: "pip in hooks uses `DIB_PYPI_MIRROR_URL` (the test's index; a package installs from it); no `pip.conf` left in the image",
		vars: []string{"DIB_PYPI_MIRROR_URL={{http}}/simple", "DIB_NO_PYPI_PIP=1"},
		check: func(c *confCheck) {
			c.contains("/etc/conformance/pip.conf", c.fix.http+"/simple")
			c.equals("/etc/conformance/pip-install", "conformance-probe-pkg 1.0\n")
			c.absent("/root/.pip/pip.conf")
		}},
	{name: "python-brickclient", batch: "lvm", note: "a virtualenv in `/usr/share/python-brickclient` with `python-brick-cinderclient-ext` (a stand-in from the test's index: its `post-install.d` hook runs pip after pypi's mirror is gone, so only pip's own `PIP_INDEX_URL` reaches it, in DIB too) and the `python-brickclient` link",
		vars: []string{"PIP_INDEX_URL={{http}}/simple"},
		check: func(c *confCheck) {
			c.pkgs("python3-dev", "libssl-dev", "libffi-dev")
			var found bool
			for p := range c.tree {
				if strings.HasPrefix(p, "/usr/share/python-brickclient/venv/lib/python3") && strings.HasSuffix(p, "/site-packages/brick_cinderclient_ext/__init__.py") {
					found = true
				}
			}
			if !found {
				c.errorf("python-brick-cinderclient-ext is not in /usr/share/python-brickclient/venv")
			}
			if l := c.link("/usr/local/bin/python-brickclient"); l != "/usr/share/python-brickclient/venv/bin/python-brickclient" {
				c.errorf("/usr/local/bin/python-brickclient -> %q", l)
			}
		}},
	{name: "python-stow-versions", kind: confOffline,
		note: "builds every python minor release from source with pyenv's python-build: pyenv from GitHub and CPython's sources from python.org, for which nothing local stands in (and compiling six interpreters would not fit the test's time)"},
	{name: "ramdisk", batch: "ramdisk", note: "`NAME.kernel` and `NAME.initramfs` beside the tree; the initramfs is the image, `/init` starting systemd",
		check: func(c *confCheck) {
			c.output(".kernel")
			if l := c.link("/init"); l != "/sbin/init" && l != "sbin/init" {
				c.errorf("/init -> %q, want /sbin/init", l)
			}
			if files := c.initramfs(); !files["init"] || !files["usr/lib/systemd/systemd"] {
				c.errorf("the initramfs lacks /init or systemd (%d files)", len(files))
			}
		}},
	{name: "ramdisk-base", batch: "ramdisk", note: "the binaries of `binary-deps.d` checked and recorded in `/etc/dib_binary_deps`; the readiness command",
		check: func(c *confCheck) {
			c.contains("/etc/dib_binary_deps", "ip")
			c.executable("/usr/local/sbin/builder-ramdisk-ready")
		}},
	confNA("rax-nova-agent", "Rackspace's Xen guest agent: on Debian it starts through upstart jobs (`/etc/init/*.conf`, after removing its sysv links), a mechanism Debian no longer has"),
	confNA("redhat-common", "the rpm family's shared pieces"),
	confNA("rhel", "another operating system (RHEL, rpm)"),
	confNA("rhel-common", "RHEL's registration and repositories"),
	confNA("rhel7", "another operating system (RHEL 7, rpm)"),
	confNA("rpm-distro", "the rpm family's shared pieces"),
	{name: "runtime-ssh-host-keys", batch: "debian", note: "no ssh host keys in the image; `ssh-keygen.service` makes them at first boot",
		check: func(c *confCheck) {
			for p := range c.tree {
				if strings.HasPrefix(p, "/etc/ssh/ssh_host_") {
					c.errorf("%s is in the image", p)
				}
			}
			c.enabled("multi-user.target", "ssh-keygen.service")
		}},
	{name: "select-boot-kernel-initrd", batch: "debian", note: "`select-boot-kernel-initrd` in a `finalise.d` hook names the image's kernel and initramfs; it is gone from the image",
		check: func(c *confCheck) {
			k, i := c.bootPair()
			c.probeIs("select", k+":"+i)
			c.absent("/usr/local/bin/select-boot-kernel-initrd")
		}},
	{name: "selinux-permissive", batch: "debian", note: "`SELINUX=permissive` in `/etc/selinux/config` during the build (disable-selinux turns it off later)",
		check: func(c *confCheck) { c.probeIs("selinux", "SELINUX=permissive SELINUXTYPE=default") }},
	{name: "simple-init", batch: "minimal", note: "`simple-init.service` enabled with its configuration; no cloud-init",
		check: func(c *confCheck) {
			c.enabled("multi-user.target", "simple-init.service")
			c.executable("/usr/local/sbin/simple-init")
			c.contains("/etc/simple-init.conf", "renderer=")
			c.notPkgs("cloud-init")
		}},
	{name: "source-repositories", batch: "debian", note: "a git repository, a tarball and a file from the test's server, where an element's `source-repository-*` file says; `/etc/dib-source-repositories` and the git manifest",
		check: func(c *confCheck) {
			c.equals("/opt/conformance/git/README", "conformance source\n")
			c.contains("/opt/conformance/git/.git/HEAD", "refs/heads/main")
			c.equals("/opt/conformance/tar/hello.txt", "hello from a tarball\n")
			c.equals("/opt/conformance/file.txt", confFileText)
			c.contains("/etc/dib-source-repositories", "/opt/conformance/git", "/opt/conformance/tar", "/opt/conformance/file.txt")
			c.contains("/etc/dib-manifests/dib-manifest-git-"+filepath.Base(c.img), "conformance-git git /opt/conformance/git", c.fix.srcCommit)
		}},
	{name: "stable-interface-names", batch: "debian", note: "nothing masks predictable interface names",
		check: func(c *confCheck) {
			c.absent("/etc/udev/rules.d/80-net-setup-link.rules", "/etc/systemd/network/99-default.link", "/etc/udev/rules.d/80-net-name-slot.rules")
		}},
	{name: "svc-map", batch: "debian", note: "`svc-map` maps a service through an element's `svc-map` in a hook; the merged map in the image",
		check: func(c *confCheck) {
			c.probeIs("svc-map", "apache2")
			c.contains("/usr/share/svc-map/services", "conformance-web: apache2")
		}},
	{name: "sysctl", batch: "debian", note: "`sysctl-set-value` in a hook writes `/etc/sysctl.d`",
		check: func(c *confCheck) {
			c.contains("/etc/sysctl.d/net.ipv4.ip_forward.conf", "net.ipv4.ip_forward = 1")
		}},
	{name: "sysprep", batch: "debian", note: "an empty `/etc/machine-id` and no other machine id (D-Bus's), `/tmp` empty",
		check: func(c *confCheck) {
			c.equals("/etc/machine-id", "")
			if e, ok := c.tree["/var/lib/dbus/machine-id"]; ok && e.size > 0 {
				c.errorf("/var/lib/dbus/machine-id holds a machine id")
			}
			for p := range c.tree {
				if strings.HasPrefix(p, "/tmp/") {
					c.errorf("%s is in the image", p)
					break
				}
			}
		}},
	confNA("tpm-emulator", "written for the rpm family: its `package-installs.yaml` names Fedora packages (gcc-c++, dbus-devel, glib2-devel, libstdc++-devel...) without a pkg-map"),
	confNA("uboot", "U-Boot images for ARM boards (it acts only when ARCH is arm*); builder builds amd64"),
	confNA("ubuntu", "another operating system (Ubuntu)"),
	confNA("ubuntu-common", "Ubuntu's shared settings"),
	confNA("ubuntu-minimal", "another operating system (Ubuntu)"),
	confNA("ubuntu-signed", "Ubuntu's signed kernel package (linux-signed-image-generic)"),
	confNA("ubuntu-systemd-container", "another operating system (an Ubuntu machine container)"),
	{name: "vm", batch: "debian", note: "a partitioned qcow2 disk",
		check: func(c *confCheck) {
			if d := c.disk(); len(d.parts) == 0 {
				c.errorf("the disk has no partitions")
			}
		}},
	confNA("yum", "the rpm family's package tool"),
	confNA("yum-minimal", "the bootstrap of DIB's centos-minimal and fedora-minimal (rpm)"),
	confNA("zipl", "the s390x boot loader: another architecture"),
	confNA("zypper", "openSUSE's package tool"),
	confNA("zypper-minimal", "the bootstrap of DIB's opensuse-minimal"),
}

// Contents the fixture serves or writes, and the checks compare against.
const (
	confAptConf        = "Conformance::AptConf \"from-dib-apt-conf\";\n"
	confAptPreferences = "Package: tree\nPin: version *\nPin-Priority: 1001\n\n"
	confCacheURLText   = "fetched with cache-url\n"
	confFileText       = "a single file from the test's server\n"
	confKey            = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConformanceConformanceConformanceKey conformance@test"
	confESP            = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	confBIOSBoot       = "21686148-6449-6E6F-744E-656564454649"
	confLinuxFS        = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// TestConformanceTableCoversDIBLibrary needs no build: the table has every
// element of the installed DIB library and nothing else, and each row is
// complete.
func TestConformanceTableCoversDIBLibrary(t *testing.T) {
	lib := confDIBLibrary(t)
	inDIB := map[string]bool{}
	for _, n := range lib {
		inDIB[n] = true
	}
	inTable := map[string]bool{}
	batches := map[string]bool{}
	for _, b := range confBatches {
		batches[b.name] = true
	}
	for i, e := range confTable {
		if i > 0 && confTable[i-1].name >= e.name {
			t.Errorf("table not in name order at %s", e.name)
		}
		inTable[e.name] = true
		if !inDIB[e.name] {
			t.Errorf("the table has %s, which DIB's library (%s) does not", e.name, elements.FindDIBLibrary())
		}
		if e.note == "" {
			t.Errorf("%s: no note", e.name)
		}
		switch e.kind {
		case confWorks:
			if e.check == nil || !batches[e.batch] {
				t.Errorf("%s: an applicable element needs a check and one of the builds (batch %q)", e.name, e.batch)
			}
		case confFailsDIB:
			if len(e.failBase) == 0 || e.failWant == "" {
				t.Errorf("%s: a failing element needs its build's base and the expected message", e.name)
			}
			if e.batch != "" && batches[e.batch] {
				t.Errorf("%s: its failing build %q has the name of a build of working elements", e.name, e.batch)
			}
		}
	}
	for _, b := range confFailBuilds() {
		for _, e := range b.elems {
			if strings.Join(e.failBase, " ") != strings.Join(b.base, " ") {
				t.Errorf("%s: the elements of failing build %s need the same base (%v, not %v)", e.name, b.name, b.base, e.failBase)
			}
		}
	}
	for _, n := range lib {
		if !inTable[n] {
			t.Errorf("DIB's library has %s, which the conformance table lacks: classify it in tests/e2e/conformance_test.go", n)
		}
	}
}

// confDIBLibrary lists the element directories of the installed DIB.
func confDIBLibrary(t *testing.T) []string {
	t.Helper()
	dir := elements.FindDIBLibrary()
	if dir == "" {
		t.Fatalf("diskimage-builder is not installed: apt-get install python3-diskimage-builder (the table is DIB 3.13's library)")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		// __pycache__ is Python's, not an element.
		if e.IsDir() && !strings.HasPrefix(e.Name(), "__") {
			names = append(names, e.Name())
		}
	}
	return names
}

// confResult is what the test found for one element.
type confResult struct {
	ok     bool
	detail string // the first problem
}

func TestConformanceDIBElements(t *testing.T) {
	needE2EOwnLane(t)
	ownLaneDirs(confOutBase(), filepath.Join(cacheDir, "conformance-fixtures"))
	lib := confDIBLibrary(t)
	if len(lib) != len(confTable) {
		t.Fatalf("DIB's library has %d elements, the table %d: TestConformanceTableCoversDIBLibrary says which", len(lib), len(confTable))
	}
	start := time.Now()
	from := confProvenance(t)
	fix := confFixtures(t)
	results := map[string]confResult{}
	only := map[string]bool{}
	for _, b := range strings.Split(os.Getenv("BUILDER_CONFORMANCE_BATCHES"), ",") {
		if b != "" {
			only[b] = true
		}
	}
	all := len(only) == 0

	for _, b := range confBatches {
		if !all && !only[b.name] {
			continue
		}
		var elems []string
		for _, e := range confTable {
			if e.kind == confWorks && e.batch == b.name {
				elems = append(elems, e.name)
			}
		}
		t.Run("build="+b.name, func(t *testing.T) { confRunBatch(t, fix, b, elems, results) })
	}
	for _, b := range confFailBuilds() {
		if !all && !only[b.name] {
			continue
		}
		b := b
		t.Run(strings.Replace(b.name, "-", "=", 1), func(t *testing.T) { confRunFailing(t, fix, b, results) })
	}
	t.Logf("conformance builds took %s", time.Since(start).Round(time.Second))

	if !all {
		t.Logf("BUILDER_CONFORMANCE_BATCHES=%s: only those builds ran; the README is not compared", os.Getenv("BUILDER_CONFORMANCE_BATCHES"))
		return
	}
	confCompareREADME(t, confMarkdown(from, results))
}

// confRunBatch builds one batch and checks each of its elements.
func confRunBatch(t *testing.T, fix *confFix, b confBatch, elems []string, results map[string]confResult) {
	out := confOutDir(t, b.name)
	name := "conf-" + b.name
	all := append(append([]string(nil), b.base...), elems...)
	if b.probe {
		all = append(all, "conformance-probe")
	}
	all = confDedup(all)
	env := fix.env()
	for _, e := range confTable {
		if e.batch == b.name {
			env = append(env, fix.expand(e.vars)...)
		}
	}
	args := append([]string{"image"}, all...)
	args = append(args, "-t", b.types, "-o", filepath.Join(out, name), "--image-cache", ownLaneCache())
	started := time.Now()
	r := runBuilder(t, withTimeout(t, 40*time.Minute), append(env, "TMP_DIR="+confOutDir(t, b.name+".tmp")), args...)
	t.Logf("build %s: %s (exit %d)", b.name, time.Since(started).Round(time.Second), r.code)
	log := r.stdout + r.stderr
	if r.code != 0 {
		failed, hook := confFailedHook(log)
		for _, e := range elems {
			if e == failed {
				results[e] = confResult{detail: fmt.Sprintf("its hook %s fails under builder", hook)}
			} else {
				results[e] = confResult{detail: fmt.Sprintf("not checked: build %q failed (%s)", b.name, confFirstLine(hook, failed))}
			}
		}
		t.Errorf("build %s failed: %s", b.name, confFirstLine(hook, failed))
		return
	}
	c := &confCheck{fix: fix, out: out, img: filepath.Join(out, name), memo: &confMemo{}}
	if strings.Contains(b.types, "tar") {
		c.tree = confReadTar(t, c.img+".tar")
	}
	for _, en := range elems {
		e, en := confFind(en), en
		t.Run(en, func(t *testing.T) {
			cc := *c
			cc.t = t
			cc.errs = nil
			e.check(&cc)
			if len(cc.errs) == 0 {
				results[en] = confResult{ok: true}
			} else {
				// The README gets it: no temporary paths.
				results[en] = confResult{detail: strings.ReplaceAll(cc.errs[0], out+"/", "")}
			}
		})
	}
}

// confRunFailing runs a build of confFailsDIB elements and expects the
// failure the table documents for each of them.
func confRunFailing(t *testing.T, fix *confFix, b *confFailBuild, results map[string]confResult) {
	out := confOutDir(t, b.name)
	args := append([]string{"image"}, b.args()...)
	args = append(args, "-t", "tar", "-o", filepath.Join(out, "conf-fail"), "--image-cache", ownLaneCache())
	started := time.Now()
	r := runBuilder(t, withTimeout(t, 30*time.Minute), append(fix.env(), "TMP_DIR="+confOutDir(t, b.name+".tmp")), args...)
	t.Logf("build %s: %s (exit %d)", b.name, time.Since(started).Round(time.Second), r.code)
	// The hook's own log has all of its output, the console only its end.
	log := r.stdout + r.stderr
	logs, _ := filepath.Glob(filepath.Join(out, "conf-fail.d", "logs", "*"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		log += string(data)
	}
	for _, e := range b.elems {
		switch {
		case r.code == 0:
			results[e.name] = confResult{detail: "builds: the table says it fails; check it and update the table"}
			t.Errorf("%s built, the table says it fails (%s)", e.name, e.note)
		case !strings.Contains(log, e.failWant):
			results[e.name] = confResult{detail: "fails another way than the table says"}
			t.Errorf("%s failed without %q in builder's output: not the documented failure", e.name, e.failWant)
		default:
			results[e.name] = confResult{ok: true}
		}
	}
}

// confOutBase holds the builds' output directories.
func confOutBase() string {
	if keep := os.Getenv("BUILDER_CONFORMANCE_OUT"); keep != "" {
		return keep
	}
	return filepath.Join(cacheDir, "conformance-out")
}

// confOutDir is where a build writes (and NAME.tmp its TMP_DIR):
// $BUILDER_CONFORMANCE_OUT/NAME to keep the outputs for a look, else a
// directory of the test cache that is removed afterwards. Its path is the
// same on every run: the build's command line (-o) is recorded in the
// image (manifests' dib_arguments) and hooks can read TMP_DIR, so a path
// that changed would rebuild the steps from there on. The fixture's lock
// makes the directory this run's.
func confOutDir(t *testing.T, name string) string {
	t.Helper()
	keep := os.Getenv("BUILDER_CONFORMANCE_OUT")
	dir := filepath.Join(confOutBase(), name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if keep == "" {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir
}

var confHookRe = regexp.MustCompile(`hook (\S+) \(element ([^)\s]+)\) failed`)

// confFailedHook finds the failing hook and its element in builder's output.
func confFailedHook(log string) (element, hook string) {
	if m := confHookRe.FindStringSubmatch(log); m != nil {
		return m[2], m[1]
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "builder: ") {
			return "", strings.TrimPrefix(l, "builder: ")
		}
	}
	return "", "no failing hook named"
}

func confFirstLine(hook, element string) string {
	if element == "" {
		return hook
	}
	return fmt.Sprintf("%s of %s", hook, element)
}

func confFind(name string) confElement {
	for _, e := range confTable {
		if e.name == name {
			return e
		}
	}
	panic("no table entry " + name)
}

func confDedup(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// confProvenance asks builder where each element comes from: its own
// library ("built-in") or DIB's.
func confProvenance(t *testing.T) map[string]string {
	t.Helper()
	r := runBuilder(t, withTimeout(t, time.Minute), nil, "elements", "list")
	if r.code != 0 {
		t.Fatalf("builder elements list failed")
	}
	lines := strings.Split(r.stdout, "\n")
	col := strings.Index(lines[0], "FROM")
	if col < 0 {
		t.Fatalf("builder elements list has no FROM column:\n%s", lines[0])
	}
	from := map[string]string{}
	for _, l := range lines[1:] {
		if len(l) <= col {
			continue
		}
		f := strings.Fields(l[col:])
		if len(f) > 0 {
			from[strings.Fields(l)[0]] = f[0]
		}
	}
	return from
}

// confMarkdown is the README's table: the Go table with what the test found.
func confMarkdown(from map[string]string, results map[string]confResult) string {
	var b strings.Builder
	b.WriteString("| element | builder runs | result | why, or what the test checks | variables the test sets | build |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, e := range confTable {
		who := "DIB's"
		if from[e.name] == "built-in" {
			who = "builder's own"
		}
		var status string
		res, ran := results[e.name]
		switch e.kind {
		case confNotDebian:
			status = "does not apply to Debian"
		case confOffline:
			status = "applies, cannot be verified offline here"
		case confFailsDIB:
			switch {
			case !ran:
				status = "not run"
			case res.ok:
				status = "fails in DIB too"
			default:
				status = "**FAILS otherwise**: " + res.detail
			}
		case confWorks:
			switch {
			case !ran:
				status = "not run"
			case res.ok:
				status = "works"
			default:
				status = "**FAILS under builder**: " + res.detail
			}
		}
		var vars []string
		for _, v := range e.vars {
			vars = append(vars, "`"+strings.SplitN(v, "=", 2)[0]+"`")
		}
		build := e.batch
		if e.kind == confFailsDIB {
			build = "fails: " + strings.TrimPrefix(confFailName(e), "fails-")
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", e.name, who, confCell(status), confCell(e.note), strings.Join(vars, " "), build)
	}
	b.WriteString("\nThe builds (`-o`, `--image-cache` and the variables left out):\n\n")
	for _, bt := range confBatches {
		elems := append([]string(nil), bt.base...)
		for _, e := range confTable {
			if e.kind == confWorks && e.batch == bt.name {
				elems = append(elems, e.name)
			}
		}
		probe := ""
		if bt.probe {
			elems = append(elems, "conformance-probe")
			probe = " (`conformance-probe` is the test's own element)"
		}
		fmt.Fprintf(&b, "- `%s`: `builder image %s -t %s`%s\n", bt.name, strings.Join(confDedup(elems), " "), bt.types, probe)
	}
	b.WriteString("\nThe builds that must fail, each with the message of every element in it:\n\n")
	for _, fb := range confFailBuilds() {
		fmt.Fprintf(&b, "- `fails: %s`: `builder image %s -t tar`\n", strings.TrimPrefix(fb.name, "fails-"), strings.Join(fb.args(), " "))
	}
	return b.String()
}

func confCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

const (
	confBegin = "<!-- conformance:begin -->"
	confEnd   = "<!-- conformance:end -->"
)

// confCompareREADME compares the README's section with table, or rewrites
// it with BUILDER_UPDATE_README=1.
func confCompareREADME(t *testing.T, table string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	readme := filepath.Join(filepath.Dir(file), "..", "..", "README.md")
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i, j := strings.Index(s, confBegin), strings.Index(s, confEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %s ... %s section", confBegin, confEnd)
	}
	have := s[i+len(confBegin) : j]
	want := "\n" + table
	if have == want {
		return
	}
	if os.Getenv("BUILDER_UPDATE_README") == "1" {
		if err := os.WriteFile(readme, []byte(s[:i+len(confBegin)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the conformance table in %s", readme)
		return
	}
	hl, wl := strings.Split(have, "\n"), strings.Split(want, "\n")
	for k := 0; k < len(hl) || k < len(wl); k++ {
		var h, w string
		if k < len(hl) {
			h = hl[k]
		}
		if k < len(wl) {
			w = wl[k]
		}
		if h != w {
			t.Errorf("README.md's conformance table differs from what the test found (BUILDER_UPDATE_README=1 rewrites it); first difference, line %d:\nREADME: %s\nfound:  %s", k, h, w)
			return
		}
	}
}

// confCheck is what an element's check sees: the batch's outputs and tree.
type confCheck struct {
	t    *testing.T
	fix  *confFix
	out  string // output directory
	img  string // out/NAME: outputs are img + ".tar", ".qcow2", ...
	tree confTree
	errs []string
	// What several elements' checks read (the disk's partitions, the
	// initramfs's list), worked out once per build.
	memo *confMemo
}

type confMemo struct {
	dsk             *confDisk
	files           map[string]bool
	dskErr, fileErr string // why they are empty: every check that needs them says it
}

func (c *confCheck) errorf(format string, args ...interface{}) {
	c.t.Helper()
	msg := fmt.Sprintf(format, args...)
	c.errs = append(c.errs, msg)
	c.t.Error(msg)
}

func (c *confCheck) has(p string) bool {
	_, ok := c.tree[p]
	return ok
}

// file is a regular file's content (an error when it is missing).
func (c *confCheck) file(p string) string {
	c.t.Helper()
	e, ok := c.tree[p]
	if !ok || e.kind != tar.TypeReg {
		c.errorf("%s is not a file in the image", p)
		return ""
	}
	if e.data == nil && e.size > 0 {
		c.errorf("%s (%d bytes) was not kept by the test's tar reader", p, e.size)
	}
	return string(e.data)
}

func (c *confCheck) equals(p, want string) {
	c.t.Helper()
	if got := c.file(p); got != want && c.has(p) {
		c.errorf("%s = %q, want %q", p, got, want)
	}
}

func (c *confCheck) contains(p string, wants ...string) {
	c.t.Helper()
	got := c.file(p)
	if !c.has(p) {
		return
	}
	for _, w := range wants {
		if !strings.Contains(got, w) {
			c.errorf("%s lacks %q", p, w)
		}
	}
}

func (c *confCheck) absent(paths ...string) {
	c.t.Helper()
	for _, p := range paths {
		if c.has(p) {
			c.errorf("%s is in the image", p)
		}
	}
}

func (c *confCheck) executable(p string) {
	c.t.Helper()
	e, ok := c.tree[p]
	if !ok || e.kind != tar.TypeReg || e.mode&0o111 == 0 {
		c.errorf("%s is not an executable file in the image", p)
	}
}

func (c *confCheck) link(p string) string {
	if e, ok := c.tree[p]; ok && e.kind == tar.TypeSymlink {
		return e.link
	}
	return ""
}

// enabled: an /etc/systemd/system/TARGET.wants link to the unit, whose
// file is in the image.
func (c *confCheck) enabled(target, unit string) {
	c.t.Helper()
	l := c.link("/etc/systemd/system/" + target + ".wants/" + unit)
	if l == "" {
		c.errorf("%s is not enabled (no %s.wants link)", unit, target)
		return
	}
	// /lib is a link to /usr/lib in the tar: look for both spellings.
	if !c.has(l) && !c.has("/usr"+l) {
		c.errorf("%s.wants/%s -> %s, which is not in the image", target, unit, l)
	}
}

// pkgs: installed according to dpkg.
func (c *confCheck) pkgs(names ...string) {
	c.t.Helper()
	status := c.file("/var/lib/dpkg/status")
	for _, n := range names {
		if !confInstalled(status, n) {
			c.errorf("package %s is not installed", n)
		}
	}
}

func (c *confCheck) notPkgs(names ...string) {
	c.t.Helper()
	status := c.file("/var/lib/dpkg/status")
	for _, n := range names {
		if confInstalled(status, n) {
			c.errorf("package %s is installed", n)
		}
	}
}

func confInstalled(status, pkg string) bool {
	for _, para := range strings.Split(status, "\n\n") {
		if strings.HasPrefix(para, "Package: "+pkg+"\n") && strings.Contains(para, "\nStatus: install ok installed\n") {
			return true
		}
	}
	return false
}

// probe is a fact the test element recorded during the build.
func (c *confCheck) probe(key string) string {
	c.t.Helper()
	for _, l := range strings.Split(c.file("/etc/conformance/probe.txt"), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && k == key {
			return v
		}
	}
	c.errorf("the test element recorded no %s", key)
	return ""
}

func (c *confCheck) probeIs(key, want string) {
	c.t.Helper()
	if got := c.probe(key); got != want {
		c.errorf("%s in a hook: %q, want %q", key, got, want)
	}
}

// output: a file beside the image.
func (c *confCheck) output(suffix string) string {
	c.t.Helper()
	p := c.img + suffix
	if st, err := os.Stat(p); err != nil || st.Size() == 0 {
		c.errorf("%s is not beside the image (%v)", filepath.Base(p), err)
	}
	return p
}

// sameSize: the output has the size of the tree's file.
func (c *confCheck) sameSize(output, treePath string) {
	c.t.Helper()
	st, err := os.Stat(output)
	if err != nil {
		c.errorf("%s is not beside the image", filepath.Base(output))
		return
	}
	e, ok := c.tree[treePath]
	if !ok {
		c.errorf("%s is not in the image", treePath)
		return
	}
	if st.Size() != e.size {
		c.errorf("%s has %d bytes, the image's %s %d", filepath.Base(output), st.Size(), treePath, e.size)
	}
}

// bootPair is the kernel and initramfs (names in /boot) the image boots:
// DIB's choice on Debian, the newest by version.
func (c *confCheck) bootPair() (kernel, initrd string) {
	c.t.Helper()
	var ks []string
	for p := range c.tree {
		if strings.HasPrefix(p, "/boot/vmlinuz-") {
			ks = append(ks, strings.TrimPrefix(p, "/boot/vmlinuz-"))
		}
	}
	if len(ks) == 0 {
		c.errorf("no kernel in /boot")
		return "", ""
	}
	sort.Slice(ks, func(i, j int) bool { return confVersionLess(ks[i], ks[j]) })
	v := ks[len(ks)-1]
	if !c.has("/boot/initrd.img-" + v) {
		c.errorf("no /boot/initrd.img-%s", v)
	}
	return "vmlinuz-" + v, "initrd.img-" + v
}

// kernelVersion is the version of the kernel flavour (generic, cloud)
// whose modules are in the image.
func (c *confCheck) kernelVersion(flavour string) string {
	re := regexp.MustCompile(`^/usr/lib/modules/([^/]+)$`)
	for p := range c.tree {
		m := re.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		cloud := strings.HasSuffix(m[1], "-cloud-amd64")
		if (flavour == "cloud") == cloud && strings.HasSuffix(m[1], "-amd64") {
			return m[1]
		}
	}
	return "none-" + flavour
}

// confVersionLess orders like sort -V for kernel versions.
func confVersionLess(a, b string) bool {
	split := func(s string) []string { return regexp.MustCompile(`\d+|\D+`).FindAllString(s, -1) }
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		if ea == nil && eb == nil {
			return na < nb
		}
		return pa[i] < pb[i]
	}
	return len(pa) < len(pb)
}

// initramfs lists the files of the batch's NAME.initramfs.
func (c *confCheck) initramfs() map[string]bool {
	c.t.Helper()
	m := c.memo
	if m.files != nil {
		if m.fileErr != "" {
			c.errorf("%s", m.fileErr)
		}
		return m.files
	}
	m.files = map[string]bool{}
	data, err := os.ReadFile(c.img + ".initramfs")
	if err != nil {
		m.fileErr = fmt.Sprintf("no NAME.initramfs beside the image: %v", err)
		c.errorf("%s", m.fileErr)
		return m.files
	}
	m.files = confCpioNames(c.t, data)
	return m.files
}

// confCpioNames lists a (gzip, zstd or plain) newc archive.
func confCpioNames(t *testing.T, data []byte) map[string]bool {
	t.Helper()
	raw := data
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		cmd := exec.Command("zstd", "-dc")
		cmd.Stdin = bytes.NewReader(data)
		var err error
		if raw, err = cmd.Output(); err != nil {
			t.Fatalf("zstd -dc: %v (apt-get install zstd)", err)
		}
	}
	files := map[string]bool{}
	for i := 0; i+110 <= len(raw); {
		if string(raw[i:i+6]) != "070701" {
			i++
			continue
		}
		hex := func(off int) int {
			n, _ := strconv.ParseUint(string(raw[i+off:i+off+8]), 16, 32)
			return int(n)
		}
		size, nameSize := hex(54), hex(94)
		if i+110+nameSize > len(raw) {
			break
		}
		name := strings.TrimPrefix(string(raw[i+110:i+110+nameSize-1]), "./")
		i = (i + 110 + nameSize + 3) &^ 3
		i = (i + size + 3) &^ 3
		if name != "TRAILER!!!" {
			files[name] = true
		}
	}
	return files
}

// confTree is a built tree read from the tar output: every entry's header,
// the content of small files and of the ones checks read.
type confTree map[string]*confEntry

type confEntry struct {
	kind byte
	mode int64
	size int64
	link string
	data []byte
}

func confKeep(p string, size int64) bool {
	return size <= 64<<10 || p == "/var/lib/dpkg/status" || (strings.HasPrefix(p, "/etc/") && size <= 4<<20)
}

func confReadTar(t *testing.T, path string) confTree {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tree := confTree{}
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		name := strings.TrimSuffix("/"+strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/"), "/")
		if name == "" {
			name = "/"
		}
		e := &confEntry{kind: h.Typeflag, mode: h.Mode, size: h.Size, link: h.Linkname}
		if h.Typeflag == tar.TypeReg && confKeep(name, h.Size) {
			if e.data, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
		tree[name] = e
	}
	if len(tree) < 1000 {
		t.Fatalf("%s has only %d entries", path, len(tree))
	}
	return tree
}

// confDisk is the batch's qcow2 as a sparse raw file with its partitions.
type confDisk struct {
	raw   string
	label string
	parts []confPart
}

type confPart struct {
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	Name     string `json:"name"`
	Bootable bool   `json:"bootable"`
}

func (c *confCheck) disk() *confDisk {
	c.t.Helper()
	m := c.memo
	if m.dsk != nil {
		if m.dskErr != "" {
			c.errorf("%s", m.dskErr)
		}
		return m.dsk
	}
	m.dsk = &confDisk{}
	fail := func(format string, args ...interface{}) *confDisk {
		m.dskErr = fmt.Sprintf(format, args...)
		c.errorf("%s", m.dskErr)
		return m.dsk
	}
	qcow2 := c.img + ".qcow2"
	if _, err := os.Stat(qcow2); err != nil {
		return fail("no qcow2 written: %v", err)
	}
	raw := filepath.Join(c.out, "disk.raw")
	if _, err := os.Stat(raw); err != nil {
		if out, err := exec.Command("qemu-img", "convert", "-O", "raw", qcow2, raw).CombinedOutput(); err != nil {
			c.t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
	}
	out, err := exec.Command("sfdisk", "--json", raw).Output()
	if err != nil {
		return fail("sfdisk --json on the disk: %v", err)
	}
	var pt struct {
		PartitionTable struct {
			Label      string     `json:"label"`
			Partitions []confPart `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		c.t.Fatal(err)
	}
	m.dsk = &confDisk{raw: raw, label: pt.PartitionTable.Label, parts: pt.PartitionTable.Partitions}
	return m.dsk
}

// want: the label and the partition types, in order.
func (d *confDisk) want(c *confCheck, label string, types ...string) {
	c.t.Helper()
	var got []string
	for _, p := range d.parts {
		got = append(got, p.Type)
	}
	if d.label != label || strings.Join(got, " ") != strings.Join(types, " ") {
		c.errorf("disk: %s table with partitions %v, want %s with %v", d.label, got, label, types)
	}
}

// read returns n bytes of partition i (-1: the disk) from offset off.
func (d *confDisk) read(c *confCheck, i int, off, n int64) []byte {
	c.t.Helper()
	if i >= len(d.parts) || d.raw == "" {
		return nil
	}
	if i >= 0 {
		off += d.parts[i].Start * 512
	}
	f, err := os.Open(d.raw)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	m, _ := f.ReadAt(buf, off)
	return buf[:m]
}

// espHas: the EFI system partition has the file (mtools reads the FAT).
func (d *confDisk) espHas(c *confCheck, path string) {
	c.t.Helper()
	for _, p := range d.parts {
		if p.Type != confESP {
			continue
		}
		out, err := exec.Command("mdir", "-b", "-i", fmt.Sprintf("%s@@%d", d.raw, p.Start*512), "::/"+filepath.Dir(path)).CombinedOutput()
		if err != nil || !strings.Contains(strings.ToUpper(string(out)), strings.ToUpper(filepath.Base(path))) {
			c.errorf("the ESP has no %s (%v): %s", path, err, out)
		}
		return
	}
	c.errorf("no ESP")
}

// confFix is what the builds get from the test: a server on 127.0.0.1
// (files, a package index, git over HTTP), files the variables name, the
// test element, and the host's Debian mirrors.
type confFix struct {
	dir       string // under the test cache: stable paths keep steps cached
	http      string // http://127.0.0.1:PORT
	mirror    string // the host's Debian mirror
	security  string
	sources   string // DIB_APT_SOURCES's content
	srcCommit string
	elements  string // ELEMENTS_PATH
	home      string
}

// env is every build's environment.
func (f *confFix) env() []string {
	return []string{"ELEMENTS_PATH=" + f.elements, "HOME=" + f.home, "CONFORMANCE_HTTP=" + f.http}
}

func (f *confFix) expand(vars []string) []string {
	r := strings.NewReplacer("{{fix}}", f.dir, "{{http}}", f.http)
	var out []string
	for _, v := range vars {
		out = append(out, r.Replace(v))
	}
	return out
}

// confPort is the fixture server's port: the first free one of a small
// fixed range, so that a rerun usually gets the same address.
func confListen(t *testing.T) net.Listener {
	t.Helper()
	for p := 47310; p < 47330; p++ {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			return l
		}
	}
	t.Fatalf("no free port in 47310-47329 on 127.0.0.1 for the conformance test's server")
	return nil
}

func confFixtures(t *testing.T) *confFix {
	t.Helper()
	f := &confFix{dir: filepath.Join(cacheDir, "conformance-fixtures")}
	// One run at a time owns the fixture directory and the port range.
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(f.dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	os.RemoveAll(f.dir)
	f.mirror, f.security = confHostMirrors(t)
	l := confListen(t)
	f.http = "http://" + l.Addr().String()
	files := http.FileServer(http.Dir(filepath.Join(f.dir, "www")))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As PyPI does: pip keeps what it downloaded in its cache (pip-cache
		// is checked by that) only for answers that say how long they last.
		w.Header().Set("Cache-Control", "max-age=600")
		files.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	w := func(rel, data string, mode os.FileMode) string {
		p := filepath.Join(f.dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		// A fixed time: the same content gives the same answers (and
		// If-Modified-Since results) on every run.
		os.Chtimes(p, time.Unix(1700000000, 0), time.Unix(1700000000, 0))
		return p
	}

	// Files the variables name.
	w("apt.conf", confAptConf, 0o644)
	w("dpkg-manifest", "tree amd64 *\n", 0o644)
	f.sources = fmt.Sprintf("deb %s bookworm main contrib\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n", f.mirror, f.mirror, f.security)
	w("sources.list", f.sources, 0o644)
	w("devuser.pub", confKey+"\n", 0o644)
	w("mirror_info.sh", "export NODEPOOL_MIRROR_HOST=mirror.ci.invalid\nexport NODEPOOL_DEBIAN_MIRROR="+f.mirror+"/\n", 0o644)
	f.home = filepath.Join(f.dir, "home")
	w("home/.ssh/authorized_keys", confKey+"\n", 0o600)
	// An HPE firmware package unpacks itself with --unpack=DIR.
	w("ilo/conformance-fw.scexe", "#!/bin/bash\nset -eu\ndir=${1#--unpack=}\nmkdir -p \"$dir\"\nprintf '#!/bin/sh\\nexit 4\\n' > \"$dir/flash_ilo4\"\nchmod +x \"$dir/flash_ilo4\"\n", 0o755)

	// Served files.
	w("www/cache-url.txt", confCacheURLText, 0o644)
	w("www/conformance-file.txt", confFileText, 0o644)
	w("www/conformance-src.tar.gz", string(confTarGz(t, map[string]string{"conformance-src/hello.txt": "hello from a tarball\n"})), 0o644)
	writeSimpleIndex(t, filepath.Join(f.dir, "www"), []pyPackage{
		{Name: "conformance-probe-pkg", Version: "1.0", Module: "conformance_probe_pkg",
			Files: map[string]string{"conformance_probe_pkg/__init__.py": "MARK = 'conformance-probe-pkg 1.0'\n"}},
		{Name: "python-brick-cinderclient-ext", Version: "0.2.0", Module: "brick_cinderclient_ext",
			Files: map[string]string{"brick_cinderclient_ext/__init__.py": "# stand-in for the conformance test\n"}},
		{Name: "conformance-keylime-dep", Version: "1.0", Module: "conformance_keylime_dep",
			Files: map[string]string{"conformance_keylime_dep/__init__.py": "\n"}},
	})

	// Git repositories, served by the same server (git's "dumb" HTTP).
	f.srcCommit = confGitRepo(t, filepath.Join(f.dir, "www", "git", "conformance-src.git"), map[string]confGitFile{
		"README": {data: "conformance source\n"},
	})
	confGitRepo(t, filepath.Join(f.dir, "www", "git", "keylime.git"), confKeylime)

	// The test element.
	f.elements = filepath.Join(f.dir, "elements")
	for rel, data := range confProbe(f) {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(data, "#!") {
			mode = 0o755
		}
		w(filepath.Join("elements", "conformance-probe", rel), data, mode)
	}
	return f
}

type confGitFile struct {
	data string
	exec bool
}

// confKeylime stands in for keylime's source tree: what keylime-agent's
// install script uses of it (requirements.txt, an installable project
// whose setup.py puts keylime.conf in /etc, scripts/create_allowlist.sh).
var confKeylime = map[string]confGitFile{
	"requirements.txt":    {data: "conformance-keylime-dep\n"},
	"keylime/__init__.py": {data: ""},
	"keylime/cmd.py":      {data: "def main():\n    print('keylime stand-in')\n"},
	"keylime.conf":        {data: "[general]\nagent_uuid = d432fbb3-d2f1-4a97-9ef7-75bd81c00000\ncloudagent_ip = 127.0.0.1\nregistrar_ip = 127.0.0.1\nregistrar_port = 8890\n[logger_root]\nlevel = INFO\n"},
	"setup.py": {data: `from setuptools import setup
setup(
    name="keylime",
    version="0.0.0",
    packages=["keylime"],
    data_files=[("/etc", ["keylime.conf"])],
    entry_points={"console_scripts": [
        "keylime_agent=keylime.cmd:main",
        "keylime_ima_emulator=keylime.cmd:main",
    ]},
)
`},
	"scripts/create_allowlist.sh": {exec: true, data: "#!/bin/sh\nset -e\necho \"conformance allowlist ($2)\" > \"$1\"\n"},
}

// confGitRepo makes a bare repository with one commit on main (fixed dates:
// the same commit id on every run) and what git's dumb HTTP needs.
func confGitRepo(t *testing.T, bare string, files map[string]confGitFile) string {
	t.Helper()
	work := t.TempDir()
	env := append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=conformance", "GIT_AUTHOR_EMAIL=conformance@example.invalid",
		"GIT_COMMITTER_NAME=conformance", "GIT_COMMITTER_EMAIL=conformance@example.invalid",
		"GIT_AUTHOR_DATE=2023-11-14T22:13:20Z", "GIT_COMMITTER_DATE=2023-11-14T22:13:20Z")
	run := func(dir string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s (apt-get install git)", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run(work, "init", "-q", "-b", "main")
	for name, f := range files {
		p := filepath.Join(work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if f.exec {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(f.data), mode); err != nil {
			t.Fatal(err)
		}
	}
	run(work, "add", "-A")
	run(work, "commit", "-q", "-m", "conformance fixture")
	os.MkdirAll(filepath.Dir(bare), 0o755)
	run(filepath.Dir(bare), "clone", "-q", "--bare", work, bare)
	run(bare, "update-server-info")
	return run(work, "rev-parse", "HEAD")
}

// confTarGz is a gzip'd tarball (fixed times and owners).
func confTarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.ModTime = time.Unix(1700000000, 0)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg})
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// confHostMirrors reads the Debian and debian-security mirrors of the
// host's apt (the only mirror these machines reach).
func confHostMirrors(t *testing.T) (debian, security string) {
	t.Helper()
	var uris []string
	if data, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "URIs:" {
				uris = append(uris, f[1:]...)
			}
		}
	}
	if data, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "deb" && !strings.HasPrefix(f[1], "[") {
				uris = append(uris, f[1])
			}
		}
	}
	for _, u := range uris {
		u = strings.TrimSuffix(u, "/")
		switch {
		case strings.HasSuffix(u, "/debian-security") && security == "":
			security = u
		case strings.HasSuffix(u, "/debian") && debian == "":
			debian = u
		}
	}
	if debian == "" || security == "" {
		t.Fatalf("no Debian and debian-security mirror in the host's apt sources (found %v): the test points apt-sources and openstack-ci-mirrors at them", uris)
	}
	return debian, security
}

// confProbe is the test element of the "debian" build: it gives the
// utility elements something to act on (bin/, static/, install types,
// package-installs with a pkg-map, svc-map, modprobe.d, init-scripts,
// source-repository lines) and records in /etc/conformance what only a
// hook sees during the build.
func confProbe(f *confFix) map[string]string {
	return map[string]string{
		"README.md":                         "Test element of tests/e2e/conformance_test.go.\n",
		"bin/conformance-bin":               "#!/bin/sh\necho conformance-bin ran\n",
		"static/etc/conformance/static.txt": "from static/\n",
		"install.d/conformance-probe-source-install/50-conformance-type":  "#!/bin/bash\nset -eu\nmkdir -p /etc/conformance\necho source > /etc/conformance/install-type\n",
		"install.d/conformance-probe-package-install/50-conformance-type": "#!/bin/bash\nset -eu\nmkdir -p /etc/conformance\necho package > /etc/conformance/install-type\n",
		// The cloud kernel next to the generic one mellanox asks for:
		// cleanup-kernel-initrd has one to remove.
		"package-installs.yaml":       "conformance-tree:\nlinux-image-cloud-amd64:\ncrafty-bitmaps:\n",
		"pkg-map":                     `{"family": {"debian": {"conformance-tree": "tree"}}, "default": {"conformance-tree": "conformance-tree-unmapped"}}` + "\n",
		"svc-map":                     "conformance-web:\n  default: conformance-httpd\n  debian: apache2\n",
		"modprobe.d/conformance.conf": "options loop max_loop=8\n",
		"init-scripts/systemd/conformance-probe.service": "[Unit]\nDescription=conformance probe (never enabled)\n[Service]\nExecStart=/bin/true\n",
		"source-repository-conformance": fmt.Sprintf("conformance-git git /opt/conformance/git %s/git/conformance-src.git main\n"+
			"conformance-tar tar /opt/conformance/tar %s/conformance-src.tar.gz conformance-src\n"+
			"conformance-file file /opt/conformance/file.txt %s/conformance-file.txt\n", f.http, f.http, f.http),
		"extra-data.d/50-conformance-cache-url": `#!/bin/bash
set -eux
cache=$DIB_IMAGE_CACHE/conformance
mkdir -p "$cache" "$TMP_HOOKS_PATH/conformance-probe"
cache-url "$CONFORMANCE_HTTP/cache-url.txt" "$cache/cache-url.txt"
cp "$cache/cache-url.txt" "$TMP_HOOKS_PATH/conformance-probe/cache-url.txt"
`,
		// Before apt-sources replaces the sources (pre-install.d/02).
		"pre-install.d/01-conformance-sources": `#!/bin/bash
set -eu
mkdir -p /etc/conformance
cat /etc/apt/sources.list /etc/apt/sources.list.d/* > /etc/conformance/base-sources 2>/dev/null || true
`,
		"install.d/90-conformance-probe": `#!/bin/bash
set -eux
out=/etc/conformance
mkdir -p $out
# Each fact is recorded even when its command fails: the checks say
# which element let it down, the build goes on for the others.
{
    echo "dib-python=$(readlink -f /usr/local/bin/dib-python || true)"
    echo "init-system=$(dib-init-system || true)"
    echo "pkg-map=$(pkg-map --element conformance-probe conformance-tree || true)"
    echo "svc-map=$(svc-map conformance-web || true)"
    echo "pip=${DIB_PYTHON_PIP:-}"
    echo "virtualenv=${DIB_PYTHON_VIRTUALENV:-}"
    echo "pip-cache-dir=${PIP_CACHE_DIR:-}"
    echo "selinux=$(tr '\n' ' ' < /etc/selinux/config | sed 's/ $//' || true)"
    echo "conformance-bin=$(conformance-bin || true)"
} > $out/probe.txt
cp /root/.pip/pip.conf $out/pip.conf || true
apt-config dump | grep -i conformance > $out/apt-config || true
apt-cache policy tree > $out/apt-policy-tree || true
if python3 -m venv /tmp/conformance-venv && /tmp/conformance-venv/bin/pip install --no-input conformance-probe-pkg; then
    /tmp/conformance-venv/bin/python -c 'import conformance_probe_pkg as p; print(p.MARK)' > $out/pip-install || true
fi
echo "pip-cache-files=$(find /tmp/pip -type f 2>/dev/null | wc -l)" >> $out/probe.txt
rm -rf /tmp/conformance-venv
sysctl-set-value net.ipv4.ip_forward 1 || true
cp /tmp/in_target.d/conformance-probe/cache-url.txt $out/cache-url.txt || true
`,
		// After dpkg's finalise.d/40 made the initramfs.
		"finalise.d/60-conformance-probe": `#!/bin/bash
set -eux
echo "select=$(select-boot-kernel-initrd || true)" >> /etc/conformance/probe.txt
`,
	}
}
