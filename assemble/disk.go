package assemble

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Defaults of DiskSpec.
const (
	DefaultRootLabel = "cloudimg-rootfs"
	DefaultESPBytes  = 100 * MiB
	biosBootBytes    = 1 * MiB
	diskSizeUnit     = 64 * MiB // automatic sizes are rounded up to this
)

// DiskSpec describes the default "vm" disk: GPT with a BIOS boot partition
// (1 MiB at 1 MiB), an ESP (FAT32) and an ext4 root filling the rest.
type DiskSpec struct {
	RootDir string // the finished tree (may be a read-only mount); never modified
	// SizeBytes is the whole disk, rounded up to 1 MiB. 0 = automatic: the
	// smallest root filesystem holding the tree with HeadroomBytes
	// available, plus the other partitions, rounded up to 64 MiB.
	SizeBytes int64
	// HeadroomBytes is the space left available to users (df's "Avail") in
	// an automatically sized root filesystem; 0 leaves none. DefaultHeadroom
	// gives the usual 10% + 256 MiB.
	HeadroomBytes int64
	RootLabel     string // default DefaultRootLabel; at most 16 bytes
	RootFSType    string // "ext4" (default); "xfs" is refused on this loopless path
	// RootUUID is the ext4 UUID. Give it for reproducible builds; "" picks a
	// random one. DiskGUID, partition GUIDs and ESPVolumeID are derived from
	// it when they are not given.
	RootUUID    string
	ESPVolumeID uint32 // FAT volume id, shown as XXXX-XXXX
	DiskGUID    string // GPT disk GUID (MBR: 8 hex digits of disk signature)
	MkfsOptions []string
	GrubPCDir   string // default DefaultGrubPCDir (boot.img, modules)
	GrubEFIDir  string // default DefaultGrubEFIDir
	BIOS, UEFI  bool   // boot loaders to install; both false means both (hybrid)

	PartitionTable TableKind // GPT (default) or MBR (BIOS boot from the post-MBR gap)
	ESPSizeBytes   int64     // default DefaultESPBytes; at least 33 MiB (FAT32 minimum with 512-byte clusters)
	RootTypeGUID   string    // GPT type of the root partition; default LinuxRootX86_64
	// Files are written into the root filesystem after mkfs, owned by
	// root, replacing files of the tree (which stays untouched): typically
	// /boot/grub/grub.cfg from GrubConfig and /etc/fstab from Disk.Fstab.
	Files []File
}

// File is a file BuildDisk writes into the root filesystem.
type File struct {
	Path string      // absolute path inside the image
	Data []byte      //
	Mode fs.FileMode // permission bits; 0 means 0644
}

// Disk is a planned (and, after BuildDisk, written) disk image.
type Disk struct {
	Path          string // set by BuildDisk
	Table         Table
	RootPartition Partition
	ESPPartition  *Partition // nil without UEFI
	RootFSBytes   int64      // the ext4 size, equal to the root partition
	Usage         TreeUsage

	Spec              DiskSpec   // the spec with defaults and derived IDs filled in
	BIOSBootPartition *Partition // GPT with BIOS: where core.img goes
	RootInodes        int64      // the -N given to mkfs.ext4
	RootFreeBytes     int64      // estimated free space in the root fs after the tree
}

// TooSmallError reports a disk size that cannot hold the tree.
type TooSmallError struct {
	SizeBytes       int64 // the disk size asked for
	NeedBytes       int64 // the smallest disk that holds the tree
	RootFSNeedBytes int64 // the smallest root filesystem that holds the tree
	ContentBytes    int64 // the tree's data, directories and symlinks
}

func (e *TooSmallError) Error() string {
	gib := ceilDiv(e.NeedBytes, 1<<30)
	return fmt.Sprintf("image size %s is too small: the root filesystem needs at least %s (content %s + journal + metadata); use --image-size %d or more",
		humanBytes(e.SizeBytes), humanBytes(e.RootFSNeedBytes), humanBytes(e.ContentBytes), gib)
}

