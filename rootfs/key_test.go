package rootfs

import (
	"context"
	"testing"
)

// A step's key changes when anything that can change what it makes
// changes, for every kind of step, and only then: paths that merely name
// the run or the cache do not count.
func TestStepKeyCoversTheWholeStep(t *testing.T) {
	base := func(kind StepKind) Step {
		return Step{
			Name: "install.d", Kind: kind, Identity: "tree=abc",
			KeyEnv:   []string{"ARCH=amd64", "DIB_RELEASE=bookworm"},
			Command:  []string{"/bin/bash", "/run/a/hooks/dib-run-parts", "/run/a/hooks/install.d", "10-x"},
			Env:      []string{"TMPDIR=/run/a/tmp", "BUILDER_HOOK_MARK=123"},
			Mounts:   []Mount{{Source: "/run/a/hooks", Destination: "/tmp/in_target.d", ReadOnly: true}, {Source: "/cache/apt/builder.a.apt", Destination: "/var/cache/apt/archives"}},
			Writable: []string{"/run/a", "/cache"}, ReadOnly: []string{"/cache/builder"},
			MountAt: "/run/a/mnt", Dir: "/run/a/outputs/install.d",
			Volatile: map[string]string{"/run/a": "$RUN", "/cache": "$CACHE", "/cache/apt/builder.a.apt": "$APT"},
			Edit:     func(context.Context, string) error { return nil },
		}
	}
	changes := map[string]func(*Step){
		"name":           func(s *Step) { s.Name = "post-install.d" },
		"identity":       func(s *Step) { s.Identity = "tree=abd" },
		"a key variable": func(s *Step) { s.KeyEnv = []string{"ARCH=amd64", "DIB_RELEASE=trixie"} },
		"command":        func(s *Step) { s.Command = append(append([]string(nil), s.Command...), "20-y") },
		"mount place":    func(s *Step) { s.Mounts = []Mount{{Source: "/run/a/hooks", Destination: "/srv", ReadOnly: true}} },
		"mount mode":     func(s *Step) { s.Mounts = []Mount{{Source: "/run/a/hooks", Destination: "/tmp/in_target.d"}} },
		"mount source":   func(s *Step) { s.Mounts = []Mount{{Source: "/etc", Destination: "/tmp/in_target.d", ReadOnly: true}} },
		"writable":       func(s *Step) { s.Writable = append(s.Writable, "/var/lib") },
		"read-only":      func(s *Step) { s.ReadOnly = nil },
		"target place":   func(s *Step) { s.MountAt = "/srv/mnt" },
		"content keyed":  func(s *Step) { s.ContentKeyed = true },
		"resolv.conf":    func(s *Step) { s.ResolvConf = true },
		"pseudo fs":      func(s *Step) { s.Pseudo = true },
		"outputs":        func(s *Step) { s.DirIsOutputs = true },
	}
	unchanged := map[string]func(*Step){
		"another run's and cache's paths": func(s *Step) {
			s.Command = []string{"/bin/bash", "/run/b/hooks/dib-run-parts", "/run/b/hooks/install.d", "10-x"}
			s.Mounts = []Mount{{Source: "/run/b/hooks", Destination: "/tmp/in_target.d", ReadOnly: true}, {Source: "/other/apt/builder.b.apt", Destination: "/var/cache/apt/archives"}}
			s.Writable = []string{"/run/b", "/other"}
			s.ReadOnly = []string{"/other/builder"}
			s.MountAt, s.Dir = "/run/b/mnt", "/run/b/outputs/install.d"
			s.Volatile = map[string]string{"/run/b": "$RUN", "/other": "$CACHE", "/other/apt/builder.b.apt": "$APT"}
		},
		"the run environment (keyed through KeyEnv only)": func(s *Step) { s.Env = []string{"TMPDIR=/elsewhere"} },
		"key variables in another order":                  func(s *Step) { s.KeyEnv = []string{"DIB_RELEASE=bookworm", "ARCH=amd64"} },
	}
	for _, kind := range []StepKind{Inside, Outside, Tree} {
		ref := StepKey("parent", base(kind))
		if StepKey("parent", base(kind)) != ref {
			t.Fatalf("%s: the same step gave two keys", kind)
		}
		if StepKey("other-parent", base(kind)) == ref {
			t.Errorf("%s: another parent, same key", kind)
		}
		for name, change := range changes {
			s := base(kind)
			change(&s)
			if StepKey("parent", s) == ref {
				t.Errorf("%s: changing the %s did not change the key", kind, name)
			}
		}
		for name, change := range unchanged {
			s := base(kind)
			change(&s)
			if StepKey("parent", s) != ref {
				t.Errorf("%s: %s changed the key", kind, name)
			}
		}
	}
	for _, kind := range []StepKind{Inside, Outside, Tree} {
		ref := StepKey("parent", base(kind))
		old := codeID
		codeID = func() string { return "another builder" }
		other := StepKey("parent", base(kind))
		codeID = old
		if other == ref {
			t.Errorf("%s: another builder's code, same key", kind)
		}
	}
}
