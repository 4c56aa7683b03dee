package e2e

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The system-configuration elements (dhcp-all-interfaces, simple-init,
// stable-interface-names, ibft-interfaces, iscsi-boot, cloud-init,
// cloud-init-nocloud, local-config, journal-to-console, disable-nouveau,
// modprobe, sysctl, timezone, hwclock) in real Debian images.

// tarTree is an image's tree read from builder's tar output.
type tarTree map[string]*tarEntry

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, path string) tarTree {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tree := tarTree{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		e := &tarEntry{hdr: h}
		if h.Typeflag == tar.TypeReg && h.Size < 64<<20 {
			if e.data, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
		tree["/"+strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")] = e
	}
	if len(tree) < 1000 {
		t.Fatalf("%s has only %d entries", path, len(tree))
	}
	return tree
}

// file returns a regular file's content; the test fails when it is missing.
func (tt tarTree) file(t *testing.T, path string) string {
	t.Helper()
	e, ok := tt[path]
	if !ok || e.hdr.Typeflag != tar.TypeReg {
		t.Errorf("%s is not a file in the image", path)
		return ""
	}
	return string(e.data)
}

func (tt tarTree) has(path string) bool {
	_, ok := tt[path]
	return ok
}

// link returns a symbolic link's target, "" when path is not a link.
func (tt tarTree) link(path string) string {
	if e, ok := tt[path]; ok && e.hdr.Typeflag == tar.TypeSymlink {
		return e.hdr.Linkname
	}
	return ""
}

// wantContains checks that the file holds every one of the strings.
func (tt tarTree) wantContains(t *testing.T, path string, wants ...string) {
	t.Helper()
	got := tt.file(t, path)
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", path, w, got)
		}
	}
}

// enabled: systemd would start unit for target (an /etc/systemd/system
// *.wants link to the unit's file).
func (tt tarTree) enabled(t *testing.T, target, unit string) {
	t.Helper()
	l := tt.link("/etc/systemd/system/" + target + ".wants/" + unit)
	if l == "" {
		t.Errorf("%s is not enabled (no /etc/systemd/system/%s.wants/%s link)", unit, target, unit)
		return
	}
	if !tt.has(strings.Replace(l, "/lib/", "/usr/lib/", 1)) && !tt.has(l) {
		t.Errorf("%s.wants/%s -> %s, which is not in the image", target, unit, l)
	}
}

// initrdFiles lists the files of a zstd-compressed newc initramfs.
func initrdFiles(t *testing.T, data []byte) map[string]bool {
	t.Helper()
	cmd := exec.Command("zstd", "-dc")
	cmd.Stdin = bytes.NewReader(data)
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd -dc of the initramfs: %v (apt-get install zstd)", err)
	}
	files := map[string]bool{}
	for i := 0; i+110 <= len(raw); {
		if string(raw[i:i+6]) != "070701" {
			i++ // padding between concatenated archives
			continue
		}
		hex := func(off int) int {
			n, _ := strconv.ParseUint(string(raw[i+off:i+off+8]), 16, 32)
			return int(n)
		}
		size, nameSize := hex(54), hex(94)
		name := string(raw[i+110 : i+110+nameSize-1])
		i = (i + 110 + nameSize + 3) &^ 3
		i = (i + size + 3) &^ 3
		if name == "TRAILER!!!" {
			continue
		}
		files[name] = true
	}
	return files
}

// writeElement creates an element below dir from path -> content
// (content starting with #! is made executable).
func writeElement(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasPrefix(c, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
	}
}

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBuilderLocalConfigTestKey e2e@local-config"