// normalize fills in defaults and derived identifiers and checks the spec.
func normalize(s DiskSpec) (DiskSpec, error) {
	if s.RootDir == "" {
		return s, errors.New("disk spec: RootDir is empty: give the finished root tree")
	}
	st, err := os.Stat(s.RootDir)
	if err != nil {
		return s, fmt.Errorf("disk spec: root tree: %w", err)
	}
	if !st.IsDir() {
		return s, fmt.Errorf("disk spec: root tree %s is not a directory", s.RootDir)
	}
	switch s.RootFSType {
	case "", "ext4":
		s.RootFSType = "ext4"
	case "xfs":
		return s, errors.New("root filesystem type xfs is not supported without loop devices: mkfs.xfs cannot populate from a directory in Debian 12's xfsprogs 6.1 (-p takes a proto file); use ext4")
	default:
		return s, fmt.Errorf("root filesystem type %q is not supported: use ext4", s.RootFSType)
	}
	if s.RootLabel == "" {
		s.RootLabel = DefaultRootLabel
	}
	if len(s.RootLabel) > 16 || strings.ContainsAny(s.RootLabel, " \t\n'\"") {
		return s, fmt.Errorf("root label %q: ext4 labels are at most 16 bytes, without spaces or quotes", s.RootLabel)
	}
	if s.RootUUID == "" {
		if s.RootUUID, err = randomUUID(); err != nil {
			return s, err
		}
	}
	if _, err := parseGUID(s.RootUUID); err != nil {
		return s, fmt.Errorf("root UUID: %w", err)
	}
	s.RootUUID = strings.ToLower(s.RootUUID)
	if s.PartitionTable == "" {
		s.PartitionTable = GPT
	}
	switch s.PartitionTable {
	case GPT:
		if s.DiskGUID == "" {
			s.DiskGUID = derivedGUID(s.RootUUID, "disk")
		}
		if _, err := parseGUID(s.DiskGUID); err != nil {
			return s, fmt.Errorf("disk GUID: %w", err)
		}
		s.DiskGUID = strings.ToUpper(s.DiskGUID)
	case MBR:
		if s.DiskGUID == "" {
			s.DiskGUID = fmt.Sprintf("%08X", derivedUint32(s.RootUUID, "mbr"))
		}
		sig, err := parseMBRSignature(s.DiskGUID)
		if err != nil {
			return s, err
		}
		s.DiskGUID = fmt.Sprintf("%08X", sig)
	default:
		return s, fmt.Errorf("partition table %q: use %q or %q", s.PartitionTable, GPT, MBR)
	}
	if s.ESPVolumeID == 0 {
		s.ESPVolumeID = derivedUint32(s.RootUUID, "esp")
	}
	if !s.BIOS && !s.UEFI {
		s.BIOS, s.UEFI = true, true
	}
	if s.GrubPCDir == "" {
		s.GrubPCDir = DefaultGrubPCDir
	}
	if s.GrubEFIDir == "" {
		s.GrubEFIDir = DefaultGrubEFIDir
	}
	if s.ESPSizeBytes == 0 {
		s.ESPSizeBytes = DefaultESPBytes
	}
	if s.ESPSizeBytes < 33*MiB || s.ESPSizeBytes%MiB != 0 {
		return s, fmt.Errorf("ESP size %d bytes: must be a whole number of MiB, at least 33 MiB (FAT32 needs 65525 clusters)", s.ESPSizeBytes)
	}
	if s.RootTypeGUID == "" {
		s.RootTypeGUID = LinuxRootX86_64
	}
	if _, err := parseGUID(s.RootTypeGUID); err != nil {
		return s, fmt.Errorf("root partition type: %w", err)
	}
	s.RootTypeGUID = strings.ToUpper(s.RootTypeGUID)
	if s.SizeBytes < 0 || s.HeadroomBytes < 0 {
		return s, errors.New("disk spec: SizeBytes and HeadroomBytes must not be negative")
	}
	for _, f := range s.Files {
		if err := checkImagePath(f.Path); err != nil {
			return s, err
		}
	}
	return s, nil
}

