// Package progress prints one line per phase and step with its duration,
// and a timing table at the end of a run.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Reporter writes progress lines. A nil *Reporter discards everything, so
// library code can take one without checking.
type Reporter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	now   func() time.Time
	rows  []*Task
}

// Task is one timed unit of work: a phase (level 0) or a step in it.
type Task struct {
	r      *Reporter
	name   string
	level  int
	begin  time.Time
	dur    time.Duration
	status string
	note   string
	ended  bool
}

// New returns a Reporter writing to w.
func New(w io.Writer) *Reporter {
	return &Reporter{w: w, start: time.Now(), now: time.Now}
}

// Phase starts a top-level phase and prints its start line.
func (r *Reporter) Phase(name, detail string) *Task {
	if r == nil {
		return nil
	}
	t := r.add(name, 0)
	if detail != "" {
		r.printf("==> %s (%s)\n", name, detail)
	} else {
		r.printf("==> %s\n", name)
	}
	return t
}

// Step starts a step inside a phase; only its end is printed.
func (t *Task) Step(name string) *Task {
	if t == nil {
		return nil
	}
	return t.r.add(name, t.level+1)
}

// Printf prints a free-form line indented under the task.
func (t *Task) Printf(format string, args ...any) {
	if t == nil {
		return
	}
	t.r.printf("%s%s\n", strings.Repeat("    ", t.level+1), fmt.Sprintf(format, args...))
}

func (r *Reporter) add(name string, level int) *Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &Task{r: r, name: name, level: level, begin: r.now()}
	r.rows = append(r.rows, t)
	return t
}

// Done ends the task successfully; note is shown after the duration
// ("cached", "3 hooks", ...).
func (t *Task) Done(note string) { t.end("ok", note) }

// Fail ends the task with an error.
func (t *Task) Fail(err error) {
	msg := "failed"
	if err != nil {
		msg = "failed: " + firstLine(err.Error())
	}
	t.end("FAIL", msg)
}

// Duration is how long the task took (zero while it runs).
func (t *Task) Duration() time.Duration {
	if t == nil {
		return 0
	}
	return t.dur
}

func (t *Task) end(status, note string) {
	if t == nil || t.ended {
		return
	}
	r := t.r
	r.mu.Lock()
	t.ended = true
	t.dur = r.now().Sub(t.begin)
	t.status, t.note = status, note
	r.mu.Unlock()
	indent := strings.Repeat("    ", t.level+1)
	line := fmt.Sprintf("%s%-44s %8s", indent, t.name, fmtDur(t.dur))
	if status != "ok" {
		line += "  " + status
	}
	if note != "" && status == "ok" {
		line += "  " + note
	} else if note != "" {
		line += "  " + strings.TrimPrefix(note, "failed: ")
	}
	r.printf("%s\n", line)
}

// Summary prints the timing table of all phases (steps indented).
func (r *Reporter) Summary() {
	if r == nil {
		return
	}
	r.mu.Lock()
	rows := append([]*Task(nil), r.rows...)
	total := r.now().Sub(r.start)
	r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-48s %8s  %s\n", "timing", "seconds", "")
	for _, t := range rows {
		// Phases, and the steps in them that took a second or more.
		if t.level > 1 || (t.level == 1 && t.dur < time.Second && t.status == "ok") {
			continue
		}
		d := t.dur
		st := t.status
		if !t.ended {
			st = "not finished"
		}
		if st == "ok" {
			st = ""
		}
		name := strings.Repeat("  ", t.level) + t.name
		fmt.Fprintf(&b, "%-48s %8.1f  %s\n", name, d.Seconds(), st)
	}
	fmt.Fprintf(&b, "%-48s %8.1f\n", "total", total.Seconds())
	r.printf("%s", b.String())
}

func (r *Reporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		fmt.Fprintf(r.w, format, args...)
	}
}

func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Note prints one indented line that belongs to no phase (a warning
// found between steps).
func (r *Reporter) Note(format string, args ...any) {
	r.printf("    "+format+"\n", args...)
}
