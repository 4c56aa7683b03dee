package rootfs

import (
	"bytes"

	"fmt"
	"github.com/moby/sys/mountinfo"
	"path/filepath"
	"sort"
	"strings"
)

// mountEntry is one line of /proc/PID/mountinfo.
type mountEntry struct {
	ID, Parent int
	Dev        string // major:minor
	Root       string // the path within its filesystem that is mounted
	Point      string // where
	FSType     string
}

// parseMountInfo reads a mount table another process printed.
func parseMountInfo(data []byte) []mountEntry {
	ms, err := mountinfo.GetMountsFromReader(bytes.NewReader(data), nil)
	if err != nil {
		return nil
	}
	out := make([]mountEntry, 0, len(ms))
	for _, m := range ms {
		out = append(out, mountEntry{ID: m.ID, Parent: m.Parent, Dev: fmt.Sprintf("%d:%d", m.Major, m.Minor),
			Root: m.Root, Point: m.Mountpoint, FSType: m.FSType})
	}
	return out
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// carriedMounts finds, in the mount table an outside phase left, the bind
// mounts its hooks made into the target root (and the ones it was given):
// each as a host source directory and a destination inside the image.
// Only mounts of the top level below root are returned (a recursive bind
// brings what is below). A mount whose source is not a host path (a tmpfs,
// a bind from inside the target itself) cannot be carried; it is named in
// the notes.
func carriedMounts(table []mountEntry, root string, pseudo bool) ([]Mount, []string) {
	root = filepath.Clean(root)
	byID := map[int]mountEntry{}
	for _, e := range table {
		byID[e.ID] = e
	}
	skip := func(p string) bool {
		if !strings.HasPrefix(p, root+"/") {
			return true
		}
		if pseudo {
			rel := strings.TrimPrefix(p, root)
			for _, d := range []string{"/proc", "/sys", "/dev"} {
				if under(rel, d) {
					return true
				}
			}
		}
		return false
	}
	var mounts []Mount
	var notes []string
	seen := map[string]bool{}
	for _, e := range table {
		if skip(e.Point) {
			continue
		}
		// Below another carried mount: it comes along with that one.
		if p, ok := byID[e.Parent]; ok && !skip(p.Point) {
			continue
		}
		dest := strings.TrimPrefix(e.Point, root)
		if seen[dest] {
			continue // mounted twice at one place: the table lists both
		}
		seen[dest] = true
		src, ok := hostSource(table, e, root)
		if !ok {
			notes = append(notes, fmt.Sprintf("the %s mount a hook made at %s is not a bind mount of a host directory; later phases will not see it", e.FSType, dest))
			continue
		}
		mounts = append(mounts, Mount{Source: src, Destination: dest})
	}
	sort.Slice(mounts, func(i, j int) bool { return mounts[i].Destination < mounts[j].Destination })
	return mounts, notes
}

// hostSource finds the host path a bind mount shows: a mount of the same
// filesystem outside the target whose root contains the bind's root.
func hostSource(table []mountEntry, m mountEntry, root string) (string, bool) {
	best := -1
	for i, e := range table {
		if e.Dev != m.Dev || under(e.Point, root) {
			continue
		}
		if !under(m.Root, e.Root) && e.Root != "/" {
			continue
		}
		if best < 0 || len(e.Root) > len(table[best].Root) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	ref := table[best]
	rel := m.Root
	if ref.Root != "/" {
		rel = strings.TrimPrefix(m.Root, ref.Root)
	}
	return filepath.Join(ref.Point, rel), true
}
