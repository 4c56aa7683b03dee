package rootfs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// keepOutputs copies a step's outputs from its working directory into dst
// (the cache), completely or not at all: a temporary directory, a stamp
// written last, then a rename. When another build kept the same outputs
// first, its copy is used. The temporary directory is named after the run
// (runID), so that a build killed while copying has it removed by the next
// one (Store.RemoveRun).
func keepOutputs(src, dst, runID string) error {
	if _, err := os.Stat(filepath.Join(dst, outputsStamp)); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	tmp := dst + runTemp(runID) + hex.EncodeToString(b)
	if err := copyTree(src, tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, outputsStamp), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// A stale, incomplete copy (a build killed while renaming cannot leave
	// one, but a disk error can) is replaced.
	if _, err := os.Stat(dst); err == nil {
		if _, err := os.Stat(filepath.Join(dst, outputsStamp)); err == nil {
			os.RemoveAll(tmp)
			return nil
		}
		if err := os.RemoveAll(dst); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(dst, outputsStamp)); serr == nil {
			return nil // another build won the race with the same outputs
		}
		return err
	}
	return nil
}

// runTemp is the part of a temporary file's name that says which run
// made it.
func runTemp(runID string) string { return ".builder." + runID + ".tmp-" }

// copyTree copies regular files, directories and symlinks with their
// modes; hard links are used where the filesystem allows.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, to)
		case info.Mode().IsRegular():
			if os.Link(p, to) == nil {
				return nil
			}
			return copyFile(p, to, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: outputs can only be files, directories and symlinks", rel)
		}
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// dirDigest hashes a directory's names, modes and contents (not times).
func dirDigest(dir string) (string, error) {
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00", rel)
		if err := hashEntry(h, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// StepOutputs lists the files the steps behind img wrote as outputs, by
// name relative to their working directory; a later step's file wins.
func StepOutputs(img Image) (map[string]string, error) {
	out := map[string]string{}
	for _, dir := range img.Outputs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.Name() == outputsStamp {
				continue
			}
			out[e.Name()] = filepath.Join(dir, e.Name())
		}
	}
	return out, nil
}
