// Package cleanup keeps a stack of release functions for every resource a
// build creates (containers, mounts, temp dirs, processes, partial outputs),
// so that success, failure and cancellation all release them the same way.
package cleanup

import (
	"errors"
	"fmt"
	"sync"
)

// Stack runs registered release functions in reverse order of registration.
// It is safe for concurrent use.
type Stack struct {
	mu    sync.Mutex
	items []*item
	done  bool
}

type item struct {
	what string
	fn   func() error
	ran  bool
}

// Handle lets the owner of a resource release it early (for example a
// container deleted after its step) and drop it from the stack.
type Handle struct {
	s  *Stack
	it *item
}

// Push registers fn to release the resource described by what. If the stack
// has already been run, fn runs at once: a resource created while shutting
// down must not outlive the shutdown.
func (s *Stack) Push(what string, fn func() error) Handle {
	it := &item{what: what, fn: fn}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		s.call(it)
		return Handle{}
	}
	s.items = append(s.items, it)
	s.mu.Unlock()
	return Handle{s: s, it: it}
}

// Release runs the release function now (once) and removes it from the stack.
func (h Handle) Release() error {
	if h.s == nil {
		return nil
	}
	h.s.mu.Lock()
	for i, it := range h.s.items {
		if it == h.it {
			h.s.items = append(h.s.items[:i], h.s.items[i+1:]...)
			break
		}
	}
	h.s.mu.Unlock()
	return h.s.call(h.it)
}

// Forget drops the resource from the stack without releasing it, for
// resources whose ownership passes on (an output renamed into place).
func (h Handle) Forget() {
	if h.s == nil {
		return
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for i, it := range h.s.items {
		if it == h.it {
			h.s.items = append(h.s.items[:i], h.s.items[i+1:]...)
			return
		}
	}
}

func (s *Stack) call(it *item) error {
	if it.ran {
		return nil
	}
	it.ran = true
	if err := it.fn(); err != nil {
		return fmt.Errorf("releasing %s: %w", it.what, err)
	}
	return nil
}

// Run releases everything still registered, newest first, and reports every
// failure. Later Pushes run immediately.
func (s *Stack) Run() error {
	s.mu.Lock()
	items := s.items
	s.items = nil
	s.done = true
	s.mu.Unlock()
	var errs []error
	for i := len(items) - 1; i >= 0; i-- {
		if err := s.call(items[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Len reports how many resources are still registered.
func (s *Stack) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}
