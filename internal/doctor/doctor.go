// Package doctor checks what a machine offers builder: privileges or user
// namespaces with subordinate ids, the host tools, GRUB, KVM, free space and
// a storage driver. Each problem comes with its fix; `builder image` runs
// the checks a build needs first, so it fails early with the same words.
package doctor

import (
	"builder/internal/privilege"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"builder/internal/binfmt"
	"builder/internal/hosttools"
)

// Status of one check.
type Status int

const (
	OK Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	return [...]string{"ok", "warning", "FAIL"}[s]
}

// Finding is the result of one check.
type Finding struct {
	Check  string
	Status Status
	Detail string
	Fix    string // what to do about a warning or failure
}

// Options choose the checks.
type Options struct {
	CacheDir string // image cache (--image-cache)
	TmpDir   string // where builds work (TMP_DIR)
	// Build: what `builder image` needs; VM: also the bootloader; Boot:
	// what `builder boot-test` needs.
	// Bootstrap: tools for Debian bases from a mirror and DIB_LOCAL_IMAGE.
	Build, Bootstrap, VM, Boot bool
	// KVM tells whether boot tests can use KVM (boottest.KVMStatus with
	// its cache); StorageDrivers are the container storage drivers a build
	// tries, in order (rootfs.DriverOrder). The callers own those facts.
	KVM            func(context.Context) (bool, string)
	StorageDrivers []string
	// MinFreeBytes is the free space wanted in the cache and temp dirs.
	MinFreeBytes uint64
	// ForeignArches are the other architectures to check builds and boot
	// tests of (emulation, firmware).
	ForeignArches []string
}

// Run performs the checks.
func Run(ctx context.Context, o Options) []Finding {
	var fs []Finding
	if o.Build {
		fs = append(fs, Privilege(ctx))
		fs = append(fs, tools("build tools", "qemu-img", "mkfs.ext4", "tar"))
		fs = append(fs, space("image cache", o.CacheDir, o.MinFreeBytes))
		fs = append(fs, space("temp dir", o.TmpDir, o.MinFreeBytes))
		fs = append(fs, storageHint(o.StorageDrivers))
	}
	if o.Bootstrap {
		fs = append(fs, tools("bootstrap and import", "mmdebstrap", "debugfs", "blkid"))
	}
	if o.VM {
		fs = append(fs, tools("disk tools", "mkfs.vfat", "mmd", "mcopy", "grub-mkimage"))
		fs = append(fs, grubModules())
	}
	if o.Boot {
		fs = append(fs, tools("boot test", "qemu-system-x86_64", "qemu-img", "openssl"))
		fs = append(fs, kvm(ctx, o.KVM))
	}
	for _, a := range o.ForeignArches {
		if o.Build {
			fs = append(fs, emulation(ctx, a))
		}
		if o.Boot && a == "arm64" {
			fs = append(fs, arm64Boot())
		}
	}
	return fs
}

// emulation says how the kernel runs arch's programs (builds of other
// architectures need it; a warning, since native builds do not). As
// builder image does: root registers the host's entry when none is; a
// rootless build registers one in its own user namespace, or uses the
// host's where the kernel does not allow that.
func emulation(ctx context.Context, arch string) Finding {
	check := arch + " builds"
	if binfmt.Native(arch) {
		return Finding{Check: check, Status: OK, Detail: "native"}
	}
	st, herr := binfmt.Lookup(arch)
	host := ""
	if herr == nil {
		host = fmt.Sprintf("the host's %s, interpreter %s", st.Entry, st.Interpreter)
	}
	if os.Geteuid() == 0 && binfmt.InitialUserNamespace() {
		if herr == nil {
			return Finding{Check: check, Status: OK, Detail: "QEMU user-mode emulation: " + host}
		}
		detail := herr.Error()
		if _, err := binfmt.PackagedInterpreter(arch); err == nil {
			detail += " (builder image registers it when run as root)"
		}
		return Finding{Check: check, Status: Warn, Detail: detail, Fix: binfmt.Fix(arch)}
	}
	ownErr := ownNamespace(ctx, arch)
	switch {
	case ownErr == nil:
		ip, _ := binfmt.PackagedInterpreter(arch)
		return Finding{Check: check, Status: OK, Detail: "QEMU user-mode emulation: builds register " + ip + " in their own user namespace"}
	case herr == nil:
		return Finding{Check: check, Status: OK, Detail: fmt.Sprintf("QEMU user-mode emulation: %s (a build's own user namespace cannot register one: %v)", host, ownErr)}
	}
	return Finding{Check: check, Status: Warn, Detail: fmt.Sprintf("%v; and a build's own user namespace cannot register one: %v", herr, ownErr), Fix: binfmt.Fix(arch)}
}

