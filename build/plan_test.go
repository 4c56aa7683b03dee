package build

import (
	"os"
	"path/filepath"
	"testing"

	"builder/elements"
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
		p := &plan{res: res, tree: &elements.Tree{Dir: hooks}, hookEnv: hookEnvironment(req, res, req.ImageCache)}
		st, err := p.phaseStep(req, nil, run, elements.Phase{Name: phase, Inside: true}, nil, p.hookEnv)
		if err != nil {
			t.Fatal(err)
		}
		return st.Identity
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
}
