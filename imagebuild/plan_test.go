package imagebuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builder/elements"
	"builder/internal/workspace"
	"builder/rootfs"
)

// A step's key changes with what can change the tree, and only with that:
// the output name, output-only variables and builder's own controls do not
// force a rebuild; a DIB_* variable and a hook's bytes do.
func TestStepIdentityTracksOnlyTreeInputs(t *testing.T) {
	hooks := t.TempDir()
	os.MkdirAll(filepath.Join(hooks, "install.d"), 0o755)
	os.MkdirAll(filepath.Join(hooks, "finalise.d"), 0o755)
	os.WriteFile(filepath.Join(hooks, "install.d", "10-a"), []byte("#!/bin/bash\necho a\n"), 0o755)
	os.WriteFile(filepath.Join(hooks, "finalise.d", "10-b"), []byte("#!/bin/bash\necho b\n"), 0o755)
	res := &elements.Resolution{Elements: []*elements.Element{{Name: "x", Dir: "/elements/x"}}}
	run := &runDir{ID: "t", Work: t.TempDir()}
	identity := func(req Request, phase string) string {
		t.Helper()
		req = withDefaults(req)
		p := &plan{res: res, tree: &elements.Tree{Dir: hooks}, ws: workspace.Workspace{Cache: req.ImageCache, RunRoot: t.TempDir()}}
		p.hookEnv, p.userVars = hookEnvironment(req, res, req.ImageCache, "/builtin", "")
		st, err := p.phaseStep(req, nil, run, elements.Phase{Name: phase, Inside: true}, nil, p.hookEnv)
		if err != nil {
			t.Fatal(err)
		}
		return rootfs.StepKey("parent", st)
	}
	base := Request{Output: "a", Types: []string{"qcow2"}, Env: map[string]string{"DIB_RELEASE": "bookworm"}}
	id := identity(base, "install.d")

	same := []Request{
		{Output: "other-name", Types: []string{"qcow2", "raw"}, Env: map[string]string{"DIB_RELEASE": "bookworm"}},
		{Output: "a", Types: []string{"qcow2"}, Env: map[string]string{"DIB_RELEASE": "bookworm", "OVERWRITE_OLD_IMAGE": "1", "TMP_DIR": "/x", "DIB_CHECKSUM": "1", "DIB_IMAGE_SIZE": "4"}},
		{Output: "a", Types: []string{"qcow2"}, ImageCache: "/elsewhere", Env: map[string]string{"DIB_RELEASE": "bookworm"}},
	}
	for i, r := range same {
		if got := identity(r, "install.d"); got != id {
			t.Errorf("case %d: identity changed for a change that cannot affect the tree", i)
		}
	}
	// A variable nothing mentions changes nothing, even a DIB_* one.
	if identity(Request{Output: "a", Types: []string{"qcow2"}, Env: map[string]string{"DIB_RELEASE": "trixie"}}, "install.d") != id {
		t.Errorf("DIB_RELEASE changed the identity though no file the hooks see mentions it")
	}
	os.MkdirAll(filepath.Join(hooks, "environment.d"), 0o755)
	os.WriteFile(filepath.Join(hooks, "environment.d", "10-release"), []byte("export DIB_RELEASE=${DIB_RELEASE:-bookworm}\n"), 0o644)
	id = identity(base, "install.d")
	if identity(Request{Output: "a", Types: []string{"qcow2"}, Env: map[string]string{"DIB_RELEASE": "trixie"}}, "install.d") == id {
		t.Errorf("DIB_RELEASE changed but the identity did not")
	}
	// Editing a finalise.d hook leaves install.d alone, and changes finalise.d.
	fin := identity(base, "finalise.d")
	os.WriteFile(filepath.Join(hooks, "finalise.d", "10-b"), []byte("#!/bin/bash\necho B\n"), 0o755)
	if identity(base, "install.d") != id {
		t.Errorf("a finalise.d edit changed install.d's identity")
	}
	if identity(base, "finalise.d") == fin {
		t.Errorf("a finalise.d edit did not change finalise.d's identity")
	}
	// A hook that reads IMAGE_NAME makes the output name part of its key.
	os.WriteFile(filepath.Join(hooks, "install.d", "20-name"), []byte("#!/bin/bash\necho $IMAGE_NAME > /etc/name\n"), 0o755)
	if identity(base, "install.d") == identity(Request{Output: "b", Types: []string{"qcow2"}, Env: base.Env}, "install.d") {
		t.Errorf("IMAGE_NAME is used by a hook but not part of the key")
	}
	// The caller's TMP_DIR is where this host works, even for a hook
	// that mentions it (DIB's own elements do): not part of the key.
	os.WriteFile(filepath.Join(hooks, "install.d", "30-tmp"), []byte("#!/bin/bash\necho ${TMP_DIR:-/tmp}\n"), 0o755)
	tmpA := Request{Output: "a", Types: []string{"qcow2"}, TmpDir: "/x", Env: map[string]string{"DIB_RELEASE": "bookworm", "TMP_DIR": "/x"}}
	tmpB := Request{Output: "a", Types: []string{"qcow2"}, TmpDir: "/y", Env: map[string]string{"DIB_RELEASE": "bookworm", "TMP_DIR": "/y"}}
	if identity(tmpA, "install.d") != identity(tmpB, "install.d") {
		t.Errorf("another TMP_DIR changed the key of a step whose hook mentions it")
	}
}