// ownNamespace checks that a rootless build can register arch's
// interpreter in its own user namespace: the packaged definition and its
// interpreter are here, and the kernel lets a fresh user namespace mount
// binfmt_misc (tried with unshare).
func ownNamespace(ctx context.Context, arch string) error {
	if _, err := binfmt.PackagedInterpreter(arch); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "unshare", "--user", "--map-root-user", "--mount",
		"mount", "-t", "binfmt_misc", "binfmt_misc", binfmt.Dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mounting binfmt_misc in a user namespace failed (Linux 6.7 or later allows it): %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// arm64Boot checks what boot tests of arm64 images need.
func arm64Boot() Finding {
	f := tools("arm64 boot test", "qemu-system-aarch64")
	if f.Status != OK {
		f.Status, f.Fix = Warn, "apt-get install qemu-system-arm qemu-efi-aarch64"
		return f
	}
	for _, p := range []string{"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw"} {
		if _, err := os.Stat(p); err == nil {
			return Finding{Check: "arm64 boot test", Status: OK, Detail: "qemu-system-aarch64, " + p + " (emulated: a boot takes several minutes)"}
		}
	}
	return Finding{Check: "arm64 boot test", Status: Warn, Detail: "no AArch64 UEFI firmware (AAVMF)", Fix: "apt-get install qemu-efi-aarch64"}
}

// Err is nil when no finding failed, else one error listing each failure
// with its fix.
func Err(fs []Finding) error {
	var b strings.Builder
	for _, f := range fs {
		if f.Status != Fail {
			continue
		}
		fmt.Fprintf(&b, "\n  %s: %s", f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(&b, "\n    fix: %s", f.Fix)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return errors.New("this machine cannot build yet (builder doctor checks it):" + b.String())
}

func tools(check string, names ...string) Finding {
	var missing, fixes []string
	for _, n := range names {
		if _, err := hosttools.Look(n); err != nil {
			missing = append(missing, n)
			fixes = append(fixes, err.Error())
		}
	}
	if len(missing) > 0 {
		return Finding{Check: check, Status: Fail, Detail: "missing " + strings.Join(missing, ", "),
			Fix: strings.Join(fixes, "; ") + " (hack/setup.sh installs everything)"}
	}
	return Finding{Check: check, Status: OK, Detail: strings.Join(names, ", ")}
}

func grubModules() Finding {
	var missing []string
	for _, d := range []struct{ dir, pkg string }{
		{"/usr/lib/grub/i386-pc", "grub-pc-bin"},
		{"/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"},
	} {
		if _, err := os.Stat(d.dir + "/normal.mod"); err != nil {
			missing = append(missing, d.pkg)
		}
	}
	if len(missing) > 0 {
		return Finding{Check: "GRUB images", Status: Fail, Detail: "no GRUB modules for BIOS or UEFI",
			Fix: "apt-get install " + strings.Join(missing, " ")}
	}
	return Finding{Check: "GRUB images", Status: OK, Detail: "BIOS (i386-pc) and UEFI (x86_64-efi) modules"}
}

func kvm(ctx context.Context, status func(context.Context) (bool, string)) Finding {
	if status == nil {
		return Finding{Check: "KVM", Status: OK, Detail: "not checked"}
	}
	ok, detail := status(ctx)
	if ok {
		return Finding{Check: "KVM", Status: OK, Detail: detail}
	}
	return Finding{Check: "KVM", Status: Warn, Detail: detail,
		Fix: "boot tests fall back to software emulation (TCG, a boot takes minutes); for KVM add your user to group kvm, or run on a host with working nested virtualisation"}
}

func space(check, dir string, min uint64) Finding {
	if dir == "" {
		return Finding{Check: check, Status: OK, Detail: "not set"}
	}
	// The directory may not exist yet: measure the nearest one that does.
	p := dir
	for {
		if _, err := os.Stat(p); err == nil || p == "/" || p == "." {
			break
		}
		p = parent(p)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return Finding{Check: check, Status: Warn, Detail: fmt.Sprintf("%s: %v", dir, err)}
	}
	free := st.Bavail * uint64(st.Bsize)
	d := fmt.Sprintf("%s: %.1f GiB free", dir, float64(free)/(1<<30))
	if min > 0 && free < min {
		return Finding{Check: check, Status: Fail, Detail: d,
			Fix: fmt.Sprintf("free space there, or point it elsewhere (a build wants about %.0f GiB)", float64(min)/(1<<30))}
	}
	return Finding{Check: check, Status: OK, Detail: d}
}

func parent(p string) string {
	i := strings.LastIndex(strings.TrimRight(p, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// storageHint says which container storage drivers a build will try, in
// order; the build itself reports the one it chose.
func storageHint(order []string) Finding {
	if len(order) == 0 {
		return Finding{Check: "storage driver", Status: OK, Detail: "not checked"}
	}
	return Finding{Check: "storage driver", Status: OK, Detail: strings.Join(order, ", then ") + " (each build prints the one it chose)"}
}

// Privilege checks that builds can run: as root with CAP_SYS_ADMIN, or in a
// user namespace with subordinate id ranges that newuidmap can map.
func Privilege(ctx context.Context) Finding {
	const check = "privileges"
	if os.Geteuid() == 0 {
		if n := mappedIDs("/proc/self/uid_map"); n < minSubIDs+1 {
			return Finding{Check: check, Status: Fail,
				Detail: fmt.Sprintf("in a user namespace with only %d uid(s) mapped: files in the image could not keep their owners", n),
				Fix:    subidFix(currentUser())}
		}
		if privilege.CapSysAdmin("CapEff") {
			return Finding{Check: check, Status: OK, Detail: "root"}
		}
		return Finding{Check: check, Status: OK, Detail: "root without CAP_SYS_ADMIN (an unprivileged container): builds run in a user namespace over the container's ids"}
	}
	u := currentUser()
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return Finding{Check: check, Status: Fail, Detail: "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)",
			Fix: "sysctl -w kernel.unprivileged_userns_clone=1 (and put it in /etc/sysctl.d), or run builder as root"}
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return Finding{Check: check, Status: Fail, Detail: "user namespaces are disabled (user.max_user_namespaces=0)",
			Fix: "sysctl -w user.max_user_namespaces=15000 (and put it in /etc/sysctl.d), or run builder as root"}
	}
	for _, t := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(t); err != nil {
			return Finding{Check: check, Status: Fail, Detail: t + " is not installed: a user namespace could map only your own id",
				Fix: "apt-get install uidmap"}
		}
	}
	uids, err := subIDs("/etc/subuid", u)
	gids, err2 := subIDs("/etc/subgid", u)
	if err != nil || err2 != nil || total(uids) < minSubIDs || total(gids) < minSubIDs {
		return Finding{Check: check, Status: Fail,
			Detail: fmt.Sprintf("user %s has %d subordinate uids and %d gids (%d needed: images have files owned by ids up to 65534, nobody)", u.Username, total(uids), total(gids), minSubIDs),
			Fix:    subidFix(u)}
	}
	if err := probeMapping(ctx, u, uids, gids); err != nil {
		return Finding{Check: check, Status: Fail, Detail: err.Error(), Fix: mappingFix()}
	}
	return Finding{Check: check, Status: OK, Detail: fmt.Sprintf("rootless: user namespace with %d subordinate ids", total(uids))}
}

func subidFix(u *user.User) string {
	return fmt.Sprintf("as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s (any free range of 65536 ids), or run builder as root", u.Username)
}

func mappingFix() string {
	if st, err := os.Stat("/usr/bin/newuidmap"); err == nil && st.Mode()&os.ModeSetuid != 0 && !privilege.CapSysAdmin("CapBnd") {
		// A setuid newuidmap needs CAP_SYS_ADMIN over the new namespace,
		// which an unprivileged container's bounding set does not have.
		return "this looks like an unprivileged container: give newuidmap and newgidmap file capabilities instead of setuid (as root in the image: chmod 0755 /usr/bin/newuidmap /usr/bin/newgidmap; setcap cap_setuid+ep /usr/bin/newuidmap; setcap cap_setgid+ep /usr/bin/newgidmap), as builder's Containerfile does"
	}
	return "check that newuidmap and newgidmap are setuid root or have file capabilities (apt-get install --reinstall uidmap), and that /etc/subuid and /etc/subgid ranges do not overlap real users"
}

// minSubIDs is what, with the user's own id as 0, maps ids 0 to 65534.
const minSubIDs = 65534

type idRange struct{ start, size uint64 }

func total(rs []idRange) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.size
	}
	return n
}

func currentUser() *user.User {
	u, err := user.Current()
	if err != nil {
		id := strconv.Itoa(os.Getuid())
		return &user.User{Uid: id, Gid: strconv.Itoa(os.Getgid()), Username: id}
	}
	return u
}

// subIDs reads the ranges /etc/subuid or /etc/subgid gives the user (by
// name or number).
func subIDs(path string, u *user.User) ([]idRange, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rs []idRange
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || (f[0] != u.Username && f[0] != u.Uid) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		size, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil {
			rs = append(rs, idRange{start, size})
		}
	}
	return rs, nil
}

// mappedIDs counts the ids a uid_map or gid_map maps.
func mappedIDs(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 {
			s, _ := strconv.ParseUint(f[2], 10, 64)
			n += s
		}
	}
	return n
}

// probeMapping does what a rootless build does first: start a process in a
// new user namespace and map the ranges with newuidmap and newgidmap.
func probeMapping(ctx context.Context, u *user.User, uids, gids []idRange) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sleep", "10")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot create a user namespace: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, m := range []struct {
		tool string
		own  string
		rs   []idRange
	}{{"newuidmap", u.Uid, uids}, {"newgidmap", u.Gid, gids}} {
		args := []string{pid, "0", m.own, "1"}
		next := uint64(1)
		for _, r := range m.rs {
			args = append(args, strconv.FormatUint(next, 10), strconv.FormatUint(r.start, 10), strconv.FormatUint(r.size, 10))
			next += r.size
		}
		if out, err := exec.CommandContext(ctx, m.tool, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s cannot map your subordinate ids: %s", m.tool, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
