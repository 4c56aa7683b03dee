package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.podman.io/image/v5/copy"

	"builder/internal/cleanup"
	"builder/internal/testregistry"
)

// registrySteps are three steps of every kind, each identified by tail; the
// outside one writes an output file. ran counts the steps that really ran.
func registrySteps(t *testing.T, tail string, ran map[string]int, mu *sync.Mutex) []Step {
	track := func(name string) func(bool, error) {
		return func(cached bool, err error) {
			if !cached && err == nil {
				mu.Lock()
				ran[name]++
				mu.Unlock()
			}
		}
	}
	outDir := filepath.Join(t.TempDir(), "outputs")
	return []Step{
		{Name: "inside", Kind: Inside, Identity: tail,
			Command: []string{"/bin/sh", "-c", "echo inside > /etc/inside; chown 12:34 /etc/inside; chmod 4751 /etc/inside"},
			End:     track("inside")},
		{Name: "outside", Kind: Outside, Identity: tail, Dir: outDir, DirIsOutputs: true, Writable: []string{outDir},
			Command:  []string{"/bin/sh", "-c", `echo outside > "$TARGET_ROOT/etc/outside"; echo kernel > img.vmlinuz`},
			Env:      []string{"PATH=/usr/bin:/bin"},
			Volatile: map[string]string{outDir: "$OUT"},
			End:      track("outside")},
		{Name: "tree", Kind: Tree, Identity: tail,
			Edit: func(ctx context.Context, root string) error {
				return os.WriteFile(filepath.Join(root, "etc/tree"), []byte(tail+"\n"), 0o600)
			},
			End: track("tree")},
	}
}

