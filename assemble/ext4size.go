package assemble

import (
	"fmt"
	"strconv"
	"strings"
)

// ext4Options are the mkfs.ext4 settings that change how much space the
// filesystem's own metadata takes. parseMkfsOptions reads them from the
// caller's extra options; the rest of those options pass through unmodelled.
type ext4Options struct {
	BlockSize       int64   // -b (default 4096, always passed explicitly)
	InodeSize       int64   // -I (default 256, always passed explicitly)
	InodeRatio      int64   // -i: bytes per inode (default 16384)
	RatioGiven      bool    // -i was given: honour it even when the tree is denser
	Inodes          int64   // -N: exact inode count; 0 = derived (always passed explicitly)
	ReservedPercent float64 // -m (default 5)
	JournalMiB      int64   // -J size=: 0 = mke2fs's default for the size; -1 = no journal
	ResizeInode     bool    // resize_inode feature (default on): reserved GDT blocks
	Extended        []string
	Rest            []string // options passed through to mkfs.ext4 as they are
}

func defaultExt4Options() ext4Options {
	return ext4Options{BlockSize: 4096, InodeSize: 256, InodeRatio: 16384, ReservedPercent: 5, ResizeInode: true}
}

// parseMkfsOptions splits the caller's extra mkfs.ext4 options into what the
// size model needs and what passes through. Options that builder sets itself
// are refused, because a second -E would silently drop the partition offset
// (mke2fs keeps only the last -E) and write the filesystem over the
// partition table.
func parseMkfsOptions(opts []string) (ext4Options, error) {
	o := defaultExt4Options()
	for i := 0; i < len(opts); i++ {
		opt := opts[i]
		if len(opt) < 2 || opt[0] != '-' || opt == "--" {
			return o, fmt.Errorf("mkfs option %q: expected an option such as -i 8192", opt)
		}
		flag := opt[:2]
		val, hasVal := "", false
		valueFlags := "bIiNmJEOTLUdtCGgeorM"
		if strings.ContainsRune(valueFlags, rune(opt[1])) {
			if len(opt) > 2 {
				val, hasVal = opt[2:], true
			} else if i+1 < len(opts) {
				i++
				val, hasVal = opts[i], true
			}
			if !hasVal {
				return o, fmt.Errorf("mkfs option %s needs a value", flag)
			}
		}
		num := func() (int64, error) {
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("mkfs option %s %q: expected a positive number", flag, val)
			}
			return n, nil
		}
		var err error
		switch flag {
		case "-b":
			o.BlockSize, err = num()
			if err == nil && o.BlockSize != 1024 && o.BlockSize != 2048 && o.BlockSize != 4096 {
				err = fmt.Errorf("mkfs option -b %d: block size must be 1024, 2048 or 4096", o.BlockSize)
			}
		case "-I":
			o.InodeSize, err = num()
			if err == nil && (o.InodeSize < 128 || o.InodeSize&(o.InodeSize-1) != 0) {
				err = fmt.Errorf("mkfs option -I %d: inode size must be a power of two, at least 128", o.InodeSize)
			}
		case "-i":
			o.InodeRatio, err = num()
			o.RatioGiven = true
		case "-N":
			o.Inodes, err = num()
		case "-m":
			o.ReservedPercent, err = strconv.ParseFloat(val, 64)
			if err != nil || o.ReservedPercent < 0 || o.ReservedPercent > 50 {
				err = fmt.Errorf("mkfs option -m %q: expected a percentage from 0 to 50", val)
			}
		case "-J":
			for _, kv := range strings.Split(val, ",") {
				if s, ok := strings.CutPrefix(kv, "size="); ok {
					mb, perr := strconv.ParseInt(s, 10, 64)
					if perr != nil || mb <= 0 {
						return o, fmt.Errorf("mkfs option -J %s: size must be a number of MiB", val)
					}
					o.JournalMiB = mb
				}
			}
			o.Rest = append(o.Rest, flag, val)
		case "-O":
			for _, feat := range strings.Split(val, ",") {
				switch feat {
				case "^has_journal":
					o.JournalMiB = -1
				case "has_journal":
					o.JournalMiB = 0
				case "^resize_inode":
					o.ResizeInode = false
				case "resize_inode":
					o.ResizeInode = true
				}
			}
			o.Rest = append(o.Rest, flag, val)
		case "-E":
			for _, kv := range strings.Split(val, ",") {
				k, _, _ := strings.Cut(kv, "=")
				switch k {
				case "offset", "root_owner":
					return o, fmt.Errorf("mkfs option -E %s is set by builder itself: remove it", k)
				}
				if kv != "" {
					o.Extended = append(o.Extended, kv)
				}
			}
		case "-L", "-U", "-d", "-t":
			return o, fmt.Errorf("mkfs option %s is set by builder itself (root label, UUID, tree, type): use the DiskSpec fields instead", flag)
		case "-n", "-S", "-V":
			return o, fmt.Errorf("mkfs option %s would not create a filesystem: remove it", flag)
		default:
			o.Rest = append(o.Rest, opt)
			if hasVal && len(opt) == 2 {
				o.Rest = append(o.Rest, val)
			}
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// ext4Geometry is the layout mke2fs 1.47 chooses for a filesystem, computed
// the way ext2fs_initialize() and mke2fs do it, so that the space left for
// the tree is known before anything is written.
type ext4Geometry struct {
	Blocks            int64 // after mke2fs drops a last group too small to be useful
	BlocksPerGroup    int64
	Groups            int64
	InodesPerGroup    int64
	InodeTableBlocks  int64 // per group
	DescBlocks        int64
	ReservedGDTBlocks int64
	SuperBackups      int64 // groups holding a superblock and descriptor copy
	JournalBlocks     int64
	OverheadBlocks    int64 // blocks an empty filesystem already uses
	ReservedBlocks    int64 // -m: reserved for root
}

// Inodes is the inode count mke2fs ends up with (never fewer than asked).
func (g ext4Geometry) Inodes() int64 { return g.Groups * g.InodesPerGroup }

// FreeBlocks is what an empty filesystem offers the tree.
func (g ext4Geometry) FreeBlocks() int64 { return g.Blocks - g.OverheadBlocks }

// geometry computes the layout of an fsBytes filesystem with inodes inodes.
func (o ext4Options) geometry(fsBytes, inodes int64) (ext4Geometry, error) {
	var g ext4Geometry
	bs := o.BlockSize
	bpg := 8 * bs // one block bitmap block per group
	firstData := int64(0)
	if bs == 1024 {
		firstData = 1
	}
	g.Blocks = fsBytes / bs
	if g.Blocks < 64 {
		return g, fmt.Errorf("a %d-byte ext4 filesystem is too small", fsBytes)
	}
	inodes = max(inodes, 12)
	descPerBlock := bs / 64 // 64bit feature: 64-byte group descriptors
	for {
		g.BlocksPerGroup = bpg
		g.Groups = ceilDiv(g.Blocks-firstData, bpg)
		g.DescBlocks = ceilDiv(g.Groups, descPerBlock)
		g.ReservedGDTBlocks = 0
		if o.ResizeInode {
			// Room to grow 1024-fold (capped at 2^32 blocks).
			maxBlocks := int64(0xffffffff)
			if g.Blocks < maxBlocks/1024 {
				maxBlocks = g.Blocks * 1024
			}
			rsv := ceilDiv(ceilDiv(maxBlocks-firstData, bpg), descPerBlock) - g.DescBlocks
			g.ReservedGDTBlocks = min(max(rsv, 0), bs/4)
		}
		ipg := ceilDiv(inodes, g.Groups)
		if ipg > bs*8 {
			// Like mke2fs: more, smaller groups until the inodes fit.
			if bpg < 256 {
				return g, fmt.Errorf("%d inodes do not fit in a %d-byte filesystem", inodes, fsBytes)
			}
			bpg -= 8
			g.Blocks = fsBytes / bs
			continue
		}
		// Fill whole inode-table blocks, then keep a multiple of 8.
		itb := ceilDiv(ipg*o.InodeSize, bs)
		ipg = itb * bs / o.InodeSize
		ipg &^= 7
		g.InodesPerGroup = ipg
		g.InodeTableBlocks = ceilDiv(ipg*o.InodeSize, bs)

		overhead := 3 + g.InodeTableBlocks + g.ReservedGDTBlocks
		if hasSuperBackup(g.Groups - 1) {
			overhead += 1 + g.DescBlocks + g.ReservedGDTBlocks
		}
		if overhead > bpg {
			return g, fmt.Errorf("%d inodes need more inode table than a group holds", inodes)
		}
		rem := (g.Blocks - firstData) % bpg
		if g.Groups == 1 && rem != 0 && rem < overhead {
			return g, fmt.Errorf("a %d-byte ext4 filesystem is too small for its own metadata", fsBytes)
		}
		if rem != 0 && rem < overhead+50 {
			g.Blocks -= rem // mke2fs drops a last group that could hold almost nothing
			continue
		}
		break
	}
	for i := int64(0); i < g.Groups; i++ {
		if hasSuperBackup(i) {
			g.SuperBackups++
		}
	}
	switch {
	case o.JournalMiB < 0:
		g.JournalBlocks = 0
	case o.JournalMiB > 0:
		g.JournalBlocks = o.JournalMiB * MiB / bs
	default:
		g.JournalBlocks = defaultJournalBlocks(g.Blocks)
	}
	lostFound := max(16*1024/bs, 2)
	g.OverheadBlocks = firstData +
		g.Groups*(2+g.InodeTableBlocks) + // block and inode bitmaps, inode table
		g.SuperBackups*(1+g.DescBlocks+g.ReservedGDTBlocks) +
		g.JournalBlocks +
		1 + lostFound // root directory and lost+found
	if o.ResizeInode {
		g.OverheadBlocks++ // the resize inode's double-indirect block
	}
	if g.JournalBlocks > 4*32768 {
		g.OverheadBlocks++ // journal extents spill out of the inode
	}
	g.ReservedBlocks = int64(float64(g.Blocks) * o.ReservedPercent / 100)
	return g, nil
}

// hasSuperBackup reports whether group holds a superblock copy under
// sparse_super: groups 0 and 1 and powers of 3, 5 and 7.
func hasSuperBackup(group int64) bool {
	if group <= 1 {
		return true
	}
	if group&1 == 0 {
		return false
	}
	for _, base := range []int64{3, 5, 7} {
		p := base
		for p < group {
			p *= base
		}
		if p == group {
			return true
		}
	}
	return false
}

// defaultJournalBlocks is ext2fs_default_journal_size() of e2fsprogs 1.47:
// the journal grows in steps with the block count.
func defaultJournalBlocks(blocks int64) int64 {
	switch {
	case blocks < 2048:
		return 0 // mke2fs makes no journal this small
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// inodesFor is the -N value builder passes for an fsBytes filesystem holding
// u: mke2fs's usual density (one inode per 16 KiB, or the caller's -i), but
// never fewer than the tree needs plus a quarter for the running system.
func (o ext4Options) inodesFor(fsBytes int64, u TreeUsage) int64 {
	if o.Inodes > 0 {
		return o.Inodes
	}
	n := fsBytes / o.InodeRatio
	if !o.RatioGiven {
		n = max(n, u.Inodes+u.Inodes/4+1024)
	}
	return n
}

// neededBlocks is what the tree takes beyond an empty filesystem, with a
// small allowance for what the estimate cannot see (extended attributes
// that do not fit in the inode, fragmentation of big directories).
func (o ext4Options) neededBlocks(u TreeUsage) int64 {
	b := ceilDiv(u.ContentBytes(), o.BlockSize)
	return b + b/200 + 256
}

// fit reports how an fsBytes filesystem holds u: the geometry, and the free
// blocks left (negative when the tree does not fit).
func (o ext4Options) fit(fsBytes int64, u TreeUsage) (ext4Geometry, int64, error) {
	g, err := o.geometry(fsBytes, o.inodesFor(fsBytes, u))
	if err != nil {
		return g, 0, err
	}
	if g.Inodes()-11 < u.Inodes-1 { // inodes 1-11 are reserved or lost+found; the root is inode 2
		return g, 0, fmt.Errorf("%d inodes are too few for the tree's %d (mkfs option -N or -i)", g.Inodes(), u.Inodes)
	}
	return g, g.FreeBlocks() - o.neededBlocks(u), nil
}

// minFSBytes is the smallest filesystem, in whole MiB, that holds u and
// leaves availBytes available to unprivileged users (df's "Avail": free
// blocks minus the root reserve). Capacity is not monotonic in size (the
// journal grows in steps, small last groups are dropped), so this scans
// upwards in 1 MiB steps from a lower bound; that is a few thousand cheap
// iterations even for large trees.
func (o ext4Options) minFSBytes(u TreeUsage, availBytes int64) (int64, error) {
	return o.minFSBytesFrom(u, availBytes, 0)
}

// minFSBytesFrom is minFSBytes, scanning from at least from bytes.
func (o ext4Options) minFSBytesFrom(u TreeUsage, availBytes, from int64) (int64, error) {
	size := max(roundUp(u.ContentBytes()+availBytes, MiB), 8*MiB, roundUp(from, MiB))
	var lastErr error
	for tries := 0; tries < 1<<22; tries++ {
		g, free, err := o.fit(size, u)
		if err == nil {
			avail := free
			if availBytes > 0 {
				avail -= g.ReservedBlocks
			}
			if free >= 0 && avail*o.BlockSize >= availBytes {
				return size, nil
			}
		} else {
			lastErr = err
		}
		size += MiB
	}
	return 0, fmt.Errorf("no ext4 size up to %s holds the tree: %v", humanBytes(size), lastErr)
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func roundUp(a, unit int64) int64 { return ceilDiv(a, unit) * unit }

// humanBytes formats sizes for messages: "512 MiB", "1.4 GiB".
func humanBytes(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1f TiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", (n+MiB-1)/MiB)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", (n+1023)/1024)
	}
	return fmt.Sprintf("%d bytes", n)
}
