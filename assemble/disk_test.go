package assemble

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"builder/internal/testreq"
)

const testRootUUID = "5e3f9c6a-0d1b-4c55-9d8e-6f1a2b3c4d5e"

// hybridGPTYAML is the disk builder made before it read DIB's layouts,
// the one these tests have always checked: GPT with a 1 MiB BIOS boot
// partition, a 100 MiB ESP with the root's fstab options, and the root
// (the discoverable-partitions root type) filling the rest.
const hybridGPTYAML = `
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: bios
        type: 'EF02'
        size: 1MiB
      - name: esp
        type: 'EF00'
        size: 100MiB
        mkfs:
          type: vfat
          label: ESP
          mount:
            mount_point: /boot/efi
            fstab:
              options: "umask=0077,nofail"
              fsck-passno: 2
      - name: root
        type: '8304'
        size: 100%
        mkfs:
          mount:
            mount_point: /
            fstab:
              options: "errors=remount-ro"
              fsck-passno: 1
`

// mbrDiskYAML is that disk on an MBR: an ESP of type 0xEF first (with
// UEFI), and the root, active, filling the rest.
func mbrDiskYAML(uefi bool) string {
	y := `
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: mbr
    partitions:
`
	if uefi {
		y += `      - name: esp
        type: '0xEF'
        size: 100MiB
        flags: [primary]
        mkfs:
          type: vfat
          label: ESP
          mount:
            mount_point: /boot/efi
            fstab:
              options: "umask=0077,nofail"
              fsck-passno: 2
`
	}
	return y + `      - name: root
        size: 100%
        flags: [boot, primary]
        mkfs:
          mount:
            mount_point: /
            fstab:
              options: "errors=remount-ro"
              fsck-passno: 1
`
}

