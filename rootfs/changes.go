package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"go.podman.io/storage/pkg/archive"
)

// changesDigest hashes what a container changed on top of its image: each
// changed path with its kind, type, mode, owner and content, never its
// times, so that the same result of a step that copies host data has the
// same digest on every build. changed is false when nothing changed.
func (s *Store) changesDigest(c *Container, parent, root string) (string, bool, error) {
	cont, err := s.st.Container(c.b.ContainerID)
	if err != nil {
		return "", false, fmt.Errorf("changes of %s: %w", c.Name(), err)
	}
	parentLayer := ""
	if parent != "" && parent != "scratch" {
		img, err := s.st.Image(parent)
		if err != nil {
			return "", false, fmt.Errorf("changes of %s: %w", c.Name(), err)
		}
		parentLayer = img.TopLayer
	}
	changes, err := s.st.Changes(parentLayer, cont.LayerID)
	if err != nil {
		return "", false, fmt.Errorf("changes of %s: %w", c.Name(), err)
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Path < changes[j].Path })
	h := sha256.New()
	n := 0
	for _, ch := range changes {
		if placeholder(ch, root) || gitBookkeeping(ch.Path) {
			continue
		}
		// Overlay lists a directory as modified when only its entries
		// changed: its attributes are hashed, but it is not a change.
		if !modifiedDir(ch, root) {
			n++
		}
		fmt.Fprintf(h, "%d\x00%s\x00", ch.Kind, ch.Path)
		if ch.Kind == archive.ChangeDelete {
			continue
		}
		if err := hashEntry(h, filepath.Join(root, ch.Path)); err != nil {
			return "", false, fmt.Errorf("changes of %s: %w", c.Name(), err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), n > 0, nil
}

// gitBookkeeping: files a git checkout rewrites on every clone or fetch
// without its content changing (the index holds file times, logs and
// FETCH_HEAD hold dates). A step that checks out the same commit again
// must have the same result.
func gitBookkeeping(p string) bool {
	i := strings.Index(p, "/.git/")
	if i < 0 {
		return false
	}
	rest := p[i+len("/.git/"):]
	switch {
	case rest == "index", rest == "FETCH_HEAD", rest == "ORIG_HEAD", rest == "logs", strings.HasPrefix(rest, "logs/"),
		strings.HasSuffix(rest, ".lock"):
		return true
	}
	return false
}

func modifiedDir(ch archive.Change, root string) bool {
	if ch.Kind != archive.ChangeModify {
		return false
	}
	st, err := os.Lstat(filepath.Join(root, ch.Path))
	return err == nil && st.IsDir()
}

// placeholder: the empty resolv.conf builder itself writes around every
// step (see resolv.go) is not the step's change.
func placeholder(ch archive.Change, root string) bool {
	if ch.Path != "/"+resolvConf || ch.Kind == archive.ChangeDelete {
		return false
	}
	st, err := os.Lstat(filepath.Join(root, resolvConf))
	return err == nil && st.Mode().IsRegular() && st.Size() == 0
}

// hashEntry writes one file's type, mode, owner and content (or link
// target) to h.
func hashEntry(h io.Writer, p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	uid, gid := -1, -1
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(sys.Uid), int(sys.Gid)
	}
	fmt.Fprintf(h, "%o\x00%d\x00%d\x00", st.Mode(), uid, gid)
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "->%s\x00", t)
	case st.Mode().IsRegular():
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%d\x00", st.Size())
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
	case st.Mode()&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(h, "dev %d\x00", sys.Rdev)
		}
	}
	return nil
}
