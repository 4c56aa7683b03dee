package assemble

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "blockdevice", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canonicalGraph renders flattened entries as a sorted list of JSON
// objects, the multiset DIB's assertCountEqual compares.
func canonicalGraph(t *testing.T, entries []cfgEntry) []string {
	t.Helper()
	var out []string
	for _, e := range entries {
		v := map[string]any{}
		for k, x := range e.values {
			v[k] = x
		}
		if e.parts != nil {
			var parts []any
			for _, p := range e.parts {
				parts = append(parts, p.values)
			}
			v["partitions"] = parts
		}
		b, err := json.Marshal(map[string]any{e.plugin: v})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

func flat(t *testing.T, name string) []cfgEntry {
	t.Helper()
	e, err := flattenConfig(name, fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// DIB's test_config: a tree converts to its graph; a graph to itself.
func TestConfigTreeToGraph(t *testing.T) {
	for _, c := range [][2]string{
		{"simple_tree", "simple_graph"},
		{"simple_graph", "simple_graph"},
		{"deep_tree", "deep_graph"},
		{"multiple_partitions_tree", "multiple_partitions_graph"},
		{"multiple_partitions_swap_tree", "multiple_partitions_swap_graph"},
		{"lvm_tree", "lvm_graph"},
	} {
		tree, graph := canonicalGraph(t, flat(t, c[0])), canonicalGraph(t, flat(t, c[1]))
		if !reflect.DeepEqual(tree, graph) {
			t.Errorf("%s does not convert to %s:\n%s\nwant\n%s", c[0], c[1], strings.Join(tree, "\n"), strings.Join(graph, "\n"))
		}
	}
	// And both forms give the same Layout.
	for _, c := range [][2]string{
		{"deep_tree", "deep_graph"},
		{"multiple_partitions_tree", "multiple_partitions_graph"},
		{"multiple_partitions_swap_tree", "multiple_partitions_swap_graph"},
		{"lvm_tree", "lvm_graph"},
	} {
		a, err := ParseBlockDeviceConfig(fixture(t, c[0]))
		if err != nil {
			t.Fatalf("%s: %v", c[0], err)
		}
		b, err := ParseBlockDeviceConfig(fixture(t, c[1]))
		if err != nil {
			t.Fatalf("%s: %v", c[1], err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s and %s give different layouts:\n%+v\n%+v", c[0], c[1], a, b)
		}
	}
}

func graphOrder(t *testing.T, name string) (*Layout, []string) {
	t.Helper()
	l, order, err := buildLayout(name, flat(t, name), false)
	if err != nil {
		t.Fatal(err)
	}
	return l, order
}

// DIB's test_deep_graph_generator and
// test_multiple_partitions_graph_generator: the call order.
func TestConfigCallOrder(t *testing.T) {
	_, order := graphOrder(t, "deep_graph")
	if want := []string{"image0", "root", "mkfs_root", "mount_mkfs_root", "fstab_mount_mkfs_root"}; !reflect.DeepEqual(order, want) {
		t.Errorf("deep_graph call order %v, want %v", order, want)
	}
	_, order = graphOrder(t, "multiple_partitions_graph")
	pos := func(n string) int { return slices.Index(order, n) }
	if !(pos("root") < pos("var") && pos("var") < pos("var_log")) {
		t.Errorf("partitions out of order: %v", order)
	}
	for _, p := range []string{"root", "var", "var_log"} {
		if pos(p) > pos("mkfs_"+p) {
			t.Errorf("mkfs_%s before its partition: %v", p, order)
		}
	}
	// LVM: partitions, the lvm node, pvs, vgs, lvs, then the filesystems.
	_, order = graphOrder(t, "lvm_graph")
	if !(pos("root") < pos("lvm_mbr") && pos("lvm_mbr") < pos("pv") && pos("pv") < pos("vg") && pos("vg") < pos("lv_root") && pos("lv_root") < pos("fs_root")) {
		t.Errorf("lvm call order %v", order)
	}
}

// DIB's test_mfks_and_mount_order and test_mount_order_unsorted: what
// mkfs is given (type, label, uuid) and the mount order.
func TestConfigFilesystemsAndMountOrder(t *testing.T) {
	l, _ := graphOrder(t, "multiple_partitions_graph")
	type fs struct{ name, typ, label, uuid, base string }
	var got []fs
	for _, f := range l.Filesystems {
		got = append(got, fs{f.Name, f.Type, f.Label, f.UUID, f.Base})
	}
	// mkfs -t xfs -L mkfs_root -m uuid=root-uuid-1234 -q /dev/loopXp1/root,
	// mkfs -t xfs -L mkfs_var -m uuid=var-uuid-1234 ..., mkfs -t vfat -n VARLOG ...
	want := []fs{
		{"mkfs_root", "xfs", "mkfs_root", "root-uuid-1234", "root"},
		{"mkfs_var", "xfs", "mkfs_var", "var-uuid-1234", "var"},
		{"mkfs_var_log", "vfat", "VARLOG", "", "var_log"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("filesystems %+v, want %+v", got, want)
	}
	if m := l.Mounts(); !reflect.DeepEqual(m, []string{"/", "/var", "/var/log"}) {
		t.Errorf("mount order %v", m)
	}

	l, _ = graphOrder(t, "multiple_partitions_swap_graph")
	if m := l.Mounts(); !reflect.DeepEqual(m, []string{"/", "/var", "/var/log", "none"}) {
		t.Errorf("mount order with swap %v", m)
	}
	if sw := l.Filesystems[3]; sw.Type != "swap" || sw.Label != "mkfs_swap" || sw.UUID != "swap-uuid-1234" {
		t.Errorf("swap: %+v (want mkswap -L mkfs_swap -U swap-uuid-1234)", sw)
	}

	l, err := ParseBlockDeviceConfig(fixture(t, "lvm_tree_partition_ordering"))
	if err != nil {
		t.Fatal(err)
	}
	if m := l.Mounts(); !reflect.DeepEqual(m, []string{"/", "/boot", "/var"}) {
		t.Errorf("lvm_tree_partition_ordering mount order %v", m)
	}
	l, err = ParseBlockDeviceConfig(fixture(t, "lvm_tree"))
	if err != nil {
		t.Fatal(err)
	}
	if m := l.Mounts(); !reflect.DeepEqual(m, []string{"/", "/var", "/var/log", "/var/log/audit", "/tmp", "/home"}) {
		t.Errorf("lvm_tree mount order %v (DIB's incremental sort keeps the config order, parents first)", m)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		fixture, want string
		line          int
	}{
		{"bad_plugin", "Config entry is not a plugin value: this_is_not_a_plugin_name", 2},
		{"multi_key_node", "Config entry top-level should be a single dict:", 2},
		{"bad_edge_graph", "Edge not defined: this_is_not_a_node->mkfs_root", 26},
		{"duplicate_name", "Duplicate node name: this_is_a_duplicate (first defined at line 2)", 15},
		{"duplicate_fs_labels", `filesystem label "duplicate" is used twice`, 41},
		{"too_long_fs_label", `too long for xfs: 39 characters, at most 12`, 5},
		{"simple_tree", "Edge not defined: root_part->root_fs", 2},
	} {
		_, err := ParseBlockDeviceConfigFrom(c.fixture+".yaml", fixture(t, c.fixture))
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) || ce.Line != c.line || ce.Source != c.fixture+".yaml" {
			t.Errorf("%s: %v, want %q at line %d", c.fixture, err, c.want, c.line)
		}
	}

	// DIB's test_lvm_invalid_config, on lvm_graph.
	base := string(fixture(t, "lvm_graph"))
	for _, c := range []struct{ old, new, want string }{
		{`base: ["pv"]`, `base: ["invalid_pv"]`, "base:invalid_pv in vgs does not match a valid pvs"},
		{"name: lv_root\n        base: vg", "name: lv_root\n        base: [invalid_vg]", "base:[invalid_vg] in lvs does not match a valid vg"},
		{"base: vg\n        size: 1800M", "base: vg", "Missing 'size' or 'extents' in lvs config"},
		{"size: 1800M", "size: 1800M\n        type: raid9", "Type 'raid9' is not valid for lvs"},
	} {
		y := strings.Replace(base, c.old, c.new, 1)
		if y == base {
			t.Fatalf("fixture edit %q did not apply", c.old)
		}
		if _, err := ParseBlockDeviceConfig([]byte(y)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
	}

	for _, c := range []struct{ yaml, want string }{
		{"", "empty"},
		{"- [a]", "Config entry not a dict"},
		{"- local_loop: {}", "has no name"},
		{"- local_loop: {name: image0}\n- partitioning: {base: image0, label: apm, partitions: []}", "Label must be 'mbr' or 'gpt'"},
		{"- local_loop: {name: image0}\n- partitioning: {base: image0, label: gpt, partitions: [{name: a, size: 1G, flags: [primary]}]}", "Primary flag not supported for GPT partitions"},
		{"- local_loop: {name: image0}\n- partitioning: {base: image0, label: mbr, partitions: [{name: a, size: 1G, flags: [fast]}]}", "Unknown flag: fast"},
		{"- local_loop: {name: image0}\n- partitioning: {base: image0, label: mbr, partitions: [{name: a}]}", "No size in partition a"},
		{"- local_loop: {name: image0}\n- partitioning: {base: image0, label: mbr, partitions: [{name: a, size: 3 parsecs}]}", "unknown unit"},
		{"- local_loop: {name: image0}\n- partitioning: {base: image0, label: gpt, partitions: [{name: a, size: 1G, type: ZZ99}]}", "sgdisk code"},
		{"- local_loop: {name: image0}\n- mkfs: {name: fs, base: image0, type: btrfs}", "btrfs"},
		{"- local_loop: {name: image0}\n- mkfs: {name: fs, base: image0}", "Mkfs config needs [type]"},
		// A name holding a newline (found by the fuzzer) stays on one line.
		{"- local_loop: {name: image0}\n- mkfs: {name: \"mkfs_\\n\", base: image0}", `Mkfs config needs [type] (mkfs mkfs_\n)`},
		{"- local_loop: {name: image0}\n- mkfs: {name: fs, base: image0, type: ext4, mount: {mount_point: var}}", "clean absolute path"},
		{"- local_loop: {name: image0}\n- mkfs: {name: fs, base: image0, type: swap, mount: {mount_point: /swap}}", "swap takes mount_point none"},
		{"- local_loop: {name: image0}\n- mkfs: {name: a, base: image0, type: ext4, mount: {mount_point: /}}\n- mkfs: {name: b, base: image0, type: ext4, mount: {mount_point: /}}", "Mount point [/] specified more than once"},
		{"- local_loop: {name: image0}\n- mkfs: {name: a, base: image0, type: ext4}\n- mkfs: {name: b, base: image0, type: ext4}", "used by both mkfs a and mkfs b"},
		{"- local_loop: {name: image0}\n- mkfs: {name: a, base: image0, type: vfat, label: twelve_chars}", "too long for vfat: 12 characters, at most 11"},
	} {
		if _, err := ParseBlockDeviceConfig([]byte(c.yaml)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}

// DIB's utils.parse_abs_size_spec / parse_rel_size_spec, with the values
// DIB computes.
func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		spec string
		free int64
		want int64
	}{
		{"1800M", 0, 1800000000},
		{"1.1G", 0, 1100000000},
		{"8MiB", 0, 8 << 20},
		{"550MiB", 0, 550 << 20},
		{"100", 0, 100},
		{"B", 0, 1},
		{"0.5KiB", 0, 512},
		{"3 GB", 0, 3000000000},
		{"2TiB", 0, 2 << 40},
		{"40G", 0, 40000000000},
		{"55%", 1<<30 - 2<<20, 589404569},
		{"33.3%", 1000, 333},
		{"100%", 12345, 12345},
	} {
		s, err := ParseSize(c.spec)
		if err != nil {
			t.Errorf("%s: %v", c.spec, err)
			continue
		}
		if got := s.Of(c.free); got != c.want {
			t.Errorf("%s of %d = %d, want %d", c.spec, c.free, got, c.want)
		}
	}
	for _, bad := range []string{"1e3", "12 parsecs", "1.2.3M", "-5M", "150%", "x%"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

// The mkfs_root merge: FS_TYPE, --root-label and --mkfs-options fill only
// what the YAML leaves open, and labels are checked again.
func TestMergeRoot(t *testing.T) {
	l, err := ParseBlockDeviceConfig(fixture(t, "deep_tree")) // type ext4 given, no label
	if err != nil {
		t.Fatal(err)
	}
	root := l.Root()
	if root.Label != "cloudimg-rootfs" || root.Type != "ext4" {
		t.Errorf("defaults: %+v", root)
	}
	if err := l.MergeRoot("xfs", "", []string{"-i", "8192"}); err != nil {
		t.Fatal(err)
	}
	if root.Type != "ext4" || root.Label != "cloudimg-rootfs" || !reflect.DeepEqual(root.Opts, []string{"-i", "8192"}) {
		t.Errorf("the YAML's type must win over FS_TYPE: %+v", root)
	}

	mbr, err := ReadBlockDeviceConfig("../elements/library/block-device-mbr/block-device-default.yaml") // no type
	if err != nil {
		t.Fatal(err)
	}
	if err := mbr.MergeRoot("xfs", "", nil); err != nil {
		t.Fatal(err)
	}
	if r := mbr.Root(); r.Type != "xfs" || r.Label != "img-rootfs" {
		t.Errorf("FS_TYPE=xfs: %+v, want xfs labelled img-rootfs", r)
	}
	if err := mbr.MergeRoot("xfs", "cloudimg-rootfs", nil); err == nil || !strings.Contains(err.Error(), "too long for xfs") {
		t.Errorf("cloudimg-rootfs on xfs: %v", err)
	}
	if err := mbr.MergeRoot("ext4", "my-root", nil); err != nil || mbr.Root().Label != "my-root" {
		t.Errorf("--root-label: %v %+v", err, mbr.Root())
	}
	// Other filesystems are left alone.
	mp, err := ParseBlockDeviceConfig(fixture(t, "multiple_partitions_tree"))
	if err != nil {
		t.Fatal(err)
	}
	if err := mp.MergeRoot("ext4", "r", []string{"-m", "1"}); err != nil {
		t.Fatal(err)
	}
	if v := mp.FilesystemAt("/var"); v.Label != "mkfs_var" || v.Opts != nil || v.Type != "xfs" {
		t.Errorf("/var changed by the root merge: %+v", v)
	}
}

const bootVarSwapYAML = `
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: BSP
        type: EF02
        size: 8MiB
      - name: boot
        size: 256MiB
        mkfs:
          type: ext4
          label: boot
          mount:
            mount_point: /boot
            fstab:
              options: "defaults,nodev"
              fsck-passno: 2
      - name: swap
        type: '8200'
        size: 64MiB
        mkfs:
          type: swap
          mount:
            mount_point: none
            fstab: {}
      - name: var
        size: 30%
        mkfs:
          type: ext4
          mount:
            mount_point: /var
            fstab:
              options: "defaults,noatime"
      - name: root
        size: 100%
        mkfs:
          mount:
            mount_point: /
            fstab:
              options: "defaults"
              fsck-passno: 1
`

func TestFstab(t *testing.T) {
	l, err := ParseBlockDeviceConfig([]byte(bootVarSwapYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n" +
		"LABEL=boot /boot ext4 defaults,nodev 0 2\n" +
		"LABEL=mkfs_var /var ext4 defaults,noatime 0 2\n" +
		"LABEL=mkfs_swap none swap sw 0 0\n"
	if got := l.Fstab(); got != want {
		t.Errorf("Fstab:\n%s\nwant:\n%s", got, want)
	}
	if m := l.Mounts(); !reflect.DeepEqual(m, []string{"/", "/boot", "/var", "none"}) {
		t.Errorf("Mounts %v", m)
	}
	// GRUB's view: /boot is its own filesystem.
	if b := l.BootFilesystem(); b == nil || b.Name != "mkfs_boot" || l.GrubPrefix() != "/grub" {
		t.Errorf("boot fs %+v, prefix %q", b, l.GrubPrefix())
	}
	if fs, rel := l.PathOnFilesystem("/boot/vmlinuz-6.1"); fs.Name != "mkfs_boot" || rel != "/vmlinuz-6.1" {
		t.Errorf("kernel on %s at %s", fs.Name, rel)
	}
	if fs, rel := l.PathOnFilesystem("/var/lib/x"); fs.Name != "mkfs_var" || rel != "/lib/x" {
		t.Errorf("/var/lib/x on %s at %s", fs.Name, rel)
	}
	if fs, rel := l.PathOnFilesystem("/varnish"); fs.Name != "mkfs_root" || rel != "/varnish" {
		t.Errorf("/varnish on %s at %s", fs.Name, rel)
	}
	if sw := l.Filesystems[1]; sw.Type != "swap" || sw.Mount.Fstab.Options != "sw" {
		t.Errorf("swap %+v", sw)
	}
	if l.Partitioning.Partitions[2].TypeGUID != LinuxSwap {
		t.Errorf("8200 resolved to %s", l.Partitioning.Partitions[2].TypeGUID)
	}
	// DIB's gpt_efi names a partition "Root Part": fstab escapes the space.
	ge, err := ParseBlockDeviceConfig(fixture(t, "gpt_efi"))
	if err != nil {
		t.Fatal(err)
	}
	if f := ge.Fstab(); !strings.HasPrefix(f, "LABEL=mkfs_Root\\040Part / ext4 defaults 0 1\n") {
		t.Errorf("gpt_efi fstab:\n%s", f)
	}
	def := DefaultLayout()
	if def.GrubPrefix() != "/boot/grub" || def.BootFilesystem().Name != "mkfs_root" || def.ESP() == nil {
		t.Errorf("default layout: prefix %q boot %v", def.GrubPrefix(), def.BootFilesystem())
	}
}

func TestAssignIDs(t *testing.T) {
	a, b := DefaultLayout(), DefaultLayout()
	b.Filesystems[1].UUID = "11111111-2222-4333-8444-555555555555" // given in the YAML
	for _, l := range []*Layout{a, b} {
		l.AssignIDs("seed-1")
	}
	if a.Filesystems[0].UUID != b.Filesystems[0].UUID || a.Partitioning.DiskGUID != b.Partitioning.DiskGUID ||
		a.Partitioning.Partitions[2].GUID != b.Partitioning.Partitions[2].GUID {
		t.Error("the same seed gave different identifiers")
	}
	if b.Filesystems[1].UUID != "11111111-2222-4333-8444-555555555555" {
		t.Errorf("AssignIDs replaced a given UUID: %s", b.Filesystems[1].UUID)
	}
	if esp := a.ESP(); len(esp.UUID) != 9 || esp.UUID[4] != '-' {
		t.Errorf("ESP volume id %q, want XXXX-XXXX", esp.UUID)
	}
	if _, err := parseGUID(a.Root().UUID); err != nil || a.Root().UUID != strings.ToLower(a.Root().UUID) {
		t.Errorf("root UUID %q", a.Root().UUID)
	}
	c := DefaultLayout()
	c.AssignIDs("seed-2")
	if c.Root().UUID == a.Root().UUID {
		t.Error("different seeds gave the same UUID")
	}
	seen := map[string]bool{}
	for _, p := range a.Partitioning.Partitions {
		if seen[p.GUID] {
			t.Errorf("duplicate partition GUID %s", p.GUID)
		}
		seen[p.GUID] = true
	}
}

// The elements' layouts are DIB's.
func TestElementLayouts(t *testing.T) {
	dir := "../elements/library"
	type part struct {
		name, size, typ string
		boot, primary   bool
	}
	for _, c := range []struct {
		element string
		table   TableKind
		parts   []part
		mounts  []string
	}{
		{"block-device-mbr", MBR, []part{{"root", "100%", "", true, true}}, []string{"/"}},
		{"block-device-gpt", GPT, []part{{"BSP", "8MiB", "EF02", false, false}, {"root", "100%", "", true, false}}, []string{"/"}},
		{"block-device-efi", GPT, []part{{"ESP", "550MiB", "EF00", false, false}, {"BSP", "8MiB", "EF02", false, false}, {"root", "100%", "8300", false, false}}, []string{"/", "/boot/efi"}},
	} {
		l, err := ReadBlockDeviceConfig(filepath.Join(dir, c.element, "block-device-default.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var got []part
		for _, p := range l.Partitioning.Partitions {
			got = append(got, part{p.Name, p.Size.Spec, p.Type, p.Boot, p.Primary})
		}
		if l.Partitioning.Label != c.table || !reflect.DeepEqual(got, c.parts) || !reflect.DeepEqual(l.Mounts(), c.mounts) {
			t.Errorf("%s: %s %+v mounts %v", c.element, l.Partitioning.Label, got, l.Mounts())
		}
		if r := l.Root(); r == nil || r.Type != "ext4" || r.Label != "cloudimg-rootfs" || r.Mount.Fstab.FsckPassno != 1 {
			t.Errorf("%s root: %+v", c.element, r)
		}
		if len(l.Warnings) > 0 {
			t.Errorf("%s: %v", c.element, l.Warnings)
		}
		if c.element == "block-device-efi" {
			def := DefaultLayout()
			def.Source = l.Source
			if !reflect.DeepEqual(l, def) {
				t.Errorf("DefaultLayout differs from block-device-efi:\n%+v\n%+v", def, l)
			}
			if esp := l.ESP(); esp.Label != "MKFS_ESP" || esp.Mount.Fstab.FsckPassno != 2 {
				t.Errorf("ESP %+v", esp)
			}
		}
		env, err := os.ReadFile(filepath.Join(dir, c.element, "environment.d", "10-block-device.bash"))
		if err != nil || !strings.Contains(string(env), "export DIB_BLOCK_DEVICE="+strings.TrimPrefix(c.element, "block-device-")) {
			t.Errorf("%s environment.d: %v\n%s", c.element, err, env)
		}
	}
}

func TestConfigWarnings(t *testing.T) {
	l, err := ParseBlockDeviceConfig(fixture(t, "lvm_tree_multiple_partitions"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], `unknown key "fck-passno"`) {
		t.Errorf("warnings %v", l.Warnings)
	}
	// DIB's config: the ESP's 'EF00' on an MBR does not fit a byte.
	if p := l.Partitioning.Partitions[1]; p.MBRType != 0 || p.Primary {
		t.Errorf("ESP on MBR: %+v", p)
	}
}

// DIB_BLOCK_DEVICE_CONFIG: a file:// path or the YAML itself; errors name
// where the YAML came from.
func TestLoadBlockDeviceConfig(t *testing.T) {
	abs, _ := filepath.Abs("testdata/blockdevice/deep_tree.yaml")
	a, err := LoadBlockDeviceConfig("file://" + abs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadBlockDeviceConfig(string(fixture(t, "deep_tree")))
	if err != nil {
		t.Fatal(err)
	}
	if a.Source != abs || b.Source != "DIB_BLOCK_DEVICE_CONFIG" {
		t.Errorf("sources %q %q", a.Source, b.Source)
	}
	a.Source, b.Source = "", ""
	if !reflect.DeepEqual(a, b) {
		t.Error("file:// and inline YAML differ")
	}
	_, err = LoadBlockDeviceConfig("- mkfs: {name: x}\n  mount: {}\n")
	if err == nil || !strings.HasPrefix(err.Error(), "DIB_BLOCK_DEVICE_CONFIG:1: Config entry top-level should be a single dict") {
		t.Errorf("inline error: %v", err)
	}
	if _, err := LoadBlockDeviceConfig("file:///nonexistent.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// A mount point or fstab options that would break /etc/fstab's lines or
// fields are refused (found by FuzzParseBlockDeviceConfig).
func TestConfigRefusesBrokenFstabFields(t *testing.T) {
	base := "- local_loop: {name: image0}\n- mkfs: {name: mkfs_root, base: image0, type: ext4, mount: {mount_point: %s, fstab: {options: %s}}}\n"
	for _, c := range []struct{ mp, opts, want string }{
		{`"/a\nb"`, "defaults", "without control characters"},
		{"/", `"defaults x"`, "must be comma-separated, without blanks"},
		{"/", `"a\nb"`, "must be comma-separated, without blanks"},
		{"/", `""`, "must be comma-separated, without blanks"},
	} {
		_, err := ParseBlockDeviceConfigFrom("x", []byte(fmt.Sprintf(base, c.mp, c.opts)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mount_point %s, options %s: %v, want %q", c.mp, c.opts, err, c.want)
		}
	}
	l, err := ParseBlockDeviceConfigFrom("x", []byte(fmt.Sprintf(base, `"/a b"`, `"defaults,noatime"`)))
	if err != nil {
		t.Fatal(err)
	}
	l.MergeRoot("", "", nil)
	if got := l.Fstab(); got != "LABEL=cloudimg-rootfs /a\\040b ext4 defaults,noatime 0 2\n" {
		t.Errorf("fstab %q", got)
	}
}