// The caller's own variables (not only DIB_*) reach hooks, and a step's key
// holds exactly those its files can read: changing one rebuilds the phases
// that mention it and nothing else. Programs in the image read some without
// any file naming them (pip's); proxies and the caller's session never count.
func TestUserVariablesKeyOnlyTheStepsThatReadThem(t *testing.T) {
	hooks := t.TempDir()
	for _, f := range []struct{ path, body string }{
		{"install.d/10-feature", "#!/bin/bash\nif [ \"$MY_FEATURE\" = true ]; then touch /etc/feature; fi\n"},
		{"finalise.d/10-user", "#!/bin/bash\necho \"$GUEST_USER\" > /etc/guest-user\n"},
		{"finalise.d/20-indirect", "#!/bin/bash\nv=ACME_REF_${1:-x}; echo \"${!v:-}\"\n"},
	} {
		p := filepath.Join(hooks, f.path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(f.body), 0o755)
	}
	res := &elements.Resolution{Elements: []*elements.Element{{Name: "x", Dir: "/elements/x"}}}
	run := &runDir{ID: "t", Work: t.TempDir()}
	step := func(env map[string]string, phase string) (string, []string) {
		t.Helper()
		req := withDefaults(Request{Output: "a", Types: []string{"qcow2"}, Env: UserEnv(envPairs(env))})
		p := &plan{res: res, tree: &elements.Tree{Dir: hooks}, ws: workspace.Workspace{Cache: req.ImageCache, RunRoot: t.TempDir()}}
		p.hookEnv, p.userVars = hookEnvironment(req, res, req.ImageCache, "/builtin", "")
		st, err := p.phaseStep(req, nil, run, elements.Phase{Name: phase, Inside: true}, nil, p.hookEnv)
		if err != nil {
			t.Fatal(err)
		}
		return rootfs.StepKey("parent", st), st.Env
	}
	base := map[string]string{"MY_FEATURE": "false", "GUEST_USER": "alice", "UNRELATED": "1", "TERM": "xterm"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	inst, env := step(base, "install.d")
	fin, _ := step(base, "finalise.d")
	for _, want := range []string{"MY_FEATURE=false", "GUEST_USER=alice", "UNRELATED=1"} {
		if !contains(env, want) {
			t.Errorf("hooks do not get %s", want)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "TERM=") {
			t.Errorf("the caller's terminal reached the hooks: %s", kv)
		}
	}
	cases := []struct {
		name          string
		env           map[string]string
		install, fini bool // whether each phase's key must change
	}{
		{"MY_FEATURE read by install.d", with("MY_FEATURE", "true"), true, false},
		{"GUEST_USER read by finalise.d", with("GUEST_USER", "bob"), false, true},
		{"a variable nothing reads", with("UNRELATED", "2"), false, false},
		{"the caller's terminal", with("TERM", "dumb"), false, false},
		{"a proxy", with("http_proxy", "http://proxy:3128"), false, false},
		{"pip's index, read by pip in the image", with("PIP_INDEX_URL", "http://127.0.0.1/simple"), true, true},
		{"a variable read by its prefix (ACME_REF_${name})", with("ACME_REF_tools", "v2"), false, true},
	}
	for _, c := range cases {
		i, _ := step(c.env, "install.d")
		f, _ := step(c.env, "finalise.d")
		if (i != inst) != c.install || (f != fin) != c.fini {
			t.Errorf("%s: install.d key changed %v (want %v), finalise.d key changed %v (want %v)", c.name, i != inst, c.install, f != fin, c.fini)
		}
	}
}

func envPairs(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// What the image records of the command line leaves out where this machine
// keeps its caches and how it runs hooks, so the same image built elsewhere
// records the same.
func TestDIBArgsLeaveOutLocalFlags(t *testing.T) {
	args := []string{"-x", "debian", "vm", "-o", "/srv/out/web", "--image-cache", "/var/tmp/c", "--cache-from=r.example/c",
		"--cache-to", "r.example/c", "--no-tmpfs", "-t", "qcow2,raw", "--isolation", "oci", "-p", "vim"}
	got := strings.Join(withoutLocalFlags(args), " ")
	want := "debian vm -o web -t qcow2,raw -p vim"
	if got != want {
		t.Errorf("DIB_ARGS = %q, want %q", got, want)
	}
	env := dibEnv(map[string]string{"DIB_RELEASE": "bookworm", "DIB_IMAGE_CACHE": "/var/tmp/c", "DIB_NO_TMPFS": "1"})
	if env != `declare -x DIB_RELEASE="bookworm"` {
		t.Errorf("DIB_ENV = %q", env)
	}
}
