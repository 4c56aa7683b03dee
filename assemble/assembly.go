package assemble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// maxParallelFS is how many filesystems are made at once: each mkfs is
// one thread and mostly I/O, and build hosts have a few cores.
const maxParallelFS = 2

// BuildDisk writes the planned disk to path as a sparse raw image: the
// partition table, each filesystem at its offset (ext* by mkfs -d, vfat by
// mkfs.vfat and mtools, swap by writing its header, xfs through a loop
// mount), the LVM metadata when the layout has LVM, d.Spec.Files in the
// filesystems that hold their paths, and GRUB for BIOS and/or UEFI. The
// image is written to a temporary name beside path and renamed when
// complete; on failure or cancellation nothing is left: no file, loop
// device, mount or device-mapper node.
//
// For logical volumes, BuildDisk fills in the FSPlan offsets that lvcreate
// chose.
func BuildDisk(ctx context.Context, d *Disk, path string) (err error) {
	if d == nil || d.Layout == nil {
		return errors.New("build disk: no planned Disk: call PlanDisk first")
	}
	if err := preflight(d, path); err != nil {
		return fmt.Errorf("build disk %s: %w", path, err)
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
	if d.Assembler == Loop {
		// Whatever happens, no loop device stays on the image or on a
		// scratch file beside it (this runs before the removal above).
		defer func() {
			if derr := detachAll(tmp); derr != nil && err == nil {
				err = fmt.Errorf("build disk: %w", derr)
			}
		}()
	}
	if d.Table.Kind != "" {
		err = d.Table.WriteTo(f)
	} else {
		err = f.Truncate(d.Table.DiskSizeBytes)
	}
	if err != nil {
		return fmt.Errorf("build disk: %w", err)
	}

	// A copy: the LV offsets lvcreate chooses go back into d only when
	// the disk is complete.
	plans := slices.Clone(d.Filesystems)
	if d.Layout.LVM != nil {
		if err := createLVM(ctx, d, tmp, plans); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("build disk: cancelled: %w", ctx.Err())
			}
			return fmt.Errorf("build disk: %w", err)
		}
	}

	// GRUB's images are independent of the filesystems and go alongside;
	// the ESP waits for its boot files.
	g, gctx := errgroup.WithContext(ctx)
	efiReady := make(chan []File, 1)
	var coreImg []byte
	g.Go(func() error {
		var err error
		coreImg, err = buildGrubImages(gctx, d, work, efiReady)
		return err
	})
	sem := make(chan struct{}, maxParallelFS)
	for i := range plans {
		p := &plans[i]
		g.Go(func() error {
			var efi []File
			if d.Spec.UEFI && d.ESPPartition != nil && p.Name == d.Layout.ESP().Name {
				select {
				case efi = <-efiReady:
				case <-gctx.Done():
					return gctx.Err()
				}
				if efi == nil {
					return nil // the EFI image failed; its error is reported
				}
			}
			select {
			case sem <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			defer func() { <-sem }()
			return buildFilesystem(gctx, d, p, tmp, work, efi)
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			// Every step fails once the context is cancelled; say why
			// rather than which step noticed first.
			return fmt.Errorf("build disk: cancelled: %w", ctx.Err())
		}
		return fmt.Errorf("build disk: %w", err)
	}
	if d.Spec.BIOS {
		boot, err := os.ReadFile(filepath.Join(d.Spec.GrubPCDir, "boot.img"))
		if err != nil {
			return fmt.Errorf("build disk: %w", err)
		}
		if err := InstallBIOSBoot(f, boot, coreImg); err != nil {
			return fmt.Errorf("build disk: %w", err)
		}
	}
	if d.Assembler == Loop {
		if err := detachAll(tmp); err != nil { // before the image is published
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
	for i := range d.Filesystems { // the LV offsets lvcreate chose
		d.Filesystems[i].OffsetBytes, d.Filesystems[i].extents = plans[i].OffsetBytes, plans[i].extents
		d.Filesystems[i].SizeBytes = plans[i].SizeBytes
	}
	return nil
}

// detachAll detaches the loop devices on the image and on the scratch
// files made beside it.
func detachAll(tmp string) error {
	files := []string{tmp}
	if m, err := filepath.Glob(tmp + ".fs-*"); err == nil {
		files = append(files, m...)
	}
	var errs []error
	for _, f := range files {
		errs = append(errs, detachLoops(f))
	}
	return errors.Join(errs...)
}

// preflight checks everything that would otherwise fail late: tools, GRUB
// files, a grub.cfg to boot, the output directory and its free space.
func preflight(d *Disk, out string) error {
	s := d.Spec
	var tools []string
	add := func(t ...string) {
		for _, x := range t {
			if !slices.Contains(tools, x) {
				tools = append(tools, x)
			}
		}
	}
	for _, p := range d.Filesystems {
		switch p.Type {
		case "ext2", "ext3", "ext4":
			add("mkfs."+p.Type, "debugfs")
		case "vfat":
			add("mkfs.vfat", "mmd", "mcopy")
		case "xfs":
			add("mkfs.xfs", "losetup", "mount", "umount", "cp", "unshare")
		}
	}
	if d.Layout.LVM != nil {
		add("lvm", "losetup")
	}
	if s.BIOS || (s.UEFI && d.EFILoader == nil) {
		add("grub-mkimage")
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
	if s.UEFI && d.EFILoader == nil {
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
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(out), &st); err == nil {
		need := d.Usage.ContentBytes() + 128*MiB
		for _, p := range d.Filesystems {
			need += p.Inodes * 256
		}
		if avail := int64(st.Bavail) * int64(st.Bsize); avail < need {
			return fmt.Errorf("not enough space in %s: %s available, the image needs about %s", filepath.Dir(out), humanBytes(avail), humanBytes(need))
		}
	}
	return nil
}

// buildGrubImages makes core.img (returned, for InstallBIOSBoot once the
// table is final) and the ESP's boot files (sent on efi, nil when they
// failed): BOOTX64.EFI from the host's GRUB, or the image's own chain
// (Disk.EFILoader).
func buildGrubImages(ctx context.Context, d *Disk, work string, efi chan<- []File) ([]byte, error) {
	s := d.Spec
	sent := false
	defer func() {
		if !sent {
			efi <- nil
		}
	}()
	if s.UEFI && d.ESPPartition != nil {
		var files []File
		if d.EFILoader != nil {
			var err error
			if files, err = d.EFILoader.efiFiles(s.RootDir, d.EarlyConfig); err != nil {
				return nil, fmt.Errorf("EFI boot files: %w", err)
			}
		} else {
			p := filepath.Join(work, "BOOTX64.EFI")
			if err := MakeEFIImage(ctx, s.GrubEFIDir, d.EarlyConfig, p); err != nil {
				return nil, err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			files = []File{{Path: "/EFI/BOOT/BOOTX64.EFI", Data: data}}
		}
		efi <- files
		sent = true
	}
	if !s.BIOS {
		return nil, nil
	}
	p := filepath.Join(work, "core.img")
	if err := MakeCoreImage(ctx, s.GrubPCDir, d.EarlyConfig, p); err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// fsTarget is where a filesystem is made: the image at the filesystem's
// offset, or, for a logical volume split across physical volumes, a
// scratch file whose pieces are then copied to the volume's extents.
type fsTarget struct {
	path   string
	offset int64
	size   int64
}

// buildFilesystem makes one filesystem of the layout with its part of the
// tree and its injected files.
func buildFilesystem(ctx context.Context, d *Disk, p *FSPlan, img, work string, efi []File) error {
	if len(p.extents) == 0 {
		return fmt.Errorf("filesystem %s: volume %s has no place in the image", p.Name, p.Volume)
	}
	t := fsTarget{path: img, offset: p.extents[0].off, size: p.SizeBytes}
	if len(p.extents) > 1 {
		t = fsTarget{path: fmt.Sprintf("%s.fs-%s", img, safeName(p.Name)), size: p.SizeBytes}
		f, err := os.Create(t.path)
		if err != nil {
			return err
		}
		defer os.Remove(t.path)
		err = f.Truncate(t.size)
		f.Close()
		if err != nil {
			return err
		}
	}
	var err error
	switch p.Type {
	case "ext2", "ext3", "ext4":
		err = buildExt(ctx, d, p, t, work)
	case "vfat":
		err = buildFAT(ctx, d, p, t, work, efi)
	case "xfs":
		err = buildXFS(ctx, d, p, t, work)
	case "swap":
		var f *os.File
		if f, err = os.OpenFile(t.path, os.O_WRONLY, 0); err == nil {
			err = writeSwapHeader(f, t.offset, t.size, p.Label, p.UUID)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	default:
		err = fmt.Errorf("filesystem type %q is not supported", p.Type)
	}
	if err != nil {
		return fmt.Errorf("filesystem %s (%s, %s): %w", p.Name, p.Type, cmpOr(p.mountPoint(), "not mounted"), err)
	}
	if len(p.extents) > 1 {
		if err := scatter(t.path, img, p.extents); err != nil {
			return fmt.Errorf("filesystem %s: copy into logical volume %s: %w", p.Name, p.Volume, err)
		}
	}
	return nil
}

// safeName keeps the letters, digits, dots, dashes and underscores of a
// node name, for file names.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return r
		}
		return '_'
	}, s)
}

// sourceDir is where the filesystem's part of the tree is, and whether
// it exists.
func (d *Disk) sourceDir(p *FSPlan) (string, bool) {
	mp := p.mountPoint()
	if mp == "" {
		return "", false
	}
	dir := filepath.Join(d.Spec.RootDir, mp)
	st, err := os.Lstat(dir)
	return dir, err == nil && st.IsDir()
}

// childMounts lists the mount points whose nearest parent filesystem is
// p: the directories p must have but whose content belongs elsewhere.
func (d *Disk) childMounts(p *FSPlan) []string {
	mp := p.mountPoint()
	if mp == "" {
		return nil
	}
	var out []string
	for i := range d.Filesystems {
		c := d.Filesystems[i].mountPoint()
		if c == "" || !isParentMount(mp, c) {
			continue
		}
		nearest := true
		for j := range d.Filesystems {
			m := d.Filesystems[j].mountPoint()
			if m != "" && isParentMount(mp, m) && isParentMount(m, c) {
				nearest = false
			}
		}
		if nearest {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// splitTree works out, for filesystem p, which child mount points must be
// hidden from the copy (they hold files), and which must be created
// (missing from the tree), as paths relative to p.
func (d *Disk) splitTree(p *FSPlan, work string) (masks []bindMask, create []string, err error) {
	mp := p.mountPoint()
	for _, c := range d.childMounts(p) {
		dir := filepath.Join(d.Spec.RootDir, c)
		ents, err := os.ReadDir(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			rel := strings.TrimPrefix(c, strings.TrimSuffix(mp, "/"))
			for q := rel; q != "/" && q != "."; q = path.Dir(q) {
				if _, err := os.Lstat(filepath.Join(d.Spec.RootDir, mp, q)); err == nil {
					break
				}
				create = append(create, q)
			}
		case err != nil:
			return nil, nil, err
		case len(ents) > 0:
			m, err := makeMask(work, dir)
			if err != nil {
				return nil, nil, err
			}
			masks = append(masks, m)
		}
	}
	slices.Sort(create)
	create = slices.Compact(create)
	return masks, create, nil
}

// filesFor returns the injected files p holds, with paths inside p.
func (d *Disk) filesFor(p *FSPlan) []File {
	var out []File
	for _, f := range d.Spec.Files {
		fs, rel := d.Layout.PathOnFilesystem(f.Path)
		if fs != nil && fs.Name == p.Name {
			f.Path = rel
			out = append(out, f)
		}
	}
	return out
}

// buildExt makes an ext2/3/4 filesystem with mkfs -d straight at its
// offset, with the child mount points hidden (empty) when they hold
// files, then writes the injected files and the missing mount points with
// debugfs.
func buildExt(ctx context.Context, d *Disk, p *FSPlan, t fsTarget, work string) error {
	opts, err := parseMkfsOptions(p.Opts)
	if err != nil {
		return err
	}
	src, exists := d.sourceDir(p)
	masks, create, err := d.splitTree(p, work)
	if err != nil {
		return err
	}
	owner := "0:0"
	var rootMode uint32
	if exists && p.mountPoint() != "/" {
		// Like a mount and cp -a, the filesystem's root takes the owner
		// and mode of the directory it holds (/tmp's 1777, ...).
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		owner = fmt.Sprintf("%d:%d", sys.Uid, sys.Gid)
		rootMode = sys.Mode & 0o7777
	}
	args := []string{"-q", "-F",
		"-b", fmt.Sprint(opts.BlockSize), "-I", fmt.Sprint(opts.InodeSize), "-N", fmt.Sprint(p.Inodes),
		"-L", p.Label, "-U", p.UUID}
	if pins := featurePins(ctx); len(pins) > 0 {
		args = append(args, "-O", strings.Join(pins, ","))
	}
	args = append(args, opts.Rest...) // after the pins: an explicit request wins
	// The directory hash seed is derived from the UUID, not random: the
	// same tree gives the same filesystem.
	ext := append([]string{"root_owner=" + owner, fmt.Sprintf("offset=%d", t.offset), "hash_seed=" + strings.ToLower(derivedGUID(p.UUID, "hash_seed"))}, opts.Extended...)
	args = append(args, "-E", strings.Join(ext, ","))
	if exists {
		args = append(args, "-d", src)
	}
	args = append(args, t.path, fmt.Sprintf("%dk", t.size/1024))
	if _, err := runMasked(ctx, d.epochEnv("E2FSPROGS_FAKE_TIME"), masks, "mkfs."+p.Type, args...); err != nil {
		var te *ToolError
		if errors.As(err, &te) && (strings.Contains(te.Stderr, "Could not allocate") || strings.Contains(te.Stderr, "No free space")) {
			what := "root filesystem"
			if p.mountPoint() != "/" {
				what = p.mountPoint() + " filesystem"
			}
			return fmt.Errorf("%s of %s is too small for %s (did the tree change after PlanDisk?); give a larger image size: %w",
				what, humanBytes(t.size), src, err)
		}
		return fmt.Errorf("make filesystem: %w", err)
	}
	var pre []string
	for _, c := range create {
		pre = append(pre, "mkdir "+c)
	}
	if rootMode != 0 && rootMode != 0o755 {
		pre = append(pre, fmt.Sprintf("sif / mode 0%o", 0o40000|rootMode))
	}
	files := d.filesFor(p)
	if len(files) > 0 || len(pre) > 0 {
		inTree := func(dir string) bool {
			st, err := os.Lstat(filepath.Join(src, dir))
			return exists && err == nil && st.IsDir()
		}
		if err := injectFiles(ctx, d.epochEnv("E2FSPROGS_FAKE_TIME"), fmt.Sprintf("%s?offset=%d", t.path, t.offset), files, work, pre, inTree); err != nil {
			return fmt.Errorf("write files into the filesystem: %w", err)
		}
	}
	if d.Spec.Epoch > 0 {
		touched := append([]string(nil), create...)
		for _, f := range files {
			touched = append(touched, f.Path)
		}
		if err := settleExtTimes(ctx, fmt.Sprintf("%s?offset=%d", t.path, t.offset), d.Spec.Epoch, touched, work); err != nil {
			return fmt.Errorf("filesystem times: %w", err)
		}
	}
	return nil
}

// buildFAT formats a vfat filesystem in place and copies its part of the
// tree, its injected files and (on the ESP) the boot files, with the
// loader at EFI/BOOT/BOOT<ARCH>.EFI, the removable-media path firmware
// boots without NVRAM entries.
func buildFAT(ctx context.Context, d *Disk, p *FSPlan, t fsTarget, work string, efi []File) error {
	id, err := parseFATVolumeID(p.UUID)
	if err != nil {
		return err
	}
	bits, spc := fatGeometry(t.size)
	startLBA := t.offset / SectorSize
	// --invariant first: it would otherwise override -i. -h: hidden
	// sectors = partition start. -F and -s always: see fatGeometry.
	args := []string{"-F", fmt.Sprint(bits), "-s", fmt.Sprint(spc), "-S", "512", "--invariant",
		"-i", fmt.Sprintf("%08X", id), "-n", p.Label, "-h", fmt.Sprint(startLBA), fmt.Sprintf("--offset=%d", startLBA)}
	args = append(args, p.Opts...)
	args = append(args, t.path, fmt.Sprint(t.size/1024))
	if _, err := run(ctx, "mkfs.vfat", args...); err != nil {
		return err
	}
	target := fmt.Sprintf("%s@@%d", t.path, t.offset)
	src, srcOK := d.sourceDir(p)
	if srcOK {
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		if len(ents) > 0 {
			a := []string{"-s", "-m", "-Q", "-i", target}
			for _, e := range ents {
				a = append(a, filepath.Join(src, e.Name()))
			}
			if _, err := runEnv(ctx, d.epochEnv("SOURCE_DATE_EPOCH"), "mcopy", append(a, "::/")...); err != nil {
				return fmt.Errorf("copy %s: %w", src, err)
			}
		}
	}
	files := append(d.filesFor(p), efi...)
	made := map[string]bool{}
	for _, f := range files {
		// mmd fails on an existing directory: make only those neither
		// copied from the tree nor made before.
		var dirs []string
		for dir := path.Dir(f.Path); dir != "/" && !made[strings.ToUpper(dir)]; dir = path.Dir(dir) {
			made[strings.ToUpper(dir)] = true
			if !srcOK || !fatDirExists(src, dir) {
				dirs = append([]string{"::" + dir}, dirs...)
			}
		}
		if len(dirs) > 0 {
			if _, err := runEnv(ctx, d.epochEnv("SOURCE_DATE_EPOCH"), "mmd", append([]string{"-i", target}, dirs...)...); err != nil {
				return err
			}
		}
		tmp, err := os.CreateTemp(work, "vfat-file-")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(f.Data)
		if err := errors.Join(werr, tmp.Close()); err != nil {
			return err
		}
		if _, err := runEnv(ctx, d.epochEnv("SOURCE_DATE_EPOCH"), "mcopy", "-o", "-i", target, tmp.Name(), "::"+f.Path); err != nil {
			return err
		}
	}
	return nil
}

// fatDirExists reports whether dir (a path in the vfat filesystem) is a
// directory of the tree at src, matching names without regard to case as
// FAT does.
func fatDirExists(src, dir string) bool {
	cur := src
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		ents, err := os.ReadDir(cur)
		if err != nil {
			return false
		}
		found := false
		for _, e := range ents {
			if strings.EqualFold(e.Name(), c) && e.IsDir() {
				cur, found = filepath.Join(cur, e.Name()), true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// xfsScript fills an xfs filesystem in a private mount namespace: mount
// it, hide the child mount points of the source, cp -a the source (cp
// keeps owners, modes, hard links, xattrs and holes), write the injected
// files, create missing mount points, unmount. Arguments: device, mount
// directory, source, "1" to reset the root directory to root:root 0755,
// then bind pairs, "--", file triples (staged file, path, mode), "--",
// directories to create.
const xfsScript = `set -e
umask 022
dev=$1 mnt=$2 src=$3 isroot=$4
shift 4
mount -t xfs "$dev" "$mnt"
while [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done
shift
if [ -d "$src" ]; then cp -a "$src/." "$mnt/"; fi
if [ "$isroot" = 1 ]; then chown 0:0 "$mnt"; chmod 755 "$mnt"; fi
while [ "$1" != "--" ]; do
	mkdir -p "$(dirname "$mnt$2")"
	rm -f "$mnt$2"
	cp "$1" "$mnt$2"
	chown 0:0 "$mnt$2"
	chmod "$3" "$mnt$2"
	shift 3
done
shift
for d in "$@"; do mkdir -p "$mnt$d"; done
umount "$mnt"`

// buildXFS makes an xfs filesystem on a loop device over its byte range
// and fills it through a mount (xfsprogs 6.1 cannot populate from a
// directory). The mount lives only in a private mount namespace, so it
// cannot outlive the build.
func buildXFS(ctx context.Context, d *Disk, p *FSPlan, t fsTarget, work string) error {
	dev, err := attachLoop(ctx, t.path, t.offset, t.size)
	if err != nil {
		return err
	}
	detach := func(dev string) error {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		_, err := run(cctx, "losetup", "-d", dev)
		return err
	}
	defer func() {
		if dev != "" {
			detach(dev)
		}
	}()
	args := []string{"-f", "-q", "-L", p.Label, "-m", "uuid=" + p.UUID}
	args = append(args, p.Opts...)
	if _, err := run(ctx, "mkfs.xfs", append(args, dev)...); err != nil {
		return err
	}
	src, _ := d.sourceDir(p)
	masks, create, err := d.splitTree(p, work)
	if err != nil {
		return err
	}
	mnt := filepath.Join(work, "mnt-"+p.Name)
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return err
	}
	isRoot := "0"
	if p.mountPoint() == "/" {
		isRoot = "1"
	}
	a := []string{"--mount", "--propagation", "private", "sh", "-c", xfsScript, "sh", dev, mnt, cmpOr(src, "/nonexistent"), isRoot}
	for _, m := range masks {
		a = append(a, m.empty, m.target)
	}
	a = append(a, "--")
	for i, f := range d.filesFor(p) {
		staged := filepath.Join(work, fmt.Sprintf("xfs-%s-%d", p.Name, i))
		if err := os.WriteFile(staged, f.Data, 0o600); err != nil {
			return err
		}
		a = append(a, staged, f.Path, fmt.Sprintf("%o", unixPerm(f.Mode)))
	}
	a = append(a, "--")
	a = append(a, create...)
	if _, err := run(ctx, "unshare", a...); err != nil {
		var te *ToolError
		if errors.As(err, &te) {
			te.Args = []string{"(mount " + dev + ", cp -a " + src + ", umount)"}
			if strings.Contains(te.Stderr, "No space left") {
				return fmt.Errorf("xfs filesystem of %s is too small for %s (did the tree change after PlanDisk?): %w", humanBytes(t.size), src, err)
			}
		}
		return fmt.Errorf("fill xfs through a loop mount: %w", err)
	}
	d0 := dev
	dev = ""
	if err := detach(d0); err != nil {
		return fmt.Errorf("detach %s: %w", d0, err)
	}
	return nil
}

// scatter copies the scratch filesystem file to the extents of its
// logical volume in the image, skipping holes.
func scatter(scratch, img string, exts []extent) error {
	src, err := os.Open(scratch)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer dst.Close()
	var pos int64
	for _, e := range exts {
		if err := copySparse(dst, e.off, src, pos, e.size); err != nil {
			return err
		}
		pos += e.size
	}
	return dst.Sync()
}

// copySparse copies n bytes from src at srcOff to dst at dstOff, only the
// data regions (SEEK_DATA/SEEK_HOLE), so holes stay holes.
func copySparse(dst *os.File, dstOff int64, src *os.File, srcOff, n int64) error {
	end := srcOff + n
	buf := make([]byte, 4*MiB)
	for off := srcOff; off < end; {
		data, err := src.Seek(off, unix.SEEK_DATA)
		if err != nil || data >= end {
			return nil // ENXIO: only a hole is left
		}
		hole, err := src.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		hole = min(hole, end)
		for p := data; p < hole; {
			k := min(int64(len(buf)), hole-p)
			if _, err := src.ReadAt(buf[:k], p); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if _, err := dst.WriteAt(buf[:k], dstOff+(p-srcOff)); err != nil {
				return err
			}
			p += k
		}
		off = hole
	}
	return nil
}
