package assemble

import (
	"fmt"
	"strings"
)

// Mount order and /etc/fstab, as DIB's mount_order and writefstab give
// them.

// sortMountPoints orders mounts parents first, otherwise keeping their
// order in the config, and swap ("none", never mounted) last. That is what
// DIB's incremental sort with cmp_mount_order gives for the layouts it
// ships and tests; its comparator is not a total order, so for some
// configs (a swap or /boot written before /) DIB's own order puts a child
// before its parent, which this one never does.
func sortMountPoints[T any](items []T, mp func(T) string) []T {
	var out []T
	done := make([]bool, len(items))
	for len(out) < len(items) {
		for i, it := range items {
			if done[i] {
				continue
			}
			ready := true
			for j, other := range items {
				if !done[j] && j != i && (isParentMount(mp(other), mp(it)) || (mp(it) == "none" && mp(other) != "none")) {
					ready = false
					break
				}
			}
			if ready {
				done[i] = true
				out = append(out, it)
				break
			}
		}
	}
	return out
}

// isParentMount reports whether a is a proper ancestor directory of b.
func isParentMount(a, b string) bool {
	if a == "none" || b == "none" || a == b {
		return false
	}
	return a == "/" || strings.HasPrefix(b, a+"/")
}

// mounted returns the mounted filesystems in mount order: parents before
// children, swap ("none") where the config put it.
func (l *Layout) mounted() []*Filesystem {
	var fss []*Filesystem
	for i := range l.Filesystems {
		if l.Filesystems[i].Mount != nil {
			fss = append(fss, &l.Filesystems[i])
		}
	}
	return sortMountPoints(fss, func(f *Filesystem) string { return f.Mount.MountPoint })
}

// Mounts returns the mount points in mount order (parents first), as
// DIB's mount_order; swap appears as "none".
func (l *Layout) Mounts() []string {
	var out []string
	for _, fs := range l.mounted() {
		out = append(out, fs.Mount.MountPoint)
	}
	return out
}

// Fstab returns /etc/fstab as DIB's writefstab makes it: one line per
// mount with an fstab entry, in mount order,
// "LABEL=<label> <mount point> <type> <options> <dump> <pass>".
func (l *Layout) Fstab() string {
	var b strings.Builder
	for _, fs := range l.mounted() {
		if f := fs.Mount.Fstab; f != nil {
			fmt.Fprintf(&b, "LABEL=%s %s %s %s %d %d\n", fstabEscape(fs.Label), fstabEscape(fs.Mount.MountPoint), fs.Type, f.Options, f.DumpFreq, f.FsckPassno)
		}
	}
	return b.String()
}

// fstabEscape writes spaces, tabs and backslashes as fstab's octal
// escapes (DIB writes them raw, which breaks the line: its own gpt_efi test
// config has a partition named "Root Part").
func fstabEscape(s string) string {
	return strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`).Replace(s)
}
