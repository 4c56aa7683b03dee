package assemble

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Layout is a DIB block-device configuration ("block-device-default.yaml",
// DIB_BLOCK_DEVICE_CONFIG) as plain data: one image, an optional partition
// table, optional LVM, and the filesystems with their mounts and fstab
// entries. ParseBlockDeviceConfig reads DIB's tree and graph forms alike;
// MergeRoot applies the image-wide root options as DIB's mkfs_root merge
// does; AssignIDs fills the identifiers the YAML leaves open. PlanDisk and
// BuildDisk lay a tree onto it.
type Layout struct {
	Source       string        // where the YAML came from, for messages
	Image        LoopImage     // the local_loop entry
	Partitioning *Partitioning // nil: filesystems sit on the whole image (DIB's fallback)
	LVM          *LVM          // nil without an lvm entry
	// Filesystems are the mkfs entries in the order DIB flattens the
	// config (children of a tree entry before the entry itself).
	Filesystems []Filesystem
	// Warnings name keys DIB would ignore (typos such as "fck-passno").
	Warnings []string
}

// LoopImage is DIB's local_loop entry: the disk image itself.
type LoopImage struct {
	Name      string // node name, usually image0
	SizeBytes int64  // local_loop "size"; 0 = not given (--image-size, else automatic)
	BlockSize int64  // logical sector size; only 512 is supported
}

// Partitioning is DIB's partitioning entry.
type Partitioning struct {
	Name       string    // the entry's name; DIB gives it no node of its own
	Base       string    // the image node
	Label      TableKind // MBR or GPT
	AlignBytes int64     // MBR partition alignment ("align"), default 1 MiB
	// DiskGUID is the GPT disk GUID, or for MBR the 32-bit disk signature
	// as 8 hex digits; AssignIDs fills it in.
	DiskGUID   string
	Partitions []PartitionSpec
}

// PartitionSpec is one item of "partitions".
type PartitionSpec struct {
	Name string // node name and GPT partition name
	Size Size
	// Boot sets the MBR active flag (GPT: ignored, as DIB's sgdisk call
	// ignores it). Primary makes an MBR primary partition; the others are
	// logical partitions in an extended partition, as DIB's MBR writer
	// lays them out.
	Boot, Primary bool
	Type          string // as written: MBR hex ("0x83"), GPT sgdisk code ("EF00") or GUID; "" = default
	MBRType       byte   // resolved MBR type (0 when Type does not fit in a byte)
	TypeGUID      string // resolved GPT type GUID
	GUID          string // GPT partition GUID; AssignIDs fills it in
}

// LVM is DIB's lvm entry.
type LVM struct {
	Name string
	PVs  []PhysicalVolume
	VGs  []VolumeGroup
	LVs  []LogicalVolume
}

// PhysicalVolume is a pvs item: a PV made on a partition.
type PhysicalVolume struct {
	Name, Base string
	Options    []string // passed to pvcreate
}

// VolumeGroup is a vgs item.
type VolumeGroup struct {
	Name    string
	Base    []string // PV names
	Options []string // passed to vgcreate
}

// LogicalVolume is an lvs item: exactly one of Size and Extents is set.
type LogicalVolume struct {
	Name, Base string // Base is the VG
	// Size is absolute; DIB floors it to 4 MiB and passes "-L <bytes>B".
	Size    Size
	Extents string // lvcreate -l: "N", "N%VG" or "N%FREE"
	// Type is "", "thin-pool" or "thin" (then ThinPool names the pool).
	Type, ThinPool string
	Options        []string // passed to lvcreate
}

// Filesystem is a mkfs entry with its mount and fstab entries.
type Filesystem struct {
	Name string // node name (mkfs_root, ...)
	Base string // the partition, LV or image it is made on
	Type string // ext2, ext3, ext4, xfs, vfat or swap
	// Label defaults to the node name (upper-cased for vfat); mkfs_root
	// gets cloudimg-rootfs (img-rootfs for xfs) from MergeRoot.
	Label string
	// UUID is the filesystem UUID (ext*, xfs, swap) or, for vfat, the
	// volume id as XXXX-XXXX. AssignIDs fills it in.
	UUID  string
	Opts  []string // extra mkfs options, as DIB's space-split "opts"
	Mount *Mount   // nil: made but not mounted (and not in fstab)

	// Which keys the YAML set: MergeRoot fills only the others.
	typeSet, labelSet, optsSet bool
}

// Mount is a mount entry: where the filesystem goes in the image's tree.
type Mount struct {
	Name       string
	MountPoint string      // absolute path, or "none" for swap
	Fstab      *FstabEntry // nil: no /etc/fstab line
}

// FstabEntry is an fstab entry.
type FstabEntry struct {
	Name       string
	Options    string // default "defaults" ("sw" for swap)
	DumpFreq   int    // default 0
	FsckPassno int    // default 2 (0 for swap)
}

// Size is a DIB size: absolute in DIB's units, or N% of the space still
// free at that point.
type Size struct {
	Spec     string  // as written
	Relative bool    // N%
	Percent  float64 // N, when Relative
	Bytes    int64   // when absolute
}

// The block-device plugins DIB registers.
var blockDevicePlugins = []string{"local_loop", "partitioning", "lvm", "mkfs", "mount", "fstab"}

// maxLabelLength is DIB's label limit per filesystem type (swap's is
// mkswap's).
var maxLabelLength = map[string]int{"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "vfat": 11, "swap": 16}

// sizeUnits is DIB's unit table: binary prefixes with "iB", decimal
// otherwise, bytes without a unit.
var sizeUnits = map[string]float64{
	"TiB": 1 << 40, "GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10,
	"TB": 1e12, "GB": 1e9, "MB": 1e6, "KB": 1e3,
	"T": 1e12, "G": 1e9, "M": 1e6, "K": 1e3,
	"B": 1, "": 1,
}

var sizeRe = regexp.MustCompile(`^([\d.]*) ?([a-zA-Z0-9_]*)$`)

// extentsRe is the lvcreate -l forms builder can plan for.
var extentsRe = regexp.MustCompile(`^[0-9]+(%(VG|FREE))?$`)

// ParseSize reads a DIB size: "100%", "8MiB", "1.5G", "4096", "3 GB".
// The arithmetic is DIB's (float64, truncated), so sizes match byte for
// byte.
func ParseSize(spec string) (Size, error) {
	s := Size{Spec: spec}
	if p, ok := strings.CutSuffix(spec, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 || f > 100 {
			return s, fmt.Errorf("size %q: a percentage must be a number from 0 to 100", spec)
		}
		s.Relative, s.Percent = true, f
		return s, nil
	}
	m := sizeRe.FindStringSubmatch(spec)
	if m == nil {
		return s, fmt.Errorf("invalid size %q: give a number and a unit such as 512MiB, 2G or 100%%", spec)
	}
	unit, ok := sizeUnits[m[2]]
	if !ok {
		return s, fmt.Errorf("size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, or K, M, G, T (powers of 1000))", spec, m[2])
	}
	n := 1.0
	if m[1] != "" {
		f, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return s, fmt.Errorf("size %q: %q is not a number", spec, m[1])
		}
		n = f
	}
	b := unit * n
	if b > math.MaxInt64/2 {
		return s, fmt.Errorf("size %q is too large", spec)
	}
	s.Bytes = int64(b)
	return s, nil
}

// Of resolves the size against free, the bytes still free at that point.
func (s Size) Of(free int64) int64 {
	if s.Relative {
		return int64(float64(free) * s.Percent / 100.0)
	}
	return s.Bytes
}

func (s Size) String() string { return s.Spec }

// ConfigError is a block-device configuration error, with DIB's wording,
// located in its source.
type ConfigError struct {
	Source string
	Line   int // 0 when no single line is to blame
	Msg    string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Source, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Source, e.Msg)
}

