package assemble

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func mustLayout(t testing.TB, yaml string) *Layout {
	t.Helper()
	l, err := ParseBlockDeviceConfig([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func elementLayout(t testing.TB, name string) *Layout {
	t.Helper()
	l, err := ReadBlockDeviceConfig(filepath.Join("..", "elements", "library", name, "block-device-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// planAndBuild plans a layout disk for tree with grub.cfg and fstab
// injected as builder does, builds it, and returns it.
func planAndBuild(t *testing.T, spec DiskSpec) (*Disk, string) {
	t.Helper()
	d, err := PlanDisk(bg, spec)
	if err != nil {
		t.Fatal(err)
	}
	l := d.Layout
	g := GrubConfigSpec{RootUUID: l.Root().UUID, Timeout: 1, Title: "Test"}
	if b := l.BootFilesystem(); b != nil && b.Name != l.Root().Name {
		g.BootUUID = b.UUID
		_, g.Kernel = l.PathOnFilesystem("/boot/vmlinuz-6.1.0-test")
	}
	d.Spec.Files = append(d.Spec.Files,
		File{Path: "/boot/grub/grub.cfg", Data: []byte(GrubConfig(g))},
		File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := BuildDisk(bg, d, img); err != nil {
		t.Fatal(err)
	}
	noTempFiles(t, filepath.Dir(img))
	return d, img
}

// stdout runs a tool and returns its standard output only.
func stdout(t testing.TB, name string, args ...string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return string(out)
}

func fsImage(img string, p *FSPlan) string { return fmt.Sprintf("%s?offset=%d", img, p.OffsetBytes) }

// debugfsLs lists a directory of an ext filesystem: names only, without
// "." and "..".
func debugfsLs(t *testing.T, fsImg, dir string) []string {
	t.Helper()
	out := tool(t, "debugfs", "-R", "ls -l "+dir, fsImg)
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || strings.HasPrefix(line, "debugfs") {
			continue
		}
		if n := f[len(f)-1]; n != "." && n != ".." {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// The element layouts build and boot the way their READMEs say: the
// partitions DIB makes, each filesystem clean, GRUB where it belongs.
func TestBuildDiskElementLayouts(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "debugfs", "mkfs.vfat", "mmd", "mcopy", "mdir", "grub-mkimage", "grub-fstest", "sfdisk")
	tree := makeTree(t)
	for _, c := range []struct {
		element    string
		label      string
		types      []string
		bios, uefi bool
		rootPart   int
	}{
		{"block-device-mbr", "dos", []string{"83"}, true, false, 1},
		{"block-device-gpt", "gpt", []string{BIOSBoot, LinuxFilesystem}, true, false, 2},
		{"block-device-efi", "gpt", []string{ESP, BIOSBoot, LinuxFilesystem}, true, true, 3},
	} {
		t.Run(c.element, func(t *testing.T) {
			d, img := planAndBuild(t, DiskSpec{RootDir: tree, RootUUID: testRootUUID, Layout: elementLayout(t, c.element), HeadroomBytes: 16 * MiB})
			if d.Assembler != Loopless || d.Spec.BIOS != c.bios || d.Spec.UEFI != c.uefi {
				t.Errorf("assembler %s (%s), BIOS %v UEFI %v", d.Assembler, d.AssemblerReason, d.Spec.BIOS, d.Spec.UEFI)
			}
			verifySfdisk(t, img)
			j := readSfdisk(t, img).PartitionTable
			var types []string
			for _, p := range j.Partitions {
				types = append(types, p.Type)
			}
			if j.Label != c.label || !slices.Equal(types, c.types) {
				t.Errorf("sfdisk: %s %v, want %s %v", j.Label, types, c.label, c.types)
			}
			root := d.Filesystem("mkfs_root")
			if root.Partition.Number != c.rootPart || root.UUID != testRootUUID || root.Label != "cloudimg-rootfs" {
				t.Errorf("root: %+v", root)
			}
			// DIB's sizes: GPT leaves 1 MiB free at the end, the BSP is 8 MiB,
			// the ESP 550 MiB.
			last := j.Partitions[len(j.Partitions)-1]
			if c.label == "gpt" && (last.Start+last.Size)*512 != d.Table.DiskSizeBytes-MiB {
				t.Errorf("last partition ends at %d, want 1 MiB before the end (%d)", (last.Start+last.Size)*512, d.Table.DiskSizeBytes)
			}
			if c.label == "dos" && !j.Partitions[0].Bootable {
				t.Error("the MBR root partition is not active (flags: boot)")
			}
			tool(t, "e2fsck", "-fn", fsImage(img, root))
			fstab := stdout(t, "debugfs", "-R", "cat /etc/fstab", fsImage(img, root))
			if fstab != d.Layout.Fstab() || !strings.HasPrefix(fstab, "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n") {
				t.Errorf("fstab:\n%s", fstab)
			}
			part := "msdos"
			if c.label == "gpt" {
				part = "gpt"
			}
			if cfg := tool(t, "grub-fstest", img, "cat", fmt.Sprintf("(loop0,%s%d)/boot/grub/grub.cfg", part, c.rootPart)); !strings.Contains(cfg, testRootUUID) {
				t.Errorf("grub.cfg as GRUB reads it:\n%s", cfg)
			}
			if d.EarlyConfig != EarlyConfigFor(testRootUUID, "/boot/grub") {
				t.Errorf("early config %q", d.EarlyConfig)
			}
			switch c.element {
			case "block-device-mbr":
				checkBIOSBoot(t, img, 1, 2047)
			default:
				checkBIOSBoot(t, img, d.BIOSBootPartition.StartBytes/512, d.BIOSBootPartition.SizeBytes/512)
			}
			checkCoreConfig(t, img, d)
			if c.uefi {
				esp := d.Filesystem("mkfs_ESP")
				if esp.SizeBytes != 550*MiB || esp.Label != "MKFS_ESP" {
					t.Errorf("ESP %+v", esp)
				}
				target := fmt.Sprintf("%s@@%d", img, esp.OffsetBytes)
				info := tool(t, "minfo", "-i", target, "::")
				for _, want := range []string{`disk type="FAT32   "`, `disk label="MKFS_ESP   "`, "serial number: " + strings.ReplaceAll(esp.UUID, "-", "")} {
					if !strings.Contains(info, want) {
						t.Errorf("minfo lacks %q:\n%s", want, info)
					}
				}
				efi := filepath.Join(t.TempDir(), "BOOTX64.EFI")
				tool(t, "mcopy", "-i", target, "::/EFI/BOOT/BOOTX64.EFI", efi)
				if b, _ := os.ReadFile(efi); !bytes.Contains(b, []byte(d.EarlyConfig)) {
					t.Error("BOOTX64.EFI lacks the early config")
				}
				if !strings.Contains(fstab, "LABEL=MKFS_ESP /boot/efi vfat defaults 0 2") {
					t.Errorf("fstab lacks the ESP:\n%s", fstab)
				}
			}
		})
	}
}

// checkCoreConfig proves the early config embedded in the core.img on the
// disk is d.EarlyConfig: core.img is compressed, so it is compared with
// one grub-mkimage makes from that config (its output is deterministic),
// past the first sector that InstallBIOSBoot patches.
func checkCoreConfig(t *testing.T, img string, d *Disk) {
	t.Helper()
	want := filepath.Join(t.TempDir(), "core.img")
	if err := MakeCoreImage(bg, DefaultGrubPCDir, d.EarlyConfig, want); err != nil {
		t.Fatal(err)
	}
	w, _ := os.ReadFile(want)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at := int64(512) // MBR gap
	if d.BIOSBootPartition != nil {
		at = d.BIOSBootPartition.StartBytes
	}
	got := make([]byte, len(w))
	f.ReadAt(got, at)
	if !bytes.Equal(got[512:], w[512:]) {
		t.Errorf("the core.img at byte %d is not the one made from the early config %q", at, d.EarlyConfig)
	}
	// The comparison can tell configs apart: one naming another
	// filesystem gives another image.
	other := filepath.Join(t.TempDir(), "other.img")
	if err := MakeCoreImage(bg, DefaultGrubPCDir, EarlyConfigFor("00000000-0000-4000-8000-000000000000", "/grub"), other); err != nil {
		t.Fatal(err)
	}
	if o, _ := os.ReadFile(other); bytes.Equal(o[512:min(len(o), len(got))], got[512:min(len(o), len(got))]) {
		t.Error("core.img does not depend on its early config: the check proves nothing")
	}
}

const separateBootVarYAML = `
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: ESP
        type: 'EF00'
        size: 64MiB
        mkfs:
          type: vfat
          mount:
            mount_point: /boot/efi
            fstab:
              options: "umask=0077"
              fsck-passno: 2
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: boot
        type: 'EA00'
        size: 96MiB
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
        size: 16MiB
        mkfs:
          type: swap
          mount:
            mount_point: none
            fstab: {}
      - name: var
        type: '8310'
        size: 25%
        mkfs:
          type: ext4
          mount:
            mount_point: /var
            fstab:
              options: "defaults,noatime"
      - name: root
        type: '8304'
        size: 100%
        mkfs:
          type: ext4
          mount:
            mount_point: /
            fstab:
              options: "defaults"
              fsck-passno: 1
`

// A layout with /boot and /var on filesystems of their own: each holds
// its subtree, the root holds empty mount points instead, GRUB finds its
// config and the kernel on the /boot filesystem.
func TestBuildDiskSeparateFilesystems(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "debugfs", "mkfs.vfat", "mmd", "mcopy", "grub-mkimage", "grub-fstest", "sfdisk", "blkid", "unshare")
	tree := makeTree(t)
	mustWrite(t, filepath.Join(tree, "boot/efi/EFI/debian/grubx64.efi"), []byte("distro grub"), 0o644)
	mustWrite(t, filepath.Join(tree, "var/log/syslog"), []byte("log line\n"), 0o640)
	if err := os.Chmod(filepath.Join(tree, "var"), 0o751); err != nil {
		t.Fatal(err)
	}
	before := snapshotTree(t, tree)
	ro := readOnlyView(t, tree)

	d, img := planAndBuild(t, DiskSpec{RootDir: ro, RootUUID: testRootUUID, Layout: mustLayout(t, separateBootVarYAML), HeadroomBytes: 32 * MiB})
	if after := snapshotTree(t, tree); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("BuildDisk changed the source tree")
	}
	verifySfdisk(t, img)
	j := readSfdisk(t, img).PartitionTable
	if len(j.Partitions) != 6 || j.Partitions[2].Name != "boot" || j.Partitions[5].Type != LinuxRootX86_64 || j.Partitions[4].Type != "4D21B016-B534-45C2-A9FB-5C16E091FD2D" {
		t.Fatalf("partitions %+v", j.Partitions)
	}
	// DIB's arithmetic: var is 25% of what is free after ESP, BSP, boot and swap.
	free := d.Table.DiskSizeBytes - 2*MiB - (64+8+96+16)*MiB
	if v := d.Filesystem("mkfs_var"); v.SizeBytes != free/4/MiB*MiB || !v.Grows {
		t.Errorf("/var is %d bytes, want 25%% of %d", v.SizeBytes, free)
	}

	root, boot, vr := d.Filesystem("mkfs_root"), d.Filesystem("boot"), d.Filesystem("mkfs_var")
	if boot == nil {
		boot = d.Filesystem("mkfs_boot")
	}
	for _, p := range []*FSPlan{root, boot, vr} {
		tool(t, "e2fsck", "-fn", fsImage(img, p))
	}
	// /boot's files are on the boot filesystem, not on the root, whose
	// /boot is an empty directory; /var likewise.
	if ls := debugfsLs(t, fsImage(img, boot), "/"); !slices.Contains(ls, "vmlinuz-6.1.0-test") || !slices.Contains(ls, "grub") || !slices.Contains(ls, "efi") {
		t.Errorf("boot fs: %v", ls)
	}
	if ls := debugfsLs(t, fsImage(img, boot), "/efi"); len(ls) != 0 {
		t.Errorf("boot fs /efi (the ESP's mount point) holds %v", ls)
	}
	if ls := debugfsLs(t, fsImage(img, root), "/boot"); len(ls) != 0 {
		t.Errorf("root fs /boot holds %v, want an empty mount point", ls)
	}
	if ls := debugfsLs(t, fsImage(img, vr), "/"); !slices.Contains(ls, "sparse") || !slices.Contains(ls, "log") {
		t.Errorf("var fs: %v", ls)
	}
	if ls := debugfsLs(t, fsImage(img, root), "/var"); len(ls) != 0 {
		t.Errorf("root fs /var holds %v", ls)
	}
	if ls := debugfsLs(t, fsImage(img, root), "/"); !slices.Contains(ls, "usr") || !slices.Contains(ls, "etc") || !slices.Contains(ls, "home") {
		t.Errorf("root fs: %v", ls)
	}
	// The mount points keep the tree's mode; /var's filesystem root takes it too.
	if mode, _, _, _, _, _ := debugfsStat(t, fsImage(img, root), "/var"); mode != 0o40751&0o7777 && mode != 0o751 {
		t.Errorf("root fs /var mode %o, want 751", mode)
	}
	if mode, _, _, _, _, _ := debugfsStat(t, fsImage(img, vr), "/"); mode != 0o751 {
		t.Errorf("var fs root mode %o, want 751", mode)
	}
	if out := tool(t, "debugfs", "-R", "stat /sparse", fsImage(img, vr)); !regexp.MustCompile(`Blockcount:\s+8\b`).MatchString(out) {
		t.Errorf("sparse file lost its holes on /var:\n%s", out)
	}
	// The ESP holds the tree's /boot/efi and GRUB.
	esp := fmt.Sprintf("%s@@%d", img, d.Filesystem("mkfs_ESP").OffsetBytes)
	if out := tool(t, "mdir", "-/", "-b", "-i", esp, "::/"); !strings.Contains(out, "grubx64.efi") || !strings.Contains(strings.ToUpper(out), "BOOTX64.EFI") {
		t.Errorf("ESP:\n%s", out)
	}

	// GRUB: the early config searches the boot filesystem with prefix /grub,
	// grub.cfg is there and boots the kernel from it.
	if want := EarlyConfigFor(boot.UUID, "/grub"); d.EarlyConfig != want || d.BootFilesystem != boot.Name {
		t.Errorf("early config %q, want %q", d.EarlyConfig, want)
	}
	checkCoreConfig(t, img, d)
	cfg := tool(t, "grub-fstest", img, "cat", fmt.Sprintf("(loop0,gpt%d)/grub/grub.cfg", boot.Partition.Number))
	for _, want := range []string{"search --no-floppy --fs-uuid --set=root " + boot.UUID, "linux /vmlinuz-6.1.0-test root=UUID=" + testRootUUID} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if k := tool(t, "grub-fstest", img, "cat", fmt.Sprintf("(loop0,gpt%d)/vmlinuz-6.1.0-test", boot.Partition.Number)); k != "not a kernel" {
		t.Errorf("kernel as GRUB reads it: %q", k)
	}

	// swap: a swap signature with the label and UUID fstab uses.
	sw := d.Filesystem("mkfs_swap")
	out := tool(t, "blkid", "-p", "-O", fmt.Sprint(sw.OffsetBytes), "-S", fmt.Sprint(sw.SizeBytes), img)
	for _, want := range []string{`TYPE="swap"`, `LABEL="mkfs_swap"`, `UUID="` + sw.UUID + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("blkid on swap lacks %s: %s", want, out)
		}
	}
	fstab := stdout(t, "debugfs", "-R", "cat /etc/fstab", fsImage(img, root))
	want := "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n" +
		"LABEL=boot /boot ext4 defaults,nodev 0 2\n" +
		"LABEL=MKFS_ESP /boot/efi vfat umask=0077 0 2\n" +
		"LABEL=mkfs_var /var ext4 defaults,noatime 0 2\n" +
		"LABEL=mkfs_swap none swap sw 0 0\n"
	if fstab != want {
		t.Errorf("fstab:\n%s\nwant:\n%s", fstab, want)
	}
}

// Sizes: N% of the space still free, absolute sizes honoured, an
// automatic disk large enough for every filesystem's part of the tree,
// and errors that name the filesystem and the fix.
func TestPlanDiskLayoutSizes(t *testing.T) {
	tree := t.TempDir()
	mustWrite(t, filepath.Join(tree, "var/big"), bytes.Repeat([]byte{1}, 40*int(MiB)), 0o644)
	mustWrite(t, filepath.Join(tree, "boot/vmlinuz"), bytes.Repeat([]byte{2}, 20*int(MiB)), 0o644)
	mustWrite(t, filepath.Join(tree, "etc/hostname"), []byte("x\n"), 0o644)

	// DIB's gpt_efi on a 1 GiB image: sgdisk -n 1:0:+8M -n 2:0:+8M -n 3:0:+1006M.
	d, err := PlanDisk(bg, DiskSpec{RootDir: tree, Layout: mustLayout(t, string(fixture(t, "gpt_efi"))), SizeBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, p := range d.Table.Partitions {
		sizes = append(sizes, p.SizeBytes/MiB)
	}
	if !slices.Equal(sizes, []int64{8, 8, 1006}) || d.Table.Partitions[2].Name != "Root Part" {
		t.Errorf("gpt_efi partitions %v MiB, want DIB's [8 8 1006]", sizes)
	}

	// Automatic: /var (25% of the free space) decides the disk size.
	l := mustLayout(t, separateBootVarYAML)
	d, err = PlanDisk(bg, DiskSpec{RootDir: tree, Layout: l, HeadroomBytes: 64 * MiB})
	if err != nil {
		t.Fatal(err)
	}
	v := d.Filesystem("mkfs_var")
	if v.FreeBytes < 0 || v.Usage.DataBytes != 40*MiB || d.Table.DiskSizeBytes%(64*MiB) != 0 {
		t.Errorf("/var: %+v, disk %d", v, d.Table.DiskSizeBytes)
	}
	if r := d.Filesystem("mkfs_root"); r.Usage.DataBytes != 4096 || r.Usage.Dirs != 4 { // /, etc, and the empty /var and /boot
		t.Errorf("root usage %+v", r.Usage)
	}
	// The same disk one step smaller would not give /var its share.
	small, err := PlanDisk(bg, DiskSpec{RootDir: tree, Layout: l, SizeBytes: d.Table.DiskSizeBytes - 64*MiB})
	if err == nil {
		if sv := small.Filesystem("mkfs_var"); sv.FreeBytes >= v.FreeBytes {
			t.Errorf("a smaller disk gave /var as much room")
		}
	}
	// Too small: the error names /var and a size that works.
	_, err = PlanDisk(bg, DiskSpec{RootDir: tree, Layout: l, SizeBytes: 300 * MiB})
	var ts *TooSmallError
	if !errors.As(err, &ts) || ts.MountPoint != "/var" || !strings.Contains(err.Error(), "the /var filesystem (mkfs_var) needs at least") {
		t.Fatalf("300 MiB disk: %v", err)
	}
	if _, err := PlanDisk(bg, DiskSpec{RootDir: tree, Layout: l, SizeBytes: ts.NeedBytes}); err != nil {
		t.Errorf("the size the error asked for (%s): %v", humanBytes(ts.NeedBytes), err)
	}
	// A fixed-size /boot too small for its content: only the layout can fix it.
	tiny := strings.Replace(separateBootVarYAML, "size: 96MiB", "size: 16MiB", 1)
	_, err = PlanDisk(bg, DiskSpec{RootDir: tree, Layout: mustLayout(t, tiny)})
	if err == nil || !strings.Contains(err.Error(), "partition boot is 16 MiB but the ext4 filesystem") || !strings.Contains(err.Error(), "larger size in the block-device config") {
		t.Errorf("16 MiB /boot: %v", err)
	}
	// Fixed partitions larger than the disk.
	_, err = PlanDisk(bg, DiskSpec{RootDir: tree, Layout: l, SizeBytes: 100 * MiB})
	if !errors.As(err, &ts) {
		t.Errorf("100 MiB disk: %v", err)
	}
	// local_loop size wins over the spec's.
	sized := strings.Replace(separateBootVarYAML, "name: image0", "name: image0\n    size: 2GiB", 1)
	if d, err := PlanDisk(bg, DiskSpec{RootDir: tree, Layout: mustLayout(t, sized), SizeBytes: 8 << 30}); err != nil || d.Table.DiskSizeBytes != 2<<30 {
		t.Errorf("local_loop size: %v", err)
	}
}

func TestPlanDiskLayoutRefusals(t *testing.T) {
	tree := t.TempDir()
	mustWrite(t, filepath.Join(tree, "etc/hostname"), []byte("x\n"), 0o644)
	linked := t.TempDir()
	if err := os.Symlink("/elsewhere", filepath.Join(linked, "var")); err != nil {
		t.Fatal(err)
	}
	if _, err := PlanDisk(bg, DiskSpec{RootDir: linked, Layout: mustLayout(t, separateBootVarYAML)}); err == nil || !strings.Contains(err.Error(), "mount point /var: /var is a symlink in the tree") {
		t.Errorf("/var a symlink: %v", err)
	}
	for _, c := range []struct{ yaml, want string }{
		{"- local_loop: {name: image0}\n- mkfs: {name: data, base: image0, type: ext4, mount: {mount_point: /data}}", "no filesystem is mounted at /"},
		{"- local_loop: {name: image0, block_size: 4096}\n- mkfs: {name: r, base: image0, type: ext4, mount: {mount_point: /}}", "512-byte-sector"},
		{string(mustRead(t, "testdata/blockdevice/lvm_tree_multiple_partitions.yaml")), "is not an MBR type"},
		{string(mustRead(t, "testdata/blockdevice/lvm_tree_thin_provision.yaml")), "thin provisioning needs device-mapper"},
		{"- local_loop: {name: image0}\n- partitioning: {base: image0, label: gpt, partitions: [{name: r, size: 100%, mkfs: {type: ext4, uuid: not-a-uuid, mount: {mount_point: /}}}]}", "must be a UUID"},
	} {
		_, err := PlanDisk(bg, DiskSpec{RootDir: tree, Layout: mustLayout(t, c.yaml)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The swap header is mkswap's, byte for byte.
func TestSwapHeaderMatchesMkswap(t *testing.T) {
	needTools(t, "mkswap")
	dir := t.TempDir()
	uuid := "0b5c3e88-53f3-4d6b-9e34-2f1c7d1f7a01"
	ref, ours := filepath.Join(dir, "ref"), filepath.Join(dir, "ours")
	for _, p := range []string{ref, ours} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Truncate(p, 8*MiB)
	}
	tool(t, "mkswap", "-L", "swaplabel", "-U", uuid, ref)
	f, err := os.OpenFile(ours, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSwapHeader(f, 0, 8*MiB, "swaplabel", uuid); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a, _ := os.ReadFile(ref)
	b, _ := os.ReadFile(ours)
	if !bytes.Equal(a[:swapPageSize], b[:swapPageSize]) {
		for i := range swapPageSize {
			if a[i] != b[i] {
				t.Fatalf("header differs from mkswap's at byte %d: %#x vs %#x", i, b[i], a[i])
			}
		}
	}
	if err := writeSwapHeader(f, 0, 4096, "x", uuid); err == nil {
		t.Error("a one-page swap area was accepted")
	}
}

// FAT geometry: FAT32 from 33 MiB (UEFI wants it), FAT16 below, and each
// size formats and passes fsck.
func TestFATGeometry(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.vfat", "minfo")
	for _, c := range []struct {
		size int64
		bits int
		spc  int64
	}{{2 * MiB, 12, 1}, {8 * MiB, 16, 1}, {32 * MiB, 16, 2}, {33 * MiB, 32, 1}, {100 * MiB, 32, 1}, {550 * MiB, 32, 8}} {
		bits, spc := fatGeometry(c.size)
		if bits != c.bits || spc != c.spc {
			t.Errorf("%s: FAT%d with %d sectors per cluster, want FAT%d with %d", humanBytes(c.size), bits, spc, c.bits, c.spc)
		}
		img := filepath.Join(t.TempDir(), "fat")
		os.WriteFile(img, nil, 0o600)
		os.Truncate(img, 3*MiB+c.size)
		tool(t, "mkfs.vfat", "-F", fmt.Sprint(bits), "-s", fmt.Sprint(spc), "-S", "512", "-h", "6144", "--offset=6144", img, fmt.Sprint(c.size/1024))
		info := tool(t, "minfo", "-i", fmt.Sprintf("%s@@%d", img, 3*MiB), "::")
		if m := regexp.MustCompile(`cluster size: (\d+) sectors`).FindStringSubmatch(info); m == nil || m[1] != fmt.Sprint(spc) {
			t.Errorf("%s: minfo %s", humanBytes(c.size), info)
		}
		if c.size-fatCapacity(c.size) > c.size/20+MiB {
			t.Errorf("%s: capacity %s is implausibly small", humanBytes(c.size), humanBytes(fatCapacity(c.size)))
		}
	}
}

var _ = syscall.Getuid

// DIB's fallback when no block-device element gives a layout: one
// filesystem on the whole image, no partition table, no boot loader.
func TestBuildDiskFallbackLayout(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "debugfs")
	tree := makeTree(t)
	l := mustLayout(t, "- local_loop:\n    name: image0\n- mkfs:\n    name: mkfs_root\n    base: image0\n    mount:\n      mount_point: /\n      fstab: {options: defaults, fsck-passno: 1}\n")
	d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.BIOS || d.Spec.UEFI || d.Table.Kind != "" {
		t.Errorf("fallback: BIOS %v UEFI %v table %q", d.Spec.BIOS, d.Spec.UEFI, d.Table.Kind)
	}
	img := filepath.Join(t.TempDir(), "fs.raw")
	if err := BuildDisk(bg, d, img); err != nil {
		t.Fatal(err)
	}
	tool(t, "e2fsck", "-fn", img)
	if st, _ := os.Stat(img); st.Size() != d.Table.DiskSizeBytes || d.Filesystems[0].SizeBytes != st.Size() {
		t.Errorf("image %d bytes, fs %d", st.Size(), d.Filesystems[0].SizeBytes)
	}
	// Asking for a boot loader there is an error that says why.
	if _, err := PlanDisk(bg, DiskSpec{RootDir: tree, Layout: l, BIOS: true}); err == nil || !strings.Contains(err.Error(), "no partition table") {
		t.Errorf("BIOS on the fallback: %v", err)
	}
}
