package assemble

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"builder/internal/parttable"
)

// Assembler names the way BuildDisk writes a disk.
type Assembler string

// The assemblers. Loopless writes every filesystem into the image file at
// its offset with user-space tools (mkfs.ext4 -d, mtools, ...); it needs
// no privileges unless a mount point inside the tree holds files (then
// mkfs runs in a private mount namespace that hides them). Loop does the
// same, plus what only a block device allows: xfs is filled through a
// loop mount (xfsprogs 6.1 cannot populate from a directory) and LVM
// metadata is written by the lvm tools on loop devices. It needs root.
const (
	Loopless Assembler = "loopless"
	Loop     Assembler = "loop"
)

// FSPlan is one filesystem of a planned disk.
type FSPlan struct {
	Filesystem        // the layout's entry, with label, UUID and options final
	Volume     string // the partition, logical volume or image it is made on
	// Partition is the partition the filesystem is on; for a logical
	// volume, the (first) partition of its volume group; nil on the bare
	// image.
	Partition *Partition
	// OffsetBytes is where the filesystem starts in the image. Logical
	// volumes are placed by lvcreate, so it is -1 until BuildDisk ran
	// (and stays -1 for a volume split across physical volumes).
	OffsetBytes int64
	SizeBytes   int64
	// Grows says the volume's size follows the disk size (an N% size), so
	// it gets a share of the headroom and a bigger image helps it.
	Grows bool
	// Usage is the part of the tree this filesystem holds: its mount
	// point's subtree without the subtrees of mount points below it.
	Usage     TreeUsage
	Inodes    int64 // ext*: the -N given to mke2fs
	FreeBytes int64 // estimated free space after the tree and injected files
	isLV      bool
	extents   []extent // where it lies in the image (one extent unless an LV spans PVs)
}

// extent is a byte range of the image.
type extent struct{ off, size int64 }

// IsLV reports whether the filesystem is on a logical volume.
func (p *FSPlan) IsLV() bool { return p.isLV }

// mountPoint is the filesystem's mount point, or "" when not mounted.
func (p *FSPlan) mountPoint() string {
	if p.Mount == nil || p.Type == "swap" {
		return ""
	}
	return p.Mount.MountPoint
}

// volume is a partition or logical volume at some disk size.
type volume struct {
	size int64
	part *Partition // partition volumes
	isLV bool
	lv   LogicalVolume
}

// errNoRoom marks a layout that does not fit the disk size tried: a
// larger disk may help.
var errNoRoom = errors.New("no room")