// ParseBlockDeviceConfig reads a DIB block-device YAML (tree or graph
// form, or both mixed), checks it as DIB does, and applies DIB's defaults
// (MergeRoot with no options: ext4, label cloudimg-rootfs).
func ParseBlockDeviceConfig(data []byte) (*Layout, error) {
	return ParseBlockDeviceConfigFrom("block-device config", data)
}

// ReadBlockDeviceConfig reads a block-device YAML file, e.g. an element's
// block-device-default.yaml.
func ReadBlockDeviceConfig(file string) (*Layout, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("block-device config: %w", err)
	}
	return ParseBlockDeviceConfigFrom(file, data)
}

// LoadBlockDeviceConfig reads DIB_BLOCK_DEVICE_CONFIG's value: "file://PATH"
// or the YAML itself.
func LoadBlockDeviceConfig(value string) (*Layout, error) {
	if p, ok := strings.CutPrefix(value, "file://"); ok {
		return ReadBlockDeviceConfig(p)
	}
	return ParseBlockDeviceConfigFrom("DIB_BLOCK_DEVICE_CONFIG", []byte(value))
}

// ParseBlockDeviceConfigFrom is ParseBlockDeviceConfig with the name errors
// use for the source.
func ParseBlockDeviceConfigFrom(source string, data []byte) (*Layout, error) {
	entries, err := flattenConfig(source, data)
	if err != nil {
		return nil, err
	}
	l, _, err := buildLayout(source, entries, true)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// cfgEntry is one node of DIB's graph form, as config.py's recurse_config
// produces it: values as DIB sees them (scalars as written, name and base
// filled in), with the line of each key.
type cfgEntry struct {
	plugin string
	line   int
	values map[string]any
	lines  map[string]int
	keys   []string   // in the order written
	parts  []cfgEntry // partitioning: its partitions, each with "base"
}

func (e cfgEntry) str(k string) (string, bool) {
	v, ok := e.values[k]
	if !ok || v == nil {
		return "", false
	}
	s, isStr := v.(string)
	return s, isStr
}

func (e cfgEntry) lineOf(k string) int {
	if l := e.lines[k]; l > 0 {
		return l
	}
	return e.line
}

// flattenConfig parses the YAML and converts the tree form to the graph
// form as DIB's config_tree_to_graph does: a plugin key nested in an entry
// becomes its own entry based on its parent; a missing name becomes
// "<plugin>_<base>"; plugin keys inside a partition are based on the
// partition.
func flattenConfig(source string, data []byte) ([]cfgEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ConfigError{Source: source, Msg: fmt.Sprintf("invalid YAML: %v", err)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &ConfigError{Source: source, Msg: "the config is empty: give a list of block-device entries"}
	}
	top := resolveAlias(doc.Content[0])
	if top.Kind != yaml.SequenceNode {
		return nil, &ConfigError{Source: source, Line: top.Line, Msg: "the config must be a list of entries such as \"- local_loop: {name: image0}\""}
	}
	var out []cfgEntry
	for _, item := range top.Content {
		item = resolveAlias(item)
		if item.Kind != yaml.MappingNode {
			return nil, &ConfigError{Source: source, Line: item.Line, Msg: fmt.Sprintf("Config entry not a dict: %s", nodeText(item))}
		}
		if len(item.Content) != 2 {
			var keys []string
			for i := 0; i < len(item.Content); i += 2 {
				keys = append(keys, item.Content[i].Value)
			}
			return nil, &ConfigError{Source: source, Line: item.Line,
				Msg: fmt.Sprintf("Config entry top-level should be a single dict: it has the keys %s; give each plugin its own list item", strings.Join(keys, ", "))}
		}
		k := item.Content[0]
		if !slices.Contains(blockDevicePlugins, k.Value) {
			return nil, &ConfigError{Source: source, Line: k.Line,
				Msg: fmt.Sprintf("Config entry is not a plugin value: %s (plugins: %s)", k.Value, strings.Join(blockDevicePlugins, ", "))}
		}
		es, err := recurseConfig(source, k, item.Content[1], "", false)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

func recurseConfig(source string, key, val *yaml.Node, parentBase string, hasParent bool) ([]cfgEntry, error) {
	val = resolveAlias(val)
	plugin := key.Value
	if val.Kind != yaml.MappingNode {
		return nil, &ConfigError{Source: source, Line: key.Line, Msg: fmt.Sprintf("%s: expected a mapping of settings, got %s", plugin, nodeText(val))}
	}
	this := cfgEntry{plugin: plugin, line: key.Line, values: map[string]any{}, lines: map[string]int{}}
	get := func(k string) *yaml.Node {
		for i := 0; i+1 < len(val.Content); i += 2 {
			if val.Content[i].Value == k {
				return val.Content[i+1]
			}
		}
		return nil
	}
	if b := get("base"); b != nil {
		this.values["base"] = nodeValue(b)
		this.lines["base"] = b.Line
	} else if hasParent {
		this.values["base"] = parentBase
	}
	if n := get("name"); n != nil {
		this.values["name"] = nodeValue(n)
		this.lines["name"] = n.Line
	} else {
		b, ok := this.str("base")
		if !ok {
			return nil, &ConfigError{Source: source, Line: key.Line,
				Msg: fmt.Sprintf("%s entry has no name and no base to derive one from: give it a name", plugin)}
		}
		this.values["name"] = plugin + "_" + b
	}
	name, ok := this.str("name")
	if !ok || name == "" {
		return nil, &ConfigError{Source: source, Line: this.lineOf("name"), Msg: fmt.Sprintf("%s entry: name must be a non-empty string", plugin)}
	}
	var out []cfgEntry
	for i := 0; i+1 < len(val.Content); i += 2 {
		k, v := val.Content[i], resolveAlias(val.Content[i+1])
		switch {
		case k.Value == "partitions":
			if v.Kind != yaml.SequenceNode {
				return nil, &ConfigError{Source: source, Line: k.Line, Msg: "partitions must be a list"}
			}
			this.keys = append(this.keys, "partitions")
			this.lines["partitions"] = k.Line
			for _, p := range v.Content {
				p = resolveAlias(p)
				if p.Kind != yaml.MappingNode {
					return nil, &ConfigError{Source: source, Line: p.Line, Msg: fmt.Sprintf("partition: expected a mapping, got %s", nodeText(p))}
				}
				part := cfgEntry{plugin: "partition", line: p.Line, values: map[string]any{}, lines: map[string]int{}}
				pname := ""
				for j := 0; j+1 < len(p.Content); j += 2 {
					if p.Content[j].Value == "name" {
						pname = p.Content[j+1].Value
					}
				}
				for j := 0; j+1 < len(p.Content); j += 2 {
					pk, pv := p.Content[j], p.Content[j+1]
					if slices.Contains(blockDevicePlugins, pk.Value) {
						if pname == "" {
							return nil, &ConfigError{Source: source, Line: p.Line, Msg: "No name in partition: every partition needs a name"}
						}
						es, err := recurseConfig(source, pk, pv, pname, true)
						if err != nil {
							return nil, err
						}
						out = append(out, es...)
						continue
					}
					part.values[pk.Value] = nodeValue(pv)
					part.lines[pk.Value] = pk.Line
					part.keys = append(part.keys, pk.Value)
				}
				// DIB bases every partition on the partitioning's base,
				// whatever the partition says.
				part.values["base"] = this.values["base"]
				this.parts = append(this.parts, part)
			}
		case slices.Contains(blockDevicePlugins, k.Value):
			es, err := recurseConfig(source, k, v, name, true)
			if err != nil {
				return nil, err
			}
			out = append(out, es...)
		default:
			if k.Value != "name" && k.Value != "base" {
				this.values[k.Value] = nodeValue(v)
				this.lines[k.Value] = k.Line
			}
			this.keys = append(this.keys, k.Value)
		}
	}
	return append(out, this), nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// nodeValue converts YAML to plain values, keeping scalars as written
// (so "type: 0x83" stays "0x83" instead of becoming 131).
func nodeValue(n *yaml.Node) any {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return n.Value
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			l = append(l, nodeValue(c))
		}
		return l
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = nodeValue(n.Content[i+1])
		}
		return m
	}
	return nil
}

func nodeText(n *yaml.Node) string {
	b, err := yaml.Marshal(n)
	if err != nil {
		return "?"
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

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
			if mp != "none" && (!strings.HasPrefix(mp, "/") || path.Clean(mp) != mp) {
				return nil, nil, cerr(e.lineOf("mount_point"), "mount %s: mount_point %q must be a clean absolute path, or none for swap", name, mp)
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
				return nil, nil, cerr(n.line, "Edge not defined: %s->%s", from, n.name)
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

type lvmNode struct {
	name string
	line int
	from []string
}

func parseLVM(source string, e cfgEntry, name string) (*LVM, []lvmNode, error) {
	cerr := func(line int, format string, a ...any) error {
		return &ConfigError{Source: source, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	lv := &LVM{Name: name}
	items := func(key, msg string) ([]map[string]any, error) {
		v, ok := e.values[key]
		if !ok {
			return nil, cerr(e.line, "%s", msg)
		}
		l, ok := v.([]any)
		if !ok {
			return nil, cerr(e.lineOf(key), "lvm %s: %s must be a list", name, key)
		}
		var out []map[string]any
		for _, it := range l {
			m, ok := it.(map[string]any)
			if !ok {
				return nil, cerr(e.lineOf(key), "lvm %s: every %s item must be a mapping", name, key)
			}
			out = append(out, m)
		}
		return out, nil
	}
	strList := func(v any) ([]string, bool) {
		switch t := v.(type) {
		case nil:
			return nil, true
		case string:
			return []string{t}, true
		case []any:
			var out []string
			for _, x := range t {
				s, ok := x.(string)
				if !ok {
					return nil, false
				}
				out = append(out, s)
			}
			return out, true
		}
		return nil, false
	}
	str := func(m map[string]any, k string) (string, bool) {
		s, ok := m[k].(string)
		return s, ok
	}
	pvs, err := items("pvs", "Lvm config requires a 'pvs'")
	if err != nil {
		return nil, nil, err
	}
	vgs, err := items("vgs", "Lvm config needs 'vgs'")
	if err != nil {
		return nil, nil, err
	}
	lvs, err := items("lvs", "Lvm config needs 'lvs'")
	if err != nil {
		return nil, nil, err
	}
	var nodes []lvmNode
	var pvBases []string
	for _, m := range pvs {
		n, ok := str(m, "name")
		if !ok {
			return nil, nil, cerr(e.lineOf("pvs"), "Missing 'name' in pvs config")
		}
		b, ok := str(m, "base")
		if !ok {
			return nil, nil, cerr(e.lineOf("pvs"), "Missing 'base' in pvs_config (pv %s)", n)
		}
		opts, ok := strList(m["options"])
		if !ok {
			return nil, nil, cerr(e.lineOf("pvs"), "pv %s: options must be a list of strings", n)
		}
		lv.PVs = append(lv.PVs, PhysicalVolume{Name: n, Base: b, Options: opts})
		// The LVM node depends on the PVs' partitions, and the PVs on it.
		nodes = append(nodes, lvmNode{name: n, line: e.lineOf("pvs"), from: []string{name}})
		if !slices.Contains(pvBases, b) {
			pvBases = append(pvBases, b)
		}
	}
	for _, m := range vgs {
		n, ok := str(m, "name")
		if !ok {
			return nil, nil, cerr(e.lineOf("vgs"), "Missing 'name' in vgs config")
		}
		base, ok := strList(m["base"])
		if !ok || m["base"] == nil {
			return nil, nil, cerr(e.lineOf("vgs"), "Missing 'base' in vgs config (vg %s)", n)
		}
		for _, b := range base {
			if !slices.ContainsFunc(lv.PVs, func(p PhysicalVolume) bool { return p.Name == b }) {
				return nil, nil, cerr(e.lineOf("vgs"), "base:%s in vgs does not match a valid pvs", b)
			}
		}
		opts, ok := strList(m["options"])
		if !ok {
			return nil, nil, cerr(e.lineOf("vgs"), "vg %s: options must be a list of strings", n)
		}
		lv.VGs = append(lv.VGs, VolumeGroup{Name: n, Base: base, Options: opts})
		nodes = append(nodes, lvmNode{name: n, line: e.lineOf("vgs"), from: base})
	}
	for _, m := range lvs {
		n, ok := str(m, "name")
		if !ok {
			return nil, nil, cerr(e.lineOf("lvs"), "Missing 'name' in lvs config")
		}
		b, ok := str(m, "base")
		if !ok {
			if m["base"] != nil {
				return nil, nil, cerr(e.lineOf("lvs"), "base:%v in lvs does not match a valid vg", m["base"])
			}
			return nil, nil, cerr(e.lineOf("lvs"), "Missing 'base' in lvs config (lv %s)", n)
		}
		_, hasSize := m["size"]
		_, hasExt := m["extents"]
		if !hasSize && !hasExt {
			return nil, nil, cerr(e.lineOf("lvs"), "Missing 'size' or 'extents' in lvs config (lv %s)", n)
		}
		if !slices.ContainsFunc(lv.VGs, func(v VolumeGroup) bool { return v.Name == b }) {
			return nil, nil, cerr(e.lineOf("lvs"), "base:%s in lvs does not match a valid vg", b)
		}
		l := LogicalVolume{Name: n, Base: b}
		if hasSize {
			s, _ := str(m, "size")
			sz, err := ParseSize(s)
			if err != nil || sz.Relative {
				return nil, nil, cerr(e.lineOf("lvs"), "lv %s: size %q must be absolute (use extents: N%%VG for a share of the volume group)", n, s)
			}
			l.Size = sz
		} else {
			l.Extents, _ = str(m, "extents")
			if !extentsRe.MatchString(l.Extents) {
				return nil, nil, cerr(e.lineOf("lvs"), "lv %s: extents %q: give a number of extents, N%%VG or N%%FREE", n, l.Extents)
			}
		}
		l.Type, _ = str(m, "type")
		switch l.Type {
		case "", "thin-pool":
		case "thin":
			if l.ThinPool, ok = str(m, "thin-pool"); !ok {
				return nil, nil, cerr(e.lineOf("lvs"), "lv %s: type thin needs thin-pool: the pool's name", n)
			}
		default:
			return nil, nil, cerr(e.lineOf("lvs"), "Type '%s' is not valid for lvs %s: use thin-pool or thin, or leave it out", l.Type, n)
		}
		opts, ok := strList(m["options"])
		if !ok {
			return nil, nil, cerr(e.lineOf("lvs"), "lv %s: options must be a list of strings", n)
		}
		l.Options = opts
		lv.LVs = append(lv.LVs, l)
		nodes = append(nodes, lvmNode{name: n, line: e.lineOf("lvs"), from: []string{b}})
	}
	// The LVM node itself: a synchronisation point after the partitions.
	nodes = append([]lvmNode{{name: name, line: e.line, from: pvBases}}, nodes...)
	return lv, nodes, nil
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

func checkFSType(fs Filesystem) error {
	if _, ok := maxLabelLength[fs.Type]; !ok {
		return fmt.Errorf("mkfs %s: filesystem type %q is not supported: use ext4, ext3, ext2, xfs, vfat or swap", fs.Name, fs.Type)
	}
	return nil
}

// checkLabel applies DIB's label rules: unique and short enough for the
// filesystem (vfat labels are upper-cased first).
func checkLabel(fs Filesystem, used map[string]string) error {
	if other, dup := used[fs.Label]; dup && other != fs.Name {
		return fmt.Errorf("filesystem label %q is used twice (mkfs %s and %s): labels must be unique", fs.Label, other, fs.Name)
	}
	if max := maxLabelLength[fs.Type]; len(fs.Label) > max {
		return fmt.Errorf("label %q of mkfs %s is too long for %s: %d characters, at most %d", fs.Label, fs.Name, fs.Type, len(fs.Label), max)
	}
	if strings.ContainsFunc(fs.Label, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("label %q of mkfs %s: control characters are not allowed in labels", fs.Label, fs.Name)
	}
	return nil
}

// mergeRoot is DIB's _merge_rootfs_params for one filesystem: only
// mkfs_root, only the keys its YAML lacks.
func mergeRoot(fs *Filesystem, fsType, label string, opts []string) {
	if fs.Name != "mkfs_root" {
		defaultLabel(fs)
		return
	}
	if !fs.typeSet {
		fs.Type = cmp.Or(fsType, "ext4")
	}
	if !fs.optsSet {
		fs.Opts = slices.Clone(opts)
	}
	if !fs.labelSet {
		switch {
		case label != "":
			fs.Label = label
		case fs.Type == "xfs":
			fs.Label = "img-rootfs"
		default:
			fs.Label = DefaultRootLabel
		}
	}
	if fs.Type == "vfat" {
		fs.Label = strings.ToUpper(fs.Label)
	}
}

// defaultLabel is FilesystemNode's label rule: the node name unless the
// YAML gives one, upper-cased for vfat.
func defaultLabel(fs *Filesystem) {
	if !fs.labelSet {
		fs.Label = fs.Name
	}
	if fs.Type == "vfat" {
		fs.Label = strings.ToUpper(fs.Label)
	}
}
