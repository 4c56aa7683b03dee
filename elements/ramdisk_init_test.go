package elements

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DIB's ramdisk contract, as builder's ramdisk-base gives it: the init
// functions DIB's init.d fragments call, the variables of its
// 20-init-variables, the init script made of them, and ramdisk-install.d.

// initFuncShell runs bash code after sourcing builder's init-func, with the
// kernel's views (/proc/cmdline, /proc/partitions, /sys/class/net) faked
// under proc and sys.
func initFuncShell(t *testing.T, proc, sys, code string, extra ...string) string {
	t.Helper()
	lib, _ := filepath.Abs("library/ramdisk-base/ramdisk-lib/init-func")
	script := "source " + lib + "\n" + strings.Join(extra, "\n") + "\n" + code
	cmd := exec.Command("/bin/bash", "-c", script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "RAMDISK_PROC=" + proc, "RAMDISK_SYS=" + sys}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", code, err, out)
	}
	return strings.TrimRight(string(out), "\n")
}

func TestRamdiskInitFunctions(t *testing.T) {
	proc := tree(t, "cmdline=console=ttyS0 BOOTIF=01-52-54-00-12-34-56 disk=sdz,vdb1 troubleshoot ip=10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0\n",
		"partitions=major minor  #blocks  name\n\n 252        0   20971520 vda\n 252        1   20970496 vda1\n 252       16    1048576 vdb\n 252       17    1047552 vdb1\n")
	sys := tree(t, "class/net/lo/address=00:00:00:00:00:00\n", "class/net/eth0/address=52:54:00:ab:cd:ef\n",
		"class/net/ib0/address=80:00:02:08:fe:80:00:00:00:00:00:00:f4:52:14:03:00:3a:16:b1\n")
	for _, c := range []struct{ code, want string }{
		{`get_kernel_parameter disk`, "sdz,vdb1"},
		{`get_kernel_parameter console`, "ttyS0"},
		{`echo "[$(get_kernel_parameter nothing)]"; get_kernel_parameter nothing && echo ok`, "[]\n\nok"},
		{`has_kernel_parameter troubleshoot && echo yes; has_kernel_parameter nothing || echo no`, "yes\nno"},
		{`find_disk "$(get_kernel_parameter disk)"`, "/dev/vdb"},
		{`find_disk sdz,sdy || echo none`, "none"},
		{`find_disk /dev/vda1`, "/dev/vda"},
		{`whole_disk_name sda12; whole_disk_name /dev/xvdb3; whole_disk_name cciss/c0d1p2; whole_disk_name nvme0n1p3; whole_disk_name nvme0n1`,
			"/dev/sda\n/dev/xvdb\n/dev/cciss/c0d1\n/dev/nvme0n1\n/dev/nvme0n1"},
		{`whole_disk_name md0 || echo unknown`, "\nunknown"},
		{`partition_name sda 2; partition_name nvme0n1 1; partition_name cciss/c0d0 3`, "/dev/sda2\n/dev/nvme0n1p1\n/dev/cciss/c0d0p3"},
		{`strip_dev /dev/sda; prepend_dev sda; prepend_dev /dev/sda`, "sda\n/dev/sda\n/dev/sda"},
		{`find_interface 52:54:00:ab:cd:ef; find_interface 52:54:00:AB:CD:EF`, "eth0\neth0"},
		{`find_interface F4:52:14:3A:16:B1`, "ib0"},
		{`find_interface 00:11:22:33:44:55 || echo none`, "none"},
		{`ip_parameter_field 2 10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0; ip_parameter_field 5 a:b; ip_parameter_field 1 dhcp`, "10.0.0.1\n\ndhcp"},
		{`prefix_to_netmask 24; prefix_to_netmask 20; prefix_to_netmask 0; prefix_to_netmask 32`, "255.255.255.0\n255.255.240.0\n0.0.0.0\n255.255.255.255"},
		{`safe_url_encode "Could not find: disk /dev/x"`, "Could+not+find+disk+devx"},
		{`FIRST_ERR_MSG=; err_msg "first one"; err_msg "second"; echo "$FIRST_ERR_MSG"`, "first one\nsecond\nfirst+one"},
		{`string_contains "a deploy ramdisk" ramdisk && echo yes; string_contains abc x || echo no`, "yes\nno"},
		{`n=0; wait_for 3 0 'n=$((n + 1)); [ $n -ge 2 ]' && echo "after $n"; wait_for 2 0 false || echo gave up`, "after 2\ngave up"},
		// A troubleshoot that nobody asked for and no key answers goes on.
		{`TROUBLESHOOT=0; troubleshoot < /dev/null; echo went on`, "Troubleshooting required: press t within 10 seconds for a shell\nwent on"},
	} {
		if got := initFuncShell(t, proc, sys, c.code); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.code, got, c.want)
		}
	}
	// Booted from virtual media: the parameters come from its file.
	vmedia := tree(t, "parameters.txt=disk=sdq\nboot_method=vmedia\n")
	got := initFuncShell(t, proc, sys, `get_kernel_parameter disk`, "BOOT_METHOD=vmedia", "VMEDIA_DIR="+vmedia)
	if got != "sdq" {
		t.Errorf("vmedia parameter: %q, want sdq", got)
	}
}

