package assemble

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// Reading DIB's block-device YAML: both of DIB's forms (the tree, where
// entries nest, and the graph, where each names its base) become the
// graph form, as DIB's config.py makes it, with the line of every key kept
// for messages. blockdevice_graph.go checks the entries and builds the
// Layout.

// ConfigError is a block-device configuration error, with DIB's wording,
// located in its source.
type ConfigError struct {
	Source string
	Line   int // 0 when no single line is to blame
	Msg    string
}

// Error is one line: the names a layout gives are quoted into its
// messages, and a name may hold a newline or another control character,
// which is shown escaped.
func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Source, e.Msg)
	if e.Line > 0 {
		msg = fmt.Sprintf("%s:%d: %s", e.Source, e.Line, e.Msg)
	}
	if !strings.ContainsFunc(msg, unicode.IsControl) {
		return msg
	}
	var b strings.Builder
	for _, r := range msg {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
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
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("DIB_BLOCK_DEVICE_CONFIG=%s: %w; give file:// an existing YAML file, or the YAML itself", value, err)
		}
		return ParseBlockDeviceConfigFrom(p, data)
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

// The block-device plugins DIB registers.
var blockDevicePlugins = []string{"local_loop", "partitioning", "lvm", "mkfs", "mount", "fstab"}

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