// A runner with an empty store takes every step another runner pushed,
// with the files steps wrote as outputs, and runs none; concurrent pushes
// of the same steps are harmless; a registry that is down, or a tag that
// holds another step, only makes the steps run.
func TestRegistryCacheSharesSteps(t *testing.T) {
	reg := testregistry.Start(t)
	t.Setenv("CONTAINERS_REGISTRIES_CONF", reg.RegistriesConf)
	ctx := context.Background()
	var mu sync.Mutex

	run := func(s *Store, base Image, steps []Step, rc *RegistryCache) (Image, []string) {
		t.Helper()
		var notes []string
		rc.Note = func(n string) { mu.Lock(); notes = append(notes, n); mu.Unlock() }
		rc.Start(ctx, s)
		var stack cleanup.Stack
		img, err := s.RunChain(ctx, base, steps, ChainOptions{RunID: "reg", Cleanup: &stack, Registry: rc,
			Note: func(n string) { mu.Lock(); notes = append(notes, n); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := rc.Wait(); err != nil {
			t.Errorf("push: %v", err)
		}
		if err := stack.Run(); err != nil {
			t.Fatal(err)
		}
		return img, notes
	}
	repo := reg.Addr + "/builder/cache"

	// Runner A makes and pushes.
	ranA := map[string]int{}
	storeA, baseA := testStore(t)
	imgA, _ := run(storeA, baseA, registrySteps(t, "a", ranA, &mu), &RegistryCache{To: repo})
	if ranA["inside"] != 1 || ranA["outside"] != 1 || ranA["tree"] != 1 {
		t.Fatalf("runner A ran %v", ranA)
	}

	// Runner B, its own empty store, takes all three and runs nothing.
	ranB := map[string]int{}
	storeB, baseB := testStore(t)
	imgB, notes := run(storeB, baseB, registrySteps(t, "a", ranB, &mu), &RegistryCache{From: []string{repo}})
	if len(ranB) != 0 {
		t.Errorf("runner B ran %v; want every step from the registry", ranB)
	}
	if imgB.Key != imgA.Key {
		t.Errorf("runner B's image has key %s, A's %s", imgB.Key, imgA.Key)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "3 step(s) up to tree taken from the registry cache "+repo) {
		t.Errorf("no note of the steps taken: %q", notes)
	}
	for _, f := range []string{"etc/inside", "etc/outside", "etc/tree"} {
		if a, b := readInImage(t, storeA, imgA, f), readInImage(t, storeB, imgB, f); a != b {
			t.Errorf("%s: A has %q, B %q", f, a, b)
		}
	}
	root, release, err := storeB.MountImage(imgB.Name)
	if err != nil {
		t.Fatal(err)
	}
	var st os.FileInfo
	st, err = os.Stat(filepath.Join(root, "etc/inside"))
	release()
	if err != nil || st.Mode()&os.ModeSetuid == 0 || st.Mode().Perm() != 0o751 {
		t.Errorf("etc/inside in B: %v %v (want setuid 0751)", st, err)
	}
	if len(imgB.Outputs) != 1 {
		t.Fatalf("runner B's outputs: %v", imgB.Outputs)
	}
	if data, err := os.ReadFile(filepath.Join(imgB.Outputs[0], "img.vmlinuz")); err != nil || string(data) != "kernel\n" {
		t.Errorf("the outside step's output in B: %q %v", data, err)
	}

	// Two runners push the same steps at once.
	repo2 := reg.Addr + "/builder/cache2"
	var wg sync.WaitGroup
	stores := []*Store{storeA, storeB}
	bases := []Image{baseA, baseB}
	for i := range stores {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ran := map[string]int{}
			run(stores[i], bases[i], registrySteps(t, "c", ran, &mu), &RegistryCache{To: repo2})
		}(i)
	}
	wg.Wait()
	ranD := map[string]int{}
	storeD, baseD := testStore(t)
	imgD, _ := run(storeD, baseD, registrySteps(t, "c", ranD, &mu), &RegistryCache{From: []string{repo2}})
	if len(ranD) != 0 || readInImage(t, storeD, imgD, "etc/tree") != "c\n" {
		t.Errorf("after concurrent pushes, a runner ran %v and got %q", ranD, readInImage(t, storeD, imgD, "etc/tree"))
	}

	// A registry that is down: the steps run, once told.
	ranE := map[string]int{}
	storeE, baseE := storeD, baseD
	_, notes = run(storeE, baseE, registrySteps(t, "a", ranE, &mu), &RegistryCache{From: []string{testregistry.DownAddr(t) + "/builder/cache"}})
	if ranE["inside"] != 1 || ranE["outside"] != 1 || ranE["tree"] != 1 {
		t.Errorf("with the registry down, ran %v", ranE)
	}
	if n := strings.Count(strings.Join(notes, "\n"), "cannot be used"); n != 1 {
		t.Errorf("want one note that the registry cannot be used, got %d: %q", n, notes)
	}

	// A tag that holds another step's image is refused.
	stepsF := registrySteps(t, "f", map[string]int{}, &mu)
	keyF := baseA.Key
	for _, st := range stepsF {
		keyF = StepKey(keyF, st)
	}
	retag(t, storeA, repo+":step-"+imgA.Key, repo+":step-"+keyF)
	ranF := map[string]int{}
	storeF, baseF := storeD, baseD
	imgF, notes := run(storeF, baseF, registrySteps(t, "f", ranF, &mu), &RegistryCache{From: []string{repo}})
	if ranF["inside"] != 1 || ranF["tree"] != 1 || readInImage(t, storeF, imgF, "etc/tree") != "f\n" {
		t.Errorf("a mislabelled tag was used: ran %v, etc/tree %q", ranF, readInImage(t, storeF, imgF, "etc/tree"))
	}
	if !strings.Contains(strings.Join(notes, "\n"), "holds step") {
		t.Errorf("no note of the refused tag: %q", notes)
	}
}

// retag copies one remote image to another tag.
func retag(t *testing.T, s *Store, from, to string) {
	t.Helper()
	src, err := remoteRef(strings.SplitN(from, ":step-", 2)[0], "step-"+strings.SplitN(from, ":step-", 2)[1])
	if err != nil {
		t.Fatal(err)
	}
	dst, err := remoteRef(strings.SplitN(to, ":step-", 2)[0], "step-"+strings.SplitN(to, ":step-", 2)[1])
	if err != nil {
		t.Fatal(err)
	}
	rc := &RegistryCache{}
	pc, err := rc.policy(s)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Destroy()
	if _, err := copy.Image(context.Background(), pc, dst, src, &copy.Options{SourceCtx: rc.sys(s), DestinationCtx: rc.sys(s)}); err != nil {
		t.Fatal(err)
	}
}
