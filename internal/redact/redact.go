package redact

import (
	"io"
	"sort"
	"strings"
	"sync"
)

// redactedText replaces a secret wherever builder prints or records text.
const redactedText = "[REDACTED]"

// Redactor removes credentials (passwords, tokens, application credential
// secrets) from text before it reaches a terminal, a log, a report or an
// error message. Secrets are added as they become known: the token only
// exists after authentication and changes on re-authentication, so sources
// are asked at every use.
type Redactor struct {
	mu      sync.Mutex
	secrets map[string]bool
	sources []func() []string
}

// New returns a Redactor for the given secrets; empty ones are
// ignored.
func New(secrets ...string) *Redactor {
	r := &Redactor{secrets: map[string]bool{}}
	r.Add(secrets...)
	return r
}

// Add registers more secrets. Very short values are ignored: redacting a
// two-letter password everywhere would garble the output and protect
// nothing.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if len(s) >= 4 {
			r.secrets[s] = true
		}
	}
}

// AddSource registers a function asked for the current secrets at every use
// (the current token of a client that re-authenticates).
func (r *Redactor) AddSource(f func() []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources = append(r.sources, f)
}

func (r *Redactor) list() []string {
	r.mu.Lock()
	all := make([]string, 0, len(r.secrets))
	for s := range r.secrets {
		all = append(all, s)
	}
	sources := append([]func() []string(nil), r.sources...)
	r.mu.Unlock()
	for _, f := range sources {
		for _, s := range f() {
			if len(s) >= 4 {
				all = append(all, s)
			}
		}
	}
	// Longest first, so that a secret containing another is removed whole.
	sort.Slice(all, func(i, j int) bool { return len(all[i]) > len(all[j]) })
	return all
}

// String returns s with every secret replaced.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	for _, sec := range r.list() {
		s = strings.ReplaceAll(s, sec, redactedText)
	}
	return s
}

// Error returns err with its message redacted; errors.Is and errors.As
// still see the original chain.
func (r *Redactor) Error(err error) error {
	if err == nil || r == nil {
		return err
	}
	msg := err.Error()
	clean := r.String(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Writer returns a writer that redacts every line before passing it on.
// Output is buffered up to a newline so that a secret split across two
// writes is still found; Flush writes what is left.
func (r *Redactor) Writer(w io.Writer) *RedactingWriter {
	return &RedactingWriter{r: r, w: w}
}

// RedactingWriter is the writer returned by Redactor.Writer.
type RedactingWriter struct {
	mu  sync.Mutex
	r   *Redactor
	w   io.Writer
	buf []byte
}

func (rw *RedactingWriter) Write(p []byte) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.buf = append(rw.buf, p...)
	i := strings.LastIndexByte(string(rw.buf), '\n')
	if i < 0 {
		// Progress lines end with \r: pass them on too, they are complete.
		i = strings.LastIndexByte(string(rw.buf), '\r')
	}
	if i < 0 {
		if len(rw.buf) > 64<<10 {
			return len(p), rw.flushLocked()
		}
		return len(p), nil
	}
	out := rw.r.String(string(rw.buf[:i+1]))
	rw.buf = append(rw.buf[:0], rw.buf[i+1:]...)
	if _, err := io.WriteString(rw.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a trailing partial line.
func (rw *RedactingWriter) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.flushLocked()
}

func (rw *RedactingWriter) flushLocked() error {
	if len(rw.buf) == 0 {
		return nil
	}
	out := rw.r.String(string(rw.buf))
	rw.buf = rw.buf[:0]
	_, err := io.WriteString(rw.w, out)
	return err
}
