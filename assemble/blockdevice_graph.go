package assemble

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// From graph-form entries to a Layout: each plugin's checks, with DIB's
// messages and in DIB's order, the dependency graph of the nodes and its
// call order, and the checks that need the whole layout. LVM's entry is
// blockdevice_lvm.go; labels and the root merge are labels.go.

// graphNode is a node of DIB's dependency graph.
type graphNode struct {
	name string
	line int
	from []string // edges into this node
}

// buildLayout checks the graph-form entries the way DIB's plugins and
// create_graph do, in the same order, and builds the Layout. It also
// returns DIB's call order (a topological sort of the graph).
//
// With merge false it skips DIB's mkfs_root merge, as DIB's own unit tests
// (which call create_graph directly) do.
func buildLayout(source string, entries []cfgEntry, merge bool) (*Layout, []string, error) {
	l := &Layout{Source: source}
	cerr := func(line int, format string, a ...any) error {
		return &ConfigError{Source: source, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	var nodes []graphNode
	index := map[string]int{}
	addNode := func(name string, line int, from ...string) error {
		if i, dup := index[name]; dup {
			return cerr(line, "Duplicate node name: %s (first defined at line %d)", name, nodes[i].line)
		}
		index[name] = len(nodes)
		nodes = append(nodes, graphNode{name: name, line: line, from: from})
		return nil
	}
	warn := func(line int, format string, a ...any) {
		l.Warnings = append(l.Warnings, fmt.Sprintf("%s:%d: ", source, line)+fmt.Sprintf(format, a...))
	}
	unknownKeys := func(e cfgEntry, known ...string) {
		for _, k := range e.keys {
			if k != "name" && k != "base" && !slices.Contains(known, k) {
				warn(e.lineOf(k), "%s %s: unknown key %q is ignored", e.plugin, e.values["name"], k)
			}
		}
	}
	type mountRef struct {
		fs    string // mkfs node
		mount Mount
		line  int
	}
	var mounts []mountRef
	type fstabRef struct {
		base string
		e    FstabEntry
		line int
		set  map[string]bool // the keys the YAML gave
	}
	var fstabs []fstabRef
	fsIndex := map[string]int{}
	labels := map[string]string{} // label -> filesystem

	for _, e := range entries {
		name, _ := e.str("name")
		switch e.plugin {
		case "local_loop":
			if l.Image.Name != "" {
				return nil, nil, cerr(e.line, "a second local_loop %s: builder makes one image (the first is %s)", name, l.Image.Name)
			}
			unknownKeys(e, "size", "directory", "block_size", "mkfs")
			l.Image = LoopImage{Name: name, BlockSize: SectorSize}
			if s, ok := e.str("size"); ok {
				sz, err := ParseSize(s)
				if err != nil || sz.Relative || sz.Bytes <= 0 {
					return nil, nil, cerr(e.lineOf("size"), "local_loop %s: size %q must be an absolute size such as 4GiB", name, s)
				}
				l.Image.SizeBytes = sz.Bytes
			}
			if s, ok := e.str("block_size"); ok {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || (n != 512 && n != 4096) {
					return nil, nil, cerr(e.lineOf("block_size"), "local_loop %s: block_size %q must be 512 or 4096", name, s)
				}
				l.Image.BlockSize = n
			}
			if err := addNode(name, e.line); err != nil {
				return nil, nil, err
			}

		case "partitioning":
			if l.Partitioning != nil {
				return nil, nil, cerr(e.line, "a second partitioning entry: builder writes one partition table")
			}
			unknownKeys(e, "label", "align", "partitions")
			base, ok := e.str("base")
			if !ok {
				return nil, nil, cerr(e.line, "Partitioning config needs 'base'")
			}
			if _, ok := e.lines["partitions"]; !ok {
				return nil, nil, cerr(e.line, "Partitioning config needs 'partitions'")
			}
			label, ok := e.str("label")
			if !ok {
				return nil, nil, cerr(e.line, "Partitioning config needs 'label'")
			}
			if label != "mbr" && label != "gpt" {
				return nil, nil, cerr(e.lineOf("label"), "Label must be 'mbr' or 'gpt' (got %q)", label)
			}
			p := &Partitioning{Base: base, Label: TableKind(label), AlignBytes: MiB}
			if _, given := e.lines["name"]; given {
				p.Name = name
			}
			if s, ok := e.str("align"); ok {
				sz, err := ParseSize(s)
				if err != nil || sz.Relative || sz.Bytes <= 0 || sz.Bytes%MiB != 0 {
					return nil, nil, cerr(e.lineOf("align"), "align %q: builder aligns partitions to whole MiB; give 1MiB or a multiple", s)
				}
				p.AlignBytes = sz.Bytes
			}
			prev := ""
			for _, pe := range e.parts {
				unknownKeys(pe, "name", "size", "flags", "type")
				pname, ok := pe.str("name")
				if !ok || pname == "" {
					return nil, nil, cerr(pe.line, "No name in partition: every partition needs a name")
				}
				ps := PartitionSpec{Name: pname}
				if fl, ok := pe.values["flags"]; ok {
					list, isList := fl.([]any)
					if !isList {
						return nil, nil, cerr(pe.lineOf("flags"), "partition %s: flags must be a list such as [boot, primary]", pname)
					}
					for _, f := range list {
						switch f {
						case "boot":
							ps.Boot = true
						case "primary":
							if p.Label == GPT {
								return nil, nil, cerr(pe.lineOf("flags"), "Primary flag not supported for GPT partitions (partition %s)", pname)
							}
							ps.Primary = true
						default:
							return nil, nil, cerr(pe.lineOf("flags"), "Unknown flag: %v (partition %s; flags are boot and primary)", f, pname)
						}
					}
				}
				s, ok := pe.str("size")
				if !ok {
					return nil, nil, cerr(pe.line, "No size in partition %s", pname)
				}
				sz, err := ParseSize(s)
				if err != nil {
					return nil, nil, cerr(pe.lineOf("size"), "partition %s: %v", pname, err)
				}
				ps.Size = sz
				ps.Type, _ = pe.str("type")
				if err := resolvePartitionType(p.Label, &ps); err != nil {
					return nil, nil, cerr(pe.lineOf("type"), "partition %s: %v", pname, err)
				}
				p.Partitions = append(p.Partitions, ps)
				from := []string{base}
				if prev != "" {
					from = append(from, prev)
				}
				if err := addNode(pname, pe.line, from...); err != nil {
					return nil, nil, err
				}
				prev = pname
			}
			l.Partitioning = p

		case "lvm":
			if l.LVM != nil {
				return nil, nil, cerr(e.line, "a second lvm entry: put every pv, vg and lv in one")
			}
			unknownKeys(e, "pvs", "vgs", "lvs")
			lv, lvNodes, err := parseLVM(source, e, name)
			if err != nil {
				return nil, nil, err
			}
			l.LVM = lv
			for _, n := range lvNodes {
				if err := addNode(n.name, n.line, n.from...); err != nil {
					return nil, nil, err
				}
			}

		case "mkfs":
			unknownKeys(e, "type", "label", "opts", "uuid")
			base, ok := e.str("base")
			if !ok {
				return nil, nil, cerr(e.line, "Mkfs config needs [base] (mkfs %s)", name)
			}
			fs := Filesystem{Name: name, Base: base}
			fs.Type, fs.typeSet = e.str("type")
			fs.Label, fs.labelSet = e.str("label")
			if o, ok := e.str("opts"); ok {
				fs.Opts, fs.optsSet = strings.Fields(o), true
			}
			fs.UUID, _ = e.str("uuid")
			if !fs.typeSet && (name != "mkfs_root" || !merge) {
				return nil, nil, cerr(e.line, "Mkfs config needs [type] (mkfs %s)", name)
			}
			if merge {
				mergeRoot(&fs, "", "", nil)
			} else {
				defaultLabel(&fs)
			}
			if err := checkFSType(fs); err != nil {
				return nil, nil, cerr(e.lineOf("type"), "%v", err)
			}
			if err := checkLabel(fs, labels); err != nil {
				return nil, nil, cerr(e.lineOf("label"), "%v", err)
			}
			labels[fs.Label] = fs.Name
			fsIndex[name] = len(l.Filesystems)
			l.Filesystems = append(l.Filesystems, fs)
			if err := addNode(name, e.line, base); err != nil {
				return nil, nil, err
			}

		case "mount":
			unknownKeys(e, "mount_point")
			base, ok := e.str("base")
			if !ok {
				return nil, nil, cerr(e.line, "MountPoint config needs [base] (mount %s)", name)
			}
			mp, ok := e.str("mount_point")
			if !ok {
				return nil, nil, cerr(e.line, "MountPoint config needs [mount_point] (mount %s)", name)
			}
			if mp != "none" && (!strings.HasPrefix(mp, "/") || path.Clean(mp) != mp || strings.IndexFunc(mp, unicode.IsControl) >= 0) {
				// A newline would also break /etc/fstab in two.
				return nil, nil, cerr(e.lineOf("mount_point"), "mount %s: mount_point %q must be a clean absolute path without control characters, or none for swap", name, mp)
			}
			for _, m := range mounts {
				if m.mount.MountPoint == mp {
					return nil, nil, cerr(e.lineOf("mount_point"), "Mount point [%s] specified more than once (also at line %d)", mp, m.line)
				}
			}
			mounts = append(mounts, mountRef{fs: base, mount: Mount{Name: name, MountPoint: mp}, line: e.line})
			// The mount-order edge (each mount after the one before it)
			// is added below, once every mount point is known.
			if err := addNode(name, e.line, base); err != nil {
				return nil, nil, err
			}

		case "fstab":
			unknownKeys(e, "options", "dump-freq", "fsck-passno")
			base, ok := e.str("base")
			if !ok {
				return nil, nil, cerr(e.line, "fstab %s needs a base (the mount entry)", name)
			}
			f := FstabEntry{Name: name, Options: "defaults", FsckPassno: 2}
			set := map[string]bool{}
			for _, k := range []string{"options", "dump-freq", "fsck-passno"} {
				_, set[k] = e.values[k]
			}
			if o, ok := e.str("options"); ok {
				// One fstab field: blanks would shift the others.
				if o == "" || strings.IndexFunc(o, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
					return nil, nil, cerr(e.lineOf("options"), "fstab %s: options %q must be comma-separated, without blanks (e.g. defaults,noatime)", name, o)
				}
				f.Options = o
			}
			for _, k := range []struct {
				key string
				dst *int
			}{{"dump-freq", &f.DumpFreq}, {"fsck-passno", &f.FsckPassno}} {
				if s, ok := e.str(k.key); ok {
					n, err := strconv.Atoi(s)
					if err != nil || n < 0 {
						return nil, nil, cerr(e.lineOf(k.key), "fstab %s: %s %q must be a number", name, k.key, s)
					}
					*k.dst = n
				}
			}
			fstabs = append(fstabs, fstabRef{base: base, e: f, line: e.line, set: set})
			if err := addNode(name, e.line, base); err != nil {
				return nil, nil, err
			}
		}
	}

	// Mounts and fstab entries attach to their filesystems.
	order := sortMountPoints(mounts, func(m mountRef) string { return m.mount.MountPoint })
	for i, m := range order {
		if i > 0 {
			n := &nodes[index[m.mount.Name]]
			n.from = append(n.from, order[i-1].mount.Name)
		}
	}
	for _, m := range mounts {
		i, ok := fsIndex[m.fs]
		if !ok {
			continue // an edge error below names it, or it is no mkfs
		}
		fs := &l.Filesystems[i]
		if fs.Mount != nil {
			return nil, nil, cerr(m.line, "mount %s: filesystem %s is already mounted by %s", m.mount.Name, fs.Name, fs.Mount.Name)
		}
		mount := m.mount
		if (fs.Type == "swap") != (mount.MountPoint == "none") {
			return nil, nil, cerr(m.line, "mount %s: mount_point %s for a %s filesystem: swap takes mount_point none, other filesystems a path", mount.Name, mount.MountPoint, fs.Type)
		}
		fs.Mount = &mount
	}
	for _, f := range fstabs {
		found := false
		for i := range l.Filesystems {
			fs := &l.Filesystems[i]
			if fs.Mount == nil || fs.Mount.Name != f.base {
				continue
			}
			if fs.Mount.Fstab != nil {
				return nil, nil, cerr(f.line, "fstab %s: mount %s already has the fstab entry %s", f.e.Name, f.base, fs.Mount.Fstab.Name)
			}
			e := f.e
			if fs.Type == "swap" {
				e = swapFstab(e, f.set)
			}
			fs.Mount.Fstab = &e
			found = true
		}
		if _, isNode := index[f.base]; !found && isNode {
			return nil, nil, cerr(f.line, "fstab %s: base %s is not a mount entry", f.e.Name, f.base)
		}
	}

	// Edges, as create_graph checks them.
	for _, n := range nodes {
		for _, from := range n.from {
			if _, ok := index[from]; !ok {
				return nil, nil, cerr(n.line, "Edge not defined: %s->%s (no node is named %s: fix the base of %s)", from, n.name, from, n.name)
			}
		}
	}
	for _, m := range mounts {
		if _, ok := fsIndex[m.fs]; !ok {
			return nil, nil, cerr(m.line, "mount %s: base %s is not a mkfs entry", m.mount.Name, m.fs)
		}
	}
	callOrder, err := topoSort(nodes, index)
	if err != nil {
		return nil, nil, &ConfigError{Source: source, Msg: err.Error()}
	}
	if err := l.checkVolumes(); err != nil {
		return nil, nil, &ConfigError{Source: source, Msg: err.Error()}
	}
	return l, callOrder, nil
}

// swapFstab gives swap DIB's "sw 0 0" where the entry does not say
// otherwise.
func swapFstab(e FstabEntry, set map[string]bool) FstabEntry {
	if !set["options"] {
		e.Options = "sw"
	}
	if !set["fsck-passno"] {
		e.FsckPassno = 0
	}
	return e
}

// checkVolumes checks what the graph does not: every volume holds one
// thing, and filesystems and PVs sit on volumes that exist.
func (l *Layout) checkVolumes() error {
	users := map[string]string{}
	use := func(vol, user string) error {
		if other, ok := users[vol]; ok {
			return fmt.Errorf("%s is used by both %s and %s: a partition or logical volume holds one filesystem or physical volume", vol, other, user)
		}
		users[vol] = user
		return nil
	}
	if l.LVM != nil {
		if l.Partitioning == nil {
			return errors.New("lvm needs a partitioning entry for its physical volumes")
		}
		for _, pv := range l.LVM.PVs {
			if !slices.ContainsFunc(l.Partitioning.Partitions, func(p PartitionSpec) bool { return p.Name == pv.Base }) {
				return fmt.Errorf("pv %s: base %s is not a partition", pv.Name, pv.Base)
			}
			if err := use(pv.Base, "pv "+pv.Name); err != nil {
				return err
			}
		}
	}
	for _, fs := range l.Filesystems {
		if l.volumeKind(fs.Base) == "" {
			return fmt.Errorf("mkfs %s: base %s is not a partition, logical volume or image", fs.Name, fs.Base)
		}
		if err := use(fs.Base, "mkfs "+fs.Name); err != nil {
			return err
		}
	}
	if l.Partitioning != nil && l.Partitioning.Base != l.Image.Name {
		return fmt.Errorf("partitioning base %s is not the local_loop image %s", l.Partitioning.Base, l.Image.Name)
	}
	return nil
}

// topoSort returns the node names in dependency order, earliest-defined
// first among the ready ones, as a stable stand-in for networkx's sort.
func topoSort(nodes []graphNode, index map[string]int) ([]string, error) {
	indeg := make([]int, len(nodes))
	next := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, f := range n.from {
			j := index[f]
			indeg[i]++
			next[j] = append(next[j], i)
		}
	}
	var order []string
	done := make([]bool, len(nodes))
	for len(order) < len(nodes) {
		pick := -1
		for i := range nodes {
			if !done[i] && indeg[i] == 0 {
				pick = i
				break
			}
		}
		if pick < 0 {
			var cyc []string
			for i, n := range nodes {
				if !done[i] {
					cyc = append(cyc, n.name)
				}
			}
			return nil, fmt.Errorf("the entries %s depend on each other in a cycle", strings.Join(cyc, ", "))
		}
		done[pick] = true
		order = append(order, nodes[pick].name)
		for _, j := range next[pick] {
			indeg[j]--
		}
	}
	return order, nil
}
