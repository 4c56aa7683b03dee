package glance

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// faultProxy sits between publish and the real Glance and misbehaves on
// one request the test picks: it damages the uploaded data, stalls an
// upload half-way (Glance has then received part of it), or holds a call
// so that the test can kill Glance before the call reaches it. Glance and
// the client are real; only the network in between is made to fail.
type faultProxy struct {
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu      sync.Mutex
	rule    func(r *http.Request, body []byte) fault
	fired   chan string   // tells the test a fault happened
	release chan struct{} // ends a stall or a hold
}

type fault int

const (
	pass    fault = iota
	corrupt       // flip a byte of the upload
	stall         // forward 64 KiB of the upload, then wait for release
	hold          // forward nothing until release, then answer 502
)

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{rp: httputil.NewSingleHostReverseProxy(u), fired: make(chan string, 8), release: make(chan struct{})}
	p.srv = httptest.NewServer(p)
	t.Cleanup(func() {
		p.Release()
		p.srv.Close()
	})
	return p
}

// On sets the rule; it fires once (the rule is cleared when it matches).
func (p *faultProxy) On(rule func(r *http.Request, body []byte) fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = rule
}

// Rearm makes the next stall or hold wait again after a Release.
func (p *faultProxy) Rearm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.release = make(chan struct{})
}

// Release ends stalls and holds.
func (p *faultProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	isUpload := r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/file")
	if !isUpload && r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	p.mu.Lock()
	f := pass
	if p.rule != nil {
		if f = p.rule(r, body); f != pass {
			p.rule = nil
		}
	}
	release := p.release
	p.mu.Unlock()

	switch f {
	case corrupt:
		r.Body = &corruptReader{r: r.Body, at: 70000}
		p.fired <- "corrupt"
	case stall:
		r.Body = &stallReader{r: r.Body, after: 64 << 10, release: release, fired: p.fired}
	case hold:
		p.fired <- "hold " + r.Method + " " + r.URL.Path
		<-release
		http.Error(w, "fault proxy: held, then dropped", http.StatusBadGateway)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// corruptReader flips one byte at offset at.
type corruptReader struct {
	r  io.ReadCloser
	n  int64
	at int64
}

func (c *corruptReader) Read(b []byte) (int, error) {
	k, err := c.r.Read(b)
	if c.at >= c.n && c.at < c.n+int64(k) {
		b[c.at-c.n] ^= 0xff
	}
	c.n += int64(k)
	return k, err
}

func (c *corruptReader) Close() error { return c.r.Close() }

// stallReader passes the first bytes on, then blocks until released and
// fails, which makes the proxy abort the upload to Glance.
type stallReader struct {
	r       io.ReadCloser
	n       int64
	after   int64
	release chan struct{}
	fired   chan string
	told    bool
}

func (s *stallReader) Read(b []byte) (int, error) {
	if s.n >= s.after {
		if !s.told {
			s.told = true
			s.fired <- "stall"
		}
		<-s.release
		return 0, errors.New("fault proxy: upload cut")
	}
	if rest := s.after - s.n; int64(len(b)) > rest {
		b = b[:rest]
	}
	k, err := s.r.Read(b)
	s.n += int64(k)
	return k, err
}

func (s *stallReader) Close() error { return s.r.Close() }

// isUpload, isPatchTo: rules.
func isUpload(r *http.Request, _ []byte) fault {
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/file") {
		return stall
	}
	return pass
}

// patchSetting matches the PATCH that sets builder_state to state.
func patchSetting(state string) func(*http.Request, []byte) fault {
	return func(r *http.Request, body []byte) fault {
		if r.Method == http.MethodPatch && bytes.Contains(body, []byte(`"path":"/builder_state","value":"`+state+`"`)) {
			return hold
		}
		return pass
	}
}
