package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wildElements is an element tree written the way third parties write them
// for diskimage-builder (tests/e2e/testdata/wild-elements).
func wildElements(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "wild-elements")
}

// wildToken is the secret the wild tree's hooks get; it must never reach
// a log, a manifest or the image.
const wildToken = "acme-tok-5f1e9c2d7b"

// wildEnv is the environment a user of the wild tree builds with: its own
// variables (not DIB_*), a secret, and the tree's source repository served
// by a git daemon on 127.0.0.1.
func wildEnv(t *testing.T) []string {
	t.Helper()
	return []string{
		"ELEMENTS_PATH=" + wildElements(t),
		"DIB_REPOLOCATION_acme_tools=" + gitFixture(t),
		"ACME_GUEST_USER=acmeop",
		"ACME_SSH_PUBLIC_KEY=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbuilderwildtestkey operator@acme",
		"ACME_API_TOKEN=" + wildToken,
	}
}

var gitDaemon struct {
	url string
	cmd *exec.Cmd
}

// gitFixture serves the acme-tools repository (made once, with fixed dates,
// so its commits are the same in every run) with `git daemon` on
// 127.0.0.1 for the rest of the test binary, and returns its git:// URL.
func gitFixture(t *testing.T) string {
	t.Helper()
	if gitDaemon.url != "" {
		return gitDaemon.url
	}
	base := filepath.Join(cacheDir, "git-fixtures")
	repo := filepath.Join(base, "acme-tools.git")
	if _, err := os.Stat(filepath.Join(repo, "HEAD")); err != nil {
		work := t.TempDir()
		os.MkdirAll(filepath.Join(work, "bin"), 0o755)
		os.WriteFile(filepath.Join(work, "VERSION"), []byte("1.4.2\n"), 0o644)
		os.WriteFile(filepath.Join(work, "bin", "acme-tool"), []byte("#!/bin/sh\necho \"acme-tool $(cat /opt/acme/tools/VERSION)\"\n"), 0o755)
		env := append(os.Environ(), "GIT_AUTHOR_NAME=acme", "GIT_AUTHOR_EMAIL=dev@acme.example",
			"GIT_COMMITTER_NAME=acme", "GIT_COMMITTER_EMAIL=dev@acme.example",
			"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")
		tmp := repo + fmt.Sprintf(".tmp-%d", os.Getpid())
		os.RemoveAll(tmp)
		for _, args := range [][]string{
			{"-C", work, "init", "-q", "-b", "master"},
			{"-C", work, "add", "-A"},
			{"-C", work, "commit", "-q", "-m", "acme tools 1.4.2"},
			{"clone", "-q", "--bare", work, tmp},
		} {
			cmd := exec.Command("git", args...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		if err := os.Rename(tmp, repo); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
		fmt.Sprintf("--port=%d", port), "--base-path="+base, base)
	// Its own process group: git runs git-daemon as a child, which killing
	// git alone would leave running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("git daemon (Debian's git package): %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			t.Fatalf("git daemon did not listen on port %d", port)
		}
		time.Sleep(100 * time.Millisecond)
	}
	gitDaemon.cmd = cmd
	gitDaemon.url = fmt.Sprintf("git://127.0.0.1:%d/acme-tools.git", port)
	return gitDaemon.url
}

// stopGitDaemon ends the fixture server (TestMain calls it).
func stopGitDaemon() {
	if gitDaemon.cmd != nil {
		syscall.Kill(-gitDaemon.cmd.Process.Pid, syscall.SIGKILL)
		gitDaemon.cmd.Wait()
		gitDaemon = struct {
			url string
			cmd *exec.Cmd
		}{}
	}
}

// phaseLines returns the progress lines of a build's phases ("name
// seconds [cached]"), by phase.
func phaseLines(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "        ") && strings.HasSuffix(f[1], "s") {
			m[f[0]] = line
		}
	}
	return m
}

