package assemble

import (
	"fmt"
	"regexp"
	"slices"
)

// DIB's lvm entry: its pvs, vgs and lvs, checked as DIB's lvm plugin
// checks them, and their nodes in the graph. Creating the volumes at build
// time is lvm.go.

// extentsRe is the lvcreate -l forms builder can plan for.
var extentsRe = regexp.MustCompile(`^[0-9]+(%(VG|FREE))?$`)

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
