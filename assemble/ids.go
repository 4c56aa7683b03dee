package assemble

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"builder/internal/parttable"
)

// Identifiers: filesystem UUIDs, FAT volume ids, GPT disk and partition
// GUIDs, MBR disk signatures. The YAML may give them; AssignIDs derives
// the rest from a seed so that a rebuild gives the same image. Parsing and
// formatting are google/uuid's (through parttable, which owns GPT's
// on-disk byte order); only the derivation is builder's own.

// parseGUID parses the canonical 8-4-4-4-12 form, in either case.
func parseGUID(s string) (uuid.UUID, error) { return parttable.ParseGUID(s) }

// parseMBRSignature reads an MBR disk signature (8 hex digits).
func parseMBRSignature(s string) (uint32, error) { return parttable.ParseMBRSignature(s) }

// derivedGUID returns a version-5-style GUID computed from seed and name, so
// that a build given the same root UUID gets the same disk and partition
// GUIDs every time (reproducible images). It is not uuid.NewSHA1 (which
// hashes a namespace UUID with SHA-1): the IDs of existing builds depend on
// this exact derivation.
func derivedGUID(seed, name string) string {
	sum := sha256.Sum256([]byte("builder/assemble\x00" + seed + "\x00" + name))
	g := uuid.UUID(sum[:16])
	g[6] = g[6]&0x0f | 0x50
	g[8] = g[8]&0x3f | 0x80
	return parttable.FormatGUID(g)
}

// derivedUint32 returns 32 bits derived from seed and name (FAT volume IDs,
// MBR disk signatures), never 0 because 0 means "unset" to callers.
func derivedUint32(seed, name string) uint32 {
	sum := sha256.Sum256([]byte("builder/assemble\x00" + seed + "\x00" + name))
	if v := binary.BigEndian.Uint32(sum[:4]); v != 0 {
		return v
	}
	return 1
}

// randomUUID returns a random (version 4) UUID in lower case, the form
// mkfs.ext4 -U and the kernel command line use.
func randomUUID() (string, error) {
	g, err := uuid.NewRandom()
	if err != nil {
		return "", fmt.Errorf("random UUID: %w", err)
	}
	return g.String(), nil
}

// FATVolumeID formats a FAT volume id the way blkid and fstab show it.
func FATVolumeID(id uint32) string {
	return fmt.Sprintf("%04X-%04X", id>>16, id&0xffff)
}

// parseFATVolumeID reads a FAT volume id: XXXX-XXXX or 8 hex digits.
func parseFATVolumeID(s string) (uint32, error) {
	h := strings.ReplaceAll(s, "-", "")
	var v uint32
	if len(h) != 8 || (strings.Contains(s, "-") && (len(s) != 9 || s[4] != '-')) {
		return 0, fmt.Errorf("FAT volume id %q: give XXXX-XXXX (8 hex digits)", s)
	}
	if _, err := fmt.Sscanf(h, "%08x", &v); err != nil {
		return 0, fmt.Errorf("FAT volume id %q: give XXXX-XXXX (8 hex digits)", s)
	}
	return v, nil
}

// AssignIDs fills every identifier the YAML left open, derived from seed
// so that the same seed gives the same image: filesystem UUIDs, FAT
// volume ids (as XXXX-XXXX), the GPT disk GUID or MBR signature, and GPT
// partition GUIDs. A seed of "" picks random identifiers.
func (l *Layout) AssignIDs(seed string) {
	if seed == "" {
		seed, _ = randomUUID() // crypto/rand does not fail on Linux
	}
	for i := range l.Filesystems {
		fs := &l.Filesystems[i]
		if fs.UUID != "" {
			continue
		}
		if fs.Type == "vfat" {
			fs.UUID = FATVolumeID(derivedUint32(seed, "fat/"+fs.Name))
		} else {
			fs.UUID = strings.ToLower(derivedGUID(seed, "fs/"+fs.Name))
		}
	}
	if p := l.Partitioning; p != nil {
		if p.DiskGUID == "" {
			if p.Label == GPT {
				p.DiskGUID = derivedGUID(seed, "disk")
			} else {
				p.DiskGUID = fmt.Sprintf("%08X", derivedUint32(seed, "mbr"))
			}
		}
		if p.Label == GPT {
			for i := range p.Partitions {
				if p.Partitions[i].GUID == "" {
					p.Partitions[i].GUID = derivedGUID(seed, "partition/"+p.Partitions[i].Name)
				}
			}
		}
	}
}