// checkImagePath accepts the paths debugfs can take unquoted.
func checkImagePath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("file %q: give a clean absolute path inside the image", p)
	}
	if strings.ContainsAny(p, " \t\n\"'\\") {
		return fmt.Errorf("file %q: paths with spaces, quotes or backslashes are not supported", p)
	}
	return nil
}

// PlanDisk measures the tree and lays out the disk without writing
// anything. With SizeBytes set it returns a *TooSmallError when the disk
// cannot hold the tree, so callers fail before the slow steps.
func PlanDisk(ctx context.Context, spec DiskSpec) (*Disk, error) {
	s, err := normalize(spec)
	if err != nil {
		return nil, err
	}
	opts, err := parseMkfsOptions(s.MkfsOptions)
	if err != nil {
		return nil, err
	}
	u, err := MeasureTree(ctx, s.RootDir)
	if err != nil {
		return nil, err
	}
	if len(u.MountPoints) > 0 {
		return nil, fmt.Errorf("root tree %s has other filesystems mounted at %s: mkfs.ext4 -d would copy their content; unmount them first",
			s.RootDir, strings.Join(u.MountPoints, ", "))
	}
	// Plan for the injected files too (directories created for them are
	// within the allowance).
	need := u
	for _, f := range s.Files {
		need.DataBytes += roundUp(int64(len(f.Data)), blockBytes)
		need.Inodes++
	}

	// Partitions before the root, and space kept after it.
	head := MiB // alignment gap: MBR/GPT, and core.img on MBR
	if s.PartitionTable == GPT && s.BIOS {
		head += biosBootBytes
	}
	if s.UEFI {
		head += s.ESPSizeBytes
	}
	tail := int64(0)
	if s.PartitionTable == GPT {
		tail = MiB // backup GPT
	}

	minRoot, err := opts.minFSBytes(need, 0)
	if err != nil {
		return nil, fmt.Errorf("size root filesystem: %w", err)
	}
	var diskBytes int64
	if s.SizeBytes == 0 {
		root, err := opts.minFSBytes(need, s.HeadroomBytes)
		if err != nil {
			return nil, fmt.Errorf("size root filesystem: %w", err)
		}
		diskBytes = roundUp(head+root+tail, diskSizeUnit)
	} else {
		diskBytes = roundUp(s.SizeBytes, MiB)
	}
	rootBytes := diskBytes - head - tail
	tooSmall := &TooSmallError{SizeBytes: diskBytes, NeedBytes: head + minRoot + tail, RootFSNeedBytes: minRoot, ContentBytes: need.ContentBytes()}
	if rootBytes < minRoot {
		return nil, tooSmall
	}
	_, free, err := opts.fit(rootBytes, need)
	if err != nil || free < 0 {
		// Capacity is not monotonic in size (the journal grows in steps),
		// so a size above the minimum can still fall short by a little:
		// ask for the next size that fits.
		next, err := opts.minFSBytesFrom(need, 0, rootBytes+MiB)
		if err != nil {
			return nil, fmt.Errorf("size root filesystem: %w", err)
		}
		tooSmall.NeedBytes = head + next + tail
		return nil, tooSmall
	}
	if s.PartitionTable == MBR && diskBytes > (1<<32)*SectorSize {
		return nil, fmt.Errorf("disk size %s is too large for an MBR partition table (2 TiB): use GPT", humanBytes(diskBytes))
	}

	d := &Disk{
		Table:         Table{Kind: s.PartitionTable, DiskGUID: s.DiskGUID, DiskSizeBytes: diskBytes},
		RootFSBytes:   rootBytes,
		Usage:         u,
		Spec:          s,
		RootInodes:    opts.inodesFor(rootBytes, need),
		RootFreeBytes: free * opts.BlockSize,
	}
	start := MiB
	add := func(p Partition) int {
		p.Number = len(d.Table.Partitions) + 1
		p.StartBytes = start
		start += p.SizeBytes
		if s.PartitionTable == GPT {
			p.GUID = derivedGUID(s.DiskGUID, fmt.Sprintf("partition-%d", p.Number))
			p.MBRType = 0
		} else {
			p.TypeGUID, p.Name = "", ""
		}
		d.Table.Partitions = append(d.Table.Partitions, p)
		return len(d.Table.Partitions) - 1
	}
	bios, esp := -1, -1
	if s.PartitionTable == GPT && s.BIOS {
		bios = add(Partition{Name: "bios", TypeGUID: BIOSBoot, SizeBytes: biosBootBytes})
	}
	if s.UEFI {
		esp = add(Partition{Name: "esp", TypeGUID: ESP, MBRType: MBRESP, SizeBytes: s.ESPSizeBytes})
	}
	root := add(Partition{Name: "root", TypeGUID: s.RootTypeGUID, MBRType: MBRLinux, SizeBytes: rootBytes,
		Bootable: s.PartitionTable == MBR})
	d.RootPartition = d.Table.Partitions[root]
	if bios >= 0 {
		p := d.Table.Partitions[bios]
		d.BIOSBootPartition = &p
	}
	if esp >= 0 {
		p := d.Table.Partitions[esp]
		d.ESPPartition = &p
	}
	if err := d.Table.Validate(); err != nil {
		return nil, fmt.Errorf("planned partition table: %w", err)
	}
	return d, nil
}

