package rootfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"builder/internal/progress"
)

//go:embed runparts.sh
var runParts []byte

// InTargetHooks is where the hooks tree appears inside the container, as in
// diskimage-builder.
const InTargetHooks = "/tmp/in_target.d"

// RunPartsName is the runner's file name inside the hooks tree.
const RunPartsName = "dib-run-parts"

// RunnerID identifies builder's own hook runners; it is part of every
// phase step's key, so a builder that runs hooks differently rebuilds.
func RunnerID() string {
	h := sha256.New()
	h.Write(runParts)
	h.Write(outsideScript)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// InstallRunParts writes builder's dib-run-parts into the hooks tree.
func InstallRunParts(hooksDir string) error {
	if err := os.WriteFile(filepath.Join(hooksDir, RunPartsName), runParts, 0o755); err != nil {
		return fmt.Errorf("install dib-run-parts: %w", err)
	}
	return nil
}

// Hook is one script of a phase and the element it came from.
type Hook struct {
	Name    string
	Element string
}

// HookError is a hook that failed: which one, where, and how it ended.
type HookError struct {
	Phase, Script, Element string
	ExitCode               int
	Tail                   []string
	Log                    string
	// ReadOnly is a host path an outside hook could not write because it
	// is outside what outside hooks may change (found in its output).
	ReadOnly string
}

func (e *HookError) Error() string {
	msg := fmt.Sprintf("hook %s/%s (element %s) failed with exit code %d", e.Phase, e.Script, e.Element, e.ExitCode)
	if e.Script == "" {
		msg = fmt.Sprintf("phase %s failed with exit code %d before any hook ran (environment.d?)", e.Phase, e.ExitCode)
	}
	if e.ReadOnly != "" {
		msg += fmt.Sprintf(": it wrote to %s, outside its target; outside hooks may change only $TARGET_ROOT, $TMP_BUILD_DIR and the image cache, so write there", e.ReadOnly)
	}
	return msg
}

// readOnlyRE finds the path in a "Read-only file system" complaint
// (touch: cannot touch '/x': ..., bash: /x: ..., mkdir: ... '/x': ...).
var readOnlyRE = regexp.MustCompile(`['"]?(/[^'":]*)['"]?: Read-only file system`)

// readOnlyPath is the first path the tail says was read-only.
func readOnlyPath(tail []string) string {
	for _, l := range tail {
		if m := readOnlyRE.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// PhaseRun describes one phase's hooks to turn into a Step.
type PhaseRun struct {
	Phase    string
	Hooks    []Hook
	Inside   bool
	HooksDir string // host path of the hooks tree
	Env      []string
	Mounts   []Mount  // extra mounts inside (package caches)
	Writable []string // host paths outside hooks may write besides the target
	ReadOnly []string // paths inside Writable ones that stay read-only
	Identity string
	Progress *progress.Reporter
	// Echo receives hook output as it happens (nil: keep it quiet).
	Echo io.Writer
	// LogDir receives one log file per hook.
	LogDir string
	// Redact, when set, removes secrets from every line of hook output
	// before it is shown, logged or kept for an error message.
	Redact func(string) string
}

// PhaseStep makes the Step that runs a phase's hooks through dib-run-parts,
// reporting one progress line per hook and naming the failing hook.
func PhaseStep(p PhaseRun) Step {
	mark := newMark()
	out := &hookOutput{mark: mark, phase: p.Phase, echo: p.Echo, logDir: p.LogDir, elements: map[string]string{}, redact: p.Redact}
	for _, h := range p.Hooks {
		out.elements[h.Name] = h.Element
	}
	scripts := make([]string, len(p.Hooks))
	for i, h := range p.Hooks {
		scripts[i] = h.Name
	}
	st := Step{
		Name:     p.Phase,
		Identity: p.Identity,
		Output:   out,
		Env:      append(append([]string(nil), p.Env...), "BUILDER_HOOK_MARK="+mark),
	}
	if p.Inside {
		st.Kind = Inside
		st.Command = append([]string{"/bin/bash", InTargetHooks + "/" + RunPartsName, InTargetHooks + "/" + p.Phase}, scripts...)
		st.Mounts = append([]Mount{{Source: p.HooksDir, Destination: InTargetHooks, ReadOnly: true}}, p.Mounts...)
	} else {
		st.Kind = Outside
		st.Command = append([]string{"/bin/bash", filepath.Join(p.HooksDir, RunPartsName), filepath.Join(p.HooksDir, p.Phase)}, scripts...)
		st.Dir = p.HooksDir
		st.Writable = append([]string{p.HooksDir}, p.Writable...)
		st.ReadOnly = p.ReadOnly
	}
	st.Begin = func() {
		out.task = p.Progress.Phase(p.Phase, fmt.Sprintf("%d hooks, %s", len(p.Hooks), where(p.Inside)))
	}
	st.End = func(cached bool, err error) {
		switch {
		case cached:
			out.task.Done("cached")
		case err != nil:
			out.task.Fail(err)
		default:
			out.task.Done("")
		}
	}
	st.Wrap = func(err error) error {
		out.flush()
		var ee *ExitError
		if !errors.As(err, &ee) {
			if errors.Is(err, context.Canceled) {
				return err
			}
			return fmt.Errorf("phase %s: %w", p.Phase, err)
		}
		he := &HookError{Phase: p.Phase, ExitCode: ee.Code, Tail: out.tail()}
		if !p.Inside {
			// The sandbox (outside.sh) keeps the rest of the host read-only.
			he.ReadOnly = readOnlyPath(he.Tail)
		}
		if out.current != "" {
			he.Script = out.current
			he.Element = out.elements[out.current]
			he.Log = out.logPath(out.current)
		}
		return he
	}
	return st
}

func where(inside bool) string {
	if inside {
		return "in the image"
	}
	return "outside the image"
}

func newMark() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "##builder-hook-" + hex.EncodeToString(b) + "##"
}

// hookOutput splits a phase's output at the runner's markers.
type hookOutput struct {
	mu       sync.Mutex
	mark     string
	phase    string
	echo     io.Writer
	logDir   string
	elements map[string]string
	redact   func(string) string
	task     *progress.Task
	current  string
	sub      *progress.Task
	log      *os.File
	buf      []byte
	lines    []string
	started  time.Time
}

const tailLines = 25

func (o *hookOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	for {
		i := bytes.IndexByte(o.buf, '\n')
		if i < 0 {
			break
		}
		o.line(string(o.buf[:i]))
		o.buf = o.buf[i+1:]
	}
	return len(p), nil
}

func (o *hookOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.buf) > 0 {
		o.line(string(o.buf))
		o.buf = nil
	}
	if o.log != nil {
		o.log.Close()
		o.log = nil
	}
}

func (o *hookOutput) line(l string) {
	if strings.HasPrefix(l, o.mark+" ") {
		o.marker(strings.Fields(strings.TrimPrefix(l, o.mark+" ")))
		return
	}
	if l == "" && o.current == "" {
		return
	}
	if o.redact != nil {
		l = o.redact(l)
	}
	o.lines = append(o.lines, l)
	if len(o.lines) > tailLines {
		o.lines = o.lines[len(o.lines)-tailLines:]
	}
	if o.log != nil {
		fmt.Fprintln(o.log, l)
	}
	if o.echo != nil {
		fmt.Fprintln(o.echo, l)
	}
}

func (o *hookOutput) marker(f []string) {
	if len(f) < 2 {
		return
	}
	switch f[0] {
	case "start":
		o.current = f[1]
		o.lines = nil
		o.started = time.Now()
		label := fmt.Sprintf("%s/%s [%s]", o.phase, f[1], o.elements[f[1]])
		o.sub = o.task.Step(label)
		if o.logDir != "" {
			if err := os.MkdirAll(o.logDir, 0o755); err == nil {
				o.log, _ = os.Create(o.logPath(f[1]))
			}
		}
	case "end":
		code := 0
		if len(f) > 2 {
			code, _ = strconv.Atoi(f[2])
		}
		if code == 0 {
			o.sub.Done("")
			o.current = ""
		} else {
			o.sub.Fail(fmt.Errorf("exit code %d", code))
		}
		if o.log != nil {
			o.log.Close()
			o.log = nil
		}
	}
}

func (o *hookOutput) logPath(script string) string {
	if o.logDir == "" {
		return ""
	}
	return filepath.Join(o.logDir, o.phase+"-"+script+".log")
}

func (o *hookOutput) tail() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.lines...)
}