// An element tree written for DIB, unmodified: its hooks get their own
// variables, sudo and $_LIB outside, die inside, a bind mount that lasts
// the build, a source repository from a git server, /etc/resolv.conf
// chosen through .ORIG, outputs written next to the image; a secret they
// are given stays out of logs, manifests and the image; and changing a
// variable only a late phase reads rebuilds only from that phase.
// (TestRootlessAndContainerBuildsMatchRoot builds and boots the same tree
// rootless and in a container.)
func TestWildElementTree(t *testing.T) {
	needE2E(t)
	ctx := withTimeout(t, 40*time.Minute)
	out, tmp := t.TempDir(), t.TempDir()
	env := append(wildEnv(t), "TMP_DIR="+tmp)
	name := filepath.Join(out, "guest")
	r := runBuilder(t, ctx, env, "image", "-x", "debian", "vm", "acme-guest", "-t", "qcow2,tar", "-o", name, "--image-cache", cacheDir)
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	if strings.Contains(r.stdout+r.stderr, wildToken) {
		t.Errorf("the secret ACME_API_TOKEN appears in the build's output (traced with -x)")
	}
	for _, w := range []string{"[REDACTED]", "acme-guest"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	tree := extractTar(t, name+".tar")
	read := func(p string) string {
		data, err := os.ReadFile(filepath.Join(tree, p))
		if err != nil {
			return "<missing>"
		}
		return string(data)
	}
	checks := []struct{ path, want string }{
		{"etc/passwd", "acmeop:"},                                  // ACME_GUEST_USER (not DIB_*) reached install.d
		{"home/acmeop/.ssh/authorized_keys", "builderwildtestkey"}, // ACME_SSH_PUBLIC_KEY
		{"etc/acme/acme.conf", "listen = 0.0.0.0:8443"},            // static/
		{"opt/acme/tools/VERSION", "1.4.2"},                        // source-repositories from git://127.0.0.1
		{"etc/acme/wheels.txt", "acme-agent-1.0"},                  // root.d bind mount seen in install.d
		{"etc/motd", "ACME guest, tools acme-tool 1.4.2"},          // sudo tee + sudo chroot outside
		{"etc/acme/kernel", "vmlinuz-"},                            // $_LIB/img-functions
		{"etc/resolv.conf", "nameserver 192.0.2.53"},               // resolv.conf.ORIG decides
	}
	for _, c := range checks {
		if got := read(c.path); !strings.Contains(got, c.want) {
			t.Errorf("/%s = %q, want it to contain %q", c.path, got, c.want)
		}
	}
	for _, p := range []string{"etc/resolv.conf.ORIG", "etc/acme/debug.conf", "tmp/acme-wheels/index.txt"} {
		if _, err := os.Lstat(filepath.Join(tree, p)); err == nil {
			t.Errorf("/%s is in the image", p)
		}
	}
	if got := read("etc/acme/token.sha256"); len(strings.TrimSpace(got)) != 64 {
		t.Errorf("the hooks did not get ACME_API_TOKEN (fingerprint %q)", got)
	}
	if data, _ := os.ReadFile(filepath.Join(cacheDir, "acme-wheels", "seen-from-chroot")); string(data) != "built-in-chroot\n" {
		t.Errorf("the install.d hook's write through the bind mount did not reach the host cache: %q", data)
	}
	if got, err := os.ReadFile(name + ".acme-report"); err != nil || !strings.Contains(string(got), "user: acmeop") || !strings.Contains(string(got), "tools: 1.4.2") {
		t.Errorf("the cleanup.d hook's output guest.acme-report: %q %v", got, err)
	}
	for _, f := range []string{"guest.d/dib-manifests/dib_environment", "guest.d/dib-manifests/dib_arguments"} {
		data, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Errorf("manifest %s: %v", f, err)
		}
		if strings.Contains(string(data), wildToken) {
			t.Errorf("the secret is in the manifest %s", f)
		}
	}
	if logs, _ := filepath.Glob(filepath.Join(out, "guest.d", "logs", "*")); len(logs) > 0 {
		t.Errorf("a successful build left hook logs: %v", logs)
	}

	// The same build again: every step cached. Then a variable only
	// cleanup.d reads: everything before cleanup.d stays cached.
	args := []string{"image", "-x", "debian", "vm", "acme-guest", "-t", "qcow2,tar", "-o", name, "--image-cache", cacheDir}
	again := runBuilder(t, ctx, append(env, "OVERWRITE_OLD_IMAGE=1"), args...)
	if again.code != 0 {
		t.Fatalf("unchanged rebuild failed")
	}
	for ph, line := range phaseLines(again.stdout) {
		if strings.HasSuffix(ph, ".d") && ph != "extra-data.d" && !strings.HasSuffix(line, "cached") {
			t.Errorf("unchanged rebuild re-ran %s: %q", ph, line)
		}
	}
	r2 := runBuilder(t, ctx, append(env, "OVERWRITE_OLD_IMAGE=1", "ACME_DEBUG_TOOLS=true"), args...)
	if r2.code != 0 {
		t.Fatalf("rebuild with ACME_DEBUG_TOOLS=true failed")
	}
	phases := phaseLines(r2.stdout)
	for _, ph := range []string{"root.d", "pre-install.d", "install.d", "post-install.d", "post-root.d", "finalise.d"} {
		if !strings.HasSuffix(phases[ph], "cached") {
			t.Errorf("%s re-ran although it does not read ACME_DEBUG_TOOLS: %q", ph, phases[ph])
		}
	}
	if strings.HasSuffix(phases["cleanup.d"], "cached") || phases["cleanup.d"] == "" {
		t.Errorf("cleanup.d reads ACME_DEBUG_TOOLS but did not re-run: %q", phases["cleanup.d"])
	}
	if got := readFromTar(t, name+".tar", "./etc/acme/debug.conf"); got != "debug = true\n" {
		t.Errorf("/etc/acme/debug.conf = %q", got)
	}

	// A hook that writes the secret into the image fails the build, naming
	// the variable and the file, and nothing is written.
	leak := runBuilder(t, ctx, env, "image", "debian", "vm", "acme-guest", "acme-leak", "-t", "tar", "-o", name+"-leak", "--image-cache", cacheDir)
	if leak.code == 0 {
		t.Fatalf("a build that wrote the secret into the image succeeded")
	}
	if !strings.Contains(leak.stderr, "ACME_API_TOKEN") || !strings.Contains(leak.stderr, "/etc/acme/registration") {
		t.Errorf("the error does not name the variable and the file:\n%s", leak.stderr)
	}
	if strings.Contains(leak.stdout+leak.stderr, wildToken) {
		t.Errorf("the failed build printed the secret")
	}
	if _, err := os.Stat(name + "-leak.tar"); err == nil {
		t.Errorf("the refused build wrote its output")
	}
}

func extractTar(t *testing.T, tarball string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", tarball, "-C", dir, "./etc", "./home", "./opt", "./tmp").CombinedOutput(); err != nil {
		t.Fatalf("tar -x %s: %v\n%s", tarball, err, out)
	}
	return dir
}

func readFromTar(t *testing.T, tarball, path string) string {
	t.Helper()
	out, err := exec.Command("tar", "-xOf", tarball, path).Output()
	if err != nil {
		return "<missing>"
	}
	return string(out)
}
