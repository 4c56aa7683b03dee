package elements

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ramdiskScript runs a library script with env (plus PATH with bin first)
// and returns its combined output and whether it failed.
func ramdiskScript(t *testing.T, bin string, env []string, script string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command("/bin/bash", append([]string{filepath.Join("library", script)}, args...)...)
	cmd.Env = append([]string{"PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err != nil
}

// tree makes files under a new root: "->target" makes a symlink, a
// trailing "/" in the name a directory.
func tree(t *testing.T, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		name, data, _ := strings.Cut(f, "=")
		p := filepath.Join(root, name)
		if strings.HasSuffix(name, "/") {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if strings.HasPrefix(data, "->") {
			os.Symlink(strings.TrimPrefix(data, "->"), p)
			continue
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSelectBootKernelInitrdScript(t *testing.T) {
	const script = "select-boot-kernel-initrd/bin/select-boot-kernel-initrd"
	cases := []struct {
		name  string
		files []string
		env   []string
		want  string // "" for an error
	}{
		{"debian newest", []string{"etc/debian_version=12", "boot/vmlinuz-6.1.0-9-amd64", "boot/vmlinuz-6.1.0-10-amd64",
			"boot/initrd.img-6.1.0-9-amd64", "boot/initrd.img-6.1.0-10-amd64"}, nil, "vmlinuz-6.1.0-10-amd64:initrd.img-6.1.0-10-amd64"},
		{"ubuntu generic", []string{"etc/debian_version=x", "boot/vmlinuz-6.8.0-40-generic", "boot/vmlinuz-6.8.0-45-lowlatency",
			"boot/initrd.img-6.8.0-40-generic", "boot/initrd.img-6.8.0-45-lowlatency"}, nil, "vmlinuz-6.8.0-40-generic:initrd.img-6.8.0-40-generic"},
		{"rpm", []string{"etc/redhat-release=x", "boot/vmlinuz-5.14.0-9.el9.x86_64", "boot/vmlinuz-5.14.0-10.el9.x86_64",
			"boot/vmlinuz-5.14.0-11.el9.x86_64+debug", "boot/vmlinuz-0-rescue-abc", "boot/initramfs-5.14.0-10.el9.x86_64.img"},
			nil, "vmlinuz-5.14.0-10.el9.x86_64:initramfs-5.14.0-10.el9.x86_64.img"},
		{"rpm without its initramfs", []string{"etc/redhat-release=x", "boot/vmlinuz-5.14.0-9.el9.x86_64"}, nil, ""},
		{"opensuse links", []string{"boot/vmlinuz=->vmlinuz-5.14.21-1-default", "boot/initrd=->initrd-5.14.21-1-default",
			"boot/vmlinuz-5.14.21-1-default", "boot/initrd-5.14.21-1-default", "boot/vmlinuz-6.0-1-default"},
			nil, "vmlinuz-5.14.21-1-default:initrd-5.14.21-1-default"},
		{"patterns", []string{"etc/debian_version=12", "boot/vmlinuz-1-cloud", "boot/vmlinuz-2-cloud", "boot/vmlinuz-9-rt",
			"boot/initrd.img-1-cloud", "boot/initrd.img-2-cloud"},
			[]string{"DIB_BAREMETAL_KERNEL_PATTERN=vmlinuz-*-cloud", "DIB_BAREMETAL_INITRD_PATTERN=initrd.img-*-cloud"}, "vmlinuz-2-cloud:initrd.img-2-cloud"},
		{"no kernel", []string{"etc/debian_version=12", "boot/"}, nil, ""},
	}
	for _, c := range cases {
		root := tree(t, c.files...)
		out, failed := ramdiskScript(t, t.TempDir(), c.env, script, root)
		switch {
		case c.want == "" && !failed:
			t.Errorf("%s: printed %q, want a failure", c.name, out)
		case c.want == "" && !strings.Contains(out, "select-boot-kernel-initrd: no"):
			t.Errorf("%s: failure without a reason: %q", c.name, out)
		case c.want != "" && (failed || out != c.want):
			t.Errorf("%s: %q (failed %v), want %q", c.name, out, failed, c.want)
		}
	}
}

func TestCleanupKernelInitrd(t *testing.T) {
	bin, _ := filepath.Abs("library/select-boot-kernel-initrd/bin")
	// 6.1.0-1 must go without taking 6.1.0-18 (the kept kernel) with it.
	root := tree(t, "etc/debian_version=12",
		"boot/vmlinuz-6.1.0-1-amd64", "boot/initrd.img-6.1.0-1-amd64", "boot/config-6.1.0-1-amd64", "boot/System.map-6.1.0-1-amd64",
		"boot/vmlinuz-6.1.0-18-amd64", "boot/initrd.img-6.1.0-18-amd64", "boot/config-6.1.0-18-amd64",
		"boot/vmlinuz-6.1.0-17-amd64-debug", "boot/grub/grub.cfg",
		"lib/modules/6.1.0-1-amd64/")
	out, failed := ramdiskScript(t, bin, []string{"TARGET_ROOT=" + root}, "cleanup-kernel-initrd/cleanup.d/99-cleanup-kernel-initrd")
	if failed {
		t.Fatalf("failed: %s", out)
	}
	var left []string
	ents, _ := os.ReadDir(filepath.Join(root, "boot"))
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := "config-6.1.0-18-amd64 grub initrd.img-6.1.0-18-amd64 vmlinuz-6.1.0-17-amd64-debug vmlinuz-6.1.0-18-amd64"
	if strings.Join(left, " ") != want {
		t.Errorf("/boot after cleanup: %v\nwant %s\n%s", left, want, out)
	}
	if _, err := os.Stat(filepath.Join(root, "lib/modules/6.1.0-1-amd64")); err != nil {
		t.Errorf("modules of the removed kernel are DIB's to keep: %v", err)
	}
	// Neither Debian nor rpm: untouched.
	root = tree(t, "boot/vmlinuz-1", "boot/vmlinuz-2", "boot/initramfs-1", "boot/initramfs-2")
	if out, failed := ramdiskScript(t, bin, []string{"TARGET_ROOT=" + root}, "cleanup-kernel-initrd/cleanup.d/99-cleanup-kernel-initrd"); failed {
		t.Fatalf("failed: %s", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "boot")); len(ents) != 4 {
		t.Errorf("a distribution it does not know lost files: %d left", len(ents))
	}
}

// fakeSystemctl records its arguments in the file $SYSTEMCTL_LOG.
func fakeSystemctl(t *testing.T) (bin, log string) {
	bin = t.TempDir()
	log = filepath.Join(t.TempDir(), "systemctl.log")
	os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\necho \"$@\" >> "+log+"\n"), 0o755)
	return bin, log
}

func TestRamdiskNetworkHook(t *testing.T) {
	const hook = "ramdisk/install.d/60-ramdisk-network"
	bin, log := fakeSystemctl(t)
	// Debian: networkd with resolved, debian-minimal's ifupdown rule gone.
	root := tree(t, "etc/udev/rules.d/75-builder-ifupdown.rules=rule", "lib/systemd/system/systemd-resolved.service=unit")
	env := []string{"BUILDER_TARGET_ROOT=" + root, "DIB_INIT_SYSTEM=systemd", "IMAGE_ELEMENT=base debian-minimal ramdisk ramdisk-base"}
	if out, failed := ramdiskScript(t, bin, env, hook); failed {
		t.Fatalf("failed: %s", out)
	}
	network, err := os.ReadFile(filepath.Join(root, "etc/systemd/network/80-ramdisk-dhcp.network"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"[Match]\nType=ether\n", "\nDHCP=yes\n", "\nClientIdentifier=mac\n"} {
		if !strings.Contains(string(network), w) {
			t.Errorf(".network lacks %q:\n%s", w, network)
		}
	}
	dropIn, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/systemd-networkd-wait-online.service.d/ramdisk-any.conf"))
	if !strings.Contains(string(dropIn), "ExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any\n") {
		t.Errorf("wait-online drop-in:\n%s", dropIn)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/udev/rules.d/75-builder-ifupdown.rules")); !os.IsNotExist(err) {
		t.Errorf("the ifupdown hotplug rule is still there: two DHCP clients per interface")
	}
	calls, _ := os.ReadFile(log)
	want := "--root=" + root + " enable systemd-networkd.service systemd-networkd-wait-online.service\n--root=" + root + " enable systemd-resolved.service\n"
	if string(calls) != want {
		t.Errorf("systemctl calls:\n%s\nwant\n%s", calls, want)
	}

	// rpm: NetworkManager, nothing of networkd.
	bin, log = fakeSystemctl(t)
	root = tree(t, "usr/lib/systemd/system/NetworkManager.service=unit")
	env[0] = "BUILDER_TARGET_ROOT=" + root
	if out, failed := ramdiskScript(t, bin, env, hook); failed {
		t.Fatalf("failed: %s", out)
	}
	calls, _ = os.ReadFile(log)
	if string(calls) != "--root="+root+" enable NetworkManager.service NetworkManager-wait-online.service\n" {
		t.Errorf("systemctl calls with NetworkManager: %q", calls)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/network")); !os.IsNotExist(err) {
		t.Errorf("networkd configured beside NetworkManager")
	}

	// dhcp-all-interfaces owns the network: nothing is done.
	bin, log = fakeSystemctl(t)
	root = tree(t, "etc/udev/rules.d/75-builder-ifupdown.rules=rule")
	env = []string{"BUILDER_TARGET_ROOT=" + root, "DIB_INIT_SYSTEM=systemd", "IMAGE_ELEMENT=base debian-minimal dhcp-all-interfaces ramdisk"}
	if out, failed := ramdiskScript(t, bin, env, hook); failed || !strings.Contains(out, "dhcp-all-interfaces") {
		t.Fatalf("with dhcp-all-interfaces: %s", out)
	}
	if _, err := os.Stat(log); !os.IsNotExist(err) {
		t.Errorf("systemctl called although dhcp-all-interfaces owns the network")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/udev/rules.d/75-builder-ifupdown.rules")); err != nil {
		t.Errorf("the ifupdown rule was removed although dhcp-all-interfaces owns the network")
	}
}

func TestRamdiskInitHook(t *testing.T) {
	const hook = "ramdisk/finalise.d/90-ramdisk-init"
	root := tree(t, "sbin/init=->../lib/systemd/systemd", "etc/initrd-release=x", "etc/fstab=UUID=abc / ext4 defaults 0 1")
	if out, failed := ramdiskScript(t, t.TempDir(), []string{"BUILDER_TARGET_ROOT=" + root}, hook); failed {
		t.Fatalf("failed: %s", out)
	}
	if l, _ := os.Readlink(filepath.Join(root, "init")); l != "/sbin/init" {
		t.Errorf("/init -> %q, want /sbin/init", l)
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	for _, l := range strings.Split(string(fstab), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("fstab keeps an entry: %q", l)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/initrd-release")); !os.IsNotExist(err) {
		t.Errorf("/etc/initrd-release kept: systemd would look for a root to switch to")
	}
	// No init: the build fails and says why.
	root = tree(t, "etc/")
	if out, failed := ramdiskScript(t, t.TempDir(), []string{"BUILDER_TARGET_ROOT=" + root}, hook); !failed || !strings.Contains(out, "no /sbin/init") {
		t.Errorf("without /sbin/init: failed %v: %s", failed, out)
	}
}

// The readiness line, with a fake ip: the format builder boot-test parses.
func TestRamdiskReadyScript(t *testing.T) {
	const script = "ramdisk-base/static/usr/local/sbin/builder-ramdisk-ready"
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "ip"), []byte(`#!/bin/sh
case "$*" in
*"addr show"*) echo "2: enp0s1    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic enp0s1\       valid_lft 86313sec preferred_lft 86313sec" ;;
*"route show"*) echo "default via 10.0.2.2 dev enp0s1 proto dhcp src 10.0.2.15 metric 1024" ;;
esac
`), 0o755)
	out, failed := ramdiskScript(t, bin, nil, script, "5")
	ready := regexp.MustCompile(`^builder-ramdisk: ready: network up on enp0s1 10\.0\.2\.15/24 \(gateway 10\.0\.2\.2\) after \d+ s$`)
	if failed || !ready.MatchString(out) {
		t.Errorf("ready line: %q (failed %v)", out, failed)
	}
	// No address: it gives up after the timeout and says so.
	os.WriteFile(filepath.Join(bin, "ip"), []byte("#!/bin/sh\ncase \"$*\" in *link*) echo '2: enp0s1: <BROADCAST> mtu 1500 state DOWN';; esac\n"), 0o755)
	out, failed = ramdiskScript(t, bin, nil, script, "1")
	if !failed || !strings.HasPrefix(out, "builder-ramdisk: not ready: no IPv4 address on any interface after") || !strings.Contains(out, "link: 2: enp0s1") {
		t.Errorf("no address: %q (failed %v)", out, failed)
	}
}

func TestRamdiskBinaryDepsAndDrivers(t *testing.T) {
	hooks := tree(t, "binary-deps.d/a=ip busybox # comment", "binary-deps.d/b=ip\n", "dracut-drivers.d/base=virtio\nvirtio_net", "dracut-drivers.d/empty=")
	root := tree(t, "usr/bin/ip=x", "bin/busybox=x", "etc/")
	env := []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks}
	if out, failed := ramdiskScript(t, t.TempDir(), env, "ramdisk-base/post-install.d/01-ensure-binaries"); failed {
		t.Fatalf("failed: %s", out)
	}
	if deps, _ := os.ReadFile(filepath.Join(root, "etc/dib_binary_deps")); string(deps) != "busybox ip " {
		t.Errorf("/etc/dib_binary_deps %q", deps)
	}
	if out, failed := ramdiskScript(t, t.TempDir(), env, "dracut-ramdisk/post-install.d/01-ensure-drivers"); failed {
		t.Fatalf("failed: %s", out)
	}
	if d, _ := os.ReadFile(filepath.Join(root, "etc/dib_dracut_drivers")); string(d) != "virtio virtio_net " {
		t.Errorf("/etc/dib_dracut_drivers %q", d)
	}
	// A listed command the image lacks fails the build, naming it.
	os.WriteFile(filepath.Join(hooks, "binary-deps.d/c"), []byte("tgtadm"), 0o644)
	if out, failed := ramdiskScript(t, t.TempDir(), env, "ramdisk-base/post-install.d/01-ensure-binaries"); !failed || !strings.Contains(out, "tgtadm") {
		t.Errorf("missing tgtadm: failed %v: %s", failed, out)
	}
}

func TestDracutNetworkConf(t *testing.T) {
	for _, c := range []struct {
		files  []string
		module string
	}{
		{[]string{"etc/", "sbin/dhclient=x"}, "network-legacy"},                               // Debian
		{[]string{"etc/", "sbin/dhclient=x", "usr/sbin/NetworkManager=x"}, "network-manager"}, // rpm
		{[]string{"etc/"}, "network"},
	} {
		root := tree(t, c.files...)
		env := []string{"BUILDER_TARGET_ROOT=" + root, "DIB_DRACUT_NETWORK_CMDLINE=rd.neednet=1 ip=dhcp"}
		if out, failed := ramdiskScript(t, t.TempDir(), env, "dracut-network/post-install.d/20-dracut-network"); failed {
			t.Fatalf("failed: %s", out)
		}
		conf, _ := os.ReadFile(filepath.Join(root, "etc/dracut.conf.d/50-dracut-network.conf"))
		for _, w := range []string{"add_dracutmodules+=\" " + c.module + " \"\n", "omit_dracutmodules+=\" systemd-networkd \"\n",
			"kernel_cmdline=\"rd.neednet=1 ip=dhcp\"\n"} {
			if !strings.Contains(string(conf), w) {
				t.Errorf("%v: dracut conf lacks %q:\n%s", c.files, w, conf)
			}
		}
	}
}

// The scripts the ramdisk elements put into images are executable there.
func TestRamdiskLibraryModes(t *testing.T) {
	for name, exec := range map[string]bool{
		"ramdisk-base/static/usr/local/sbin/builder-ramdisk-ready":        true,
		"dracut-ramdisk/dracut-ramdisk-module/builder-ramdisk-init.sh":    true,
		"dracut-ramdisk/dracut-ramdisk-module/module-setup.sh":            false,
		"ramdisk-base/init-scripts/systemd/builder-ramdisk-ready.service": false,
		"select-boot-kernel-initrd/bin/select-boot-kernel-initrd":         true,
		"ramdisk/binary-deps.d/ramdisk":                                   false,
		"ramdisk/post-install.d/99-build-ramdisk":                         true,
		"ramdisk-base/ramdisk-lib/ramdisk-init":                           true,
		"ramdisk-base/ramdisk-lib/ramdisk-install":                        true,
		"ramdisk-base/ramdisk-lib/init-func":                              false,
		"ramdisk-base/init.d/20-init-variables":                           false,
	} {
		data, err := os.ReadFile(filepath.Join("library", name))
		if err != nil {
			t.Fatal(err)
		}
		if got := libraryMode(name, data)&0o111 != 0; got != exec {
			t.Errorf("%s: executable %v, want %v", name, got, exec)
		}
	}
}