// makeTree builds a small root tree with the cases that copying gets wrong:
// hard links, short and long symlinks, setuid, foreign owners, an empty
// file, a private directory, a fifo, a sparse file, a UTF-8 name, and a few
// hundred ordinary files.
func makeTree(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	mustWrite(t, filepath.Join(root, "etc/hostname"), []byte("builder\n"), 0o644)
	mustWrite(t, filepath.Join(root, "etc/fstab"), []byte("# old fstab from the tree\n"), 0o644)
	mustWrite(t, filepath.Join(root, "usr/bin/tool"), []byte("#!/bin/sh\necho tool\n"), 0o755)
	mustWrite(t, filepath.Join(root, "usr/bin/su"), []byte("setuid binary"), 0o755)
	if err := os.Chmod(filepath.Join(root, "usr/bin/su"), 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(root, "home/user/owned"), []byte("mine"), 0o640)
	if err := os.Lchown(filepath.Join(root, "home/user/owned"), 1234, 5678); err != nil {
		testreq.Missing(t, "cannot chown (needs root): %v", err)
	}
	mustWrite(t, filepath.Join(root, "empty"), nil, 0o644)
	if err := os.MkdirAll(filepath.Join(root, "secret"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "secret"), 0o700)
	mustWrite(t, filepath.Join(root, "secret/key"), []byte("k"), 0o600)
	mustWrite(t, filepath.Join(root, "usr/bin/hl-a"), []byte(strings.Repeat("h", 9000)), 0o755)
	for _, n := range []string{"hl-b", "hl-c"} {
		if err := os.Link(filepath.Join(root, "usr/bin/hl-a"), filepath.Join(root, "usr/bin", n)); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(root, "boot/vmlinuz-6.1.0-test"), []byte("not a kernel"), 0o644)
	if err := os.Symlink("boot/vmlinuz-6.1.0-test", filepath.Join(root, "vmlinuz")); err != nil {
		t.Fatal(err)
	}
	long := "/usr/share/" + strings.Repeat("very-long-directory-name/", 6) + "target"
	if err := os.Symlink(long, filepath.Join(root, "usr/lib-long-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "run/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, err := os.Create(filepath.Join(root, "var/sparse"))
	if err != nil {
		os.MkdirAll(filepath.Join(root, "var"), 0o755)
		if sp, err = os.Create(filepath.Join(root, "var/sparse")); err != nil {
			t.Fatal(err)
		}
	}
	sp.WriteAt([]byte("data in the middle"), 20*MiB)
	sp.Truncate(50 * MiB)
	sp.Close()
	mustWrite(t, filepath.Join(root, "usr/share/naïve-ünïcode"), []byte("utf-8"), 0o644)
	for i := range 300 {
		mustWrite(t, filepath.Join(root, fmt.Sprintf("usr/share/many/d%02d/file-%03d", i%10, i)),
			bytes.Repeat([]byte{byte(i)}, i*97), 0o644)
	}
	return root
}

// snapshotTree records everything mkfs could change in a tree.
func snapshotTree(t testing.TB, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		s := fmt.Sprintf("%v %d:%d %d %d.%d", info.Mode(), st.Uid, st.Gid, info.Size(), st.Mtim.Sec, st.Mtim.Nsec)
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		m[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readOnlyView bind-mounts root read-only, so the test proves BuildDisk
// only reads the tree. Without the privilege to mount it returns root.
func readOnlyView(t *testing.T, root string) string {
	t.Helper()
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(root, ro, "", syscall.MS_BIND, ""); err != nil {
		t.Logf("cannot bind-mount (%v): using the tree as it is", err)
		return root
	}
	t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
	if err := syscall.Mount("", ro, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	if err := os.WriteFile(filepath.Join(ro, "probe"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("the read-only view is writable: %v", err)
	}
	return ro
}

func debugfsStat(t *testing.T, img string, p string) (mode, uid, gid, size, links, ino int64) {
	t.Helper()
	out := tool(t, "debugfs", "-R", "stat "+p, img)
	field := func(re string) int64 {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("debugfs stat %s: no %s in\n%s", p, re, out)
		}
		var n int64
		fmt.Sscanf(m[1], "%o", &n)
		if !strings.Contains(re, "Mode") {
			fmt.Sscanf(m[1], "%d", &n)
		}
		return n
	}
	return field(`Mode:\s+(\d+)`), field(`User:\s+(\d+)`), field(`Group:\s+(\d+)`), field(`Size:\s+(\d+)`), field(`Links:\s+(\d+)`), field(`Inode:\s+(\d+)`)
}

// BuildDisk on a read-only tree: a valid GPT, an ext4 root that e2fsck
// finds clean and that keeps owners, modes, links and holes, injected
// files, an ESP with BOOTX64.EFI, and GRUB's boot sector and core image
// in place; GRUB's own drivers read it all back.
func TestBuildDiskHybridGPT(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "debugfs", "dumpe2fs", "mkfs.vfat", "mmd", "mcopy", "mdir", "minfo",
		"grub-mkimage", "grub-fstest", "sfdisk")
	tree := makeTree(t)
	before := snapshotTree(t, tree)
	ro := readOnlyView(t, tree)

	headroom := 64 * MiB
	d, err := PlanDisk(bg, DiskSpec{RootDir: ro, RootUUID: testRootUUID, ESPVolumeID: 0x1234ABCD, HeadroomBytes: headroom,
		MkfsOptions: []string{"-E", "lazy_itable_init=0"}, Layout: mustLayout(t, hybridGPTYAML)})
	if err != nil {
		t.Fatal(err)
	}
	root := d.Filesystem("mkfs_root")
	grubCfg := GrubConfig(GrubConfigSpec{RootUUID: d.Spec.RootUUID, Serial: DefaultSerial, Timeout: 1, Title: "Test Linux"})
	d.Spec.Files = append(d.Spec.Files,
		File{Path: "/boot/grub/grub.cfg", Data: []byte(grubCfg)},
		File{Path: "/etc/fstab", Data: []byte(d.Fstab())},
		File{Path: "/usr/local/sbin/setuid-injected", Data: []byte("x"), Mode: 0o755 | fs.ModeSetuid})
	outDir := t.TempDir()
	img := filepath.Join(outDir, "disk.raw")
	if err := BuildDisk(bg, d, img); err != nil {
		t.Fatal(err)
	}
	noTempFiles(t, outDir)
	if d.Path != img {
		t.Errorf("Disk.Path = %q", d.Path)
	}
	if after := snapshotTree(t, tree); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("BuildDisk changed the source tree")
	}

	// Partition table: three partitions, verified after InstallBIOSBoot.
	verifySfdisk(t, img)
	j := readSfdisk(t, img).PartitionTable
	if len(j.Partitions) != 3 || j.Partitions[0].Type != BIOSBoot || j.Partitions[1].Type != ESP || j.Partitions[2].Type != LinuxRootX86_64 {
		t.Fatalf("partitions: %+v", j.Partitions)
	}
	if j.Partitions[2].Start*512 != root.Partition.StartBytes || j.Partitions[2].Size*512 != d.RootFSBytes {
		t.Errorf("root partition %+v, planned %+v", j.Partitions[2], root.Partition)
	}
	st, _ := os.Stat(img)
	if st.Size() != d.Table.DiskSizeBytes || st.Size()%(64*MiB) != 0 {
		t.Errorf("image is %d bytes, planned %d (a multiple of 64 MiB)", st.Size(), d.Table.DiskSizeBytes)
	}
	if st.Sys().(*syscall.Stat_t).Blocks*512 > st.Size()/2 {
		t.Errorf("image is not sparse: %d of %d bytes allocated", st.Sys().(*syscall.Stat_t).Blocks*512, st.Size())
	}

	// Root filesystem.
	rootFS := fmt.Sprintf("%s?offset=%d", img, root.Partition.StartBytes)
	tool(t, "e2fsck", "-fn", rootFS)
	h := tool(t, "dumpe2fs", "-h", rootFS)
	if v := dumpe2fsField(t, h, "Filesystem volume name"); v != DefaultRootLabel {
		t.Errorf("label %q", v)
	}
	if v := dumpe2fsField(t, h, "Filesystem UUID"); v != testRootUUID {
		t.Errorf("UUID %q", v)
	}
	if f := dumpe2fsField(t, h, "Filesystem features"); strings.Contains(f, "orphan_file") || strings.Contains(f, "metadata_csum_seed") {
		t.Errorf("features %q include one older e2fsck rejects", f)
	}
	if n := atoi64(t, dumpe2fsField(t, h, "Block count")); n*4096 != d.RootFSBytes {
		t.Errorf("ext4 has %d blocks, the partition %d bytes", n, d.RootFSBytes)
	}
	free := atoi64(t, dumpe2fsField(t, h, "Free blocks")) - atoi64(t, dumpe2fsField(t, h, "Reserved block count"))
	if free*4096 < headroom {
		t.Errorf("only %s available in the root fs, asked for %s", humanBytes(free*4096), humanBytes(headroom))
	}
	if n := atoi64(t, dumpe2fsField(t, h, "Inode count")); n < root.Inodes {
		t.Errorf("inode count %d < the %d asked for", n, root.Inodes)
	}

	for _, c := range []struct {
		path             string
		mode, uid, gid   int64
		size, links, ino int64
	}{
		{path: "/usr/bin/su", mode: 04755, size: 13, links: 1},
		{path: "/home/user/owned", mode: 0640, uid: 1234, gid: 5678, size: 4, links: 1},
		{path: "/empty", mode: 0644, size: 0, links: 1},
		{path: "/secret", mode: 0700, size: 4096, links: 2},
		{path: "/usr/bin/hl-a", mode: 0755, size: 9000, links: 3},
		{path: "/usr/bin/hl-c", mode: 0755, size: 9000, links: 3},
		{path: "/var/sparse", mode: 0644, size: 50 * MiB, links: 1},
		{path: "/etc/fstab", mode: 0644, size: int64(len(d.Fstab())), links: 1},
		{path: "/usr/local/sbin/setuid-injected", mode: 04755, size: 1, links: 1},
	} {
		mode, uid, gid, size, links, _ := debugfsStat(t, rootFS, c.path)
		if mode != c.mode || uid != c.uid || gid != c.gid || size != c.size || links != c.links {
			t.Errorf("%s: mode %o uid %d gid %d size %d links %d; want %o %d %d %d %d",
				c.path, mode, uid, gid, size, links, c.mode, c.uid, c.gid, c.size, c.links)
		}
	}
	_, _, _, _, _, inoA := debugfsStat(t, rootFS, "/usr/bin/hl-a")
	_, _, _, _, _, inoB := debugfsStat(t, rootFS, "/usr/bin/hl-b")
	if inoA != inoB {
		t.Errorf("hard links became separate inodes %d and %d", inoA, inoB)
	}
	if out := tool(t, "debugfs", "-R", "stat /var/sparse", rootFS); !regexp.MustCompile(`Blockcount:\s+8\b`).MatchString(out) {
		t.Errorf("sparse file lost its holes:\n%s", out)
	}
	if out := tool(t, "debugfs", "-R", "stat /run/fifo", rootFS); !strings.Contains(out, "Type: FIFO") {
		t.Errorf("fifo not copied:\n%s", out)
	}
	if out := tool(t, "debugfs", "-R", "cat /etc/fstab", rootFS); !strings.Contains(out, "LABEL=cloudimg-rootfs / ext4 errors=remount-ro 0 1") ||
		!strings.Contains(out, "LABEL=ESP /boot/efi vfat umask=0077,nofail 0 2") {
		t.Errorf("fstab in the image:\n%s", out)
	}

	if out := tool(t, "debugfs", "-R", "stat /vmlinuz", rootFS); !strings.Contains(out, `Fast link dest: "boot/vmlinuz-6.1.0-test"`) {
		t.Errorf("/vmlinuz symlink:\n%s", out)
	}
	if out := tool(t, "debugfs", "-R", "stat /usr/lib-long-link", rootFS); !strings.Contains(out, "Type: symlink") || strings.Contains(out, "Fast link") {
		t.Errorf("long symlink:\n%s", out)
	}

	// GRUB's view of the disk.
	ls := tool(t, "grub-fstest", img, "ls", "(loop0,gpt3)/")
	for _, n := range []string{"etc/", "usr/", "home/", "secret/", "empty", "vmlinuz", "boot/", "lost+found/"} {
		if !strings.Contains(ls, n) {
			t.Errorf("grub-fstest ls (loop0,gpt3)/ lacks %s: %s", n, ls)
		}
	}
	if cfg := tool(t, "grub-fstest", img, "cat", "(loop0,gpt3)/boot/grub/grub.cfg"); cfg != grubCfg {
		t.Errorf("grub.cfg as GRUB reads it:\n%s\nwant:\n%s", cfg, grubCfg)
	}
	// GRUB shows 8.3 names in lower case; FAT is case-insensitive.
	// grub.cfg boots /vmlinuz: GRUB must follow the symlink.
	if k := tool(t, "grub-fstest", img, "cat", "(loop0,gpt3)/vmlinuz"); k != "not a kernel" {
		t.Errorf("GRUB reads /vmlinuz as %q", k)
	}
	if ls := tool(t, "grub-fstest", img, "ls", "(loop0,gpt2)/EFI/BOOT"); !strings.Contains(strings.ToUpper(ls), "BOOTX64.EFI") {
		t.Errorf("grub-fstest ls (loop0,gpt2)/EFI/BOOT: %s", ls)
	}

	// ESP through mtools.
	esp := fmt.Sprintf("%s@@%d", img, d.ESPPartition.StartBytes)
	if out := tool(t, "mdir", "-i", esp, "::/EFI/BOOT"); !strings.Contains(out, "BOOTX64  EFI") {
		t.Errorf("mdir ::/EFI/BOOT:\n%s", out)
	}
	info := tool(t, "minfo", "-i", esp, "::")
	for _, want := range []string{"serial number: 1234ABCD", `disk type="FAT32   "`, "cluster size: 1 sectors",
		fmt.Sprintf("hidden sectors: %d", d.ESPPartition.StartBytes/512), `disk label="ESP        "`} {
		if !strings.Contains(info, want) {
			t.Errorf("minfo lacks %q:\n%s", want, info)
		}
	}
	efi := filepath.Join(t.TempDir(), "BOOTX64.EFI")
	tool(t, "mcopy", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", efi)
	b, err := os.ReadFile(efi)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("MZ")) || !bytes.Contains(b, []byte(EarlyConfigFor(testRootUUID, "/boot/grub"))) {
		t.Errorf("BOOTX64.EFI is not a PE image with the early config embedded")
	}

	checkBIOSBoot(t, img, d.BIOSBootPartition.StartBytes/512, d.BIOSBootPartition.SizeBytes/512)
}

// checkBIOSBoot checks sector 0 against boot.img and the core image's
// first-sector blocklist, as grub-bios-setup would have left them.
func checkBIOSBoot(t *testing.T, img string, coreLBA, roomSectors int64) {
	t.Helper()
	boot, err := os.ReadFile(filepath.Join(DefaultGrubPCDir, "boot.img"))
	if err != nil {
		t.Fatal(err)
	}
	diskboot, err := os.ReadFile(filepath.Join(DefaultGrubPCDir, "diskboot.img"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s0 := make([]byte, 512)
	f.ReadAt(s0, 0)
	for _, r := range [][2]int{{0, 3}, {0x5a, 0x5c}, {0x68, 0x1b8}} {
		if !bytes.Equal(s0[r[0]:r[1]], boot[r[0]:r[1]]) {
			t.Errorf("sector 0 bytes %#x..%#x differ from boot.img", r[0], r[1])
		}
	}
	if k := binary.LittleEndian.Uint64(s0[0x5c:]); int64(k) != coreLBA {
		t.Errorf("boot.img kernel sector %d, want %d", k, coreLBA)
	}
	if s0[0x64] != 0xFF || s0[0x66] != 0x90 || s0[0x67] != 0x90 || s0[0x1fe] != 0x55 || s0[0x1ff] != 0xAA {
		t.Errorf("boot.img patches missing: drive %#x check %#x %#x sig %#x%02x", s0[0x64], s0[0x66], s0[0x67], s0[0x1fe], s0[0x1ff])
	}
	core := make([]byte, 512)
	f.ReadAt(core, coreLBA*512)
	if !bytes.Equal(core[:0x1e8], diskboot[:0x1e8]) {
		t.Errorf("LBA %d does not start with diskboot.img", coreLBA)
	}
	start := binary.LittleEndian.Uint64(core[0x1f4:])
	n := int64(binary.LittleEndian.Uint16(core[0x1fc:]))
	seg := binary.LittleEndian.Uint16(core[0x1fe:])
	if int64(start) != coreLBA+1 || n < 50 || n+1 > roomSectors || seg != 0x820 {
		t.Errorf("core.img blocklist {start %d len %d seg %#x}, want {%d, <%d, 0x820}", start, n, seg, coreLBA+1, roomSectors)
	}
	if !bytes.Equal(core[0x1e8:0x1f4], make([]byte, 12)) {
		t.Errorf("core.img blocklist has no terminator")
	}
	// The last core sector holds data, the one after it is untouched.
	lastSec := make([]byte, 512)
	f.ReadAt(lastSec, (coreLBA+n)*512)
	if bytes.Equal(lastSec, make([]byte, 512)) {
		t.Errorf("core.img's last sector (LBA %d) is empty", coreLBA+n)
	}
}

// The MBR variants: core.img in the gap after sector 0, the root marked
// active; with UEFI, an ESP of type 0xEF first.
func TestBuildDiskMBR(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "debugfs", "grub-mkimage", "grub-fstest", "sfdisk", "mkfs.vfat", "mmd", "mcopy")
	tree := makeTree(t)
	for _, c := range []struct {
		name  string
		uefi  bool
		types []string
	}{{"bios", false, []string{"83"}}, {"hybrid", true, []string{"ef", "83"}}} {
		t.Run(c.name, func(t *testing.T) {
			d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, BIOS: true, UEFI: c.uefi, Layout: mustLayout(t, mbrDiskYAML(c.uefi)),
				Files: []File{{Path: "/boot/grub/grub.cfg", Data: []byte(GrubConfig(GrubConfigSpec{RootUUID: testRootUUID}))}}})
			if err != nil {
				t.Fatal(err)
			}
			root := d.Filesystem("mkfs_root").Partition
			if (d.ESPPartition != nil) != c.uefi || d.BIOSBootPartition != nil || root.Number != len(c.types) {
				t.Fatalf("MBR plan: %+v", d.Table)
			}
			img := filepath.Join(t.TempDir(), "mbr.raw")
			if err := BuildDisk(bg, d, img); err != nil {
				t.Fatal(err)
			}
			verifySfdisk(t, img)
			j := readSfdisk(t, img).PartitionTable
			if j.Label != "dos" || len(j.Partitions) != len(c.types) || j.ID != "0x"+strings.ToLower(d.Table.DiskGUID) {
				t.Fatalf("sfdisk: %+v", j)
			}
			for i, typ := range c.types {
				if p := j.Partitions[i]; p.Type != typ || p.Bootable != (typ == "83") {
					t.Errorf("partition %d: %+v, want type %s, active only for the root", i+1, p, typ)
				}
			}
			tool(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", img, root.StartBytes))
			rootDev := fmt.Sprintf("(loop0,msdos%d)/boot/grub", root.Number)
			if ls := tool(t, "grub-fstest", img, "ls", rootDev); !strings.Contains(ls, "grub.cfg") {
				t.Errorf("grub-fstest ls %s: %s", rootDev, ls)
			}
			if c.uefi {
				if ls := tool(t, "grub-fstest", img, "ls", "(loop0,msdos1)/EFI/BOOT"); !strings.Contains(strings.ToUpper(ls), "BOOTX64.EFI") {
					t.Errorf("grub-fstest ls (loop0,msdos1)/EFI/BOOT: %s", ls)
				}
			}
			checkBIOSBoot(t, img, 1, d.Table.Partitions[0].StartBytes/512-1)
		})
	}
}

func TestPlanDisk(t *testing.T) {
	tree := t.TempDir()
	mustWrite(t, filepath.Join(tree, "big"), bytes.Repeat([]byte{1}, 40*int(MiB)), 0o644)
	u, err := MeasureTree(bg, tree)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("too small", func(t *testing.T) {
		_, err := PlanDisk(bg, DiskSpec{RootDir: tree, SizeBytes: 128 * MiB, Layout: mustLayout(t, hybridGPTYAML)})
		var ts *TooSmallError
		if !errors.As(err, &ts) {
			t.Fatalf("PlanDisk with 128 MiB for a 40 MiB tree: %v", err)
		}
		msg := err.Error()
		for _, want := range []string{"image size 128 MiB is too small", "needs at least " + humanBytes(ts.RootFSNeedBytes),
			"content " + humanBytes(u.ContentBytes()), "--image-size 1 or more"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if ts.NeedBytes <= 128*MiB || ts.RootFSNeedBytes < minRootFSBytes(u) {
			t.Errorf("TooSmallError %+v", ts)
		}
		// The size it asks for is enough.
		if _, err := PlanDisk(bg, DiskSpec{RootDir: tree, SizeBytes: ts.NeedBytes, Layout: mustLayout(t, hybridGPTYAML)}); err != nil {
			t.Errorf("PlanDisk with the size the error asked for (%d): %v", ts.NeedBytes, err)
		}
	})

	t.Run("automatic", func(t *testing.T) {
		spec := DiskSpec{RootDir: tree, RootUUID: testRootUUID, HeadroomBytes: defaultHeadroom(u), Layout: mustLayout(t, hybridGPTYAML)}
		d, err := PlanDisk(bg, spec)
		if err != nil {
			t.Fatal(err)
		}
		rootFree := d.Filesystem("mkfs_root").FreeBytes
		if d.RootFSBytes < minRootFSBytes(u)+spec.HeadroomBytes-64*MiB || rootFree < spec.HeadroomBytes {
			t.Errorf("root fs %s with %s free for a tree needing %s plus %s headroom",
				humanBytes(d.RootFSBytes), humanBytes(rootFree), humanBytes(minRootFSBytes(u)), humanBytes(spec.HeadroomBytes))
		}
		if d.Table.DiskSizeBytes%(64*MiB) != 0 || d.Table.DiskSizeBytes < u.ContentBytes() {
			t.Errorf("disk size %d", d.Table.DiskSizeBytes)
		}
		if d.Usage.Files != 1 || d.Usage.DataBytes != 40*MiB {
			t.Errorf("usage %+v", d.Usage)
		}
		// Deterministic: same spec, same table (GUIDs derived from the root UUID).
		d2, err := PlanDisk(bg, spec)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(d.Table) != fmt.Sprint(d2.Table) || d.Layout.ESP().UUID != d2.Layout.ESP().UUID {
			t.Errorf("two plans differ:\n%+v\n%+v", d.Table, d2.Table)
		}
		if d.Table.Partitions[0].GUID == d.Table.Partitions[1].GUID {
			t.Error("partitions share a GUID")
		}
	})

	t.Run("refused specs", func(t *testing.T) {
		l := mustLayout(t, hybridGPTYAML)
		for _, c := range []struct {
			spec DiskSpec
			want string
		}{
			{DiskSpec{RootDir: tree, Layout: l, RootFSType: "btrfs"}, "use ext4"},
			{DiskSpec{RootDir: tree, Layout: l, RootLabel: "a-label-longer-than-16"}, "at most 16"},
			{DiskSpec{RootDir: tree, Layout: l, RootUUID: "not-a-uuid"}, "root UUID"},
			{DiskSpec{RootDir: filepath.Join(tree, "big"), Layout: l}, "not a directory"},
			{DiskSpec{RootDir: tree, Layout: l, MkfsOptions: []string{"-E", "offset=0"}}, "set by builder"},
			{DiskSpec{RootDir: tree, Layout: l, Files: []File{{Path: "etc/fstab"}}}, "absolute path"},
			{DiskSpec{RootDir: tree}, "Layout is nil"},
		} {
			if _, err := PlanDisk(bg, c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("PlanDisk(%+v): %v, want an error containing %q", c.spec, err, c.want)
			}
		}
	})
}

// BuildDisk refuses to make an unbootable disk, and leaves nothing behind
// when it fails half-way.
func TestBuildDiskFailures(t *testing.T) {
	needTools(t, "mkfs.ext4", "grub-mkimage", "mkfs.vfat", "mmd", "mcopy")
	tree := makeTree(t)
	d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, Layout: mustLayout(t, hybridGPTYAML)})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	img := filepath.Join(out, "disk.raw")
	if err := BuildDisk(bg, d, img); err == nil || !strings.Contains(err.Error(), "grub.cfg") {
		t.Errorf("BuildDisk without grub.cfg: %v", err)
	}
	d.Spec.Files = []File{{Path: "/boot/grub/grub.cfg", Data: []byte("x")}}
	if err := BuildDisk(bg, d, filepath.Join(out, "missing-dir", "disk.raw")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("BuildDisk into a missing directory: %v", err)
	}
	// The tree grew after planning: mkfs runs out of space mid-way.
	d2 := *d
	d2.Filesystems = slices.Clone(d.Filesystems)
	root := d2.Filesystem("mkfs_root")
	root.SizeBytes = 16 * MiB // far below the tree (50 MiB sparse file aside, 300 files)
	root.extents = []extent{{root.OffsetBytes, root.SizeBytes}}
	mustWrite(t, filepath.Join(tree, "late"), bytes.Repeat([]byte{7}, 20*int(MiB)), 0o644)
	err = BuildDisk(bg, &d2, img)
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("BuildDisk with a tree that outgrew the plan: %v", err)
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed BuildDisk left %s", img)
	}
	noTempFiles(t, out)
	// A cancelled context stops it the same way.
	ctx, cancel := contextWithCancel()
	cancel()
	if err := BuildDisk(ctx, d, img); err == nil {
		t.Error("BuildDisk with a cancelled context succeeded")
	}
	noTempFiles(t, out)
}
