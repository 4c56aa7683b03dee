package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"builder/internal/testreq"
)

const rootlessUser = "builder-e2e"

// ownElements are the DIB elements real element trees depend on most, of
// which builder ships its own versions (it must not need DIB installed).
var ownElements = []string{"source-repositories", "svc-map", "dib-python", "ensure-venv", "simple-init", "pip-cache",
	"epel", "select-boot-kernel-initrd", "growvols", "pip-and-virtualenv", "selinux-permissive", "dhcp-all-interfaces",
	"ibft-interfaces", "no-final-image", "sysctl", "dracut-regenerate", "cleanup-kernel-initrd", "openstack-ci-mirrors",
	"stable-interface-names", "cloud-init", "modprobe", "timezone", "disable-nouveau", "iscsi-boot", "pypi", "ramdisk",
	"ramdisk-base", "dracut-ramdisk", "dracut-network", "local-config", "journal-to-console", "hwclock",
	"cloud-init-nocloud", "apt-conf", "apt-preferences", "apt-sources", "grub2", "lvm", "mellanox"}

// ensureRootlessUser creates an ordinary user with subordinate id ranges, as
// a developer's workstation has, and returns its uid.
func ensureRootlessUser(t *testing.T) int {
	t.Helper()
	if _, err := user.Lookup(rootlessUser); err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/bash", rootlessUser).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		if !strings.Contains(string(b), rootlessUser+":") {
			if out, err := exec.Command("usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", rootlessUser).CombinedOutput(); err != nil {
				t.Fatalf("usermod: %v\n%s", err, out)
			}
			break
		}
	}
	u, err := user.Lookup(rootlessUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}

// sharedDir is a directory under /var/tmp that uid may use (t.TempDir is
// private to root).
func sharedDir(t *testing.T, uid int) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "builder-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// BUILDER_E2E_KEEP=1 keeps them for a look after a failure.
		if os.Getenv("BUILDER_E2E_KEEP") == "" {
			os.RemoveAll(d)
		} else {
			t.Logf("kept %s (BUILDER_E2E_KEEP)", d)
		}
	})
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, uid, uid); err != nil {
		t.Fatal(err)
	}
	return d
}

// runAs runs the builder binary as the rootless user, with the environment
// a login would give.
func runAs(t *testing.T, ctx context.Context, bin string, args ...string) result {
	t.Helper()
	return runAsWithEnv(t, ctx, nil, bin, args...)
}

// runAsWithEnv is runAs with variables added to the login's environment.
func runAsWithEnv(t *testing.T, ctx context.Context, env []string, bin string, args ...string) result {
	t.Helper()
	u, _ := user.Lookup(rootlessUser)
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", rootlessUser, "--", bin}, args...)...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + u.HomeDir, "USER=" + rootlessUser, "LOGNAME=" + rootlessUser}, env...)
	cmd.Dir = u.HomeDir
	return runLogged(t, cmd, "["+rootlessUser+"] builder "+strings.Join(args, " "))
}

// readBootReport reads boot-test's JSON report and fails the test unless
// the boot passed.
func readBootReport(t *testing.T, path string, code int) bootReport {
	t.Helper()
	var rep bootReport
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no boot report: %v", err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if code != 0 || !rep.Passed {
		t.Fatalf("boot test failed (exit %d): %s", code, rep.Reason)
	}
	return rep
}

// bootedWithCloudInit fails the test unless the guest reached a login
// prompt and cloud-init finished.
func bootedWithCloudInit(t *testing.T, rep bootReport) {
	t.Helper()
	if !rep.LoginSeen || !rep.CloudInit.Finished {
		t.Errorf("login %v, cloud-init finished %v", rep.LoginSeen, rep.CloudInit.Finished)
	}
}

// fileListing mounts the image's root filesystem read-only and lists every
// file: type, owner, mode (with setuid bits), link count of regular files,
// file capabilities and symlink targets.
func fileListing(t *testing.T, qcow2 string) map[string]string {
	t.Helper()
	r := openImage(t, qcow2)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("ro,loop,offset=%d", r.offset), r.raw, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v\n%s", err, out)
		}
	}()
	list := map[string]string{}
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, mnt), "/")
		e := fmt.Sprintf("%o %d:%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			e += fmt.Sprintf(" links=%d", st.Nlink)
			buf := make([]byte, 64)
			if n, err := syscall.Getxattr(p, "security.capability", buf); err == nil {
				e += fmt.Sprintf(" caps=%x", buf[:n])
			}
		case syscall.S_IFLNK:
			target, _ := os.Readlink(p)
			e += " -> " + target
		}
		list[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", qcow2, err)
	}
	return list
}

