package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"builder/internal/cleanup"
)

func readInImage(t *testing.T, s *Store, img Image, path string) string {
	t.Helper()
	root, release, err := s.MountImage(img.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return "<missing: " + err.Error() + ">"
	}
	return string(data)
}

// Steps of each kind change the tree; an identical chain is all cache hits;
// changing the last step's identity re-runs only that step.
func TestChainRunsCachesAndRerunsTail(t *testing.T) {
	s, base := testStore(t)
	ctx := context.Background()
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "hello"), []byte("from the host\n"), 0o644)
	ran := map[string]int{}
	mk := func(tailID string) []Step {
		track := func(name string) func(bool, error) {
			return func(cached bool, err error) {
				if !cached && err == nil {
					ran[name]++
				}
			}
		}
		return []Step{
			{Name: "inside", Kind: Inside, Identity: "1",
				Command: []string{"/bin/sh", "-c", "cat /mnt/hello > /etc/inside; id -u >> /etc/inside"},
				Mounts:  []Mount{{Source: hostDir, Destination: "/mnt", ReadOnly: true}},
				End:     track("inside")},
			{Name: "tree", Kind: Tree, Identity: "1",
				Edit: func(ctx context.Context, root string) error {
					return os.WriteFile(filepath.Join(root, "etc/tree"), []byte("edited\n"), 0o600)
				},
				End: track("tree")},
			{Name: "outside", Kind: Outside, Identity: tailID,
				Command: []string{"/bin/sh", "-c", `echo "$MSG" > "$TARGET_ROOT/etc/outside"`},
				Env:     []string{"MSG=" + tailID, "PATH=/usr/bin:/bin"},
				End:     track("outside")},
		}
	}
	var stack cleanup.Stack
	opts := ChainOptions{RunID: "t1", Cleanup: &stack}
	img, err := s.RunChain(ctx, base, mk("a"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := readInImage(t, s, img, "etc/inside"); got != "from the host\n0\n" {
		t.Errorf("inside step wrote %q", got)
	}
	if got := readInImage(t, s, img, "etc/tree"); got != "edited\n" {
		t.Errorf("tree step wrote %q", got)
	}
	if got := readInImage(t, s, img, "etc/outside"); got != "a\n" {
		t.Errorf("outside step wrote %q", got)
	}
	if _, err := os.Stat(filepath.Join(hostDir, "inside")); err == nil {
		t.Errorf("the read-only mount was written")
	}

	img2, err := s.RunChain(ctx, base, mk("a"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if img2.Name != img.Name || img2.Key != img.Key {
		t.Errorf("same chain, different image: %v vs %v", img2, img)
	}
	if ran["inside"] != 1 || ran["tree"] != 1 || ran["outside"] != 1 {
		t.Errorf("unchanged steps re-ran: %v", ran)
	}

	img3, err := s.RunChain(ctx, base, mk("b"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if ran["inside"] != 1 || ran["tree"] != 1 || ran["outside"] != 2 {
		t.Errorf("want only the changed last step re-run: %v", ran)
	}
	if got := readInImage(t, s, img3, "etc/outside"); got != "b\n" {
		t.Errorf("re-run step wrote %q", got)
	}
	if err := stack.Run(); err != nil {
		t.Fatal(err)
	}
}

func writeHook(t *testing.T, dir, phase, name, body string) {
	t.Helper()
	p := filepath.Join(dir, phase, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte("#!/bin/bash\nset -eu\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// A failing hook is named with its element and exit code, its output tail
// and log are kept, and later hooks do not run.
func TestPhaseStepNamesFailingHook(t *testing.T) {
	s, base := testStore(t)
	hooks := t.TempDir()
	if err := InstallRunParts(hooks); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(hooks, "environment.d"), 0o755)
	os.WriteFile(filepath.Join(hooks, "environment.d", "10-x.bash"), []byte("export FROM_ENV=yes\n"), 0o644)
	writeHook(t, hooks, "install.d", "10-ok", `echo "env=$FROM_ENV"; touch /etc/ok`)
	writeHook(t, hooks, "install.d", "20-bad", "echo 'line one'; echo 'going down' >&2; exit 42\n")
	writeHook(t, hooks, "install.d", "30-never", "touch /etc/never\n")
	logs := t.TempDir()
	var echo bytes.Buffer
	st := PhaseStep(PhaseRun{
		Phase: "install.d", Inside: true, HooksDir: hooks, Identity: "x", LogDir: logs, Echo: &echo,
		Hooks: []Hook{{"10-ok", "elem-a"}, {"20-bad", "elem-b"}, {"30-never", "elem-c"}},
		Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
	})
	var stack cleanup.Stack
	_, err := s.RunChain(context.Background(), base, []Step{st}, ChainOptions{RunID: "t2", Cleanup: &stack})
	var he *HookError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want a HookError", err)
	}
	if he.Script != "20-bad" || he.Element != "elem-b" || he.ExitCode != 42 || he.Phase != "install.d" {
		t.Errorf("HookError = %+v", he)
	}
	if !strings.Contains(he.Error(), "hook install.d/20-bad (element elem-b) failed with exit code 42") {
		t.Errorf("message %q", he.Error())
	}
	tail := strings.Join(he.Tail, "\n")
	if !strings.Contains(tail, "line one") || !strings.Contains(tail, "going down") {
		t.Errorf("tail %q lacks the hook's output", tail)
	}
	if strings.Contains(tail, "env=yes") {
		t.Errorf("tail holds the previous hook's output: %q", tail)
	}
	if !strings.Contains(echo.String(), "env=yes") {
		t.Errorf("environment.d was not sourced before the hooks: %q", echo.String())
	}
	if data, err := os.ReadFile(he.Log); err != nil || !strings.Contains(string(data), "going down") {
		t.Errorf("per-hook log %s: %v %q", he.Log, err, data)
	}
	if strings.Contains(echo.String(), "never") {
		t.Errorf("a hook after the failing one ran")
	}
	if err := stack.Run(); err != nil {
		t.Fatal(err)
	}
}

// Cancelling a build in the middle of a hook kills the hook and everything
// it started, removes the container, and returns promptly.
func TestCancelStopsHookProcesses(t *testing.T) {
	s, base := testStore(t)
	hooks := t.TempDir()
	InstallRunParts(hooks)
	writeHook(t, hooks, "install.d", "10-slow", "sleep 600 &\necho started\nsleep 600\n")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	w := &notifyWriter{want: "started", ch: started}
	st := PhaseStep(PhaseRun{Phase: "install.d", Inside: true, HooksDir: hooks, Identity: "x", Echo: w,
		Hooks: []Hook{{"10-slow", "slow"}}, Env: []string{"PATH=/usr/bin:/bin"}})
	var stack cleanup.Stack
	done := make(chan error, 1)
	go func() {
		_, err := s.RunChain(ctx, base, []Step{st}, ChainOptions{RunID: "t3", Cleanup: &stack})
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(2 * time.Minute):
		t.Fatal("hook did not start")
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunChain did not return after cancel")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if err := stack.Run(); err != nil {
		t.Fatal(err)
	}
	if procs := markedProcesses("t3"); len(procs) > 0 {
		t.Errorf("hook processes still running: %v", procs)
	}
}

type notifyWriter struct {
	want string
	ch   chan struct{}
	done bool
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	if !w.done && bytes.Contains(p, []byte(w.want)) {
		w.done = true
		close(w.ch)
	}
	return len(p), nil
}

// markedProcesses lists the processes that carry the mark of run runID
// (other builds on the machine carry their own).
func markedProcesses(runID string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, []byte(RunMarkVar+"="+RunMark(runID)+"-")) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Outside hooks see the host read-only, except their target and the paths
// they were given; builder's store inside a writable cache stays read-only,
// while the target root inside that store stays writable.
func TestOutsideHookCannotWriteTheHost(t *testing.T) {
	tar := testBaseTar(t)
	ctx := context.Background()
	cache := t.TempDir()
	storeDir := filepath.Join(cache, "builder", "containers")
	s, err := OpenStore(ctx, StoreOptions{Dir: storeDir, RunRoot: filepath.Join(t.TempDir(), "run")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ImportTarball(ctx, tar, "localhost/test/base:1", "amd64"); err != nil {
		t.Fatal(err)
	}
	base := Image{Name: "localhost/test/base:1", Key: "test-base"}
	allowed := t.TempDir()
	forbidden := t.TempDir()
	script := `set -u
touch "$TARGET_ROOT/etc/from-outside" && echo target-ok
touch "` + allowed + `/x" && echo allowed-ok
touch "` + cache + `/download" && echo cache-ok
touch "` + forbidden + `/x" 2>/dev/null && echo forbidden-WRITTEN
touch "` + storeDir + `/x" 2>/dev/null && echo store-WRITTEN
touch "` + storeDir + `/storage-overlay/overlay/x" 2>/dev/null && echo store-layers-WRITTEN
touch /etc/builder-escape-test 2>/dev/null && echo etc-WRITTEN
exit 0`
	var out bytes.Buffer
	st := Step{Name: "outside", Kind: Outside, Identity: "sandbox", Output: &out,
		Command: []string{"/bin/bash", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		Writable: []string{allowed, cache}, ReadOnly: []string{filepath.Join(cache, "builder")}}
	var stack cleanup.Stack
	img, err := s.RunChain(ctx, base, []Step{st}, ChainOptions{RunID: "t4", Cleanup: &stack})
	if err != nil {
		t.Fatal(err)
	}
	stack.Run()
	got := out.String()
	for _, want := range []string{"target-ok", "allowed-ok", "cache-ok"} {
		if !strings.Contains(got, want) {
			t.Errorf("hook could not write where it may (%s): %q", want, got)
		}
	}
	if strings.Contains(got, "WRITTEN") {
		t.Errorf("hook wrote where it may not: %q", got)
	}
	if _, err := os.Stat("/etc/builder-escape-test"); err == nil {
		os.Remove("/etc/builder-escape-test")
		t.Errorf("/etc/builder-escape-test exists")
	}
	if readInImage(t, s, img, "etc/from-outside") != "" {
		t.Errorf("the target file is missing from the committed image")
	}
}

// Two builds at once that reach the same step make it once: the second
// waits for the first and takes its result.
func TestConcurrentBuildsMakeASharedStepOnce(t *testing.T) {
	s, base := testStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	runs := 0
	step := Step{Name: "shared", Kind: Tree, Identity: "shared-1",
		Edit: func(ctx context.Context, root string) error {
			mu.Lock()
			runs++
			mu.Unlock()
			time.Sleep(2 * time.Second)
			return os.WriteFile(filepath.Join(root, "etc/shared"), []byte("once\n"), 0o644)
		}}
	imgs := make([]Image, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range imgs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var stack cleanup.Stack
			imgs[i], errs[i] = s.RunChain(ctx, base, []Step{step}, ChainOptions{RunID: fmt.Sprintf("c%d", i), Cleanup: &stack})
			if err := stack.Run(); err != nil && errs[i] == nil {
				errs[i] = err
			}
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if runs != 1 {
		t.Errorf("the shared step ran %d times, want once", runs)
	}
	if imgs[0].Name != imgs[1].Name {
		t.Errorf("two images for one step: %s and %s", imgs[0].Name, imgs[1].Name)
	}
}