// Fstab returns /etc/fstab for the disk: the root by label, and the ESP by
// its FAT volume id (nofail, so a missing ESP does not stop the boot).
func (d *Disk) Fstab() string {
	return Fstab(d.Spec.RootLabel, d.Spec.RootFSType, d.Spec.ESPVolumeID, d.ESPPartition != nil)
}

// Fstab is Disk.Fstab for callers that write /etc/fstab into the tree before
// the disk is planned (so that hooks and the initramfs see it).
func Fstab(rootLabel, rootFSType string, espVolumeID uint32, withESP bool) string {
	s := fmt.Sprintf("LABEL=%s / %s errors=remount-ro 0 1\n", rootLabel, rootFSType)
	if withESP {
		s += fmt.Sprintf("UUID=%s /boot/efi vfat umask=0077,nofail 0 2\n", FATVolumeID(espVolumeID))
	}
	return s
}

// FATVolumeID formats a FAT volume id the way blkid and fstab show it.
func FATVolumeID(id uint32) string {
	return fmt.Sprintf("%04X-%04X", id>>16, id&0xffff)
}

// BuildDisk writes the planned disk to path as a sparse raw image: the
// partition table, the ext4 root made by mkfs.ext4 -d straight at its
// offset, d.Spec.Files injected with debugfs, the ESP made by mkfs.vfat and
// filled with mtools, and GRUB for BIOS and/or UEFI. No loop device, mount
// or root-only tool is used. The image is written to a temporary name
// beside path and renamed when complete; on failure nothing is left.
func BuildDisk(ctx context.Context, d *Disk, path string) (err error) {
	if d == nil {
		return errors.New("build disk: nil Disk: call PlanDisk first")
	}
	s := d.Spec
	if err := preflight(d, path); err != nil {
		return fmt.Errorf("build disk %s: %w", path, err)
	}
	opts, err := parseMkfsOptions(s.MkfsOptions)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "assemble-")
	if err != nil {
		return fmt.Errorf("build disk: %w", err)
	}
	defer os.RemoveAll(work)

	tmp := tempPath(path)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("build disk: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := d.Table.WriteTo(f); err != nil {
		return fmt.Errorf("build disk: %w", err)
	}

	// The root filesystem takes nearly all the time and one core; GRUB
	// images and the ESP are independent of it and go alongside.
	var g group
	gctx := g.start(ctx)
	g.run(func() error { return buildRootFS(gctx, d, opts, tmp, work) })
	var coreImg []byte
	g.run(func() error {
		var err error
		coreImg, err = buildBootFiles(gctx, d, tmp, work)
		return err
	})
	if err := g.wait(); err != nil {
		return fmt.Errorf("build disk: %w", err)
	}
	if s.BIOS {
		boot, err := os.ReadFile(filepath.Join(s.GrubPCDir, "boot.img"))
		if err != nil {
			return fmt.Errorf("build disk: %w", err)
		}
		if err := InstallBIOSBoot(f, boot, coreImg); err != nil {
			return fmt.Errorf("build disk: %w", err)
		}
	}
	// mke2fs has already synced its part, so this is cheap; it makes the
	// rename below publish a complete image even across a crash.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("build disk: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("build disk: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("build disk: %w", err)
	}
	d.Path = path
	return nil
}

