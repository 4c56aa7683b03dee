package assemble

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// parseGUID parses the canonical 8-4-4-4-12 form into its 16 bytes in
// string order (big-endian fields, as for RFC 4122 UUIDs).
func parseGUID(s string) ([16]byte, error) {
	var g [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("%q is not a GUID of the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", s)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil {
		return g, fmt.Errorf("%q is not a GUID: %w", s, err)
	}
	copy(g[:], b)
	return g, nil
}

// formatGUID returns the upper-case canonical form, as GPT tools print it.
func formatGUID(g [16]byte) string {
	h := strings.ToUpper(hex.EncodeToString(g[:]))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// guidToDisk converts to GPT's on-disk layout: the first three fields are
// little-endian, the last two are stored as in the string.
func guidToDisk(g [16]byte) []byte {
	d := make([]byte, 16)
	binary.LittleEndian.PutUint32(d[0:], binary.BigEndian.Uint32(g[0:]))
	binary.LittleEndian.PutUint16(d[4:], binary.BigEndian.Uint16(g[4:]))
	binary.LittleEndian.PutUint16(d[6:], binary.BigEndian.Uint16(g[6:]))
	copy(d[8:], g[8:])
	return d
}

func guidFromDisk(d []byte) [16]byte {
	var g [16]byte
	binary.BigEndian.PutUint32(g[0:], binary.LittleEndian.Uint32(d[0:]))
	binary.BigEndian.PutUint16(g[4:], binary.LittleEndian.Uint16(d[4:]))
	binary.BigEndian.PutUint16(g[6:], binary.LittleEndian.Uint16(d[6:]))
	copy(g[8:], d[8:16])
	return g
}

// derivedGUID returns a version-5-style GUID computed from seed and name, so
// that a build given the same root UUID gets the same disk and partition
// GUIDs every time (reproducible images).
func derivedGUID(seed, name string) string {
	sum := sha256.Sum256([]byte("builder/assemble\x00" + seed + "\x00" + name))
	var g [16]byte
	copy(g[:], sum[:16])
	g[6] = g[6]&0x0f | 0x50
	g[8] = g[8]&0x3f | 0x80
	return formatGUID(g)
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
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return "", fmt.Errorf("random UUID: %w", err)
	}
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return strings.ToLower(formatGUID(g)), nil
}
