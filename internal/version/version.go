// Package version names the running builder: for people (Version) and for
// cache keys (CodeID, which changes whenever builder's code does).
package version

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// Version names the running builder for reports and Glance properties:
// the module version, or the VCS revision it was built from ("devel" when
// neither is known, as in tests).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	rev, dirty := vcs(bi)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += "+" + rev
		if dirty {
			v += "-dirty"
		}
	}
	return v
}

func vcs(bi *debug.BuildInfo) (rev string, dirty bool) {
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	return rev, dirty
}

var (
	codeOnce sync.Once
	codeID   string
)

// CodeID identifies builder's own code, for the keys of cached steps:
// whatever builder does to a tree (its runtime for hooks, its edits, the
// way it runs hooks) is part of every step's key through it, so a builder
// that changed never reuses what an older one made, and no salt is ever
// bumped by hand. A clean checkout's build is named by its revision and
// Go version (the same for every machine that builds that commit); any
// other build by the hash of the executable itself.
func CodeID() string {
	codeOnce.Do(func() { codeID = computeCodeID() })
	return codeID
}

func computeCodeID() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if rev, dirty := vcs(bi); rev != "" && !dirty {
			return "rev:" + rev + ":" + runtime.Version()
		}
	}
	// The running executable: through /proc/self/exe first, which works
	// where its path does not (a rootless build re-executes itself in a
	// user namespace, where a bind-mounted binary's path may not open).
	for _, exe := range executables() {
		if f, err := os.Open(exe); err == nil {
			h := sha256.New()
			_, err := io.Copy(h, f)
			f.Close()
			if err == nil {
				return "exe:" + hex.EncodeToString(h.Sum(nil))
			}
		}
	}
	// Unknown: never equal to any other run's, so nothing is reused.
	return "unknown:" + rand.Text()
}

func executables() []string {
	out := []string{"/proc/self/exe"}
	if exe, err := os.Executable(); err == nil {
		out = append(out, exe)
	}
	return out
}