// preflight checks everything that would otherwise fail late: tools, GRUB
// files, a grub.cfg to boot, the output directory and its free space.
func preflight(d *Disk, out string) error {
	s := d.Spec
	tools := []string{"mkfs.ext4"}
	if len(s.Files) > 0 {
		tools = append(tools, "debugfs")
	}
	if s.UEFI {
		tools = append(tools, "mkfs.vfat", "mmd", "mcopy")
	}
	if s.BIOS || s.UEFI {
		tools = append(tools, "grub-mkimage")
	}
	for _, t := range tools {
		if _, err := lookTool(t); err != nil {
			return err
		}
	}
	if s.BIOS {
		if err := checkGrubDir(GrubPC, s.GrubPCDir); err != nil {
			return err
		}
	}
	if s.UEFI {
		if err := checkGrubDir(GrubEFI, s.GrubEFIDir); err != nil {
			return err
		}
	}
	if s.BIOS || s.UEFI {
		has := false
		for _, f := range s.Files {
			has = has || f.Path == "/boot/grub/grub.cfg"
		}
		if _, err := os.Lstat(filepath.Join(s.RootDir, "boot/grub/grub.cfg")); err == nil {
			has = true
		}
		if !has {
			return fmt.Errorf("nothing to boot: %s has no /boot/grub/grub.cfg and DiskSpec.Files adds none; add GrubConfig(...) as /boot/grub/grub.cfg", s.RootDir)
		}
	}
	for _, f := range s.Files { // Files may have been added after PlanDisk
		if err := checkImagePath(f.Path); err != nil {
			return err
		}
	}
	if err := checkOutputDir(out); err != nil {
		return err
	}
	// The image is sparse: it takes about the tree plus the metadata mkfs
	// writes (inode tables are written, the journal zeroed).
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(out), &st); err == nil {
		need := d.Usage.ContentBytes() + d.RootInodes*256 + 128*MiB
		if avail := int64(st.Bavail) * int64(st.Bsize); avail < need {
			return fmt.Errorf("not enough space in %s: %s available, the image needs about %s", filepath.Dir(out), humanBytes(avail), humanBytes(need))
		}
	}
	return nil
}

