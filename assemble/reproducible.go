package assemble

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// epochEnv names SOURCE_DATE_EPOCH to a tool under the variable it reads
// (mke2fs: E2FSPROGS_FAKE_TIME; mtools, mksquashfs: SOURCE_DATE_EPOCH);
// nothing when the disk is not made reproducible.
func (d *Disk) epochEnv(name string) []string {
	if d.Spec.Epoch <= 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s=%d", name, d.Spec.Epoch)}
}

var (
	inodesPerGroupRe = regexp.MustCompile(`(?m)^Inodes per group:\s+(\d+)$`)
	firstInodeRe     = regexp.MustCompile(`(?m)^First inode:\s+(\d+)$`)
	groupFreeRe      = regexp.MustCompile(`(?m)^Group (\d+):.*\n(?:.*\n)*?\s+Free inodes: ?(.*)$`)
)

// settleExtTimes sets what mke2fs -d and debugfs take from the clock or the
// source tree's inodes rather than from the tree's content: the change,
// access and creation times of every inode in use become epoch, and the
// modification times of files written into the image after mkfs (and of
// their directories) too. The tree's own modification times (no later
// than epoch) stay.
func settleExtTimes(ctx context.Context, img string, epoch int64, written []string, work string) error {
	out, err := run(ctx, "dumpe2fs", img)
	if err != nil {
		return err
	}
	used, err := usedInodes(string(out))
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, ino := range used {
		for _, field := range []string{"ctime", "atime", "crtime"} {
			fmt.Fprintf(&b, "sif <%d> %s %d\n", ino, field, epoch)
		}
	}
	dirs := map[string]bool{"/": true}
	for _, p := range written {
		fmt.Fprintf(&b, "sif %s mtime %d\n", p, epoch)
		for dir := path.Dir(p); ; dir = path.Dir(dir) {
			dirs[dir] = true
			if dir == "/" {
				break
			}
		}
	}
	for dir := range dirs {
		fmt.Fprintf(&b, "sif %s mtime %d\n", dir, epoch)
	}
	script := filepath.Join(work, "settle-times.debugfs")
	if err := os.WriteFile(script, []byte(b.String()), 0o600); err != nil {
		return err
	}
	defer os.Remove(script)
	_, err = runEnv(ctx, []string{fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", epoch)}, "debugfs", "-w", "-f", script, img)
	return err
}

// usedInodes lists the inodes dumpe2fs shows in use: the root and, from
// the first non-reserved inode on, every inode no group lists as free.
func usedInodes(dump string) ([]int, error) {
	m := inodesPerGroupRe.FindStringSubmatch(dump)
	if m == nil {
		return nil, fmt.Errorf("dumpe2fs: no inodes per group")
	}
	perGroup, _ := strconv.Atoi(m[1])
	first := 11
	if m := firstInodeRe.FindStringSubmatch(dump); m != nil {
		first, _ = strconv.Atoi(m[1])
	}
	free := map[int]bool{}
	groups := 0
	for _, g := range groupFreeRe.FindAllStringSubmatch(dump, -1) {
		groups++
		for _, r := range strings.Split(g[2], ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			lo, hi, found := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			z := a
			var err2 error
			if found {
				z, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("dumpe2fs: free inodes %q", r)
			}
			for i := a; i <= z; i++ {
				free[i] = true
			}
		}
	}
	if groups == 0 {
		return nil, fmt.Errorf("dumpe2fs: no groups")
	}
	used := []int{2}
	for i := first; i <= groups*perGroup; i++ {
		if !free[i] {
			used = append(used, i)
		}
	}
	return used, nil
}
