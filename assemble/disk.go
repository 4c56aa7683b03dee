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
)

// DefaultRootLabel is the root filesystem's label unless the layout or
// --root-label gives one (img-rootfs on xfs, whose labels are shorter).
const DefaultRootLabel = "cloudimg-rootfs"

// diskSizeUnit: automatic disk sizes are rounded up to it.
const diskSizeUnit = 64 * MiB

// DiskSpec describes a disk: the tree, its layout, its size, and the
// identifiers and root options the layout leaves open.
type DiskSpec struct {
	RootDir string // the finished tree (may be a read-only mount); never modified
	// SizeBytes is the whole disk, rounded up to 1 MiB. 0 = automatic: the
	// smallest disk on which every filesystem holds its part of the tree,
	// with HeadroomBytes available, rounded up to 64 MiB. A local_loop
	// size in the Layout wins over it, as in DIB.
	SizeBytes int64
	// HeadroomBytes is the space left available to users (df's "Avail")
	// in automatically sized filesystems; 0 leaves none. With several
	// filesystems that grow with the disk (N% sizes), it is shared in
	// proportion to the part of the tree each holds.
	HeadroomBytes int64
	// RootFSType, RootLabel and MkfsOptions are FS_TYPE, --root-label
	// and --mkfs-options: Layout.MergeRoot applies them to mkfs_root, for
	// what its YAML leaves open ("" and nil: ext4, DefaultRootLabel).
	RootFSType  string
	RootLabel   string
	MkfsOptions []string
	// RootUUID is the root filesystem's UUID when the layout gives none.
	// Give it for reproducible builds; "" picks a random one. The
	// identifiers the layout and the fields below leave open are derived
	// from it (Layout.AssignIDs).
	RootUUID    string
	ESPVolumeID uint32 // the ESP's FAT volume id (shown as XXXX-XXXX) when the layout gives none
	DiskGUID    string // GPT disk GUID (MBR: 8 hex digits of disk signature) when the layout gives none
	GrubPCDir   string // default DefaultGrubPCDir (boot.img, modules)
	GrubEFIDir  string // default DefaultGrubEFIDir
	// BIOS and UEFI are the boot loaders to install. Both false means
	// whatever the layout can boot: BIOS on MBR or on GPT with a BIOS boot
	// partition (EF02), UEFI with an ESP (vfat at /boot/efi on an EF00 or
	// 0xEF partition).
	BIOS, UEFI bool

	// Files are written into the image after mkfs, owned by root,
	// replacing files of the tree (which stays untouched): typically
	// /boot/grub/grub.cfg from GrubConfig and /etc/fstab from Disk.Fstab.
	// Each goes to the filesystem holding its path (with a separate
	// /boot, /boot/grub/grub.cfg is /grub/grub.cfg on the /boot
	// filesystem).
	Files []File

	// Epoch, when set, is SOURCE_DATE_EPOCH: the disk is the same bytes
	// for the same tree, layout and identifiers (filesystem times, hash
	// seeds, tool timestamps; the tree's own times must be no later than
	// it). xfs filesystems and LVM metadata are not made reproducible.
	Epoch int64

	// Layout is the DIB block-device layout (DefaultLayout,
	// ReadBlockDeviceConfig, ...); it is required. The caller's Layout is
	// not changed: Disk.Layout is the completed copy.
	Layout *Layout
}

// File is a file BuildDisk writes into the image.
type File struct {
	Path string      // absolute path inside the image
	Data []byte      //
	Mode fs.FileMode // permission bits; 0 means 0644
}

// Disk is a planned (and, after BuildDisk, written) disk image.
type Disk struct {
	Path         string     // set by BuildDisk
	Table        Table      // Kind "" when the layout has no partition table
	ESPPartition *Partition // the ESP's partition; nil without UEFI
	RootFSBytes  int64      // the root filesystem's size (its FSPlan's SizeBytes)
	Usage        TreeUsage  // the whole tree, summed over the filesystems

	Spec              DiskSpec   // the spec with defaults filled in, BIOS and UEFI as decided
	BIOSBootPartition *Partition // GPT with BIOS: where core.img goes

	// Layout is the layout built: the spec's, with MergeRoot applied and
	// every identifier assigned.
	Layout *Layout
	// Filesystems are the layout's filesystems with their volumes, sizes
	// and the parts of the tree they hold, in layout order.
	Filesystems []FSPlan
	// Assembler is how BuildDisk writes the disk, and AssemblerReason
	// why (for the progress line).
	Assembler       Assembler
	AssemblerReason string
	// BootFilesystem names the filesystem GRUB loads grub.cfg and the
	// kernel from (the one holding /boot); EarlyConfig is the config
	// embedded in core.img and BOOTX64.EFI to find it.
	BootFilesystem string
	EarlyConfig    string
	// EFILoader is the image's own UEFI boot chain (signed shim and GRUB,
	// or arm64's GRUB); nil when BOOTX64.EFI is made from the host's GRUB.
	EFILoader *EFILoader
}