// buildRootFS makes the ext4 root inside the image at the root partition's
// offset, then writes the injected files.
func buildRootFS(ctx context.Context, d *Disk, opts ext4Options, img, work string) error {
	s := d.Spec
	args := []string{"-q", "-F",
		"-b", fmt.Sprint(opts.BlockSize), "-I", fmt.Sprint(opts.InodeSize), "-N", fmt.Sprint(d.RootInodes),
		"-L", s.RootLabel, "-U", s.RootUUID}
	if pins := featurePins(ctx); len(pins) > 0 {
		args = append(args, "-O", strings.Join(pins, ","))
	}
	args = append(args, opts.Rest...) // after the pins: an explicit request wins
	ext := append([]string{"root_owner=0:0", fmt.Sprintf("offset=%d", d.RootPartition.StartBytes)}, opts.Extended...)
	args = append(args, "-E", strings.Join(ext, ","), "-d", s.RootDir, img, fmt.Sprintf("%dk", d.RootFSBytes/1024))
	if _, err := run(ctx, "mkfs.ext4", args...); err != nil {
		var te *ToolError
		if errors.As(err, &te) && (strings.Contains(te.Stderr, "Could not allocate") || strings.Contains(te.Stderr, "No free space")) {
			return fmt.Errorf("root filesystem of %s is too small for %s (did the tree change after PlanDisk?); give a larger image size: %w",
				humanBytes(d.RootFSBytes), s.RootDir, err)
		}
		return fmt.Errorf("make root filesystem: %w", err)
	}
	if len(s.Files) > 0 {
		if err := injectFiles(ctx, fmt.Sprintf("%s?offset=%d", img, d.RootPartition.StartBytes), s.Files, work); err != nil {
			return fmt.Errorf("write files into the root filesystem: %w", err)
		}
	}
	return nil
}

// featurePins returns the "-O ^feature" entries that keep the filesystem
// readable by older guests' e2fsck (bullseye's 1.46 rejects orphan_file).
// They are needed only when mke2fs would turn the features on: a
// mke2fs.conf that mentions them, or e2fsprogs >= 1.47 without a config
// file (its built-in defaults enable both).
func featurePins(ctx context.Context) []string {
	conf := os.Getenv("MKE2FS_CONFIG")
	if conf == "" {
		conf = "/etc/mke2fs.conf"
	}
	text, err := os.ReadFile(conf)
	newer := mke2fsAtLeast147(ctx)
	var pins []string
	for _, feat := range []string{"orphan_file", "metadata_csum_seed"} {
		enabled := false
		if err != nil {
			enabled = newer
		} else {
			for _, line := range strings.Split(string(text), "\n") {
				line = strings.TrimSpace(line)
				if !strings.HasPrefix(line, "#") && strings.Contains(line, feat) && !strings.Contains(line, "^"+feat) {
					enabled = true
				}
			}
		}
		if enabled && (feat != "orphan_file" || newer) {
			pins = append(pins, "^"+feat)
		}
	}
	return pins
}

func mke2fsAtLeast147(ctx context.Context) bool {
	path, err := lookTool("mkfs.ext4")
	if err != nil {
		return false
	}
	// mke2fs -V prints its version to stderr.
	cmd := exec.CommandContext(ctx, path, "-V")
	b, _ := cmd.CombinedOutput()
	out := string(b)
	var major, minor int
	for _, f := range strings.Fields(out) {
		if n, _ := fmt.Sscanf(f, "%d.%d", &major, &minor); n == 2 {
			break
		}
	}
	return major > 1 || (major == 1 && minor >= 47)
}