// compareListings reports paths whose owner, mode, links or capabilities
// differ, and paths only one image has.
func compareListings(t *testing.T, nameA string, a map[string]string, nameB string, b map[string]string) {
	t.Helper()
	var diffs []string
	for p, ea := range a {
		eb, ok := b[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: only in %s (%s)", p, nameA, ea))
		case ea != eb:
			diffs = append(diffs, fmt.Sprintf("%s: %s %s, %s %s", p, nameA, ea, nameB, eb))
		}
	}
	for p, eb := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: only in %s (%s)", p, nameB, eb))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("... and %d more", len(diffs)-30))
		}
		t.Errorf("%s and %s differ in %d file(s):\n%s", nameA, nameB, len(diffs), strings.Join(diffs, "\n"))
	}
}

// checkOwnership spot-checks what a rootless build could get wrong, in the
// root build's listing: real owners, setuid, hard links.
func checkOwnership(t *testing.T, l map[string]string) {
	t.Helper()
	if e := l["/usr/bin/sudo"]; !strings.HasPrefix(e, "104755 0:0") {
		t.Errorf("/usr/bin/sudo is %q, want setuid root", e)
	}
	found := false
	for p, e := range l {
		if strings.HasPrefix(p, "/var/") && !strings.Contains(e, " 0:0") && !strings.HasPrefix(e, "12") {
			found = true
			break
		}
	}
	if !found {
		t.Errorf("no file under /var owned by anyone but root: owners were lost")
	}
	hard := false
	for _, e := range l {
		if strings.Contains(e, " links=") && !strings.Contains(e, " links=1") {
			hard = true
			break
		}
	}
	if !hard {
		t.Errorf("no hard-linked file in the image: hard links were lost")
	}
}

// The same `builder image debian vm acme-guest` (an element tree written as
// third parties write them, whose outside hooks call sudo: see
// TestWildElementTree) as root, as an ordinary user with subordinate ids,
// and inside an unprivileged podman container built from the Containerfile
// (no host sudo can help there): each image boots and the three have the
// same files with the same owners and modes.
func TestRootlessAndContainerBuildsMatchRoot(t *testing.T) {
	needE2E(t)
	uid := ensureRootlessUser(t)
	ctx := withTimeout(t, 60*time.Minute)
	wild := wildEnv(t)
	elems := []string{"debian", "vm", "acme-guest"}

	rootDir := t.TempDir()
	r := runBuilder(t, ctx, wild, append(append([]string{"image"}, elems...), "-o", filepath.Join(rootDir, "debian"), "--image-cache", cacheDir)...)
	if r.code != 0 {
		t.Fatalf("root build failed")
	}
	rootList := fileListing(t, filepath.Join(rootDir, "debian.qcow2"))
	checkOwnership(t, rootList)

	t.Run("rootless", func(t *testing.T) {
		binDir := sharedDir(t, 0)
		bin := filepath.Join(binDir, "builder")
		copyExecutable(t, builderBin, bin)
		out := sharedDir(t, uid)
		cache := filepath.Join(cacheDir, "rootless")
		os.MkdirAll(cache, 0o755)
		os.Chown(cache, uid, uid)
		r := runAsWithEnv(t, ctx, wild, bin, append(append([]string{"image"}, elems...), "-o", filepath.Join(out, "debian"), "--image-cache", cache)...)
		if r.code != 0 {
			t.Fatalf("rootless build failed")
		}
		img := filepath.Join(out, "debian.qcow2")
		var st syscall.Stat_t
		if err := syscall.Stat(img, &st); err != nil || int(st.Uid) != uid {
			t.Errorf("output %s owned by uid %d, want the user's %d (%v)", img, st.Uid, uid, err)
		}
		if !strings.Contains(r.stdout, "storage driver") {
			t.Errorf("the build did not say which storage driver it chose")
		}
		report := filepath.Join(out, "boot.json")
		b := runAs(t, ctx, bin, "boot-test", img, "--report", report, "--require-cloud-init", "--timeout", "15m")
		bootedWithCloudInit(t, readBootReport(t, report, b.code))
		compareListings(t, "root", rootList, "rootless", fileListing(t, img))
	})

	// A user without subordinate ids is stopped before any work, told why
	// and how to fix it.
	t.Run("user-without-subids", func(t *testing.T) {
		binDir := sharedDir(t, 0)
		bin := filepath.Join(binDir, "builder")
		copyExecutable(t, builderBin, bin)
		cmd := exec.CommandContext(ctx, "runuser", "-u", "nobody", "--", bin, "image", "debian", "vm", "-o", filepath.Join(binDir, "x"))
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Fatalf("want exit 1, got %v\n%s", err, out)
		}
		for _, want := range []string{"subordinate", "usermod --add-subuids"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("error lacks %q:\n%s", want, out)
			}
		}
		if fileExists(filepath.Join(binDir, "x.qcow2")) || fileExists(filepath.Join(binDir, "x.d")) {
			t.Errorf("a refused build left outputs")
		}
	})

	t.Run("unprivileged-container", func(t *testing.T) {
		if _, err := exec.LookPath("podman"); err != nil {
			testreq.Missing(t, "podman is not installed (hack/test.sh installs it)")
		}
		image := buildContainerImage(t, ctx)
		out := sharedDir(t, 1000)
		cache := filepath.Join(cacheDir, "container")
		os.MkdirAll(cache, 0o755)
		os.Chown(cache, 1000, 1000)
		// No --privileged, no devices: the storage goes on the volume (a
		// real filesystem, so the kernel's overlay works in the build's
		// user namespace).
		run := func(args ...string) result {
			// The host's network: the wild tree's git server is on its
			// loopback. The tree is mounted read-only at /elements.
			base := append([]string{"run", "--rm", "--network", "host"}, ulimitArgs()...)
			base = append(base, "-v", out+":/work", "-v", cache+":/home/builder/.cache", "-v", wildElements(t)+":/elements:ro")
			for _, kv := range wild {
				if strings.HasPrefix(kv, "ELEMENTS_PATH=") {
					kv = "ELEMENTS_PATH=/elements"
				}
				base = append(base, "-e", kv)
			}
			base = append(base, image)
			cmd := exec.CommandContext(ctx, "podman", append(base, args...)...)
			return runLogged(t, cmd, "[container] builder "+strings.Join(args, " "))
		}
		if d := run("doctor"); d.code != 0 {
			t.Errorf("builder doctor in the container found problems")
		} else if !strings.Contains(d.stdout, "DIB element library") || !strings.Contains(d.stdout, "not installed") {
			t.Errorf("builder doctor does not say that the container has no DIB library")
		}
		// No DIB in the container: builder's own versions of the elements
		// real trees depend on are all there.
		list := run("elements", "list")
		for _, e := range ownElements {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(e) + `\s.*\bbuilt-in\b`).MatchString(list.stdout) {
				t.Errorf("builder elements list in the container lacks %s (built-in)", e)
			}
		}
		if r := run(append(append([]string{"image"}, elems...), "-o", "/work/debian")...); r.code != 0 {
			t.Fatalf("build in the container failed")
		} else if !strings.Contains(r.stdout, "storage driver") {
			t.Errorf("the build did not say which storage driver it chose")
		}
		b := run("boot-test", "/work/debian.qcow2", "--report", "/work/boot.json", "--require-cloud-init", "--timeout", "15m")
		bootedWithCloudInit(t, readBootReport(t, filepath.Join(out, "boot.json"), b.code))
		compareListings(t, "root", rootList, "container", fileListing(t, filepath.Join(out, "debian.qcow2")))
	})
}

