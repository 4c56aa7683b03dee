package progress

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLinesAndSummary(t *testing.T) {
	var b strings.Builder
	r := New(&b)
	clock := time.Unix(0, 0)
	r.now = func() time.Time { return clock }
	r.start = clock
	p := r.Phase("install.d", "")
	s := p.Step("install.d/50-foo [mine]")
	clock = clock.Add(1500 * time.Millisecond)
	s.Done("")
	p.Done("1 hook")
	q := r.Phase("assemble", "gpt")
	q.Fail(errors.New("mkfs failed\nmore"))
	r.Summary()
	out := b.String()
	for _, want := range []string{
		"==> install.d\n",
		"install.d/50-foo [mine]",
		"1.50s",
		"==> assemble (gpt)",
		"FAIL  mkfs failed",
		"timing",
		"total",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "more") {
		t.Errorf("only the first line of an error belongs on a progress line:\n%s", out)
	}
}

func TestNilReporterIsSilent(t *testing.T) {
	var r *Reporter
	p := r.Phase("x", "")
	p.Step("y").Done("")
	p.Done("")
	r.Summary()
}
