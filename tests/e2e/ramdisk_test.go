package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ramdiskElements is what the deploy ramdisk is built from (builder
// ramdisk adds the ramdisk element). dhcp-all-interfaces owns its DHCP
// (the ramdisk element's own systemd-networkd setup steps aside; its hook
// is tested in elements/ramdisk_elements_test.go).
var ramdiskElements = []string{"debian-minimal", "dhcp-all-interfaces"}

// ramdiskReport is the part of boot-test's JSON report a ramdisk boot fills.
type ramdiskReport struct {
	Passed       bool    `json:"passed"`
	Reason       string  `json:"reason"`
	Seconds      float64 `json:"seconds"`
	Accel        string  `json:"accel"`
	Memory       int     `json:"memory_mib"`
	ReadySeconds float64 `json:"ready_seconds"`
	KernelSecs   float64 `json:"kernel_seconds"`
	Kernel       string  `json:"kernel"`
	Initramfs    string  `json:"initramfs"`
	RamdiskReady *struct {
		Line    string `json:"line"`
		Iface   string `json:"iface"`
		Address string `json:"address"`
		Gateway string `json:"gateway"`
	} `json:"ramdisk_ready"`
}

// dirWatch records, every few milliseconds, the files in a directory and
// their sizes while a build writes its outputs there.
type dirWatch struct {
	dir  string
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen []map[string]int64 // one snapshot per change
}

func watchDir(dir string) *dirWatch {
	w := &dirWatch{dir: dir, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var last string
		for {
			snap := map[string]int64{}
			ents, _ := os.ReadDir(dir)
			var key strings.Builder
			for _, e := range ents {
				if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
					snap[e.Name()] = info.Size()
					fmt.Fprintf(&key, "%s=%d;", e.Name(), info.Size())
				}
			}
			if k := key.String(); k != last {
				last = k
				w.mu.Lock()
				w.seen = append(w.seen, snap)
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *dirWatch) end() []map[string]int64 {
	close(w.stop)
	<-w.done
	return w.seen
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// extract unpacks a gzip initramfs with GNU cpio (a reader independent of
// builder's writer) or a tar with tar, as root, keeping owners and modes.
func extract(t *testing.T, archive, dir string) {
	t.Helper()
	var cmd *exec.Cmd
	if strings.HasSuffix(archive, ".tar") {
		cmd = exec.Command("tar", "--numeric-owner", "-xpf", archive, "-C", dir)
	} else {
		if _, err := exec.LookPath("cpio"); err != nil {
			t.Fatalf("GNU cpio reads the initramfs independently of builder: apt-get install cpio")
		}
		cmd = exec.Command("sh", "-c", "zcat \"$1\" | cpio -idm --quiet --no-absolute-filenames", "sh", archive)
		cmd.Dir = dir
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v\n%s", archive, err, out)
	}
}

func TestRamdiskDebian(t *testing.T) {
	needE2E(t)
	ctx := withTimeout(t, 45*time.Minute)
	dir := t.TempDir()
	out := filepath.Join(dir, "deploy")

	// 1. Build: qcow2 is asked for and not made (no-final-image), tar is.
	args := append([]string{"ramdisk", "-o", out, "-t", "qcow2,tar", "--image-cache", cacheDir}, ramdiskElements...)
	w := watchDir(dir)
	start := time.Now()
	r := runBuilder(t, ctx, nil, args...)
	buildTime := time.Since(start)
	snaps := w.end()
	if r.code != 0 {
		t.Fatalf("builder ramdisk failed (exit %d)", r.code)
	}
	t.Logf("ramdisk build: %s", buildTime.Round(100*time.Millisecond))
	for _, f := range []string{"deploy.kernel", "deploy.initramfs", "deploy.tar", "deploy.d/dib-manifests"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("output %s: %v", f, err)
		}
	}
	for _, f := range []string{"deploy.qcow2", "deploy.raw"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s exists: a ramdisk build makes no disk", f)
		}
	}
	if !strings.Contains(r.stdout+r.stderr, "no-final-image: no disk is made, so -t qcow2 is not written") {
		t.Errorf("no word about the dropped qcow2")
	}

	// 2. Atomic outputs: written beside under a temporary name, renamed
	// when complete; a final name never shows a partial file.
	final := map[string]int64{}
	for _, f := range []string{"deploy.kernel", "deploy.initramfs", "deploy.tar"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		final[f] = st.Size()
	}
	sawTemp := false
	for _, s := range snaps {
		for name, size := range s {
			// The output's temporary name, or the archive writer's own
			// temporary beside that.
			if strings.HasPrefix(name, ".deploy.initramfs.") && strings.Contains(name, ".tmp") {
				sawTemp = true
			}
			if want, ok := final[name]; ok && size != want {
				t.Errorf("%s seen at %d bytes, finished at %d: not written atomically", name, size, want)
			}
		}
	}
	if !sawTemp {
		t.Errorf("no temporary .deploy.initramfs.*.tmp* seen beside the output in %d snapshots", len(snaps))
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}

	// 3. The kernel is a bzImage; the initramfs is gzip (DIB's format).
	kernel, _ := os.ReadFile(filepath.Join(dir, "deploy.kernel"))
	if len(kernel) < 0x206 || string(kernel[0x202:0x206]) != "HdrS" {
		t.Errorf("deploy.kernel is not a Linux boot image")
	}
	ir, _ := os.ReadFile(filepath.Join(dir, "deploy.initramfs"))
	if len(ir) < 2 || ir[0] != 0x1f || ir[1] != 0x8b {
		t.Fatalf("deploy.initramfs is not gzip")
	}
	m := regexp.MustCompile(`kernel /boot/vmlinuz-(\S+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the build did not say which kernel it wrote")
	}
	kver := m[1]

	// 4. What the ramdisk holds, read with GNU cpio, against the same tree
	// written by tar.
	cpioRoot, tarRoot := filepath.Join(dir, "cpio"), filepath.Join(dir, "tar")
	os.Mkdir(cpioRoot, 0o755)
	os.Mkdir(tarRoot, 0o755)
	extract(t, filepath.Join(dir, "deploy.initramfs"), cpioRoot)
	extract(t, filepath.Join(dir, "deploy.tar"), tarRoot)
	if l, _ := os.Readlink(filepath.Join(cpioRoot, "init")); l != "/sbin/init" {
		t.Errorf("/init -> %q, want /sbin/init (the image's systemd)", l)
	}
	for _, f := range []string{"usr/local/sbin/builder-ramdisk-ready",
		"etc/systemd/system/multi-user.target.wants/builder-ramdisk-ready.service",
		"usr/lib/systemd/system/dhcp-interface@.service", "etc/udev/rules.d/99-dhcp-all-interfaces.rules",
		"lib/modules/" + kver + "/modules.dep"} {
		// Lstat: enabled units are absolute links into the image.
		if _, err := os.Lstat(filepath.Join(cpioRoot, f)); err != nil {
			t.Errorf("ramdisk lacks %s: %v", f, err)
		}
	}
	// One DHCP client per interface: neither debian-minimal's ifupdown
	// hotplug rule nor the ramdisk element's networkd configuration.
	for _, f := range []string{"etc/udev/rules.d/75-builder-ifupdown.rules", "etc/systemd/network/80-ramdisk-dhcp.network"} {
		if _, err := os.Lstat(filepath.Join(cpioRoot, f)); !os.IsNotExist(err) {
			t.Errorf("%s is in the ramdisk beside dhcp-all-interfaces: two DHCP clients", f)
		}
	}
	for _, d := range []string{"boot", "usr/share/doc", "tmp"} {
		if ents, err := os.ReadDir(filepath.Join(cpioRoot, d)); err != nil || len(ents) != 0 {
			t.Errorf("/%s in the ramdisk: %d entries, %v; want it empty (DIB_RAMDISK_EXCLUDE)", d, len(ents), err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(cpioRoot, "dev/console"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 5<<8|1 {
		t.Errorf("/dev/console: mode %o rdev %x, %v; want the console device", st.Mode, st.Rdev, err)
	}
	// Every member: the tree's type, owner, mode, size, link target and
	// hard links, and the same content.
	n := 0
	err := filepath.WalkDir(cpioRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(cpioRoot, p)
		if rel == "." || rel == "init" || strings.HasPrefix(rel, "dev/") {
			return nil // the archive's own additions
		}
		var a, b syscall.Stat_t
		if err := syscall.Lstat(p, &a); err != nil {
			return err
		}
		if err := syscall.Lstat(filepath.Join(tarRoot, rel), &b); err != nil {
			t.Errorf("%s is in the ramdisk, not in the tree: %v", rel, err)
			return nil
		}
		n++
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || (a.Mode&syscall.S_IFMT == syscall.S_IFREG && (a.Size != b.Size || a.Nlink != b.Nlink)) {
			t.Errorf("%s: ramdisk mode %o %d:%d size %d links %d, tree %o %d:%d size %d links %d",
				rel, a.Mode, a.Uid, a.Gid, a.Size, a.Nlink, b.Mode, b.Uid, b.Gid, b.Size, b.Nlink)
		}
		switch a.Mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			la, _ := os.Readlink(p)
			lb, _ := os.Readlink(filepath.Join(tarRoot, rel))
			if la != lb {
				t.Errorf("%s -> %q in the ramdisk, %q in the tree", rel, la, lb)
			}
		case syscall.S_IFREG:
			if a.Size > 0 && sha256File(t, p) != sha256File(t, filepath.Join(tarRoot, rel)) {
				t.Errorf("%s: content differs from the tree", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5000 {
		t.Errorf("only %d entries compared: the ramdisk is not the whole root filesystem", n)
	}

	// 5. It boots: kernel and initramfs under QEMU, DHCP from QEMU's user
	// network, the ramdisk's readiness line.
	report := filepath.Join(dir, "boot.json")
	start = time.Now()
	b := runBuilder(t, ctx, nil, "boot-test", out, "--report", report, "--console-log", filepath.Join(dir, "console.log"),
		"--expect-cmdline", "console=ttyS0,115200n8", "--timeout", "12m")
	bootTime := time.Since(start)
	var rep ramdiskReport
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no boot report: %v", err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if b.code != 0 || !rep.Passed {
		t.Fatalf("boot-test failed (exit %d): %s", b.code, rep.Reason)
	}
	if rep.RamdiskReady == nil || !strings.HasPrefix(rep.RamdiskReady.Address, "10.0.2.") || rep.RamdiskReady.Gateway != "10.0.2.2" {
		t.Errorf("readiness %+v: want a lease from QEMU's user network (10.0.2.x, gateway 10.0.2.2)", rep.RamdiskReady)
	}
	if rep.Kernel != filepath.Join(dir, "deploy.kernel") || rep.Initramfs != filepath.Join(dir, "deploy.initramfs") || rep.Memory < 1024 {
		t.Errorf("report: kernel %s initramfs %s memory %d MiB", rep.Kernel, rep.Initramfs, rep.Memory)
	}
	t.Logf("boot-test: %s wall, ready %.1f s after QEMU started (%s, %d MiB): %s", bootTime.Round(100*time.Millisecond),
		rep.ReadySeconds, rep.Accel, rep.Memory, rep.RamdiskReady.Line)

	// 6. Nothing changed: every step cached, the same initramfs bytes.
	first := sha256File(t, filepath.Join(dir, "deploy.initramfs"))
	start = time.Now()
	r = runBuilder(t, ctx, []string{"OVERWRITE_OLD_IMAGE=1"}, args...)
	rebuild := time.Since(start)
	if r.code != 0 {
		t.Fatalf("rebuild failed (exit %d)", r.code)
	}
	// extra-data.d runs on every build (it copies host files into the
	// hooks tree, which keys the later steps); nothing else may run.
	hooks := regexp.MustCompile(`(?m)^\s+([a-z-]+\.d)/\d+-\S+ \[`).FindAllStringSubmatch(r.stdout, -1)
	for _, h := range hooks {
		if h[1] != "extra-data.d" {
			t.Errorf("the unchanged rebuild ran %s", strings.TrimSpace(h[0]))
		}
	}
	if c := strings.Count(r.stdout, "cached"); c < 5 {
		t.Errorf("the unchanged rebuild shows %d cached steps", c)
	}
	if again := sha256File(t, filepath.Join(dir, "deploy.initramfs")); again != first {
		t.Errorf("the same tree gave another initramfs: %s, then %s", first, again)
	}
	t.Logf("unchanged rebuild: %s", rebuild.Round(100*time.Millisecond))

	// 7. no-final-image without a ramdisk: the tree outputs only.
	plain := filepath.Join(dir, "plain")
	r = runBuilder(t, ctx, nil, "image", "-o", plain, "-t", "qcow2,tar", "--image-cache", cacheDir, "debian-minimal", "vm", "no-final-image")
	if r.code != 0 {
		t.Fatalf("no-final-image build failed (exit %d)", r.code)
	}
	if _, err := os.Stat(plain + ".tar"); err != nil {
		t.Errorf("no-final-image: the tar is missing: %v", err)
	}
	for _, f := range []string{plain + ".qcow2", plain + ".kernel", plain + ".initramfs"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("no-final-image wrote %s", f)
		}
	}
	if strings.Contains(r.stdout, "==> assemble") {
		t.Errorf("no-final-image assembled a disk")
	}
	if !bytes.Contains([]byte(r.stdout+r.stderr), []byte("no-final-image: no disk is made")) {
		t.Errorf("no word about the dropped qcow2")
	}

	// 8. Rootless: the same ramdisk built by an ordinary user (a user
	// namespace; no device nodes can be made there) has the same owners,
	// modes and links, and the console device all the same.
	uid := ensureRootlessUser(t)
	binDir := sharedDir(t, 0)
	bin := filepath.Join(binDir, "builder")
	copyExecutable(t, builderBin, bin)
	userOut := sharedDir(t, uid)
	userCache := filepath.Join(cacheDir, "rootless")
	os.MkdirAll(userCache, 0o755)
	os.Chown(userCache, uid, uid)
	r = runAs(t, ctx, bin, append([]string{"ramdisk", "-o", filepath.Join(userOut, "deploy"), "--image-cache", userCache}, ramdiskElements...)...)
	if r.code != 0 {
		t.Fatalf("rootless ramdisk build failed (exit %d)", r.code)
	}
	if fi, err := os.Stat(filepath.Join(userOut, "deploy.initramfs")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Fatalf("rootless deploy.initramfs: %v (want it owned by the user)", err)
	}
	userRoot := filepath.Join(dir, "cpio-rootless")
	os.Mkdir(userRoot, 0o755)
	extract(t, filepath.Join(userOut, "deploy.initramfs"), userRoot)
	if err := syscall.Lstat(filepath.Join(userRoot, "dev/console"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 5<<8|1 || st.Uid != 0 {
		t.Errorf("rootless /dev/console: mode %o rdev %x uid %d, %v; want the console device, owned by root", st.Mode, st.Rdev, st.Uid, err)
	}
	listing := func(root string) map[string]string {
		l := map[string]string{}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if strings.HasPrefix(rel, "dev/") || strings.HasPrefix(rel, "var/lib/dpkg/") || strings.HasPrefix(rel, "var/cache/") ||
				rel == "etc/machine-id" || strings.HasPrefix(rel, "etc/dib-manifests") {
				return nil // device nodes, and what two bootstraps may differ in
			}
			var s syscall.Stat_t
			syscall.Lstat(p, &s)
			e := fmt.Sprintf("%o %d:%d", s.Mode, s.Uid, s.Gid)
			if s.Mode&syscall.S_IFMT == syscall.S_IFREG {
				e += fmt.Sprintf(" links=%d", s.Nlink)
			}
			l[rel] = e
			return nil
		})
		return l
	}
	compareListings(t, "root ramdisk", listing(cpioRoot), "rootless ramdisk", listing(userRoot))

	// 9. DIB's other ramdisk style: dracut's initramfs (dracut-ramdisk),
	// its network from the command line dracut-network built in.
	small := filepath.Join(dir, "small")
	r = runBuilder(t, ctx, nil, append([]string{"ramdisk", "--ramdisk-element", "dracut-ramdisk", "-o", small, "--image-cache", cacheDir}, ramdiskElements...)...)
	if r.code != 0 {
		t.Fatalf("dracut-ramdisk build failed (exit %d)", r.code)
	}
	dracutRoot := filepath.Join(dir, "cpio-dracut")
	os.Mkdir(dracutRoot, 0o755)
	extract(t, small+".initramfs", dracutRoot)
	for _, f := range []string{"usr/lib/dracut/hooks/pre-mount/50-builder-ramdisk-init.sh", "usr/local/sbin/builder-ramdisk-ready", "usr/lib/initrd-release"} {
		if _, err := os.Lstat(filepath.Join(dracutRoot, f)); err != nil {
			t.Errorf("dracut ramdisk lacks %s: %v", f, err)
		}
	}
	cmdline, _ := exec.Command("sh", "-c", "cat \"$1\"/etc/cmdline.d/*.conf", "sh", dracutRoot).Output()
	if !strings.Contains(string(cmdline), "rd.neednet=1 ip=dhcp") {
		t.Errorf("dracut ramdisk's built-in command line %q lacks dracut-network's rd.neednet=1 ip=dhcp", cmdline)
	}
	if fi, err := os.Stat(small + ".initramfs"); err != nil || fi.Size() >= final["deploy.initramfs"] {
		t.Errorf("the dracut ramdisk is not smaller than the whole-rootfs one: %v", err)
	} else {
		t.Logf("dracut-ramdisk: %d MiB, whole root filesystem: %d MiB", fi.Size()>>20, final["deploy.initramfs"]>>20)
	}
	report = filepath.Join(dir, "boot-dracut.json")
	b = runBuilder(t, ctx, nil, "boot-test", small, "--report", report, "--timeout", "10m")
	rep = ramdiskReport{}
	if data, err = os.ReadFile(report); err != nil {
		t.Fatalf("no boot report: %v", err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if b.code != 0 || !rep.Passed || rep.RamdiskReady == nil || !strings.HasPrefix(rep.RamdiskReady.Address, "10.0.2.") {
		t.Fatalf("dracut ramdisk boot (exit %d): %s, readiness %+v", b.code, rep.Reason, rep.RamdiskReady)
	}
	t.Logf("dracut-ramdisk boot: ready %.1f s after QEMU started", rep.ReadySeconds)
}
