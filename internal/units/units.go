// Package units reads and writes byte sizes the way builder's users give
// them: 20G, 512M, 1.5GiB (binary multiples: K, M, G, T with or without
// "iB"), or a plain number of bytes.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseBytes reads a size: a number with an optional K, M, G or T suffix
// (binary; "KiB" and "KB" mean the same here), or bytes.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size: give bytes or a number with K, M, G or T")
	}
	mult := int64(1)
	u := strings.ToUpper(t)
	for _, suf := range []struct {
		s string
		m int64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(u, suf.s) {
			mult = suf.m
			t = strings.TrimSpace(t[:len(t)-len(suf.s)])
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a size: give bytes or a number with K, M, G or T (e.g. 20G)", s)
	}
	return int64(f * float64(mult)), nil
}

// Format writes a size for people: 1.38 GiB, 176 MiB, 12 KiB.
func Format(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
