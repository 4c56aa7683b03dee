package assemble

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"builder/internal/testreq"
)

func needLoop(t *testing.T) {
	t.Helper()
	if ok, why := loopAvailable(); !ok {
		testreq.Missing(t, "the loop assembler cannot run here: %s", why)
	}
	needTools(t, "mkfs.xfs", "xfs_repair", "xfs_db", "unshare", "lvm")
}

// noLeaks fails when a loop device is backed by a file under dir, or
// anything is mounted under dir or under a temporary assemble- directory.
func noLeaks(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err == nil && (strings.HasPrefix(string(b), dir) || strings.Contains(string(b), "/assemble-")) {
			t.Errorf("loop device %s left attached to %s", e.Name(), strings.TrimSpace(string(b)))
		}
	}
	left, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !strings.HasPrefix(m.Mountpoint, dir) && !strings.Contains(m.Mountpoint, "/assemble-"), false
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range left {
		t.Errorf("mount left behind: %s (%s from %s)", m.Mountpoint, m.FSType, m.Source)
	}
	if out, _ := toolErr("losetup", "-a"); strings.Contains(out, dir) {
		t.Errorf("losetup -a:\n%s", out)
	}
	if m, _ := filepath.Glob("/dev/mapper/*"); len(m) > 1 {
		t.Errorf("device-mapper nodes: %v", m)
	}
}

// extractFS copies a filesystem's extents out of the image into a file of
// its own, for tools without an offset option (xfs_repair) and for
// volumes split across physical volumes.
func extractFS(t *testing.T, img string, p *FSPlan) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), p.Name+".fs")
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var pos int64
	for _, e := range p.extents {
		if err := copySparse(dst, pos, src, e.off, e.size); err != nil {
			t.Fatal(err)
		}
		pos += e.size
	}
	if err := dst.Truncate(pos); err != nil {
		t.Fatal(err)
	}
	return out
}

func xfsDB(t *testing.T, fsFile string, cmds ...string) string {
	t.Helper()
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return tool(t, "xfs_db", append(args, fsFile)...)
}

const xfsRootYAML = `
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: ESP
        type: 'EF00'
        size: 40MiB
        mkfs:
          type: vfat
          mount:
            mount_point: /boot/efi
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: var
        size: 20%
        mkfs:
          type: ext4
          mount:
            mount_point: /var
            fstab:
              options: "defaults"
      - name: root
        size: 100%
        mkfs:
          mount:
            mount_point: /
            fstab:
              options: "defaults"
              fsck-passno: 1
`

