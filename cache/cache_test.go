package cache

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.podman.io/buildah"

	"builder/internal/cleanup"
	"builder/internal/testreq"
	"builder/internal/workspace"
	"builder/rootfs"
)

func TestMain(m *testing.M) {
	if buildah.InitReexec() {
		return
	}
	logrus.SetLevel(logrus.WarnLevel)
	os.Exit(m.Run())
}

// tinyBase writes a tarball with one file whose content names the night:
// a base that changes every night, as a mirror's does.
func tinyBase(t *testing.T, night int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("base-%d.tar", night))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, d := range []string{"etc/", "tmp/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	body := []byte(fmt.Sprintf("night %d\n", night))
	tw.WriteHeader(&tar.Header{Name: "etc/night", Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	f.Close()
	return p
}

// blob is a tree step writing size random bytes (incompressible, so layer
// sizes are what they say).
func blob(name string, size int) rootfs.Step {
	return rootfs.Step{Name: name, Kind: rootfs.Tree, Identity: name,
		Edit: func(_ context.Context, root string) error {
			b := make([]byte, size)
			rand.Read(b)
			return os.WriteFile(filepath.Join(root, "etc", name), b, 0o644)
		}}
}

type env struct {
	ws    workspace.Workspace
	store *rootfs.Store
	ctx   context.Context
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testreq.Short(t, "makes real images in a container store: skipped with -short")
	testreq.Root(t, "the container store is root's here")
	dir := t.TempDir()
	ws := workspace.Workspace{Cache: dir, RunRoot: filepath.Join(dir, "run")}
	st, err := rootfs.OpenStore(context.Background(), rootfs.StoreOptions{Dir: ws.Store(), RunRoot: ws.StoreRunRoot()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &env{ws: ws, store: st, ctx: context.Background()}
}

// build runs a chain on a base and records it under name; cached says how
// many steps came from the cache.
func (e *env) build(t *testing.T, name string, night int, steps ...rootfs.Step) (cached int) {
	t.Helper()
	baseName := fmt.Sprintf("localhost/builder/base:%040d", night)
	if !e.store.HasImage(baseName) {
		if _, err := e.store.ImportTarball(e.ctx, tinyBase(t, night), baseName, "amd64"); err != nil {
			t.Fatal(err)
		}
	}
	used := []Step{{Phase: "base", Image: baseName}}
	var stack cleanup.Stack
	defer stack.Run()
	for i := range steps {
		end := steps[i].End
		steps[i].End = func(c bool, err error) {
			if c {
				cached++
			}
			if end != nil {
				end(c, err)
			}
		}
	}
	_, err := e.store.RunChain(e.ctx, rootfs.Image{Name: baseName, Key: baseName}, steps, rootfs.ChainOptions{
		RunID: "t", Cleanup: &stack,
		OnStep: func(st rootfs.Step, img rootfs.Image) {
			used = append(used, Step{Phase: st.Name, Image: img.Name, Key: img.Key})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := RecordBuild(e.ws, name, Build{Time: time.Now(), Steps: used}); err != nil {
		t.Fatal(err)
	}
	return cached
}

// A month of nightly builds of two images whose base changes every night
// stays under the bound when each build prunes after itself, and the
// newest builds still rebuild entirely from the cache.
func TestAMonthOfNightlyBuildsStaysBounded(t *testing.T) {
	e := newEnv(t)
	const mib = 1 << 20
	bound := int64(40 * mib)
	m := OpenWith(e.ws, e.store)
	for night := 1; night <= 30; night++ {
		for _, name := range []string{"web", "db"} {
			e.build(t, name, night, blob("install.d-"+name, 4*mib), blob("finalise.d-"+name, 2*mib))
			res, err := m.Prune(e.ctx, Policy{MaxBytes: bound, Keep: 1})
			if err != nil {
				t.Fatal(err)
			}
			if res.TotalAfter > bound {
				t.Fatalf("night %d: %d MiB held after pruning, bound %d MiB", night, res.TotalAfter/mib, bound/mib)
			}
		}
	}
	rep, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total > bound {
		t.Errorf("%d MiB held, bound %d", rep.Total/mib, bound/mib)
	}
	for _, name := range []string{"web", "db"} {
		if got := e.build(t, name, 30, blob("install.d-"+name, 4*mib), blob("finalise.d-"+name, 2*mib)); got != 2 {
			t.Errorf("%s: the newest build's rebuild took %d of 2 steps from the cache", name, got)
		}
	}
	found := map[string]Usage{}
	for _, u := range rep.Names {
		found[u.Name] = u
	}
	if found["web"].Builds == 0 || found["web"].Unique < 6*mib {
		t.Errorf("ls: web %+v", found["web"])
	}
}

// Prune removes what is old, least recently used first, frees space only
// from the tips of chains, keeps the last builds of every name and never
// touches what a working container uses.
func TestPruneKeepsWhatIsNeeded(t *testing.T) {
	e := newEnv(t)
	const mib = 1 << 20
	e.build(t, "old", 1, blob("install.d", 3*mib), blob("finalise.d", 1*mib))
	e.build(t, "new", 2, blob("install.d", 3*mib), blob("finalise.d", 1*mib))
	m := OpenWith(e.ws, e.store)

	// --keep 1 protects both names' only builds.
	res, err := m.Prune(e.ctx, Policy{MaxBytes: 1, Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || res.KeptForBuild == 0 {
		t.Fatalf("kept builds were pruned: %+v", res)
	}
	// A working container holds "new"'s last step: it stays, and so does
	// everything below it; "old" goes entirely, tip first.
	rep, _ := m.List()
	var newTip string
	for _, en := range rep.Entries {
		if contains(en.UsedBy, "new") && en.Phase == "finalise.d" {
			newTip = en.Name
		}
	}
	c, err := e.store.NewContainer(e.ctx, newTip, "builder-prune-test", rootfs.IsolationChroot, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete()
	dry, err := m.Prune(e.ctx, Policy{MaxBytes: 1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err = m.Prune(e.ctx, Policy{MaxBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Removed) != len(res.Removed) {
		t.Errorf("dry run said %d, prune removed %d", len(dry.Removed), len(res.Removed))
	}
	var removed []string
	for _, r := range res.Removed {
		removed = append(removed, strings.Join(r.UsedBy, ",")+"/"+r.Phase)
	}
	if got := strings.Join(removed, " "); got != "old/finalise.d old/install.d old/base" {
		t.Errorf("removed %q, want old's chain from the tip down", got)
	}
	if !e.store.HasImage(newTip) {
		t.Errorf("the image a working container uses was removed")
	}
	if res.FreedBytes < 4*mib {
		t.Errorf("freed %d bytes, want old's 4 MiB and more", res.FreedBytes)
	}
}

// Verify finds a damaged layer, removes it and everything built on it, and
// the next build makes them again.
func TestVerifyRemovesDamagedLayers(t *testing.T) {
	e := newEnv(t)
	steps := func() []rootfs.Step {
		return []rootfs.Step{{Name: "install.d", Kind: rootfs.Tree, Identity: "1",
			Edit: func(_ context.Context, root string) error {
				return os.WriteFile(filepath.Join(root, "etc", "app.conf"), []byte("port = 8080\n"), 0o644)
			}}, blob("finalise.d", 1<<20)}
	}
	e.build(t, "app", 1, steps()...)
	m := OpenWith(e.ws, e.store)
	res, err := m.Verify(e.ctx, nil)
	if err != nil || len(res.Damaged) != 0 || res.Checked < 3 {
		t.Fatalf("a sound cache: %+v, %v", res, err)
	}
	// Damage install.d's layer on disk.
	files, _ := filepath.Glob(filepath.Join(e.ws.Store(), "storage-*", "overlay", "*", "diff", "etc", "app.conf"))
	if len(files) != 1 {
		t.Fatalf("the layer file: %v", files)
	}
	os.WriteFile(files[0], []byte("port = 6666\n"), 0o644)
	res, err = m.Verify(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Damaged) != 2 || !strings.Contains(strings.Join(res.Damaged, "\n"), "is damaged") {
		t.Fatalf("damaged: %q (want install.d and the step built on it)", res.Damaged)
	}
	if got := e.build(t, "app", 1, steps()...); got != 0 {
		t.Errorf("the rebuild after verify took %d damaged steps from the cache", got)
	}
	if res, _ := m.Verify(e.ctx, nil); len(res.Damaged) != 0 {
		t.Errorf("still damaged after the rebuild: %v", res.Damaged)
	}
}
