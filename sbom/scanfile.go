package sbom

import (
	"encoding/gob"
	"fmt"
	"io"
)

// A scan is kept with an image's reused outputs: an unchanged rebuild
// that writes them somewhere new describes them again without reading the
// tree (seconds) once more.

// scanFormat is the kept scan's format version; another one is not read.
const scanFormat = 1

// scanRecord is a Scan as kept, every field of its packages included.
type scanRecord struct {
	Format   int
	OS       osRelease
	Packages []packageRecord
	Files    []File
}

type packageRecord struct {
	Package
	LicenseRefs []licenseRef
}

// Encode writes the scan for DecodeScan.
func (s *Scan) Encode(w io.Writer) error {
	rec := scanRecord{Format: scanFormat, OS: s.OS, Files: s.Files}
	for _, p := range s.Packages {
		rec.Packages = append(rec.Packages, packageRecord{Package: p, LicenseRefs: p.licenseRefs})
	}
	return gob.NewEncoder(w).Encode(&rec)
}

// DecodeScan reads a scan Encode wrote: the same documents come of it.
func DecodeScan(r io.Reader) (*Scan, error) {
	var rec scanRecord
	if err := gob.NewDecoder(r).Decode(&rec); err != nil {
		return nil, fmt.Errorf("sbom: read kept scan: %w", err)
	}
	if rec.Format != scanFormat {
		return nil, fmt.Errorf("sbom: kept scan has format %d, not %d", rec.Format, scanFormat)
	}
	s := &Scan{OS: rec.OS, Files: rec.Files}
	for _, p := range rec.Packages {
		pkg := p.Package
		pkg.licenseRefs = p.LicenseRefs
		s.Packages = append(s.Packages, pkg)
	}
	return s, nil
}