// Filesystem returns the plan of the filesystem named name (a mkfs node),
// or nil.
func (d *Disk) Filesystem(name string) *FSPlan {
	for i := range d.Filesystems {
		if d.Filesystems[i].Name == name {
			return &d.Filesystems[i]
		}
	}
	return nil
}

// TooSmallError reports a disk size that cannot hold the tree.
type TooSmallError struct {
	SizeBytes       int64 // the disk size asked for
	NeedBytes       int64 // the smallest disk that holds the tree
	RootFSNeedBytes int64 // the smallest filesystem that holds its part of the tree
	ContentBytes    int64 // the tree's data, directories and symlinks (in that filesystem)
	// Filesystem and MountPoint name the filesystem that does not fit
	// ("" and "/" for the root); What explains a layout that does not fit
	// at all (fixed-size partitions larger than the disk).
	Filesystem, MountPoint, What string
}

func (e *TooSmallError) Error() string {
	gib := ceilDiv(e.NeedBytes, 1<<30)
	if e.What != "" {
		return fmt.Sprintf("image size %s is too small: %s; the layout needs at least %s: use --image-size %d or more",
			humanBytes(e.SizeBytes), e.What, humanBytes(e.NeedBytes), gib)
	}
	which := "the root filesystem"
	if e.MountPoint != "" && e.MountPoint != "/" {
		which = fmt.Sprintf("the %s filesystem (%s)", e.MountPoint, e.Filesystem)
	}
	return fmt.Sprintf("image size %s is too small: %s needs at least %s (content %s + journal + metadata); use --image-size %d or more",
		humanBytes(e.SizeBytes), which, humanBytes(e.RootFSNeedBytes), humanBytes(e.ContentBytes), gib)
}

// normalize fills in defaults and checks the spec; the layout's own
// checks come with completeLayout and planning.
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
	if s.SizeBytes < 0 || s.HeadroomBytes < 0 {
		return s, errors.New("disk spec: SizeBytes and HeadroomBytes must not be negative")
	}
	for _, f := range s.Files {
		if err := checkImagePath(f.Path); err != nil {
			return s, err
		}
	}
	if s.GrubPCDir == "" {
		s.GrubPCDir = DefaultGrubPCDir
	}
	if s.GrubEFIDir == "" {
		s.GrubEFIDir = DefaultGrubEFIDir
	}
	if s.RootUUID != "" {
		if _, err := parseGUID(s.RootUUID); err != nil {
			return s, fmt.Errorf("root UUID: %w", err)
		}
		s.RootUUID = strings.ToLower(s.RootUUID)
	}
	if s.Layout == nil {
		return s, errors.New("disk spec: Layout is nil: give a block-device layout (DefaultLayout, ReadBlockDeviceConfig, ...)")
	}
	return s, nil
}

