// Package testregistry starts a real container registry (Debian's
// docker-registry, the distribution project's) on 127.0.0.1 for tests, and
// a proxy in front of it that can be cut mid-transfer.
package testregistry

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"builder/internal/testreq"
)

// Registry is a running registry.
type Registry struct {
	// Addr is host:port.
	Addr string
	// RegistriesConf marks Addr (and proxies made by Cuttable) insecure
	// (plain HTTP), for CONTAINERS_REGISTRIES_CONF.
	RegistriesConf string
	dir            string
}

// Start runs a registry until the test ends.
func Start(t *testing.T) *Registry {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		testreq.Missing(t, "docker-registry is not installed (hack/test.sh installs it)")
	}
	addr := freeAddr(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", dir, addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfg)
	log, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); log.Close() })
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("registry did not start: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := &Registry{Addr: addr, dir: dir, RegistriesConf: filepath.Join(dir, "registries.conf")}
	r.allowInsecure(addr)
	return r
}

func (r *Registry) allowInsecure(addr string) {
	f, err := os.OpenFile(r.RegistriesConf, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "[[registry]]\nlocation = %q\ninsecure = true\n", addr)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// DownAddr is an address where nothing listens (a registry that is down).
func DownAddr(t *testing.T) string { return freeAddr(t) }

// Proxy forwards to the registry until Cut: then it breaks off the transfer
// under way (a response half sent) and refuses every connection after.
type Proxy struct {
	Addr string
	l    net.Listener
	mu   sync.Mutex
	cut  bool
	live map[net.Conn]bool
	// blobs counts blob requests (GET /v2/.../blobs/sha256:...).
	blobs atomic.Int64
}

// CutFunc is asked after each chunk of a blob response: which blob request
// of the proxy's it is (0 first) and how many bytes of it were sent; when
// it says yes the proxy cuts.
type CutFunc func(blob int, sent int64) bool

// Cuttable starts a proxy in front of the registry.
func (r *Registry) Cuttable(t *testing.T, cutAfter CutFunc) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), l: l, live: map[net.Conn]bool{}}
	r.allowInsecure(p.Addr)
	t.Cleanup(p.Cut)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c, r.Addr, cutAfter)
		}
	}()
	return p
}

// Cut breaks every connection and stops listening.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.cut = true
	p.l.Close()
	for c := range p.live {
		c.Close()
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.live[c] = true
	return true
}

// serve relays one client connection; the registry's responses are relayed
// as they come, and those to blob requests are counted.
func (p *Proxy) serve(c net.Conn, upstream string, cutAfter CutFunc) {
	if !p.track(c) {
		return
	}
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(u) {
		c.Close()
		return
	}
	// The blob request the connection is answering (-1: none) and the
	// bytes sent since it was made.
	var blob, sent atomic.Int64
	blob.Store(-1)
	go func() {
		// Requests: note whether the latest asks for a blob.
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if strings.HasPrefix(string(buf[:n]), "GET ") && strings.Contains(string(buf[:n]), "/blobs/sha256:") {
					blob.Store(p.blobs.Add(1) - 1)
					sent.Store(0)
				} else if strings.HasPrefix(string(buf[:n]), "GET ") || strings.HasPrefix(string(buf[:n]), "HEAD ") {
					blob.Store(-1)
				}
				if _, werr := u.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		u.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			if b := blob.Load(); b >= 0 {
				if cutAfter != nil && cutAfter(int(b), sent.Add(int64(n))) {
					c.Write(buf[:n/2])
					p.Cut()
					break
				}
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	_, _ = io.Copy(io.Discard, u)
}