// xfs root (FS_TYPE=xfs): built by the loop assembler, xfs_repair -n
// clean, with the tree's owners, modes, links and holes, /var on ext4
// hidden from it, and GRUB reading its config from xfs.
func TestLoopAssemblerXFSRoot(t *testing.T) {
	needLoop(t)
	needTools(t, "grub-fstest", "e2fsck", "sfdisk")
	tree := makeTree(t)
	ro := readOnlyView(t, tree)
	out := t.TempDir()
	defer noLeaks(t, out)

	l := mustLayout(t, xfsRootYAML)
	d, err := PlanDisk(bg, DiskSpec{RootDir: ro, RootUUID: testRootUUID, RootFSType: "xfs", Layout: l, HeadroomBytes: 16 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	if d.Assembler != Loop || !strings.Contains(d.AssemblerReason, "mkfs_root (/) is xfs") {
		t.Errorf("assembler %s: %s", d.Assembler, d.AssemblerReason)
	}
	root := d.Filesystem("mkfs_root")
	if root.Type != "xfs" || root.Label != "img-rootfs" || root.SizeBytes < xfsMinSize {
		t.Errorf("root %+v", root)
	}
	d.Spec.Files = append(d.Spec.Files,
		File{Path: "/boot/grub/grub.cfg", Data: []byte(GrubConfig(GrubConfigSpec{RootUUID: root.UUID}))},
		File{Path: "/etc/fstab", Data: []byte(d.Fstab())},
		File{Path: "/usr/local/sbin/setuid-injected", Data: []byte("x"), Mode: 0o755 | os.ModeSetuid})
	img := filepath.Join(out, "xfs.raw")
	t0 := time.Now()
	if err := BuildDisk(bg, d, img); err != nil {
		t.Fatal(err)
	}
	t.Logf("xfs root disk of %s built in %v", humanBytes(d.Table.DiskSizeBytes), time.Since(t0).Round(time.Millisecond))
	noLeaks(t, out)
	verifySfdisk(t, img)

	fsFile := extractFS(t, img, root)
	tool(t, "xfs_repair", "-n", "-f", fsFile)
	if sb := xfsDB(t, fsFile, "sb 0", "p uuid fname"); !strings.Contains(sb, "uuid = "+testRootUUID) || !strings.Contains(sb, `fname = "img-rootfs`) {
		t.Errorf("xfs superblock:\n%s", sb)
	}
	ls := xfsDB(t, fsFile, "ls /")
	for _, want := range []string{" usr", " etc", " boot", " var", " vmlinuz"} {
		if !strings.Contains(ls, want) {
			t.Errorf("xfs / lacks%s:\n%s", want, ls)
		}
	}
	if ls := xfsDB(t, fsFile, "ls /var"); strings.Contains(ls, "sparse") {
		t.Errorf("the root holds /var's files:\n%s", ls)
	}
	inode := func(p string, fields string) string {
		return xfsDB(t, fsFile, "path "+p, "p "+fields)
	}
	for _, c := range []struct{ path, want string }{
		{"/usr/bin/su", `core.mode = 0104755`},
		{"/home/user/owned", `core.uid = 1234`},
		{"/usr/bin/hl-b", `core.nlinkv2 = 3`},
		{"/usr/local/sbin/setuid-injected", `core.mode = 0104755`},
	} {
		if got := inode(c.path, "core.mode core.uid core.nlinkv2"); !strings.Contains(got, c.want) {
			t.Errorf("%s: %s, want %s", c.path, got, c.want)
		}
	}
	if got := inode("/", "core.mode core.uid"); !strings.Contains(got, "core.mode = 040755") || !strings.Contains(got, "core.uid = 0") {
		t.Errorf("xfs root directory: %s", got)
	}
	if got := inode("/var", "core.nblocks core.mode"); !strings.Contains(got, "core.mode = 040755") {
		t.Errorf("/var mount point: %s", got)
	}
	// GRUB reads its config from the xfs root, and /var from ext4.
	if cfg := tool(t, "grub-fstest", img, "cat", fmt.Sprintf("(loop0,gpt%d)/boot/grub/grub.cfg", root.Partition.Number)); !strings.Contains(cfg, root.UUID) {
		t.Errorf("grub.cfg through GRUB's xfs driver:\n%s", cfg)
	}
	checkCoreConfig(t, img, d)
	v := d.Filesystem("mkfs_var")
	tool(t, "e2fsck", "-fn", fsImage(img, v))
	if !slices.Contains(debugfsLs(t, fsImage(img, v), "/"), "sparse") {
		t.Error("/var's files are not on the /var filesystem")
	}
	if fstab := stdout(t, "debugfs", "-R", "cat /etc/fstab", fsImage(img, v)); fstab != "" {
		t.Errorf("/var holds an fstab: %q", fstab)
	}
}

const lvmYAML = `
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: boot
        size: 64MiB
        mkfs:
          type: ext4
          mount:
            mount_point: /boot
      - name: data1
        type: '8E00'
        size: 200MiB
      - name: root
        type: '8E00'
        size: 100%
- lvm:
    name: lvm
    pvs:
      - name: pv
        base: root
        options: ["--force"]
      - name: pv_data1
        base: data1
    vgs:
      - name: vg
        base: ["pv"]
        options: ["--force"]
      - name: vg_data
        base: ["pv_data1", "pv_data2"]
    lvs:
      - name: lv_root
        base: vg
        extents: 40%VG
      - name: lv_var
        base: vg
        size: 320MiB
      - name: lv_swap
        base: vg
        size: 16M
      - name: lv_home
        base: vg
        extents: 100%FREE
      - name: lv_data
        base: vg_data
        size: 300MiB
- mkfs:
    name: mkfs_root
    base: lv_root
    type: ext4
    mount:
      mount_point: /
      fstab:
        options: "defaults"
        fsck-passno: 1
- mkfs:
    name: fs_var
    base: lv_var
    type: xfs
    mount:
      mount_point: /var
      fstab:
        options: "rw,relatime"
- mkfs:
    name: fs_swap
    base: lv_swap
    type: swap
    mount:
      mount_point: none
      fstab: {}
- mkfs:
    name: fs_home
    base: lv_home
    type: ext4
    mount:
      mount_point: /home
- mkfs:
    name: fs_data
    base: lv_data
    type: ext4
    mount:
      mount_point: /srv
`

// LVM: the metadata written with the lvm tools (nothing activated: this
// kernel has no device-mapper), each filesystem at its logical volume's
// place in the image; a volume spanning two physical volumes is built
// aside and copied to its extents.
func TestLoopAssemblerLVM(t *testing.T) {
	needLoop(t)
	needTools(t, "e2fsck", "debugfs", "grub-fstest", "blkid")
	tree := makeTree(t)
	mustWrite(t, filepath.Join(tree, "srv/data/file"), []byte("data"), 0o644)
	out := t.TempDir()
	defer noLeaks(t, out)
	// A second data PV, after the 100% root: DIB allows it only before, so
	// put it first.
	y := strings.Replace(lvmYAML, "      - name: data1\n", "      - name: data2\n        type: '8E00'\n        size: 200MiB\n      - name: data1\n", 1)
	y = strings.Replace(y, "      - name: pv_data1\n        base: data1\n", "      - name: pv_data1\n        base: data1\n      - name: pv_data2\n        base: data2\n", 1)
	d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, Layout: mustLayout(t, y), SizeBytes: 2 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if d.Assembler != Loop || !strings.Contains(d.AssemblerReason, "LVM") {
		t.Errorf("assembler %s: %s", d.Assembler, d.AssemblerReason)
	}
	d.Spec.Files = append(d.Spec.Files,
		File{Path: "/boot/grub/grub.cfg", Data: []byte(GrubConfig(GrubConfigSpec{RootUUID: testRootUUID}))},
		File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
	img := filepath.Join(out, "lvm.raw")
	t0 := time.Now()
	if err := BuildDisk(bg, d, img); err != nil {
		t.Fatal(err)
	}
	t.Logf("LVM disk built in %v", time.Since(t0).Round(time.Millisecond))
	noLeaks(t, out)

	// The volume groups as LVM sees them on the image's partitions.
	var devs []string
	defer func() {
		for _, dev := range devs {
			toolErr("losetup", "-d", dev)
		}
		noLeaks(t, out)
	}()
	for _, name := range []string{"root", "data1", "data2"} {
		var part Partition
		for _, p := range d.Table.Partitions {
			if p.Name == name {
				part = p
			}
		}
		dev, err := attachLoop(bg, img, part.StartBytes, part.SizeBytes)
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, dev)
	}
	lvs := tool(t, "lvm", "lvs", "--config", lvmConfig, "--devices", strings.Join(devs, ","), "--units", "m", "--nosuffix", "-o", "vg_name,lv_name,lv_size", "--noheadings")
	for _, want := range []string{`vg\s+lv_root`, `vg\s+lv_var\s+320\.00`, `vg\s+lv_swap\s+12\.00`, `vg\s+lv_home`, `vg_data\s+lv_data\s+300\.00`} {
		if !regexp.MustCompile(want).MatchString(lvs) {
			t.Errorf("lvs lacks %s:\n%s", want, lvs)
		}
	}
	vgs := tool(t, "lvm", "vgs", "--config", lvmConfig, "--devices", strings.Join(devs, ","), "-o", "vg_name,autoactivation", "--noheadings")
	if strings.Contains(vgs, "NOAUTO") || !strings.Contains(vgs, "enabled") {
		t.Errorf("volume groups must auto-activate in the image:\n%s", vgs)
	}

	root, home, data, vr, sw := d.Filesystem("mkfs_root"), d.Filesystem("fs_home"), d.Filesystem("fs_data"), d.Filesystem("fs_var"), d.Filesystem("fs_swap")
	if root.OffsetBytes <= 0 || len(data.extents) != 2 || data.OffsetBytes != -1 {
		t.Fatalf("LV placement: root %d, data %+v", root.OffsetBytes, data.extents)
	}
	tool(t, "e2fsck", "-fn", fsImage(img, root))
	tool(t, "e2fsck", "-fn", fsImage(img, home))
	tool(t, "e2fsck", "-fn", extractFS(t, img, data))
	if ls := debugfsLs(t, extractFS(t, img, data), "/data"); !slices.Contains(ls, "file") {
		t.Errorf("/srv on the spanned volume: %v", ls)
	}
	tool(t, "xfs_repair", "-n", "-f", extractFS(t, img, vr))
	if out := tool(t, "blkid", "-p", "-O", fmt.Sprint(sw.OffsetBytes), img); !strings.Contains(out, `TYPE="swap"`) {
		t.Errorf("swap LV: %s", out)
	}
	if ls := debugfsLs(t, fsImage(img, root), "/"); !slices.Contains(ls, "usr") || !slices.Contains(ls, "boot") {
		t.Errorf("root LV: %v", ls)
	}
	// GRUB reads LVM itself: /boot is a partition here, and the root LV is
	// visible through GRUB's lvm driver.
	if ls := tool(t, "grub-fstest", img, "ls", "(lvm/vg-lv_root)/"); !strings.Contains(ls, "usr/") {
		t.Errorf("grub-fstest on the root LV: %s", ls)
	}
	if cfg := tool(t, "grub-fstest", img, "cat", fmt.Sprintf("(loop0,gpt%d)/grub/grub.cfg", d.Filesystem("mkfs_boot").Partition.Number)); !strings.Contains(cfg, testRootUUID) {
		t.Errorf("grub.cfg: %s", cfg)
	}
}

// DIB's LVM commands (test_lvm.py, with the sizes DIB's newer code passes:
// 1800M floored to 4 MiB is -L 1799356416B).
func TestLVMCommands(t *testing.T) {
	l, err := ParseBlockDeviceConfig(fixture(t, "lvm_tree_multiple_pv"))
	if err != nil {
		t.Fatal(err)
	}
	got := lvmCommands(l.LVM, map[string]string{"root": "/dev/fake/root", "data": "/dev/fake/data"})
	want := [][]string{
		{"pvcreate", "/dev/fake/root", "--force"},
		{"pvcreate", "/dev/fake/data", "--force"},
		{"vgcreate", "vg", "/dev/fake/root", "/dev/fake/data", "--force"},
		{"lvcreate", "--name", "lv_root", "-L", "1799356416B", "vg"},
		{"lvcreate", "--name", "lv_tmp", "-L", "96468992B", "vg"},
		{"lvcreate", "--name", "lv_var", "-L", "499122176B", "vg"},
		{"lvcreate", "--name", "lv_log", "-L", "96468992B", "vg"},
		{"lvcreate", "--name", "lv_audit", "-L", "96468992B", "vg"},
		{"lvcreate", "--name", "lv_home", "-L", "197132288B", "vg"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("commands:\n%v\nwant\n%v", got, want)
	}
	l, err = ParseBlockDeviceConfig(fixture(t, "lvm_tree_multiple_pv_vg"))
	if err != nil {
		t.Fatal(err)
	}
	got = lvmCommands(l.LVM, map[string]string{"root": "/dev/fake/root", "data": "/dev/fake/data"})
	if fmt.Sprint(got[2:4]) != "[[vgcreate vg1 /dev/fake/root --force] [vgcreate vg2 /dev/fake/data --force]]" {
		t.Errorf("vgcreate: %v", got[2:4])
	}
	// DIB's 28%VG and friends pass through as -l.
	l, err = ParseBlockDeviceConfig(fixture(t, "lvm_tree_multiple_partitions"))
	if err != nil {
		t.Fatal(err)
	}
	got = lvmCommands(l.LVM, map[string]string{"root": "/dev/fake/root"})
	if fmt.Sprint(got[2]) != "[lvcreate --name lv_root -l 28%VG vg]" {
		t.Errorf("lvcreate with extents: %v", got[2])
	}
}

// Cancelling a loop build at any point leaves no image, loop device or
// mount.
func TestLoopAssemblerCancel(t *testing.T) {
	needLoop(t)
	tree := makeTree(t)
	for i := range 300 {
		mustWrite(t, filepath.Join(tree, fmt.Sprintf("usr/lib/bulk/%03d", i)), make([]byte, 64*1024), 0o644)
	}
	out := t.TempDir()
	defer noLeaks(t, out)
	cancelled := 0
	for _, after := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond} {
		d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, RootFSType: "xfs", Layout: mustLayout(t, lvmOnXFSYAML),
			Files: []File{{Path: "/boot/grub/grub.cfg", Data: []byte("x")}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(bg, after)
		img := filepath.Join(out, "cancel.raw")
		err = BuildDisk(ctx, d, img)
		cancel()
		if err == nil {
			os.Remove(img)
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "context deadline exceeded") && !strings.Contains(err.Error(), "signal: killed") {
			t.Errorf("cancelled after %v: %v", after, err)
		}
		cancelled++
		t.Logf("cancelled after %v: %v", after, err)
		noLeaks(t, out)
		noTempFiles(t, out)
		if _, err := os.Stat(img); err == nil {
			t.Errorf("cancelled build left %s", img)
		}
	}
	if cancelled < 3 {
		t.Errorf("only %d builds were cancelled before they finished", cancelled)
	}

	// And exactly while the tree is copied into the xfs mount (cp in the
	// private mount namespace), and while mkfs.ext4 -d reads a masked tree.
	for _, c := range []struct{ yaml, fsType, running string }{
		{lvmOnXFSYAML, "xfs", "cp\x00-a\x00"},
		{separateBootVarYAML, "ext4", "mkfs.ext4\x00"},
	} {
		d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, RootFSType: c.fsType, Layout: mustLayout(t, c.yaml),
			Files: []File{{Path: "/boot/grub/grub.cfg", Data: []byte("x")}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(bg)
		seen := make(chan bool, 1)
		go func() { seen <- cancelWhenRunning(ctx, cancel, c.running, tree) }()
		img := filepath.Join(out, "cancel.raw")
		err = BuildDisk(ctx, d, img)
		cancel()
		if !<-seen {
			t.Errorf("%q never ran (build error: %v)", c.running, err)
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("cancelled while %q ran: %v", c.running, err)
		}
		t.Logf("cancelled while %q ran: %v", strings.ReplaceAll(c.running, "\x00", " "), err)
		noLeaks(t, out)
		noTempFiles(t, out)
	}
}

// cancelWhenRunning cancels as soon as a process whose command line holds
// both want and tree runs, and reports whether one did.
func cancelWhenRunning(ctx context.Context, cancel context.CancelFunc, want, tree string) bool {
	for ctx.Err() == nil {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err == nil && strings.Contains(string(b), want) && strings.Contains(string(b), tree) {
				cancel()
				return true
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}

const lvmOnXFSYAML = `
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: root
        type: '8E00'
        size: 100%
- lvm:
    name: lvm
    pvs:
      - name: pv
        base: root
    vgs:
      - name: vg
        base: ["pv"]
    lvs:
      - name: lv_root
        base: vg
        extents: 100%FREE
- mkfs:
    name: mkfs_root
    base: lv_root
    mount:
      mount_point: /
`

// Without root the loop assembler cannot run, and the error says why and
// what to do (the privilege check is replaced to test it as root too).
func TestLoopAssemblerNeedsRoot(t *testing.T) {
	for _, c := range []struct{ yaml, fsType, want string }{
		{lvmOnXFSYAML, "ext4", "the layout needs LVM, which only the loop assembler can build, and that needs root: builder runs as uid 1000; run as root or drop the lvm section"},
		{xfsRootYAML, "xfs", "the layout needs xfs, which only the loop assembler can build, and that needs root: builder runs as uid 1000; run as root or use ext4"},
	} {
		l := mustLayout(t, c.yaml)
		if err := l.MergeRoot(c.fsType, "", nil); err != nil {
			t.Fatal(err)
		}
		l.AssignIDs("seed")
		lp := &layoutPlan{layout: l, loopAvailable: func() (bool, string) { return false, "builder runs as uid 1000" }}
		if err := lp.validate(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := lp.chooseAssembler(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v\nwant %q", err, c.want)
		}
	}
	l := mustLayout(t, separateBootVarYAML)
	l.AssignIDs("seed")
	lp := &layoutPlan{layout: l, loopAvailable: func() (bool, string) { return false, "no" }}
	lp.validate()
	if a, why, err := lp.chooseAssembler(); a != Loopless || err != nil {
		t.Errorf("ext4, vfat and swap need no loop device: %s %s %v", a, why, err)
	}
}

// DIB's multiple_partitions config (with its newer swap partition), built:
// an MBR with one primary partition and logical ones in an extended
// partition, xfs / and /var, a vfat /var/log inside /var, swap, and GRUB
// booting from the xfs root through the MBR gap.
func TestLoopAssemblerDIBMultiplePartitions(t *testing.T) {
	needLoop(t)
	needTools(t, "partx", "fsck.vfat", "mdir", "grub-fstest", "blkid", "sfdisk")
	tree := makeTree(t)
	mustWrite(t, filepath.Join(tree, "var/log/syslog"), []byte("log\n"), 0o640)
	out := t.TempDir()
	defer noLeaks(t, out)
	// DIB's test UUIDs are placeholders ("root-uuid-1234"): derive real ones.
	y := regexp.MustCompile(`(?m)^\s+uuid: .*\n`).ReplaceAllString(string(fixture(t, "multiple_partitions_swap_tree")), "")
	d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, Layout: mustLayout(t, y), HeadroomBytes: 8 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Files = append(d.Spec.Files,
		File{Path: "/boot/grub/grub.cfg", Data: []byte(GrubConfig(GrubConfigSpec{RootUUID: testRootUUID}))},
		File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
	img := filepath.Join(out, "mp.raw")
	if err := BuildDisk(bg, d, img); err != nil {
		t.Fatal(err)
	}
	noLeaks(t, out)
	verifySfdisk(t, img)
	p := strings.Fields(partx(t, img))
	// NR START END TYPE FLAGS SCHEME, six fields a line: root primary and
	// active, the extended partition, then var, var_log, swap as 5, 6, 7.
	if len(p) != 5*6 || p[0] != "1" || p[3] != "0x83" || p[4] != "0x80" || p[6] != "2" || p[9] != "0xf" || p[12] != "5" || p[18] != "6" || p[24] != "7" {
		t.Errorf("partx:\n%s", partx(t, img))
	}
	// DIB's percentages: root 55% of the disk less 2 MiB, var 40% of what
	// is left, and so on.
	root, vr, vl, sw := d.Filesystem("mkfs_root"), d.Filesystem("mkfs_var"), d.Filesystem("mkfs_var_log"), d.Filesystem("mkfs_swap")
	if want := roundUp(int64(float64(d.Table.DiskSizeBytes-2*MiB)*55/100), MiB); root.SizeBytes != want {
		t.Errorf("root is %d bytes, want DIB's 55%% = %d", root.SizeBytes, want)
	}
	if vr.Partition.Number != 5 || vl.Partition.Number != 6 || sw.Partition.Number != 7 || vl.Label != "VARLOG" {
		t.Errorf("logical partitions: var %d, var_log %d, swap %d", vr.Partition.Number, vl.Partition.Number, sw.Partition.Number)
	}
	tool(t, "xfs_repair", "-n", "-f", extractFS(t, img, root))
	varFS := extractFS(t, img, vr)
	tool(t, "xfs_repair", "-n", "-f", varFS)
	if ls := xfsDB(t, varFS, "ls /log"); strings.Contains(ls, "syslog") {
		t.Errorf("/var holds /var/log's files:\n%s", ls)
	}
	if out := tool(t, "mdir", "-b", "-i", fmt.Sprintf("%s@@%d", img, vl.OffsetBytes), "::/"); !strings.Contains(out, "syslog") {
		t.Errorf("/var/log (vfat):\n%s", out)
	}
	tool(t, "fsck.vfat", "-n", extractFS(t, img, vl))
	if out := tool(t, "blkid", "-p", "-O", fmt.Sprint(sw.OffsetBytes), img); !strings.Contains(out, `TYPE="swap"`) || !strings.Contains(out, `LABEL="mkfs_swap"`) {
		t.Errorf("swap: %s", out)
	}
	if cfg := tool(t, "grub-fstest", img, "cat", "(loop0,msdos1)/boot/grub/grub.cfg"); !strings.Contains(cfg, testRootUUID) {
		t.Errorf("grub.cfg: %s", cfg)
	}
	checkBIOSBoot(t, img, 1, 2047)
	checkCoreConfig(t, img, d)
	want := "LABEL=img-rootfs / xfs defaults 0 1\n" +
		"LABEL=mkfs_var /var xfs defaults 0 1\n" +
		"LABEL=VARLOG /var/log vfat defaults 0 1\n" +
		"LABEL=mkfs_swap none swap sw 0 0\n"
	if f := d.Fstab(); f != want {
		t.Errorf("fstab:\n%s\nwant:\n%s", f, want)
	}
}

// Layouts no disk can hold are refused at planning, naming the volume.
func TestPlanDiskLVMRefusals(t *testing.T) {
	needLoop(t)
	tree := t.TempDir()
	mustWrite(t, filepath.Join(tree, "etc/hostname"), []byte("x\n"), 0o644)
	// DIB's own lvm_graph: its 100M volumes are too small for xfs, whose
	// mkfs has refused filesystems under 300 MB since xfsprogs 5.19.
	_, err := PlanDisk(bg, DiskSpec{RootDir: tree, Layout: mustLayout(t, string(fixture(t, "lvm_graph")))})
	if err == nil || !strings.Contains(err.Error(), "logical volume lv_log is 92 MiB but the xfs filesystem fs_log (/var/log) needs at least 300 MiB") {
		t.Errorf("lvm_graph: %v", err)
	}
	// Logical volumes larger than their fixed physical volume.
	y := strings.Replace(lvmOnXFSYAML, "size: 100%", "size: 1GiB", 1)
	y = strings.Replace(y, "extents: 100%FREE", "size: 2G", 1)
	_, err = PlanDisk(bg, DiskSpec{RootDir: tree, Layout: mustLayout(t, y)})
	if err == nil || !strings.Contains(err.Error(), "no disk size fits the layout: logical volume lv_root (2G) needs 476 extents of 4 MiB but volume group vg has 255 free of 255") {
		t.Errorf("LV larger than its PV: %v", err)
	}
}