// completeLayout copies the spec's layout and fills in what the spec
// gives: the root merge, then the identifiers.
func completeLayout(s DiskSpec) (*Layout, error) {
	l := s.Layout.Clone()
	if err := l.MergeRoot(s.RootFSType, s.RootLabel, s.MkfsOptions); err != nil {
		return nil, err
	}
	if r := l.Root(); r != nil && r.UUID == "" && s.RootUUID != "" {
		r.UUID = s.RootUUID
	}
	if esp := l.ESP(); esp != nil && esp.UUID == "" && s.ESPVolumeID != 0 {
		esp.UUID = FATVolumeID(s.ESPVolumeID)
	}
	if p := l.Partitioning; p != nil && p.DiskGUID == "" && s.DiskGUID != "" {
		p.DiskGUID = s.DiskGUID
	}
	seed := s.RootUUID
	if r := l.Root(); seed == "" && r != nil && r.UUID != "" {
		seed = r.UUID
	}
	l.AssignIDs(seed)
	if p := l.Partitioning; p != nil {
		switch p.Label {
		case GPT:
			if _, err := parseGUID(p.DiskGUID); err != nil {
				return nil, fmt.Errorf("disk GUID: %w", err)
			}
			p.DiskGUID = strings.ToUpper(p.DiskGUID)
		case MBR:
			sig, err := parseMBRSignature(p.DiskGUID)
			if err != nil {
				return nil, err
			}
			p.DiskGUID = fmt.Sprintf("%08X", sig)
		}
	}
	for i := range l.Filesystems {
		if fs := &l.Filesystems[i]; fs.Type != "vfat" {
			fs.UUID = strings.ToLower(fs.UUID)
		}
	}
	return l, nil
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
// anything: partitions and logical volumes sized as DIB sizes them, each
// filesystem sized for its part of the tree, and the assembler that will
// write it. With a disk size given it returns a *TooSmallError when the
// disk cannot hold the tree, so callers fail before the slow steps; an
// error naming the partition when a fixed-size partition is too small for
// its filesystem's content.
func PlanDisk(ctx context.Context, spec DiskSpec) (*Disk, error) {
	s, err := normalize(spec)
	if err != nil {
		return nil, err
	}
	l, err := completeLayout(s)
	if err != nil {
		return nil, err
	}
	return planLayout(ctx, s, l)
}

// setBootInfo decides the boot loaders and where GRUB finds its files:
// the partitions core.img and BOOTX64.EFI go to, and the filesystem GRUB
// reads grub.cfg from.
func (d *Disk) setBootInfo() error {
	s, l := &d.Spec, d.Layout
	d.RootFSBytes = d.Filesystem(l.Root().Name).SizeBytes
	var why []string
	canBIOS := false
	switch d.Table.Kind {
	case MBR:
		canBIOS = true
	case GPT:
		for i := range d.Table.Partitions {
			if p := d.Table.Partitions[i]; p.TypeGUID == BIOSBoot {
				d.BIOSBootPartition, canBIOS = &p, true
				break
			}
		}
		if !canBIOS {
			why = append(why, "BIOS needs a BIOS boot partition (type EF02) on GPT")
		}
	default:
		why = append(why, "the layout has no partition table, so there is nowhere to put GRUB")
	}
	canUEFI := false
	if esp := l.ESP(); esp != nil {
		p := d.Filesystem(esp.Name)
		switch {
		case p.Partition == nil || p.isLV:
			why = append(why, "UEFI needs the ESP on a partition")
		case d.Table.Kind == GPT && p.Partition.TypeGUID != ESP:
			why = append(why, fmt.Sprintf("UEFI needs the ESP partition %s to be type EF00", p.Volume))
		case d.Table.Kind == MBR && p.Partition.MBRType != MBRESP:
			why = append(why, fmt.Sprintf("UEFI needs the ESP partition %s to be type 0xEF", p.Volume))
		default:
			canUEFI = true
			part := *p.Partition
			d.ESPPartition = &part
		}
	} else {
		why = append(why, "UEFI needs an ESP (a vfat filesystem mounted at /boot/efi)")
	}
	if TreeMachine(s.RootDir) == elfAArch64 && canBIOS {
		// The BIOS boot partition of a shared layout is left empty: arm64
		// has no BIOS.
		canBIOS, d.BIOSBootPartition = false, nil
		why = append(why, "arm64 boots with UEFI only")
	}
	if !s.BIOS && !s.UEFI {
		s.BIOS, s.UEFI = canBIOS, canUEFI
	} else if (s.BIOS && !canBIOS) || (s.UEFI && !canUEFI) {
		return fmt.Errorf("%s: cannot install the boot loader asked for: %s", l.Source, strings.Join(why, "; "))
	}
	if !s.UEFI {
		d.ESPPartition = nil
	}
	if !s.BIOS {
		d.BIOSBootPartition = nil
	}
	if b := l.BootFilesystem(); b != nil {
		d.BootFilesystem = b.Name
		d.EarlyConfig = EarlyConfigFor(b.UUID, l.GrubPrefix())
	}
	if s.UEFI {
		loader, err := findEFILoader(s.RootDir)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Source, err)
		}
		d.EFILoader = loader
	}
	return nil
}

// Fstab returns /etc/fstab for the disk: DIB's, every filesystem by
// label (Layout.Fstab).
func (d *Disk) Fstab() string { return d.Layout.Fstab() }

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
//
// pre are debugfs commands run first (mkdir of mount points, sif);
// exists says whether a directory is already in the filesystem (it was in
// the tree mkfs copied). Directories are made first, and only missing
// ones: debugfs 1.47.0 leaks an inode (e2fsck: "unconnected directory")
// when it is asked to mkdir an existing directory after a write.
func injectFiles(ctx context.Context, env []string, img string, files []File, work string, pre []string, exists func(dir string) bool) error {
	work, err := os.MkdirTemp(work, "debugfs-")
	if err != nil {
		return err
	}
	var mkdirs, writes strings.Builder
	made := map[string]bool{}
	for _, c := range pre {
		if dir, ok := strings.CutPrefix(c, "mkdir "); ok {
			made[dir] = true
			mkdirs.WriteString(c + "\n")
		} else {
			writes.WriteString(c + "\n")
		}
	}
	for i, f := range files {
		var dirs []string
		for dir := path.Dir(f.Path); dir != "/" && !made[dir]; dir = path.Dir(dir) {
			made[dir] = true
			if !exists(dir) {
				dirs = append([]string{dir}, dirs...)
			}
		}
		for _, dir := range dirs {
			fmt.Fprintf(&mkdirs, "mkdir %s\n", dir)
		}
		src := filepath.Join(work, fmt.Sprintf("inject-%d", i))
		if err := os.WriteFile(src, f.Data, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&writes, "rm %s\nwrite %s %s\nsif %s mode 0%o\nsif %s uid 0\nsif %s gid 0\n",
			f.Path, src, f.Path, f.Path, 0o100000|unixPerm(f.Mode), f.Path, f.Path)
	}
	script := mkdirs.String() + writes.String()
	scriptPath := filepath.Join(work, "debugfs.cmd")
	if err := os.WriteFile(scriptPath, []byte(script), 0o600); err != nil {
		return err
	}
	if _, err := runEnv(ctx, env, "debugfs", "-w", "-f", scriptPath, img); err != nil {
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
