package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Build-time network sources as real element trees use them, from servers
// on 127.0.0.1: source-repositories (a git branch, a tag chosen with
// DIB_REPOREF_*, a tarball over http, a file whose location comes from
// DIB_REPOLOCATION_*, a line skipped by its install type, a package line)
// and pip installing from a local package index through the pypi element,
// with pip-cache, pip-and-virtualenv and ensure-venv. Then: an unchanged
// rebuild keeps the later steps cached, a new commit reaches the image,
// DIB_OFFLINE builds from the cache and fails clearly on a ref it lacks,
// and damaged cache entries are fetched again.
func TestNetworkSources(t *testing.T) {
	needE2EOwnLane(t)
	ctx := withTimeout(t, 60*time.Minute)

	gs := startGitServer(t)
	app := gs.newRepo(t, "app", "main")
	app.commit(t, "first", map[string]string{"README": "app v1.0\n", "src/app.py": "VERSION = '1.0'\n"})
	app.tag(t, "v1.0")
	c2 := app.commit(t, "second", map[string]string{"README": "app after v1.0\n"})

	www := t.TempDir()
	nsWriteFile(t, www, "dl/netsrc-data-1.0.tar.gz", nsTarGz(t, map[string]string{
		"netsrc-data-1.0/data.txt":     "data from the tarball\n",
		"netsrc-data-1.0/sub/more.txt": "more data\n",
		"outside.txt":                  "not in the selected directory\n",
	}))
	nsWriteFile(t, www, "dl/notes.txt", []byte("notes served over http\n"))
	writeSimpleIndex(t, www, []pyPackage{
		{Name: "netsrc-hello", Version: "1.0", Module: "netsrc_hello", Requires: []string{"netsrc-dep"},
			Files: map[string]string{"netsrc_hello/__init__.py": "from netsrc_dep import WORD\n\ndef greeting():\n    return 'hello ' + WORD\n"}},
		{Name: "netsrc-dep", Version: "2.0", Module: "netsrc_dep",
			Files: map[string]string{"netsrc_dep/__init__.py": "WORD = 'from the local index'\n"}},
	})
	web := startStaticServer(t, www)

	// This test's entries in the shared source cache (their names carry
	// this run's ports) are removed at the end.
	srcCache := filepath.Join(ownLaneCache(), "source-repositories")
	before := map[string]bool{}
	if ents, err := os.ReadDir(srcCache); err == nil {
		for _, e := range ents {
			before[e.Name()] = true
		}
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(srcCache)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "netsrc_") && !before[e.Name()] {
				os.RemoveAll(filepath.Join(srcCache, e.Name()))
			}
		}
	})

	out, tmp := t.TempDir(), t.TempDir()
	ownLaneDirs(out, tmp)
	env := []string{"TMP_DIR=" + tmp, "ELEMENTS_PATH=" + testElements(t),
		"NETSRC_GIT=" + gs.URL, "NETSRC_HTTP=" + web.URL,
		"DIB_REPOREF_netsrc_tagged=v1.0",
		"DIB_REPOLOCATION_netsrc_notes=" + web.URL + "/dl/notes.txt",
		"DIB_INSTALLTYPE_netsrc_skipped=package",
		"DIB_PYPI_MIRROR_URL=" + web.URL + "/simple/", "DIB_NO_PYPI_PIP=1", "DIB_PIP_RETRIES=1"}
	n := 0
	// verbose (-v) shows the hooks' own messages.
	build := func(verbose bool, extra ...string) (result, string) {
		n++
		name := filepath.Join(out, "img"+string(rune('0'+n)))
		args := []string{"image", "debian", "vm", "netsrc", "-o", name, "--image-cache", ownLaneCache()}
		if verbose {
			args = append(args, "-v")
		}
		return runBuilder(t, ctx, append(append([]string(nil), env...), extra...), args...), name
	}

	start := time.Now()
	r, img := build(false)
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	t.Logf("first build: %s", time.Since(start).Round(time.Second))
	im := openImage(t, img+".qcow2")
	want := map[string]string{
		"/opt/netsrc/app/README":              "app after v1.0\n",
		"/opt/netsrc/tagged/README":           "app v1.0\n",
		"/opt/netsrc/tagged/src/app.py":       "VERSION = '1.0'\n",
		"/opt/netsrc/data/data.txt":           "data from the tarball\n",
		"/opt/netsrc/data/sub/more.txt":       "more data\n",
		"/opt/netsrc/notes.txt":               "notes served over http\n",
		"/etc/netsrc/app-head":                c2 + "\n",
		"/etc/netsrc/app-describe":            "v1.0-1-g" + c2[:7] + "\n",
		"/etc/netsrc/app-status":              "",
		"/etc/netsrc/tagged-describe":         "v1.0\n",
		"/etc/netsrc/installtype":             "source\n",
		"/etc/netsrc/pip-result":              "hello from the local index\n",
		"/etc/netsrc/pip-cache":               "/tmp/pip mounted\n",
		"/etc/dib-source-repositories":        "/opt/netsrc/app\n/opt/netsrc/tagged\n/opt/netsrc/data\n/opt/netsrc/notes.txt\n",
		"/opt/netsrc/app/.git/HEAD":           "ref: refs/heads/main\n",
		"/opt/netsrc/app/.git/refs/tags/v1.0": "",
	}
	for path, w := range want {
		got, ok := im.cat(t, path)
		switch {
		case !ok:
			t.Errorf("%s is missing from the image", path)
		case w != "" && got != w:
			t.Errorf("%s = %q, want %q", path, got, w)
		case w == "" && path == "/etc/netsrc/app-status" && got != "":
			t.Errorf("git status in the image is not clean:\n%s", got)
		}
	}
	for _, path := range []string{"/opt/netsrc/skipped", "/opt/netsrc/data/outside.txt", "/root/.pip/pip.conf",
		"/opt/netsrc/app/.git/FETCH_HEAD", "/opt/netsrc/app/.git/logs/HEAD", "/tmp/pip", "/tmp/get-pip.py"} {
		if _, ok := im.cat(t, path); ok {
			t.Errorf("%s should not be in the image", path)
		}
	}
	if conf, _ := im.cat(t, "/etc/netsrc/pip.conf.seen"); !strings.Contains(conf, "index-url = "+web.URL+"/simple/") ||
		!strings.Contains(conf, "trusted-host = 127.0.0.1") || !strings.Contains(conf, "retries = 1") || strings.Contains(conf, "pypi.org") {
		t.Errorf("pip.conf during the build:\n%s", conf)
	}
	if origin, _ := im.cat(t, "/opt/netsrc/app/.git/config"); !strings.Contains(origin, "url = "+gs.URL+"/app.git") {
		t.Errorf("origin of the checkout is not the repository:\n%s", origin)
	}
	manifest := filepath.Join(img+".d", "dib-manifests", "dib-manifest-git-"+filepath.Base(img))
	data, err := os.ReadFile(manifest)
	tagged := nsGit(t, app.Work, "rev-parse", "v1.0^{commit}")
	wantManifest := "netsrc-app git /opt/netsrc/app " + gs.URL + "/app.git " + c2 + "\n" +
		"netsrc-tagged git /opt/netsrc/tagged " + gs.URL + "/app.git " + tagged + "\n"
	if err != nil || string(data) != wantManifest {
		t.Errorf("git manifest %s: %v\n%q\nwant\n%q", manifest, err, data, wantManifest)
	}

	// Nothing changed: extra-data.d runs again and writes the same tree,
	// so every later phase comes from the cache.
	r, _ = build(false)
	if r.code != 0 {
		t.Fatalf("unchanged rebuild failed")
	}
	laterPhasesCached(t, r.stdout, true)

	// A new commit on the branch reaches the image; the tag stays.
	c3 := app.commit(t, "third", map[string]string{"README": "app, third commit\n"})
	r, img = build(false)
	if r.code != 0 {
		t.Fatalf("rebuild after a new commit failed")
	}
	laterPhasesCached(t, r.stdout, false)
	im = openImage(t, img+".qcow2")
	for path, w := range map[string]string{"/opt/netsrc/app/README": "app, third commit\n", "/etc/netsrc/app-head": c3 + "\n",
		"/opt/netsrc/tagged/README": "app v1.0\n"} {
		if got, _ := im.cat(t, path); got != w {
			t.Errorf("after the new commit %s = %q, want %q", path, got, w)
		}
	}

	// Offline, the sources come from the cache. (builder makes DIB_OFFLINE
	// part of every step's key, so the later steps run again.)
	r, img = build(false, "DIB_OFFLINE=1")
	if r.code != 0 {
		t.Fatalf("DIB_OFFLINE build from the cache failed")
	}
	im = openImage(t, img+".qcow2")
	if got, _ := im.cat(t, "/opt/netsrc/app/README"); got != "app, third commit\n" {
		t.Errorf("offline build: /opt/netsrc/app/README = %q", got)
	}

	// Offline with a ref the cache has never seen: a clear failure.
	app.commit(t, "fourth", map[string]string{"README": "app v2.0\n"})
	app.tag(t, "v2.0")
	r, _ = build(true, "DIB_OFFLINE=1", "DIB_REPOREF_netsrc_tagged=v2.0")
	if r.code == 0 {
		t.Fatalf("DIB_OFFLINE build with an uncached ref succeeded")
	}
	if !regexp.MustCompile(`netsrc-tagged: ref 'v2.0' of \S+ is not in the cache .* and DIB_OFFLINE is set`).MatchString(r.stdout + r.stderr) {
		t.Errorf("the failure does not say which ref is missing from the cache and why")
	}

	// Damaged cache entries (a git pack overwritten in the middle, a
	// tarball cut short) are found and fetched again, never used.
	damage := func(glob string, at int64, truncate bool) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(srcCache, glob))
		if len(files) == 0 {
			t.Fatalf("no cache entry matches %s", glob)
		}
		for _, f := range files {
			if strings.HasSuffix(f, ".sha256") {
				continue
			}
			os.Chmod(f, 0o644)
			if truncate {
				if err := os.Truncate(f, at); err != nil {
					t.Fatal(err)
				}
				continue
			}
			fh, err := os.OpenFile(f, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.WriteAt([]byte(strings.Repeat("\xff", 64)), at)
			fh.Close()
		}
	}
	damage("netsrc_app_*/objects/pack/*.pack", 100, false)
	damage("netsrc_data_*", 20, true)
	// A git entry without its HEAD is not a repository (as a half-written
	// one would be): it is cloned again.
	heads, _ := filepath.Glob(filepath.Join(srcCache, "netsrc_tagged_*", "HEAD"))
	if len(heads) != 1 || os.Remove(heads[0]) != nil {
		t.Fatalf("cannot remove the HEAD of the netsrc-tagged cache entry: %v", heads)
	}
	r, img = build(true)
	if r.code != 0 {
		t.Fatalf("build with damaged cache entries failed")
	}
	for _, msg := range []string{"netsrc_app_", "is damaged; fetching it again", "caching netsrc-tagged from",
		"incomplete or damaged; it is not used", "netsrc-data: fetched"} {
		if !strings.Contains(r.stdout+r.stderr, msg) {
			t.Errorf("the build did not report %q", msg)
		}
	}
	im = openImage(t, img+".qcow2")
	for path, w := range map[string]string{"/opt/netsrc/app/README": "app v2.0\n", "/opt/netsrc/tagged/README": "app v1.0\n",
		"/opt/netsrc/data/data.txt": "data from the tarball\n"} {
		if got, _ := im.cat(t, path); got != w {
			t.Errorf("after refetching damaged entries %s = %q, want %q", path, got, w)
		}
	}
	// Only this test's own leftovers: other builds may share the cache.
	for _, l := range leftovers(t, tmp) {
		if strings.Contains(l, tmp) {
			t.Errorf("left behind: %s", l)
		}
	}
}

// laterPhasesCached checks the phases after extra-data.d in a build's
// progress output: all cached (want true) or all run again (false).
func laterPhasesCached(t *testing.T, stdout string, want bool) {
	t.Helper()
	seen := 0
	for _, line := range strings.Split(stdout, "\n") {
		// Progress lines ("install.d   0.00s  cached"), not the timing
		// table at the end (seconds without a unit).
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasSuffix(f[1], "s") {
			continue
		}
		switch f[0] {
		case "pre-install.d", "install.d", "post-install.d", "finalise.d":
		default:
			continue
		}
		seen++
		if cached := strings.HasSuffix(strings.TrimSpace(line), "cached"); cached != want {
			t.Errorf("phase %s: cached=%v, want %v:\n%s", f[0], cached, want, line)
		}
	}
	if seen < 3 {
		t.Errorf("progress output lists %d of the later phases:\n%s", seen, stdout)
	}
}
