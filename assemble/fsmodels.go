package assemble

import (
	"encoding/binary"
	"fmt"
	"io"
)

// xfs, as mkfs.xfs 6.1 makes it with its defaults (4 KiB blocks, 512-byte
// inodes, 4 allocation groups below 4 TiB, reflink and finobt on).
const (
	// xfsMinSize is mkfs.xfs's minimum ("Filesystem must be larger than
	// 300MB").
	xfsMinSize = 300 * MiB
	xfsInode   = 512
)

// xfsLogBytes is the internal log mkfs.xfs 6.1 picks: 64 MiB up to 128 GiB,
// then 1/2048 of the filesystem (measured: 64 GiB -> 16384 blocks,
// 256 GiB -> 32768, 1 TiB -> 131072).
func xfsLogBytes(size int64) int64 { return max(64*MiB, size/2048/blockBytes*blockBytes) }

// xfsCapacity is what an xfs filesystem of size bytes offers files once
// mounted: less the log, the allocation group headers, the blocks the
// kernel reserves at mount (5% up to 32 MiB) and the per-AG btree
// reservations (finobt, refcount; about 1%).
func xfsCapacity(size int64) int64 {
	c := size - xfsLogBytes(size) - 4*128*1024 - min(size/20, 32*MiB) - size/100
	return max(c, 0)
}

// xfsContentBytes is what the tree takes on xfs: data blocks, directories
// and long symlinks as on ext4, plus the inodes (allocated as needed, 512
// bytes each), plus 1% for extent and directory btrees.
func xfsContentBytes(u TreeUsage) int64 {
	b := u.ContentBytes() + u.Inodes*xfsInode
	return b + b/100 + 4*MiB
}

// xfsMinBytes is the smallest xfs filesystem (whole MiB) offering need
// bytes.
func xfsMinBytes(need int64) int64 {
	size := max(xfsMinSize, roundUp(need, MiB))
	for xfsCapacity(size) < need {
		size += roundUp((need-xfsCapacity(size))/2+1, MiB)
	}
	return size
}

// fatGeometry picks the FAT type and cluster size (in sectors) for a
// vfat filesystem of size bytes: FAT32 whenever it is large enough for
// 65525 clusters (the UEFI specification wants FAT32 on disks), with
// Microsoft's cluster sizes; FAT16 or FAT12 below that. mkfs.fat would
// choose from the size of the whole image file when given --offset, which
// gives an invalid FAT32 (docs/disk-assembly.md, P6): builder always
// passes both.
func fatGeometry(size int64) (bits int, spc int64) {
	sectors := size / SectorSize
	switch {
	case size >= 33*MiB:
		switch {
		case size <= 260*MiB:
			spc = 1
		case size <= 8<<30:
			spc = 8
		case size <= 16<<30:
			spc = 16
		case size <= 32<<30:
			spc = 32
		default:
			spc = 64
		}
		return 32, spc
	case sectors < 4085+64:
		return 12, 1
	}
	for spc = 1; sectors/spc > 65524-64 && spc < 64; spc *= 2 {
	}
	return 16, spc
}

// fatCapacity is the bytes of clusters a vfat filesystem of size bytes
// offers, after the reserved sectors, the two FATs and (FAT12/16) the
// 512-entry root directory mkfs.fat makes.
func fatCapacity(size int64) int64 {
	bits, spc := fatGeometry(size)
	sectors := size / SectorSize
	reserved, rootDir := int64(1), int64(32)
	if bits == 32 {
		reserved, rootDir = 32, 0
	}
	data := sectors - reserved - rootDir
	clusters := data / spc
	fat := ceilDiv((clusters+2)*int64(bits)/8, SectorSize)
	clusters = (data - 2*fat) / spc
	return max(clusters*spc*SectorSize, 0)
}

// fatNeed is what a tree takes on a vfat filesystem of size bytes: the
// data in clusters (at least the 4 KiB blocks the usage counts), a
// cluster per directory, and 64 bytes of directory entries (long names)
// per name.
func fatNeed(u TreeUsage, size int64) int64 {
	_, spc := fatGeometry(size)
	cluster := spc * SectorSize
	n := u.DataBytes + u.Files*max(cluster-blockBytes, 0) + u.Dirs*cluster + (u.Files+u.Dirs+u.Symlinks)*64
	return n + MiB/4
}

// fatMinBytes is the smallest vfat filesystem (whole MiB) holding u with
// avail bytes to spare.
func fatMinBytes(u TreeUsage, avail int64) int64 {
	size := max(MiB, roundUp(u.DataBytes+avail, MiB))
	for fatCapacity(size) < fatNeed(u, size)+avail {
		size += MiB
	}
	return size
}

// swap: mkswap's version-1 header in the first page of the area.
const (
	swapPageSize = 4096 // x86_64's page size; the kernel refuses other sizes
	swapMinBytes = 10 * swapPageSize
)

// writeSwapHeader makes the size bytes at offset of w a swap area, as
// mkswap does (mkswap has no --offset): the first page zeroed except for
// the version-1 header at byte 1024 (version, last page, no bad pages,
// UUID, label) and the "SWAPSPACE2" signature at its end.
func writeSwapHeader(w io.WriterAt, offset, size int64, label, uuid string) error {
	if size < swapMinBytes {
		return fmt.Errorf("swap area of %d bytes: mkswap needs at least %d", size, swapMinBytes)
	}
	if len(label) > 16 {
		return fmt.Errorf("swap label %q is longer than 16 bytes", label)
	}
	id, err := parseGUID(uuid)
	if err != nil {
		return fmt.Errorf("swap UUID: %w", err)
	}
	page := make([]byte, swapPageSize)
	h := page[1024:]
	binary.LittleEndian.PutUint32(h[0:], 1)                           // version
	binary.LittleEndian.PutUint32(h[4:], uint32(size/swapPageSize-1)) // last_page
	binary.LittleEndian.PutUint32(h[8:], 0)                           // nr_badpages
	copy(h[12:28], id[:])                                             // sws_uuid
	copy(h[28:44], label)                                             // sws_volume
	copy(page[swapPageSize-10:], "SWAPSPACE2")                        // magic
	if _, err := w.WriteAt(page, offset); err != nil {
		return fmt.Errorf("write swap header: %w", err)
	}
	return nil
}
