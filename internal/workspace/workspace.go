// Package workspace owns where builder keeps things: the image cache (DIB's
// ~/.cache/image-create: the container store, downloads, package caches,
// state, the extracted element library) and the run root (locks and mount
// state that must not outlive a reboot). Every command asks a Workspace for
// its paths, so two commands never disagree on where a lock or a cache is.
package workspace

import (
	"fmt"
	"os"
	"path/filepath"

	"builder/internal/privilege"
)

// Workspace is one cache and one run root.
type Workspace struct {
	// Cache is the image cache (--image-cache, DIB_IMAGE_CACHE).
	Cache string
	// RunRoot holds locks and mount state: tmpfs when available.
	RunRoot string
}

// New returns the workspace for a cache directory (default when empty)
// and the default run root.
func New(cache string) Workspace {
	if cache == "" {
		cache = DefaultCache()
	}
	return Workspace{Cache: cache, RunRoot: DefaultRunRoot()}
}

// DefaultCache is DIB's image cache, $XDG_CACHE_HOME/image-create or
// ~/.cache/image-create.
func DefaultCache() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "image-create")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return filepath.Join(os.TempDir(), "image-create")
	}
	return filepath.Join(home, ".cache", "image-create")
}

// DefaultRunRoot is /run/builder as real root, the user's runtime directory
// otherwise (also inside builder's own user namespace, for the same user).
func DefaultRunRoot() string {
	if privilege.RealRoot() {
		return "/run/builder"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "builder")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("builder-run-%d", privilege.RealUID()))
}

// builderDir is builder's own part of the image cache, which hooks may
// read but never change.
func (w Workspace) builderDir() string { return filepath.Join(w.Cache, "builder") }

// Own is builder's own part of the image cache (hooks see it read-only).
func (w Workspace) Own() string { return w.builderDir() }

// Store is the container store (one graph root per storage driver below).
func (w Workspace) Store() string { return filepath.Join(w.builderDir(), "containers") }

// StoreRunRoot is the container store's run state.
func (w Workspace) StoreRunRoot() string { return filepath.Join(w.RunRoot, "storage") }

// State holds builder's small records (mirror state, secret-scan verdicts).
func (w Workspace) State() string { return filepath.Join(w.builderDir(), "state") }

// Elements holds extractions of the built-in element library.
func (w Workspace) Elements() string { return filepath.Join(w.builderDir(), "elements") }

// Downloads holds verified downloads (DIB_LOCAL_IMAGE URLs, cache-url).
func (w Workspace) Downloads() string { return filepath.Join(w.Cache, "downloads") }

// Outputs keeps the last outputs of each image name, reused when a build
// ends with the same image and output options.
func (w Workspace) Outputs() string { return filepath.Join(w.builderDir(), "outputs") }

// AptCache is the shared package cache of one distribution release.
func (w Workspace) AptCache(distro, release, arch string) string {
	return filepath.Join(w.Cache, "apt", fmt.Sprintf("%s-%s-%s", distro, release, arch))
}

// Lockfiles is DIB_LOCKFILES: where elements take their own locks.
func (w Workspace) Lockfiles() string { return filepath.Join(w.Cache, "lockfiles") }

// BootTest holds boot-test's records (the KVM verdict).
func (w Workspace) BootTest() string { return filepath.Join(w.Cache, "boot-test") }

// PipelineLocks holds the pipeline's per-image locks (one build of an
// image at a time in this cache).
func (w Workspace) PipelineLocks() string { return filepath.Join(w.builderDir(), "locks") }

// CacheLock is taken shared by every build and alone by pruning, so a
// prune never removes what a running build is using.
func (w Workspace) CacheLock() string { return filepath.Join(w.builderDir(), "locks", "cache.lock") }

// BuildRecords holds, per image name, the steps its recent builds used
// (what `builder cache ls` and prune's --keep go by).
func (w Workspace) BuildRecords() string { return filepath.Join(w.State(), "builds") }

// PublishLocks holds the per-cloud, per-name publish locks. It is the same
// for every command on the host, whatever cache it builds with, so a
// pipeline and a hand-run `builder publish` of one name never overlap.
func (w Workspace) PublishLocks() string { return filepath.Join(w.RunRoot, "publish") }

// Runs holds one lock file per running build (a build that can take a
// dead one's lock cleans up after it).
func (w Workspace) Runs() string { return filepath.Join(w.RunRoot, "runs") }