// The variables DIB's fragments read, from the kernel command line.
func TestRamdiskInitVariables(t *testing.T) {
	frag, _ := os.ReadFile("library/ramdisk-base/init.d/20-init-variables")
	sys := tree(t, "class/net/eth0/address=52:54:00:12:34:56\n")
	show := `for v in BOOT_METHOD BOOT_MAC_ADDRESS BOOT_INTERFACE BOOT_IP_ADDRESS BOOT_NETMASK BOOT_GATEWAY BOOT_SERVER DISK DEPLOYMENT_ID DEPLOYMENT_KEY ISCSI_TARGET_IQN TROUBLESHOOT FIRST_ERR_MSG; do echo "$v=${!v}"; done`
	proc := tree(t, "cmdline=BOOTIF=01-52-54-00-12-34-56 ip=10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0 disk=vda iscsi_target_iqn=iqn.2010-10.org.openstack:node deployment_id=d1 deployment_key=k1 troubleshoot\n")
	got := initFuncShell(t, proc, sys, string(frag)+show)
	want := strings.Join([]string{"BOOT_METHOD=", "BOOT_MAC_ADDRESS=52:54:00:12:34:56", "BOOT_INTERFACE=eth0", "BOOT_IP_ADDRESS=10.0.0.5",
		"BOOT_NETMASK=255.255.255.0", "BOOT_GATEWAY=10.0.0.254", "BOOT_SERVER=10.0.0.1", "DISK=vda", "DEPLOYMENT_ID=d1", "DEPLOYMENT_KEY=k1",
		"ISCSI_TARGET_IQN=iqn.2010-10.org.openstack:node", "TROUBLESHOOT=1", "FIRST_ERR_MSG="}, "\n")
	if got != want {
		t.Errorf("variables:\n%s\nwant\n%s", got, want)
	}
	// No ip=: the boot server from boot_server=, InfiniBand's BOOTIF.
	proc = tree(t, "cmdline=BOOTIF=20-f4-52-14-3a-16-b1 boot_server=192.0.2.1 troubleshoot=0\n")
	got = initFuncShell(t, proc, sys, string(frag)+`echo "$BOOT_MAC_ADDRESS $BOOT_SERVER $TROUBLESHOOT"`)
	if got != "F4:52:14:3A:16:B1 192.0.2.1 0" {
		t.Errorf("without ip=: %q", got)
	}
}

// runPartsBin is a directory with builder's dib-run-parts on it, as hooks
// have it.
func runPartsBin(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../rootfs/runparts.sh")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "dib-run-parts"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// hooksTree is a hooks tree ($TMP_HOOKS_PATH) with ramdisk-base's
// ramdisk-lib in it and the given files.
func hooksTree(t *testing.T, files ...string) string {
	t.Helper()
	hooks := tree(t, files...)
	lib, _ := filepath.Abs("library/ramdisk-base/ramdisk-lib")
	if err := os.Symlink(lib, filepath.Join(hooks, "ramdisk-lib")); err != nil {
		t.Fatal(err)
	}
	return hooks
}

// The init script of a dracut ramdisk: builder's functions, the staged
// function files (which win), the fragments in order; it is valid bash
// and defines what DIB's deploy fragment calls.
func TestRamdiskInitScript(t *testing.T) {
	root := tree(t, "tmp/ramdisk-build/scripts/d/iscsi-func=start_iscsi_target() {\n    echo staged \"$@\"\n}\n")
	hooks := hooksTree(t, "init.d/80-deploy=start_iscsi_target iqn /dev/vda ALL\nfind_disk vda || echo no disk\n",
		"init.d/20-init-variables=DISK=vda\n", "init.d/50-fw=echo firmware\n")
	out, failed := ramdiskScript(t, t.TempDir(), []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks}, "ramdisk-base/ramdisk-lib/ramdisk-init")
	if failed {
		t.Fatalf("failed: %s", out)
	}
	if !strings.HasPrefix(out, "#!/bin/bash\n") {
		t.Errorf("no #!/bin/bash: %.40q", out)
	}
	var pos []int
	for _, w := range []string{"\nfind_disk() {", "\n# --- scripts/d/iscsi-func\n", "\n# --- init.d/20-init-variables\n", "\n# --- init.d/50-fw\n", "\n# --- init.d/80-deploy\n"} {
		i := strings.Index(out, w)
		if i < 0 {
			t.Fatalf("the init lacks %q:\n%s", w, out)
		}
		pos = append(pos, i)
	}
	for i := 1; i < len(pos); i++ {
		if pos[i] < pos[i-1] {
			t.Errorf("the init's parts are out of order: %v", pos)
		}
	}
	script := filepath.Join(t.TempDir(), "init")
	os.WriteFile(script, []byte(out), 0o755)
	cmd := exec.Command("/bin/bash", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "RAMDISK_PROC=" + tree(t, "partitions=\n")}
	run, err := cmd.CombinedOutput()
	if err != nil || string(run) != "firmware\nstaged iqn /dev/vda ALL\nno disk\n" {
		t.Errorf("running the init: %v\n%s", err, run)
	}
}