func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// ulimitArgs keeps the container's limits within this machine's: podman
// asks for more open files and processes than some sandboxes allow, and
// runc then cannot start the container.
func ulimitArgs() []string {
	var nofile syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	return []string{"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Max, nofile.Max), "--ulimit", "nproc=32768:32768"}
}

// buildContainerImage builds the Containerfile on a Debian base made with
// mmdebstrap (no registry here), with the host's Go caches mounted.
func buildContainerImage(t *testing.T, ctx context.Context) string {
	t.Helper()
	const base, image = "localhost/builder-e2e-base:bookworm", "localhost/builder-e2e:latest"
	if exec.Command("podman", "image", "exists", base).Run() != nil {
		if out, err := exec.CommandContext(ctx, "podman", "import", minbaseTar(t), base).CombinedOutput(); err != nil {
			t.Fatalf("podman import: %v\n%s", err, out)
		}
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	args := []string{"build", "--network=host", "--build-arg", "BASE=" + base, "-t", image}
	args = append(args, ulimitArgs()...)
	if ca := "/etc/ssl/certs/ca-certificates.crt"; fileExists(ca) {
		// This machine reaches the Go module proxy through a TLS proxy
		// whose CA only the host trusts.
		args = append(args, "-v", ca+":/run/host-ca.crt:ro", "--build-arg", "CURL_CA_BUNDLE=/run/host-ca.crt", "--build-arg", "SSL_CERT_FILE=/run/host-ca.crt")
	}
	for _, v := range []string{"GOMODCACHE:/root/go/pkg/mod", "GOCACHE:/root/.cache/go-build"} {
		name, dst, _ := strings.Cut(v, ":")
		if out, err := exec.Command("go", "env", name).Output(); err == nil && strings.TrimSpace(string(out)) != "" {
			args = append(args, "-v", strings.TrimSpace(string(out))+":"+dst)
		}
	}
	if proxy, err := exec.Command("go", "env", "GOPROXY").Output(); err == nil {
		args = append(args, "--build-arg", "GOPROXY="+strings.TrimSpace(string(proxy)))
	}
	args = append(args, repo)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "podman", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("podman build: %v\n%s", err, tailLines(string(out), 40))
	}
	t.Logf("podman build of the Containerfile: %s", time.Since(start).Round(time.Second))
	return image
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
