package redact

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	r := New("s3cret-pw", "ab") // "ab" is too short to redact
	tok := "gAAAAAtoken"
	r.AddSource(func() []string { return []string{tok} })
	var b strings.Builder
	w := r.Writer(&b)
	fmt.Fprint(w, "password s3cr")
	fmt.Fprint(w, "et-pw and token gAAAAAtoken\nab")
	w.Flush()
	if got := b.String(); got != "password [REDACTED] and token [REDACTED]\nab" {
		t.Errorf("got %q", got)
	}
	base := errors.New("HTTP 401 for s3cret-pw")
	err := r.Error(base)
	if strings.Contains(err.Error(), "s3cret") || !errors.Is(err, base) {
		t.Errorf("error %v (is base: %v)", err, errors.Is(err, base))
	}
}