// planVolumes lays out the partitions and logical volumes of l on a disk
// of diskBytes, as DIB does: N% is a share of the space still free at
// that point; GPT sizes are floored to MiB with 1 MiB kept free at each
// end (DIB's sgdisk call), MBR partitions start aligned where DIB's MBR
// writer starts them, with sizes rounded up to whole MiB (DIB keeps
// sector-exact sizes; the rounding uses the alignment gap DIB leaves
// unused). Logical volume sizes follow lvcreate: 4 MiB extents, 1 MiB of
// metadata at the start of each physical volume.
func planVolumes(l *Layout, diskBytes int64) (Table, map[string]volume, error) {
	vols := map[string]volume{}
	t := Table{DiskSizeBytes: diskBytes}
	p := l.Partitioning
	if p == nil {
		vols[l.Image.Name] = volume{size: diskBytes}
		return t, vols, nil
	}
	t.Kind, t.DiskGUID = p.Label, p.DiskGUID
	noRoom := func(ps PartitionSpec, need, free int64) error {
		return fmt.Errorf("%w: partition %s (%s) needs %s but only %s is left on a %s disk",
			errNoRoom, ps.Name, ps.Size, humanBytes(need), humanBytes(max(free, 0)), humanBytes(diskBytes))
	}
	switch p.Label {
	case GPT:
		free := diskBytes - 2*MiB
		start := MiB
		for i, ps := range p.Partitions {
			size := ps.Size.Of(free)
			if size > free || free <= 0 {
				return t, nil, noRoom(ps, size, free)
			}
			if size < MiB {
				if ps.Size.Relative {
					return t, nil, noRoom(ps, MiB, size)
				}
				return t, nil, fmt.Errorf("partition %s: size %s is less than 1 MiB", ps.Name, ps.Size)
			}
			part := Partition{Number: i + 1, Name: ps.Name, TypeGUID: ps.TypeGUID, GUID: ps.GUID,
				StartBytes: start, SizeBytes: size / MiB * MiB}
			t.Partitions = append(t.Partitions, part)
			start += part.SizeBytes
			free -= size
		}
	case MBR:
		align := p.AlignBytes
		next := align // the first partition starts one alignment unit in
		primary, logical := 0, 0
		for _, ps := range p.Partitions {
			free := diskBytes - next - align
			size := ps.Size.Of(free)
			if free <= 0 || size > free {
				return t, nil, noRoom(ps, size, free)
			}
			if size <= 0 {
				if ps.Size.Relative {
					return t, nil, noRoom(ps, MiB, size)
				}
				return t, nil, fmt.Errorf("partition %s: size %s is empty", ps.Name, ps.Size)
			}
			if ps.MBRType == 0 {
				return t, nil, fmt.Errorf("partition %s: type %q is not an MBR type (one byte, e.g. 0x83 Linux, 0xef ESP, 0x8e LVM)", ps.Name, mbrTypeName(ps.Type))
			}
			part := Partition{Name: ps.Name, MBRType: ps.MBRType, Bootable: ps.Boot, SizeBytes: roundUp(size, MiB)}
			if ps.Primary {
				if logical > 0 {
					return t, nil, fmt.Errorf("partition %s: All primary partitions must be given first (DIB's rule: it comes after a logical partition)", ps.Name)
				}
				primary++
				if primary > 4 {
					return t, nil, fmt.Errorf("partition %s: an MBR holds 4 primary partitions; make the others logical (drop the primary flag)", ps.Name)
				}
				part.Number = primary
				part.StartBytes = next
			} else {
				logical++
				part.Number = parttable.FirstLogical + logical - 1
				part.StartBytes = next + align // the EBR sits in the gap
			}
			next = roundUp(part.StartBytes+part.SizeBytes, align)
			t.Partitions = append(t.Partitions, part)
		}
	}
	for i := range t.Partitions {
		part := t.Partitions[i]
		vols[part.Name] = volume{size: part.SizeBytes, part: &part}
	}
	if err := planLVs(l, vols); err != nil {
		return t, nil, err
	}
	return t, vols, nil
}

// LVM's defaults, which planning assumes (the real values are read back
// from lvs after lvcreate).
const (
	lvmExtentBytes  = 4 * MiB
	lvmPEStartBytes = MiB
)