// One Debian image with every element of the set that can coexist
// (simple-init excludes cloud-init: it is in TestSysconfigElementsAtBoot),
// checked file by file for each element's documented effect.
func TestSysconfigElementsInImage(t *testing.T) {
	needE2E(t)
	out, tmp, home := t.TempDir(), t.TempDir(), t.TempDir()
	// local-config copies the caller's authorized_keys; builder hands
	// hooks the caller's HOME as BUILDER_USER_HOME.
	writeElement(t, home, map[string]string{".ssh/authorized_keys": testKey + "\n"})
	// An element of the user's own that uses sysctl's commands and ships a
	// modprobe.d file, as DIB elements do.
	elems := t.TempDir()
	writeElement(t, filepath.Join(elems, "sysconfig-user"), map[string]string{
		"element-deps": "modprobe\nsysctl\n",
		"install.d/70-sysconfig-user": `#!/bin/bash
set -eux
sysctl-set-value net.ipv4.ip_forward 1
sysctl-set-value net.ipv4.ip_forward 1
sysctl-write-value vm.builder_e2e 7 "written without a check"
if sysctl-set-value net.ipv4.ip_forward 0; then echo "conflict accepted"; exit 1; fi
if sysctl-set-value net.ipv4.no_such_key 1; then echo "unknown key accepted"; exit 1; fi
`,
		"modprobe.d/sysconfig-user.conf": "options loop max_loop=16\n",
		"modprobe.d/README":              "not a .conf: not copied\n",
	})
	env := []string{"TMP_DIR=" + tmp, "HOME=" + home, "ELEMENTS_PATH=" + elems,
		"DIB_TIMEZONE=Europe/Berlin", "DIB_HWCLOCK=LOCAL", "DIB_DHCP_TIMEOUT=45",
		"DIB_MODPROBE_BLACKLIST=floppy pcspkr", "DIB_CLOUD_INIT_ALLOW_SSH_PWAUTH=1",
		// https only: the mirror is http, so the build itself is not sent
		// to this (nonexistent) proxy.
		"https_proxy=http://proxy.example:3128", "no_proxy=localhost,.internal"}
	start := time.Now()
	r := runBuilder(t, withTimeout(t, 30*time.Minute), env, "image", "debian", "vm",
		"dhcp-all-interfaces", "stable-interface-names", "ibft-interfaces", "iscsi-boot", "cloud-init",
		"cloud-init-nocloud", "local-config", "journal-to-console", "disable-nouveau", "modprobe", "sysctl",
		"timezone", "hwclock", "sysconfig-user",
		"-t", "tar", "-o", filepath.Join(out, "sys"), "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	t.Logf("build took %s", time.Since(start).Round(time.Second))
	img := readTar(t, filepath.Join(out, "sys.tar"))

	// timezone, hwclock
	if l := img.link("/etc/localtime"); l != "/usr/share/zoneinfo/Europe/Berlin" {
		t.Errorf("/etc/localtime -> %q", l)
	}
	if !img.has("/usr/share/zoneinfo/Europe/Berlin") {
		t.Errorf("the zone file /etc/localtime points to is missing")
	}
	if got := img.file(t, "/etc/timezone"); got != "Europe/Berlin\n" {
		t.Errorf("/etc/timezone %q", got)
	}
	if got := img.file(t, "/etc/adjtime"); got != "0.0 0 0.0\n0\nLOCAL\n" {
		t.Errorf("/etc/adjtime %q", got)
	}

	// sysctl: the user element's calls through sysctl's commands.
	if got := img.file(t, "/etc/sysctl.d/net.ipv4.ip_forward.conf"); got != "# Set at build time by the sysctl element.\nnet.ipv4.ip_forward = 1\n" {
		t.Errorf("net.ipv4.ip_forward.conf %q", got)
	}
	if got := img.file(t, "/etc/sysctl.d/vm.builder_e2e.conf"); got != "# written without a check\nvm.builder_e2e = 7\n" {
		t.Errorf("vm.builder_e2e.conf %q", got)
	}
	for _, b := range []string{"/usr/local/bin/sysctl-set-value", "/usr/local/bin/sysctl-write-value"} {
		if e, ok := img[b]; !ok || e.hdr.Mode&0o111 == 0 {
			t.Errorf("%s missing or not executable", b)
		}
	}

	// modprobe, disable-nouveau
	if got := img.file(t, "/etc/modprobe.d/blacklist.conf"); got != "blacklist floppy\nblacklist pcspkr\n" {
		t.Errorf("blacklist.conf %q", got)
	}
	img.wantContains(t, "/etc/modprobe.d/disable-nouveau.conf", "\nblacklist nouveau\n", "\noptions nouveau modeset=0\n")
	if got := img.file(t, "/etc/modprobe.d/sysconfig-user.conf"); got != "options loop max_loop=16\n" {
		t.Errorf("sysconfig-user.conf %q", got)
	}
	if img.has("/etc/modprobe.d/README") {
		t.Errorf("a modprobe.d file that is not *.conf was copied")
	}
	if img.has("/etc/dracut.conf.d/disable-nouveau.conf") {
		t.Errorf("dracut configuration in a Debian image")
	}

	// iscsi-boot and the initramfs (regenerated once, with the blacklist).
	if got := img.file(t, "/etc/iscsi/iscsi.initramfs"); got != "ISCSI_AUTO=true\n" {
		t.Errorf("iscsi.initramfs %q", got)
	}
	var initrd string
	for p := range img {
		if strings.HasPrefix(p, "/boot/initrd.img-") {
			initrd = p
		}
	}
	if initrd == "" {
		t.Fatalf("no /boot/initrd.img-* in the image")
	}
	inInitrd := initrdFiles(t, img[initrd].data)
	for _, f := range []string{"usr/sbin/iscsistart", "etc/iscsi.initramfs", "scripts/local-top/iscsi",
		"etc/modprobe.d/disable-nouveau.conf", "etc/modprobe.d/blacklist.conf"} {
		if !inInitrd[f] {
			t.Errorf("%s lacks %s (%d files)", initrd, f, len(inInitrd))
		}
	}

	// ibft-interfaces
	img.enabled(t, "multi-user.target", "init-ibft-interfaces.service")
	img.wantContains(t, "/usr/lib/systemd/system/init-ibft-interfaces.service", "ExecStart=/usr/local/sbin/init-ibft-interfaces.sh")
	if got := img.file(t, "/etc/modules-load.d/ibft.conf"); got != "iscsi_boot_sysfs\niscsi_ibft\niscsi_tcp\n" {
		t.Errorf("ibft.conf %q", got)
	}
	for _, p := range []string{"/usr/local/sbin/init-ibft-interfaces.sh", "/usr/sbin/iscsistart"} {
		if e, ok := img[p]; !ok || e.hdr.Mode&0o111 == 0 {
			t.Errorf("%s missing or not executable", p)
		}
	}

	// dhcp-all-interfaces
	img.wantContains(t, "/usr/lib/systemd/system/dhcp-interface@.service", "\nTimeoutStartSec=90s\n",
		"\nExecStartPre=/usr/local/sbin/dhcp-all-interfaces.sh %i\n", "\nAfter=network.target\n")
	img.wantContains(t, "/etc/udev/rules.d/99-dhcp-all-interfaces.rules", `ENV{SYSTEMD_WANTS}+="dhcp-interface@$name.service"`)
	if got := img.file(t, "/etc/dhcp-all-interfaces.conf"); got != "DHCP_TIMEOUT=45\n" {
		t.Errorf("dhcp-all-interfaces.conf %q", got)
	}
	img.wantContains(t, "/etc/dhcp/dhclient.conf", "\ntimeout 45;\n")
	if got := img.file(t, "/etc/network/interfaces"); got != "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n\n" {
		t.Errorf("/etc/network/interfaces %q", got)
	}
	for _, p := range []string{"/usr/bin/rdisc6", "/usr/sbin/dhclient", "/usr/sbin/ifup", "/usr/local/sbin/dhcp-all-interfaces.sh"} {
		if !img.has(p) {
			t.Errorf("%s is missing", p)
		}
	}

	// stable-interface-names: nothing masks predictable names.
	for _, p := range []string{"/etc/udev/rules.d/80-net-setup-link.rules", "/etc/systemd/network/99-default.link", "/etc/udev/rules.d/80-net-name-slot.rules"} {
		if img.has(p) {
			t.Errorf("%s exists", p)
		}
	}

	// cloud-init, cloud-init-nocloud, journal-to-console
	for _, u := range []string{"cloud-init-local.service", "cloud-init.service", "cloud-config.service", "cloud-final.service"} {
		img.enabled(t, "cloud-init.target", u)
	}
	img.wantContains(t, "/etc/cloud/cloud.cfg", "\nssh_genkeytypes: ['rsa', 'ecdsa', 'ed25519']\n", "\nssh_pwauth: 1\n")
	if got := img.file(t, "/etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg"); got != "datasource_list: [ NoCloud, None ]\n" {
		t.Errorf("datasources %q", got)
	}
	for _, p := range []string{"/var/lib/cloud/seed/nocloud/user-data", "/var/lib/cloud/seed/nocloud/meta-data"} {
		if img.file(t, p) != "" {
			t.Errorf("%s is not empty", p)
		}
	}
	if strings.Contains(img.file(t, "/etc/ssh/sshd_config.d/50-builder-hardening.conf"), "PasswordAuthentication") {
		t.Errorf("openssh-server's hardening still turns passwords off, against DIB_CLOUD_INIT_ALLOW_SSH_PWAUTH")
	}
	if got := img.file(t, "/etc/systemd/journald.conf.d/log-to-console.conf"); !strings.Contains(got, "[Journal]\nForwardToConsole=yes\n") {
		t.Errorf("log-to-console.conf %q", got)
	}

	// local-config
	if got := img.file(t, "/root/.ssh/authorized_keys"); got != testKey+"\n" {
		t.Errorf("root's authorized_keys %q", got)
	}
	if e := img["/root/.ssh/authorized_keys"]; e != nil && e.hdr.Mode&0o077 != 0 {
		t.Errorf("authorized_keys mode %o", e.hdr.Mode)
	}
	if got := img.file(t, "/etc/apt/apt.conf.d/02-use-https-proxy"); got != "Acquire::https::Proxy \"http://proxy.example:3128\";\n" {
		t.Errorf("02-use-https-proxy %q", got)
	}
	if got := img.file(t, "/etc/apt/apt.conf.d/02-no-proxy"); got != "Acquire::http::Proxy::localhost \"DIRECT\";\nAcquire::http::Proxy::.internal \"DIRECT\";\nAcquire::http::Proxy::192.0.2.1 \"DIRECT\";\n" {
		t.Errorf("02-no-proxy %q", got)
	}
	if img.has("/etc/apt/apt.conf.d/02-use-http-proxy") {
		t.Errorf("an http proxy was configured, none was set")
	}
}

// simple-init and dhcp-all-interfaces at boot. builder's debian image (with
// cloud-init, which simple-init must remove) plus simple-init without its
// DHCP fallback and dhcp-all-interfaces: with no config drive attached,
// simple-init configures nothing and dhcp-all-interfaces must bring the
// virtio NIC up by itself. journal-to-console puts both units' messages and
// dhclient's on the serial console, where the boot test records them; a
// test element holds the serial login prompt until network-online.target,
// so the console log is complete when boot-test sees the prompt.
func TestSysconfigElementsAtBoot(t *testing.T) {
	needE2E(t)
	out, tmp, elems := t.TempDir(), t.TempDir(), t.TempDir()
	writeElement(t, filepath.Join(elems, "login-after-network"), map[string]string{
		"element-deps": "install-static\n",
		"static/etc/systemd/system/serial-getty@ttyS0.service.d/after-network-online.conf": "[Unit]\nWants=network-online.target\nAfter=network-online.target\n",
	})
	env := []string{"TMP_DIR=" + tmp, "ELEMENTS_PATH=" + elems, "DIB_SIMPLE_INIT_NO_DHCP_FALLBACK=1"}
	start := time.Now()
	r := runBuilder(t, withTimeout(t, 30*time.Minute), env, "image", "debian", "vm", "simple-init",
		"dhcp-all-interfaces", "journal-to-console", "login-after-network",
		"-t", "qcow2,tar", "-o", filepath.Join(out, "si"), "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	t.Logf("build took %s", time.Since(start).Round(time.Second))
	img := readTar(t, filepath.Join(out, "si.tar"))
	img.enabled(t, "multi-user.target", "simple-init.service")
	img.wantContains(t, "/usr/lib/systemd/system/simple-init.service", "\nBefore=network-pre.target networking.service")
	if got := img.file(t, "/etc/simple-init.conf"); !strings.Contains(got, "\nrenderer=eni\ndhcp_fallback=0\nkey_users=root\n") {
		t.Errorf("simple-init.conf:\n%s", got)
	}
	if e, ok := img["/usr/local/sbin/simple-init"]; !ok || e.hdr.Mode&0o111 == 0 {
		t.Errorf("/usr/local/sbin/simple-init missing or not executable")
	}
	if img.has("/usr/bin/cloud-init") || img.has("/usr/lib/systemd/system/cloud-init.service") {
		t.Errorf("cloud-init is still installed")
	}
	if !img.has("/etc/cloud/cloud-init.disabled") {
		t.Errorf("/etc/cloud/cloud-init.disabled is missing")
	}
	if img.has("/etc/udev/rules.d/75-builder-ifupdown.rules") {
		t.Errorf("debian-minimal's DHCP helper is still there")
	}
	if got := img.file(t, "/etc/modules-load.d/simple-init-8021q.conf"); got != "8021q\n" {
		t.Errorf("8021q %q", got)
	}
	img.enabled(t, "multi-user.target", "ssh-keygen.service")

	console, report := filepath.Join(out, "console.txt"), filepath.Join(out, "boot.json")
	br := runBuilder(t, withTimeout(t, 20*time.Minute), nil, "boot-test", filepath.Join(out, "si.qcow2"),
		"--report", report, "--timeout", "15m", "--console-log", console, "--no-failed-units")
	data, _ := os.ReadFile(console)
	log := string(data)
	if br.code != 0 {
		t.Logf("console tail:\n%s", tailLines(log, 80))
	}
	rep := readBootReport(t, report, br.code)
	t.Logf("booted in %.0f s (%s)", rep.Seconds, rep.Accel)
	// Journal messages on the console: simple-init ran, found no drive and
	// (fallback off) configured nothing; dhcp-all-interfaces configured the
	// NIC; dhclient got QEMU's address.
	for _, w := range []string{"simple-init: no config drive", "simple-init: no interface to configure"} {
		if !strings.Contains(log, w) {
			t.Errorf("console lacks %q (journal-to-console or simple-init did not work)", w)
		}
	}
	m := regexp.MustCompile(`dhcp-all-interfaces: (\w+): DHCP configured`).FindStringSubmatch(log)
	if m == nil {
		t.Errorf("dhcp-all-interfaces did not configure an interface:\n%s", grepLines(log, "dhcp-all-interfaces|dhcp-interface"))
	} else if !regexp.MustCompile(`bound to 10\.0\.2\.\d+`).MatchString(log) {
		t.Errorf("%s got no DHCP lease from QEMU:\n%s", m[1], grepLines(log, "dhclient|DHCP|ifup|"+m[1]))
	}
	t.Logf("console, the elements' lines:\n%s", grepLines(log, `simple-init|dhcp-all-interfaces|dhcp-interface|bound to`))
	if strings.Contains(log, "Cloud-init v.") {
		t.Errorf("cloud-init ran")
	}
}

// grepLines returns the lines of s matching the regular expression re.
func grepLines(s, re string) string {
	rx := regexp.MustCompile(re)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
