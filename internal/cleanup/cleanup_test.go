package cleanup

import (
	"errors"
	"strings"
	"testing"
)

func TestRunReleasesNewestFirstAndReportsAllErrors(t *testing.T) {
	var s Stack
	var order []string
	s.Push("a", func() error { order = append(order, "a"); return nil })
	s.Push("b", func() error { order = append(order, "b"); return errors.New("busy") })
	s.Push("c", func() error { order = append(order, "c"); return nil })
	err := s.Run()
	if got := strings.Join(order, ""); got != "cba" {
		t.Fatalf("order = %q, want cba", got)
	}
	if err == nil || !strings.Contains(err.Error(), "releasing b: busy") {
		t.Fatalf("err = %v, want one naming b", err)
	}
	if s.Len() != 0 {
		t.Fatalf("stack not empty after Run")
	}
}

func TestReleaseEarlyRunsOnce(t *testing.T) {
	var s Stack
	n := 0
	h := s.Push("x", func() error { n++; return nil })
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("released %d times, want 1", n)
	}
}

func TestForgetKeepsResource(t *testing.T) {
	var s Stack
	n := 0
	h := s.Push("x", func() error { n++; return nil })
	h.Forget()
	_ = s.Run()
	if n != 0 {
		t.Fatalf("forgotten resource was released")
	}
}

func TestPushAfterRunReleasesImmediately(t *testing.T) {
	var s Stack
	_ = s.Run()
	n := 0
	s.Push("late", func() error { n++; return nil })
	if n != 1 {
		t.Fatalf("late resource not released at once")
	}
}