// injectFiles writes files into the ext4 filesystem at img (a libext2fs
// "file?offset=N" name) with debugfs, then reads them back: debugfs exits 0
// even when a command fails, so the read-back is the real check.
func injectFiles(ctx context.Context, img string, files []File, work string) error {
	var script strings.Builder
	made := map[string]bool{}
	for i, f := range files {
		var dirs []string
		for dir := path.Dir(f.Path); dir != "/" && !made[dir]; dir = path.Dir(dir) {
			dirs = append([]string{dir}, dirs...)
			made[dir] = true
		}
		for _, dir := range dirs {
			fmt.Fprintf(&script, "mkdir %s\n", dir) // fails harmlessly when it exists
		}
		src := filepath.Join(work, fmt.Sprintf("inject-%d", i))
		if err := os.WriteFile(src, f.Data, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&script, "rm %s\nwrite %s %s\nsif %s mode 0%o\nsif %s uid 0\nsif %s gid 0\n",
			f.Path, src, f.Path, f.Path, 0o100000|unixPerm(f.Mode), f.Path, f.Path)
	}
	scriptPath := filepath.Join(work, "debugfs.cmd")
	if err := os.WriteFile(scriptPath, []byte(script.String()), 0o600); err != nil {
		return err
	}
	if _, err := run(ctx, "debugfs", "-w", "-f", scriptPath, img); err != nil {
		return err
	}
	for i, f := range files {
		back := filepath.Join(work, fmt.Sprintf("check-%d", i))
		if _, err := run(ctx, "debugfs", "-R", "dump "+f.Path+" "+back, img); err != nil {
			return err
		}
		got, err := os.ReadFile(back)
		if err != nil || string(got) != string(f.Data) {
			return fmt.Errorf("%s was not written (is a parent a symlink or a file in the tree?)", f.Path)
		}
	}
	return nil
}

// unixPerm converts the permission and special bits of m to Unix mode
// bits; no permission bits at all means 0644.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if p == 0 {
		p = 0o644
	}
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// buildBootFiles makes the GRUB images and the ESP. It returns core.img
// for InstallBIOSBoot, which must wait for the table to be final.
func buildBootFiles(ctx context.Context, d *Disk, img, work string) ([]byte, error) {
	s := d.Spec
	early := EarlyConfig(s.RootUUID)
	var core []byte
	if s.BIOS {
		p := filepath.Join(work, "core.img")
		if err := MakeCoreImage(ctx, s.GrubPCDir, early, p); err != nil {
			return nil, err
		}
		var err error
		if core, err = os.ReadFile(p); err != nil {
			return nil, err
		}
	}
	if s.UEFI && d.ESPPartition != nil {
		efi := filepath.Join(work, "BOOTX64.EFI")
		if err := MakeEFIImage(ctx, s.GrubEFIDir, early, efi); err != nil {
			return nil, err
		}
		if err := buildESP(ctx, img, *d.ESPPartition, s.ESPVolumeID, efi); err != nil {
			return nil, fmt.Errorf("make ESP: %w", err)
		}
	}
	return core, nil
}

// buildESP formats the ESP in place and puts GRUB at the removable-media
// path EFI/BOOT/BOOTX64.EFI, which firmware boots without NVRAM entries.
func buildESP(ctx context.Context, img string, p Partition, volumeID uint32, bootx64 string) error {
	startLBA := p.StartBytes / SectorSize
	// -s 1: mkfs.fat would size clusters from the whole image file and
	// make an invalid FAT32 (too few clusters). --invariant first: it
	// would otherwise override -i. -h: hidden sectors = partition start.
	if _, err := run(ctx, "mkfs.vfat", "-F", "32", "-s", "1", "-S", "512", "--invariant",
		"-i", fmt.Sprintf("%08X", volumeID), "-n", "ESP", "-h", fmt.Sprint(startLBA),
		fmt.Sprintf("--offset=%d", startLBA), img, fmt.Sprint(p.SizeBytes/1024)); err != nil {
		return err
	}
	target := fmt.Sprintf("%s@@%d", img, p.StartBytes)
	if _, err := run(ctx, "mmd", "-i", target, "::/EFI", "::/EFI/BOOT"); err != nil {
		return err
	}
	if _, err := run(ctx, "mcopy", "-o", "-i", target, bootx64, "::/EFI/BOOT/BOOTX64.EFI"); err != nil {
		return err
	}
	return nil
}

// group runs functions concurrently; the first error cancels the rest.
type group struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
}

func (g *group) start(ctx context.Context) context.Context {
	ctx, g.cancel = context.WithCancel(ctx)
	return ctx
}

func (g *group) run(fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
				g.cancel()
			}
			g.mu.Unlock()
		}
	}()
}

func (g *group) wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
