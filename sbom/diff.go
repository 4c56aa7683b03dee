package sbom

import (
	"sort"
)

// PackageChange is a package whose version differs between two SBOMs.
type PackageChange struct {
	Manager string `json:"manager"`
	Name    string `json:"name"`
	Arch    string `json:"arch,omitempty"`
	Old     string `json:"old"`
	New     string `json:"new"`
}

// FileChange is a path present in both inventories that differs: What
// lists content (the sha256, or a link's target, or a device's numbers),
// type, mode and owner, in that order.
type FileChange struct {
	Path string   `json:"path"`
	What []string `json:"what"`
	Old  File     `json:"old"`
	New  File     `json:"new"`
}

// Diff is what changed from one SBOM to another.
type Diff struct {
	Added      []Package       `json:"added"`
	Removed    []Package       `json:"removed"`
	Upgraded   []PackageChange `json:"upgraded"`
	Downgraded []PackageChange `json:"downgraded"`
	// FilesCompared is false when either side has no file inventory
	// (Notes says which); the file lists are then empty.
	FilesCompared bool         `json:"filesCompared"`
	FilesAdded    []File       `json:"filesAdded"`
	FilesRemoved  []File       `json:"filesRemoved"`
	FilesChanged  []FileChange `json:"filesChanged"`
	Notes         []string     `json:"notes,omitempty"`
}

// Equal reports whether nothing that was compared differs.
func (d Diff) Equal() bool {
	return len(d.Added)+len(d.Removed)+len(d.Upgraded)+len(d.Downgraded)+
		len(d.FilesAdded)+len(d.FilesRemoved)+len(d.FilesChanged) == 0
}

// Compare says what changed from old to new: packages by manager, name and
// architecture (a version change is an upgrade or a downgrade by the
// package manager's own ordering; a name installed in several versions, as
// rpm's kernels, is compared version by version), and files by path when
// both have an inventory.
func Compare(old, new *Document) Diff {
	d := Diff{Added: []Package{}, Removed: []Package{}, Upgraded: []PackageChange{}, Downgraded: []PackageChange{},
		FilesAdded: []File{}, FilesRemoved: []File{}, FilesChanged: []FileChange{}}
	group := func(pkgs []Package) (map[string][]Package, []string) {
		m := map[string][]Package{}
		for _, p := range pkgs {
			m[p.key()] = append(m[p.key()], p)
		}
		return m, sortedKeys(m)
	}
	om, okeys := group(old.Packages())
	nm, nkeys := group(new.Packages())
	keys := map[string]bool{}
	for _, k := range append(okeys, nkeys...) {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		gone, came := minus(om[k], nm[k]), minus(nm[k], om[k])
		if len(gone) == 1 && len(came) == 1 {
			o, n := gone[0], came[0]
			c := PackageChange{Manager: n.Manager, Name: n.Name, Arch: n.Arch, Old: o.Version, New: n.Version}
			if CompareVersions(n.Manager, o.Version, n.Version) > 0 {
				d.Downgraded = append(d.Downgraded, c)
			} else {
				d.Upgraded = append(d.Upgraded, c)
			}
			continue
		}
		d.Removed = append(d.Removed, gone...)
		d.Added = append(d.Added, came...)
	}

	switch {
	case old.Files == nil:
		d.Notes = append(d.Notes, "files not compared: "+noteOr(old.InventoryNote, "the old SBOM has no file inventory"))
		return d
	case new.Files == nil:
		d.Notes = append(d.Notes, "files not compared: "+noteOr(new.InventoryNote, "the new SBOM has no file inventory"))
		return d
	}
	d.FilesCompared = true
	of := map[string]File{}
	for _, f := range old.Files {
		of[f.Path] = f
	}
	seen := map[string]bool{}
	for _, n := range new.Files {
		seen[n.Path] = true
		o, ok := of[n.Path]
		if !ok {
			d.FilesAdded = append(d.FilesAdded, n)
			continue
		}
		if what := fileDiffers(o, n); len(what) > 0 {
			d.FilesChanged = append(d.FilesChanged, FileChange{Path: n.Path, What: what, Old: o, New: n})
		}
	}
	for _, o := range old.Files {
		if !seen[o.Path] {
			d.FilesRemoved = append(d.FilesRemoved, o)
		}
	}
	sort.Slice(d.FilesAdded, func(i, j int) bool { return d.FilesAdded[i].Path < d.FilesAdded[j].Path })
	sort.Slice(d.FilesRemoved, func(i, j int) bool { return d.FilesRemoved[i].Path < d.FilesRemoved[j].Path })
	sort.Slice(d.FilesChanged, func(i, j int) bool { return d.FilesChanged[i].Path < d.FilesChanged[j].Path })
	return d
}

func noteOr(note, def string) string {
	if note != "" {
		return note
	}
	return def
}

// minus is the packages of a whose version b does not have.
func minus(a, b []Package) []Package {
	var out []Package
	for _, x := range a {
		found := false
		for _, y := range b {
			if x.Version == y.Version {
				found = true
				break
			}
		}
		if !found {
			out = append(out, x)
		}
	}
	return out
}

func fileDiffers(o, n File) []string {
	var what []string
	if o.SHA256 != n.SHA256 || o.Target != n.Target || o.Device != n.Device || o.Size != n.Size {
		what = append(what, "content")
	}
	if o.Type != n.Type {
		what = append(what, "type")
	}
	if o.Mode != n.Mode {
		what = append(what, "mode")
	}
	if o.UID != n.UID || o.GID != n.GID {
		what = append(what, "owner")
	}
	return what
}