// ramdisk-install.d runs with TMP_MOUNT_PATH the ramdisk's build directory,
// which gets the staged function files; a failing hook fails the build.
func TestRamdiskInstallHooks(t *testing.T) {
	bin := runPartsBin(t)
	root := tree(t, "tmp/ramdisk-build/scripts/d/iscsi-func=start_iscsi_target() { :; }\n", "tmp/ilo/fw.scexe/flash_ilo4=#!/bin/sh\n")
	hook := "#!/bin/bash\nset -eu\nmv \"$FW_FROM\" \"$TMP_MOUNT_PATH\"\necho \"$TMP_HOOKS_PATH\" > \"$TMP_MOUNT_PATH/hooks-path\"\n"
	hooks := hooksTree(t, "ramdisk-install.d/50-move-firmware="+hook)
	build := filepath.Join(t.TempDir(), "build")
	env := []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks, "FW_FROM=" + filepath.Join(root, "tmp/ilo")}
	out, failed := ramdiskScript(t, bin, env, "ramdisk-base/ramdisk-lib/ramdisk-install", build)
	if failed {
		t.Fatalf("failed: %s", out)
	}
	for _, f := range []string{"iscsi-func", "ilo/fw.scexe/flash_ilo4"} {
		if _, err := os.Stat(filepath.Join(build, f)); err != nil {
			t.Errorf("the build directory lacks %s: %v\n%s", f, err, out)
		}
	}
	if p, _ := os.ReadFile(filepath.Join(build, "hooks-path")); strings.TrimSpace(string(p)) != hooks {
		t.Errorf("TMP_HOOKS_PATH in the hook: %q, want %q", p, hooks)
	}
	hooks = hooksTree(t, "ramdisk-install.d/10-fails=#!/bin/sh\necho broken firmware >&2\nexit 3\n")
	out, failed = ramdiskScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks}, "ramdisk-base/ramdisk-lib/ramdisk-install", build)
	if !failed || !strings.Contains(out, "broken firmware") || !strings.Contains(out, "a ramdisk-install.d hook failed") {
		t.Errorf("a failing hook: failed %v: %s", failed, out)
	}
}

// builder's ramdisk is the image: its ramdisk-install.d build directory is
// DIB_RAMDISK_ROOT of the image (/ by default).
func TestRamdiskBuildHook(t *testing.T) {
	bin := runPartsBin(t)
	root := tree(t, "tmp/ramdisk-build/scripts/d/iscsi-func=f() { :; }\n", "tmp/ilo/fw/flash_ilo4=x")
	hooks := hooksTree(t, "ramdisk-install.d/50-ilo=#!/bin/bash\nset -eu\nmv \"$FW_FROM\" \"$TMP_MOUNT_PATH\"\n")
	env := []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks, "FW_FROM=" + filepath.Join(root, "tmp/ilo")}
	if out, failed := ramdiskScript(t, bin, env, "ramdisk/post-install.d/99-build-ramdisk"); failed {
		t.Fatalf("failed: %s", out)
	}
	for _, f := range []string{"iscsi-func", "ilo/fw/flash_ilo4"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the ramdisk's root lacks /%s: %v", f, err)
		}
	}
	// Without builder's ramdisk-base: one line saying so.
	out, failed := ramdiskScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + t.TempDir()}, "ramdisk/post-install.d/99-build-ramdisk")
	if !failed || !strings.Contains(out, "builder's ramdisk-base element must be in the build") {
		t.Errorf("without ramdisk-lib: failed %v: %s", failed, out)
	}
}
