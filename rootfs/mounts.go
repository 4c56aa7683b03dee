package rootfs

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
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

// parseMountInfo reads a mount table (proc(5): ID PARENT MAJ:MIN ROOT
// POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER).
func parseMountInfo(data []byte) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		e := mountEntry{ID: id, Parent: parent, Dev: f[2], Root: unescapeMount(f[3]), Point: unescapeMount(f[4])}
		for i := 6; i < len(f)-1; i++ {
			if f[i] == "-" {
				e.FSType = f[i+1]
				break
			}
		}
		out = append(out, e)
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