func planLVs(l *Layout, vols map[string]volume) error {
	if l.LVM == nil {
		return nil
	}
	pvPart := map[string]string{}
	for _, pv := range l.LVM.PVs {
		pvPart[pv.Name] = pv.Base
	}
	for _, vg := range l.LVM.VGs {
		ext := int64(lvmExtentBytes)
		total := int64(0)
		for _, pv := range vg.Base {
			v := vols[pvPart[pv]]
			total += max(v.size-lvmPEStartBytes, 0) / ext
		}
		free := total
		for _, lv := range l.LVM.LVs {
			if lv.Base != vg.Name {
				continue
			}
			var n int64
			switch {
			case lv.Extents == "":
				// DIB floors to 4 MiB and asks for that many bytes;
				// lvcreate rounds up to whole extents.
				n = ceilDiv(lv.Size.Bytes/(4*MiB)*(4*MiB), ext)
			case strings.HasSuffix(lv.Extents, "%VG"):
				var pct int64
				fmt.Sscanf(lv.Extents, "%d", &pct)
				n = pct * total / 100
			case strings.HasSuffix(lv.Extents, "%FREE"):
				var pct int64
				fmt.Sscanf(lv.Extents, "%d", &pct)
				n = pct * free / 100
			default:
				fmt.Sscanf(lv.Extents, "%d", &n)
			}
			if n <= 0 || n > free {
				return fmt.Errorf("%w: logical volume %s (%s) needs %d extents of 4 MiB but volume group %s has %d free of %d",
					errNoRoom, lv.Name, cmpOr(lv.Extents, lv.Size.Spec), n, vg.Name, free, total)
			}
			free -= n
			vols[lv.Name] = volume{size: n * ext, isLV: true, lv: lv}
		}
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fsModel is what planning knows about one filesystem: how much it must
// hold and how much a volume of some size offers.
type fsModel struct {
	plan  *FSPlan
	ext   ext4Options // ext2/3/4
	extra int64       // bytes of injected files and boot loader files
	// need returns the smallest filesystem holding the content with
	// avail bytes left to users.
	need func(avail int64) (int64, error)
	// fits reports whether a filesystem of size bytes holds the content
	// with avail bytes left, and its free bytes.
	fits func(size, avail int64) (bool, int64)
}

func newFSModel(p *FSPlan, extra int64) (*fsModel, error) {
	m := &fsModel{plan: p, extra: extra}
	u := p.Usage
	u.DataBytes += roundUp(extra, blockBytes)
	switch p.Type {
	case "ext2", "ext3", "ext4":
		opts, err := parseMkfsOptions(p.Opts)
		if err != nil {
			return nil, fmt.Errorf("mkfs %s options: %w", p.Name, err)
		}
		if p.Type != "ext4" {
			// The model is ext4's; ext2/3 use indirect blocks and no
			// flex_bg: allow for that.
			u.DataBytes += u.DataBytes/50 + 4*MiB
		}
		m.ext = opts
		m.need = func(avail int64) (int64, error) { return opts.minFSBytes(u, avail) }
		m.fits = func(size, avail int64) (bool, int64) {
			g, free, err := opts.fit(size, u)
			if err != nil || free < 0 {
				return false, 0
			}
			a := free
			if avail > 0 {
				a -= g.ReservedBlocks
			}
			return a*opts.BlockSize >= avail, free * opts.BlockSize
		}
	case "xfs":
		need := xfsContentBytes(u)
		m.need = func(avail int64) (int64, error) { return xfsMinBytes(need + avail), nil }
		m.fits = func(size, avail int64) (bool, int64) {
			c := xfsCapacity(size)
			return size >= xfsMinSize && c >= need+avail, c - need
		}
	case "vfat":
		m.need = func(avail int64) (int64, error) { return fatMinBytes(u, avail), nil }
		m.fits = func(size, avail int64) (bool, int64) {
			c, need := fatCapacity(size), fatNeed(u, size)
			return c >= need+avail, c - need
		}
	case "swap":
		m.need = func(int64) (int64, error) { return MiB, nil }
		m.fits = func(size, _ int64) (bool, int64) { return size >= swapMinBytes, 0 }
	default:
		return nil, fmt.Errorf("mkfs %s: filesystem type %q is not supported", p.Name, p.Type)
	}
	return m, nil
}

// layoutPlan is the state PlanDisk works on.
type layoutPlan struct {
	spec   DiskSpec
	layout *Layout
	fss    []FSPlan
	models []*fsModel
	share  []int64 // headroom per filesystem
	total  TreeUsage
	ctxErr func() error
	// loopAvailable says whether the loop assembler can run here
	// (loopAvailable; tests replace it).
	loopAvailable func() (bool, string)
}

// check sizes every volume for a disk of diskBytes and reports the first
// filesystem that does not fit: grow is set when a larger disk helps.
func (lp *layoutPlan) check(diskBytes int64, headroom bool) (t Table, vols map[string]volume, bad int, grow bool, err error) {
	t, vols, err = planVolumes(lp.layout, diskBytes)
	if err != nil {
		return t, nil, -1, errors.Is(err, errNoRoom), err
	}
	for i, m := range lp.models {
		v := vols[lp.fss[i].Volume]
		avail := int64(0)
		if headroom {
			avail = lp.share[i]
		}
		if ok, _ := m.fits(v.size, avail); !ok {
			return t, vols, i, lp.fss[i].Grows, errNoRoom
		}
	}
	return t, vols, -1, false, nil
}

// minDisk finds the smallest disk (in MiB) on which every filesystem
// fits, with its headroom when headroom is set. Volume sizes only grow
// with the disk, so a doubling search then a bisection finds it.
func (lp *layoutPlan) minDisk(headroom bool, from int64) (int64, error) {
	lo := max(roundUp(from, MiB), 4*MiB)
	var lastErr error
	ok := func(d int64) (bool, error) {
		_, _, bad, grow, err := lp.check(d, headroom)
		if err == nil {
			return true, nil
		}
		lastErr = err
		if bad >= 0 && !grow {
			return false, lp.fixedTooSmall(bad, d)
		}
		if bad < 0 && !grow {
			return false, err
		}
		return false, nil
	}
	if good, err := ok(lo); err != nil {
		return 0, err
	} else if good {
		return lo, nil
	}
	// A layout that no disk size fits (fixed volumes too small for their
	// logical volumes, ...) is reported at once.
	const maxDisk = 1 << 46 // 64 TiB
	if good, err := ok(maxDisk); err != nil {
		return 0, err
	} else if !good {
		return 0, fmt.Errorf("%s: no disk size fits the layout: %v", lp.layout.Source, strings.TrimPrefix(lastErr.Error(), errNoRoom.Error()+": "))
	}
	hi := lo
	for {
		if err := lp.ctxErr(); err != nil {
			return 0, err
		}
		hi = min(hi*2, maxDisk)
		good, err := ok(hi)
		if err != nil {
			return 0, err
		}
		if good {
			break
		}
		lo = hi
	}
	for hi-lo > MiB {
		mid := roundUp(lo+(hi-lo)/2, MiB)
		if mid >= hi {
			break
		}
		good, err := ok(mid)
		if err != nil {
			return 0, err
		}
		if good {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// fixedTooSmall explains a filesystem on a fixed-size volume that cannot
// hold its part of the tree: only the layout can fix that.
func (lp *layoutPlan) fixedTooSmall(i int, diskBytes int64) error {
	p := &lp.fss[i]
	_, vols, _ := planVolumes(lp.layout, diskBytes)
	need, err := lp.models[i].need(0)
	if err != nil {
		return err
	}
	what := "partition"
	if vols[p.Volume].isLV {
		what = "logical volume"
	}
	return fmt.Errorf("%s %s is %s but the %s filesystem %s (%s) needs at least %s for its content (%s): give %s a larger size in the block-device config",
		what, p.Volume, humanBytes(vols[p.Volume].size), p.Type, p.Name, cmpOr(p.mountPoint(), "not mounted"), humanBytes(need),
		humanBytes(p.Usage.ContentBytes()+lp.models[i].extra), p.Volume)
}

// planLayout is PlanDisk for the completed layout.
func planLayout(ctx context.Context, s DiskSpec, l *Layout) (*Disk, error) {
	lp := &layoutPlan{spec: s, layout: l, ctxErr: ctx.Err, loopAvailable: loopAvailable}
	if err := lp.validate(); err != nil {
		return nil, err
	}
	if err := lp.measure(ctx); err != nil {
		return nil, err
	}
	assembler, why, err := lp.chooseAssembler()
	if err != nil {
		return nil, err
	}

	var diskBytes int64
	switch {
	case l.Image.SizeBytes > 0: // local_loop size wins over --image-size, as in DIB
		diskBytes = roundUp(l.Image.SizeBytes, MiB)
	case s.SizeBytes > 0:
		diskBytes = roundUp(s.SizeBytes, MiB)
	default:
		d, err := lp.minDisk(true, 0)
		if err != nil {
			return nil, err
		}
		diskBytes = roundUp(d, diskSizeUnit)
		// Capacity is not quite monotonic (ext4's journal grows in
		// steps): make sure the rounded size still fits.
		for range 64 {
			if _, _, _, _, err := lp.check(diskBytes, true); err == nil {
				break
			}
			diskBytes += diskSizeUnit
		}
	}
	t, vols, bad, grow, err := lp.check(diskBytes, false)
	if err != nil {
		if bad >= 0 && !grow {
			return nil, lp.fixedTooSmall(bad, diskBytes)
		}
		if !errors.Is(err, errNoRoom) {
			return nil, err
		}
		need, nerr := lp.minDisk(false, diskBytes)
		if nerr != nil {
			return nil, nerr
		}
		return nil, lp.tooSmall(diskBytes, need, bad, err)
	}
	if t.Kind == MBR && diskBytes > (1<<32)*SectorSize {
		return nil, fmt.Errorf("disk size %s is too large for an MBR partition table (2 TiB): use GPT", humanBytes(diskBytes))
	}
	if t.Kind != "" {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("planned partition table: %w", err)
		}
	}

	d := &Disk{Table: t, Spec: s, Layout: l, Assembler: assembler, AssemblerReason: why, Usage: lp.total}
	for i := range lp.fss {
		p := &lp.fss[i]
		v := vols[p.Volume]
		p.SizeBytes = v.size
		switch {
		case v.part != nil:
			part := *v.part
			p.Partition, p.OffsetBytes = &part, part.StartBytes
			p.extents = []extent{{part.StartBytes, part.SizeBytes}}
		case v.isLV:
			p.OffsetBytes, p.isLV = -1, true
			if pv := lp.pvPartition(t, v.lv.Base); pv != nil {
				p.Partition = pv
			}
		default: // the bare image
			p.OffsetBytes = 0
			p.extents = []extent{{0, diskBytes}}
		}
		_, free := lp.models[i].fits(p.SizeBytes, 0)
		p.FreeBytes = free
		if m := lp.models[i]; p.Type == "ext2" || p.Type == "ext3" || p.Type == "ext4" {
			u := p.Usage
			u.DataBytes += roundUp(m.extra, blockBytes)
			p.Inodes = m.ext.inodesFor(p.SizeBytes, u)
		}
	}
	d.Filesystems = lp.fss
	if err := d.setBootInfo(); err != nil {
		return nil, err
	}
	return d, nil
}

// pvPartition is the first partition of volume group vg.
func (lp *layoutPlan) pvPartition(t Table, vg string) *Partition {
	for _, g := range lp.layout.LVM.VGs {
		if g.Name != vg || len(g.Base) == 0 {
			continue
		}
		for _, pv := range lp.layout.LVM.PVs {
			if pv.Name == g.Base[0] {
				for i := range t.Partitions {
					if t.Partitions[i].Name == pv.Base {
						p := t.Partitions[i]
						return &p
					}
				}
			}
		}
	}
	return nil
}

func (lp *layoutPlan) tooSmall(diskBytes, need int64, bad int, cause error) error {
	e := &TooSmallError{SizeBytes: diskBytes, NeedBytes: need, ContentBytes: lp.total.ContentBytes()}
	if bad >= 0 {
		p := &lp.fss[bad]
		n, _ := lp.models[bad].need(0)
		e.RootFSNeedBytes = n
		e.MountPoint = p.mountPoint()
		e.ContentBytes = p.Usage.ContentBytes() + lp.models[bad].extra
		e.Filesystem = p.Name
	} else {
		e.What = strings.TrimPrefix(cause.Error(), errNoRoom.Error()+": ")
	}
	return e
}

// validate refuses what the layout asks but builder cannot build, before
// anything is measured.
func (lp *layoutPlan) validate() error {
	l := lp.layout
	if l.Image.BlockSize != 0 && l.Image.BlockSize != SectorSize {
		return fmt.Errorf("%s: local_loop %s block_size %d: builder makes 512-byte-sector images only (GRUB's BIOS boot sector needs them); drop block_size", l.Source, l.Image.Name, l.Image.BlockSize)
	}
	if l.Partitioning != nil && l.Partitioning.Label == GPT {
		for _, p := range l.Partitioning.Partitions {
			if p.Primary {
				return fmt.Errorf("%s: partition %s: Primary flag not supported for GPT partitions", l.Source, p.Name)
			}
		}
	}
	if l.LVM != nil {
		for _, lv := range l.LVM.LVs {
			if lv.Type != "" {
				return fmt.Errorf("%s: logical volume %s is type %s: thin provisioning needs device-mapper's thin target to create, and builder writes LVM without activating anything; use plain (linear) volumes",
					l.Source, lv.Name, lv.Type)
			}
		}
		for _, vg := range l.LVM.VGs {
			for _, o := range vg.Options {
				if o == "-s" || strings.HasPrefix(o, "--physicalextentsize") || strings.HasPrefix(o, "-s") && len(o) > 2 {
					return fmt.Errorf("%s: vg %s: builder plans with LVM's default 4 MiB extents; drop the extent size option %q", l.Source, vg.Name, o)
				}
			}
		}
	}
	if l.Root() == nil {
		return fmt.Errorf("%s: no filesystem is mounted at /: add a mount with mount_point / to the root filesystem", l.Source)
	}
	for i := range l.Filesystems {
		f := l.Filesystems[i]
		p := FSPlan{Filesystem: f, Volume: f.Base}
		lp.fss = append(lp.fss, p)
		if f.Type == "vfat" {
			if _, err := parseFATVolumeID(f.UUID); err != nil {
				return fmt.Errorf("%s: mkfs %s: %v", l.Source, f.Name, err)
			}
		} else if _, err := parseGUID(f.UUID); err != nil {
			return fmt.Errorf("%s: mkfs %s: uuid %q must be a UUID such as 5e3f9c6a-0d1b-4c55-9d8e-6f1a2b3c4d5e", l.Source, f.Name, f.UUID)
		}
	}
	// Nothing may be mounted inside a vfat or swap filesystem: their
	// content is copied with mtools, which cannot leave subtrees out.
	for _, a := range lp.fss {
		for _, b := range lp.fss {
			if a.Type == "vfat" && a.mountPoint() != "" && b.mountPoint() != "" && isParentMount(a.mountPoint(), b.mountPoint()) {
				return fmt.Errorf("%s: %s is mounted inside the vfat filesystem at %s: builder cannot nest filesystems in vfat", l.Source, b.mountPoint(), a.mountPoint())
			}
		}
	}
	if b := l.BootFilesystem(); b != nil {
		switch b.Type {
		case "ext2", "ext3", "ext4", "xfs", "vfat":
		default:
			return fmt.Errorf("%s: /boot is on %s (%s), which GRUB cannot read", l.Source, b.Name, b.Type)
		}
	}
	return nil
}

// measure walks the tree once, giving each filesystem its subtree, and
// checks the mount points inside the tree.
func (lp *layoutPlan) measure(ctx context.Context) error {
	root := lp.spec.RootDir
	var mps []string
	for _, p := range lp.fss {
		if mp := p.mountPoint(); mp != "" && mp != "/" {
			mps = append(mps, mp)
			if err := checkMountPointInTree(root, mp); err != nil {
				return err
			}
		}
	}
	usage, err := measureSplit(ctx, root, mps)
	if err != nil {
		return err
	}
	if len(usage["/"].MountPoints) > 0 {
		return fmt.Errorf("root tree %s has other filesystems mounted at %s: mkfs would copy their content; unmount them first",
			root, strings.Join(usage["/"].MountPoints, ", "))
	}
	extra := map[int]int64{}
	for _, f := range lp.spec.Files {
		if i, _ := lp.fsFor(f.Path); i >= 0 {
			extra[i] += int64(len(f.Data))
		}
	}
	for i := range lp.fss {
		p := &lp.fss[i]
		if mp := p.mountPoint(); mp != "" {
			p.Usage = usage[mp]
		}
		if p.Type == "vfat" && p.mountPoint() == "/boot/efi" {
			extra[i] += bootx64Allowance
		}
		lp.total.Files += p.Usage.Files
		lp.total.Dirs += p.Usage.Dirs
		lp.total.Symlinks += p.Usage.Symlinks
		lp.total.Others += p.Usage.Others
		lp.total.DataBytes += p.Usage.DataBytes
		lp.total.DirBytes += p.Usage.DirBytes
		lp.total.SymlinkBytes += p.Usage.SymlinkBytes
		lp.total.Inodes += p.Usage.Inodes
		lp.total.HardLinks += p.Usage.HardLinks
		lp.total.ApparentBytes += p.Usage.ApparentBytes
		m, err := newFSModel(p, extra[i])
		if err != nil {
			return fmt.Errorf("%s: %w", lp.layout.Source, err)
		}
		lp.models = append(lp.models, m)
	}
	// Which volumes grow with the disk: compare two sizes far apart.
	_, small, err1 := planVolumes(lp.layout, 1<<40)
	_, big, err2 := planVolumes(lp.layout, 1<<41)
	if err1 == nil && err2 == nil {
		for i := range lp.fss {
			lp.fss[i].Grows = big[lp.fss[i].Volume].size > small[lp.fss[i].Volume].size
		}
	}
	// The headroom goes to the growing filesystems that hold the tree,
	// in proportion to their content (all of it to / when none holds
	// any).
	lp.share = make([]int64, len(lp.fss))
	var sum int64
	for i, p := range lp.fss {
		if p.Grows && p.mountPoint() != "" {
			sum += p.Usage.ContentBytes() + lp.models[i].extra
		}
	}
	for i, p := range lp.fss {
		switch {
		case !p.Grows || p.mountPoint() == "":
		case sum > 0:
			lp.share[i] = int64(float64(lp.spec.HeadroomBytes) * float64(p.Usage.ContentBytes()+lp.models[i].extra) / float64(sum))
		case p.mountPoint() == "/":
			lp.share[i] = lp.spec.HeadroomBytes
		}
	}
	return nil
}

// fsFor returns the index of the filesystem holding image path p and the
// path inside it, or -1.
func (lp *layoutPlan) fsFor(p string) (int, string) {
	best, rel := -1, ""
	for i := range lp.fss {
		mp := lp.fss[i].mountPoint()
		if mp == "" || (mp != p && !isParentMount(mp, p)) {
			continue
		}
		if best < 0 || len(mp) > len(lp.fss[best].mountPoint()) {
			best = i
			rel = "/" + strings.TrimPrefix(strings.TrimPrefix(p, mp), "/")
		}
	}
	return best, rel
}

// bootx64Allowance is room kept on the ESP for GRUB's BOOTX64.EFI (about
// 700 KB with every module builder embeds).
const bootx64Allowance = 2 * MiB

// chooseAssembler picks the loopless assembler unless the layout needs a
// block device, and then checks the loop assembler can run here.
func (lp *layoutPlan) chooseAssembler() (Assembler, string, error) {
	var why []string
	for _, p := range lp.fss {
		if p.Type == "xfs" {
			why = append(why, fmt.Sprintf("%s (%s) is xfs, which Debian 12's xfsprogs 6.1 cannot fill from a directory: it is filled through a loop mount", p.Name, cmpOr(p.mountPoint(), "unmounted")))
		}
	}
	if lp.layout.LVM != nil {
		why = append(why, fmt.Sprintf("the layout has LVM (%s): its metadata is written by the lvm tools, which need a block device", lp.layout.LVM.Name))
	}
	if len(why) == 0 {
		return Loopless, "no filesystem needs a block device", nil
	}
	if ok, reason := lp.loopAvailable(); !ok {
		what := "xfs"
		fix := "use ext4"
		if lp.layout.LVM != nil {
			what, fix = "LVM", "drop the lvm section"
		}
		return "", "", fmt.Errorf("the layout needs %s, which only the loop assembler can build, and that needs root: %s; run as root or %s (%s)",
			what, reason, fix, strings.Join(why, "; "))
	}
	return Loop, strings.Join(why, "; "), nil
}

// checkMountPointInTree refuses a mount point that is not a plain
// directory of the tree (a symlink would lead the bind mounts, cp and mkfs
// outside it), and accepts one that does not exist (it is created empty).
func checkMountPointInTree(root, mp string) error {
	cur := root
	for _, c := range strings.Split(strings.TrimPrefix(mp, "/"), "/") {
		cur = filepath.Join(cur, c)
		st, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mount point %s: %w", mp, err)
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("mount point %s: %s is a symlink in the tree: a filesystem cannot be mounted through it; make it a directory or change the layout", mp, "/"+strings.TrimPrefix(strings.TrimPrefix(cur, root), "/"))
		}
		if !st.IsDir() {
			return fmt.Errorf("mount point %s: %s is not a directory in the tree", mp, cur)
		}
	}
	return nil
}

func appendUnique(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}
