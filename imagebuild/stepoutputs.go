package imagebuild

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"builder/internal/cleanup"
	"builder/internal/fsutil"
	"builder/rootfs"
)

// hookOutputs are the files outside hooks wrote into their working
// directory as outputs, the way DIB's hooks write $IMAGE_NAME.vmlinuz,
// $IMAGE_NAME.initramfs or $IMAGE_NAME.iso next to the image. Those named
// after the image (NAME.* and the NAME.d directory) are put beside the
// outputs, together with them; anything else is reported and left out.
type hookOutputs struct {
	files map[string]string // name -> kept copy
	skip  []string
}

func collectHookOutputs(final rootfs.Image, req Request) (*hookOutputs, error) {
	all, err := rootfs.StepOutputs(final)
	if err != nil {
		return nil, fmt.Errorf("outputs written by hooks: %w", err)
	}
	base := filepath.Base(imageName(req))
	h := &hookOutputs{files: map[string]string{}}
	for name, p := range all {
		if name == base || strings.HasPrefix(name, base+".") {
			h.files[name] = p
		} else {
			h.skip = append(h.skip, name)
		}
	}
	sort.Strings(h.skip)
	return h, nil
}

// stage copies the hook outputs next to the final outputs under temporary
// names and returns the function that puts them in place (with the other
// outputs: an existing file is kept under its date unless
// OVERWRITE_OLD_IMAGE). Directories (NAME.d) are merged into place.
func (h *hookOutputs) stage(outDir string, taken map[string]bool, overwrite, runID string, stack *cleanup.Stack) (func() ([]string, error), error) {
	type staged struct{ tmp, final string }
	var files []staged
	var dirs []string
	names := make([]string, 0, len(h.files))
	for n := range h.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		src := h.files[n]
		final := filepath.Join(outDir, n)
		if taken[final] {
			return nil, fmt.Errorf("a hook wrote %s, which builder writes itself (an output type): rename the hook's output", n)
		}
		st, err := os.Lstat(src)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			dirs = append(dirs, n)
			continue
		}
		tmp := filepath.Join(outDir, "."+n+"."+runTag(runID)+"tmp")
		hd := stack.Push("partial output "+tmp, func() error { return removeIfExists(tmp) })
		if err := copyOut(src, tmp); err != nil {
			return nil, fmt.Errorf("output %s: %w", n, err)
		}
		_ = hd
		files = append(files, staged{tmp, final})
	}
	return func() ([]string, error) {
		var placed []string
		for _, f := range files {
			if err := keepOld(f.final, overwrite); err != nil {
				return placed, err
			}
			if err := os.Rename(f.tmp, f.final); err != nil {
				return placed, fmt.Errorf("put %s in place: %w", f.final, err)
			}
			placed = append(placed, f.final)
		}
		for _, d := range dirs {
			if err := mergeDir(h.files[d], filepath.Join(outDir, d)); err != nil {
				return placed, fmt.Errorf("put %s in place: %w", d, err)
			}
			placed = append(placed, filepath.Join(outDir, d))
		}
		return placed, nil
	}, nil
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// copyOut copies one output file (the kept copy stays in the cache).
func copyOut(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return fsutil.CopyFile(src, dst, st.Mode().Perm()|0o600)
}

// mergeDir copies src's files into dst, replacing same-named ones.
func mergeDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		tmp := to + fmt.Sprintf(".tmp-%d", os.Getpid())
		if err := copyOut(p, tmp); err != nil {
			return err
		}
		return os.Rename(tmp, to)
	})
}
