package e2e

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Servers on 127.0.0.1 for build-time network sources: a git daemon
// (git://) over bare repositories the test makes, and python's http.server
// over a directory (tarballs, files, a PEP 503 "simple" package index).
// Each is stopped when the test ends.

// nsFreePort returns a TCP port that was free a moment ago on 127.0.0.1.
func nsFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nsStartServer runs cmd in its own process group until the test ends, and
// waits until ready() succeeds.
func nsStartServer(t *testing.T, what string, cmd *exec.Cmd, ready func() error) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", what, err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		// The whole group: git daemon forks a child per connection.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("%s did not start: %v\n%s", what, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nsGitEnv is a git that ignores the host's and user's configuration and
// commits under a fixed identity.
func nsGitEnv() []string {
	return append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=netsrc", "GIT_AUTHOR_EMAIL=netsrc@example.invalid",
		"GIT_COMMITTER_NAME=netsrc", "GIT_COMMITTER_EMAIL=netsrc@example.invalid")
}

// nsGit runs git in dir and returns its trimmed output.
func nsGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = nsGitEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

type gitServer struct {
	base string // bare repositories, NAME.git
	URL  string // git://127.0.0.1:PORT
}

// startGitServer runs `git daemon` (Debian's git package) on a free port.
func startGitServer(t *testing.T) *gitServer {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is not installed: apt-get install git (its git daemon serves the test's repositories)")
	}
	base := t.TempDir()
	port := nsFreePort(t)
	g := &gitServer{base: base, URL: fmt.Sprintf("git://127.0.0.1:%d", port)}
	// An empty repository answers ls-remote once the daemon listens.
	nsGit(t, base, "init", "-q", "--bare", "ready.git")
	cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
		"--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), "--base-path="+base, base)
	cmd.Env = nsGitEnv()
	nsStartServer(t, "git daemon", cmd, func() error {
		c := exec.Command("git", "ls-remote", g.URL+"/ready.git")
		c.Env = nsGitEnv()
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return g
}

// gitRepo is a bare repository the server serves and a work tree that
// pushes to it.
type gitRepo struct {
	Bare, Work string
}

func (g *gitServer) newRepo(t *testing.T, name, branch string) *gitRepo {
	t.Helper()
	r := &gitRepo{Bare: filepath.Join(g.base, name+".git"), Work: filepath.Join(t.TempDir(), name)}
	nsGit(t, g.base, "init", "-q", "--bare", "-b", branch, r.Bare)
	nsGit(t, filepath.Dir(r.Work), "init", "-q", "-b", branch, r.Work)
	nsGit(t, r.Work, "remote", "add", "origin", r.Bare)
	return r
}

// commit writes files, commits them and pushes the current branch; it
// returns the commit id.
func (r *gitRepo) commit(t *testing.T, msg string, files map[string]string) string {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(r.Work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nsGit(t, r.Work, "add", "-A")
	nsGit(t, r.Work, "commit", "-q", "-m", msg)
	nsGit(t, r.Work, "push", "-q", "origin", "HEAD")
	return nsGit(t, r.Work, "rev-parse", "HEAD")
}

// tag makes an annotated tag at HEAD and pushes it.
func (r *gitRepo) tag(t *testing.T, name string) {
	t.Helper()
	nsGit(t, r.Work, "tag", "-a", "-m", name, name)
	nsGit(t, r.Work, "push", "-q", "origin", "refs/tags/"+name)
}

type staticServer struct {
	Dir string
	URL string // http://127.0.0.1:PORT
}

// startStaticServer serves dir with `python3 -m http.server` (it answers
// If-Modified-Since, as a real mirror does).
func startStaticServer(t *testing.T, dir string) *staticServer {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is not installed: apt-get install python3 (its http.server serves the test's files)")
	}
	port := nsFreePort(t)
	s := &staticServer{Dir: dir, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	cmd := exec.Command(py, "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, fmt.Sprint(port))
	nsStartServer(t, "python3 -m http.server", cmd, func() error {
		resp, err := http.Get(s.URL + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return s
}

// nsWriteFile writes data to dir/rel, making directories.
func nsWriteFile(t *testing.T, dir, rel string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// nsTarGz is a gzip'd tarball of files (name -> content), in name order.
func nsTarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(1700000000, 0),
			Uid: 4321, Gid: 4321, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// pyPackage is a pure-python distribution for the test index.
type pyPackage struct {
	Name, Version string
	Module        string            // import name
	Files         map[string]string // paths inside the wheel (module files)
	Requires      []string
}

// nsWheel builds pkg's wheel (PEP 427: the files, METADATA, WHEEL, RECORD)
// and returns its file name and content.
func nsWheel(t *testing.T, pkg pyPackage) (string, []byte) {
	t.Helper()
	dist := strings.ReplaceAll(pkg.Name, "-", "_")
	info := fmt.Sprintf("%s-%s.dist-info", dist, pkg.Version)
	meta := fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: builder e2e test package\n", pkg.Name, pkg.Version)
	for _, r := range pkg.Requires {
		meta += "Requires-Dist: " + r + "\n"
	}
	files := map[string]string{}
	for k, v := range pkg.Files {
		files[k] = v
	}
	files[info+"/METADATA"] = meta
	files[info+"/WHEEL"] = "Wheel-Version: 1.0\nGenerator: builder-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var record strings.Builder
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name, data string) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(data))
	}
	for _, n := range names {
		sum := sha256.Sum256([]byte(files[n]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", n, base64.RawURLEncoding.EncodeToString(sum[:]), len(files[n]))
		add(n, files[n])
	}
	fmt.Fprintf(&record, "%s/RECORD,,\n", info)
	add(info+"/RECORD", record.String())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s-%s-py3-none-any.whl", dist, pkg.Version), buf.Bytes()
}

// writeSimpleIndex writes a PEP 503 index of pkgs under root/simple (the
// wheels under root/packages) and returns the index's path below root.
func writeSimpleIndex(t *testing.T, root string, pkgs []pyPackage) string {
	t.Helper()
	projects := map[string][]string{}
	for _, p := range pkgs {
		name, data := nsWheel(t, p)
		nsWriteFile(t, root, "packages/"+name, data)
		sum := sha256.Sum256(data)
		norm := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(p.Name))
		projects[norm] = append(projects[norm],
			fmt.Sprintf(`<a href="../../packages/%s#sha256=%s">%s</a><br/>`, name, hex.EncodeToString(sum[:]), name))
	}
	var top strings.Builder
	top.WriteString("<!DOCTYPE html>\n<html><body>\n")
	names := make([]string, 0, len(projects))
	for n := range projects {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&top, "<a href=\"%s/\">%s</a><br/>\n", n, n)
		page := "<!DOCTYPE html>\n<html><body>\n" + strings.Join(projects[n], "\n") + "\n</body></html>\n"
		nsWriteFile(t, root, "simple/"+n+"/index.html", []byte(page))
	}
	top.WriteString("</body></html>\n")
	nsWriteFile(t, root, "simple/index.html", []byte(top.String()))
	return "simple"
}
