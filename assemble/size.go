package assemble

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// DIB's size syntax, with DIB's arithmetic so that sizes match byte for
// byte.

// Size is a DIB size: absolute in DIB's units, or N% of the space still
// free at that point.
type Size struct {
	Spec     string  // as written
	Relative bool    // N%
	Percent  float64 // N, when Relative
	Bytes    int64   // when absolute
}

// sizeUnits is DIB's unit table: binary prefixes with "iB", decimal
// otherwise, bytes without a unit.
var sizeUnits = map[string]float64{
	"TiB": 1 << 40, "GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10,
	"TB": 1e12, "GB": 1e9, "MB": 1e6, "KB": 1e3,
	"T": 1e12, "G": 1e9, "M": 1e6, "K": 1e3,
	"B": 1, "": 1,
}

var sizeRe = regexp.MustCompile(`^([\d.]*) ?([a-zA-Z0-9_]*)$`)

// ParseSize reads a DIB size: "100%", "8MiB", "1.5G", "4096", "3 GB".
// The arithmetic is DIB's (float64, truncated), so sizes match byte for
// byte.
func ParseSize(spec string) (Size, error) {
	s := Size{Spec: spec}
	if p, ok := strings.CutSuffix(spec, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 || f > 100 {
			return s, fmt.Errorf("size %q: a percentage must be a number from 0 to 100", spec)
		}
		s.Relative, s.Percent = true, f
		return s, nil
	}
	m := sizeRe.FindStringSubmatch(spec)
	if m == nil {
		return s, fmt.Errorf("invalid size %q: give a number and a unit such as 512MiB, 2G or 100%%", spec)
	}
	unit, ok := sizeUnits[m[2]]
	if !ok {
		return s, fmt.Errorf("size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, or K, M, G, T (powers of 1000))", spec, m[2])
	}
	n := 1.0
	if m[1] != "" {
		f, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return s, fmt.Errorf("size %q: %q is not a number", spec, m[1])
		}
		n = f
	}
	b := unit * n
	if b > math.MaxInt64/2 {
		return s, fmt.Errorf("size %q is too large", spec)
	}
	s.Bytes = int64(b)
	return s, nil
}

// Of resolves the size against free, the bytes still free at that point.
func (s Size) Of(free int64) int64 {
	if s.Relative {
		return int64(float64(free) * s.Percent / 100.0)
	}
	return s.Bytes
}

func (s Size) String() string { return s.Spec }
