package elements

import (
	"regexp"
	"sort"
	"strings"
)

// Phase is one hook directory that DIB runs with dib-run-parts.
type Phase struct {
	Name   string // directory name, e.g. "install.d"
	Inside bool   // runs inside the image (DIB: chroot) rather than on the host
	Legacy bool   // block-device.d: DIB still runs it, builder warns and skips it
}

// Phases lists DIB's phases in run order.
var Phases = []Phase{
	{Name: "root.d"},
	{Name: "extra-data.d"},
	{Name: "pre-install.d", Inside: true},
	{Name: "install.d", Inside: true},
	{Name: "post-install.d", Inside: true},
	{Name: "post-root.d"},
	{Name: "block-device.d", Legacy: true},
	{Name: "pre-finalise.d"},
	{Name: "finalise.d", Inside: true},
	{Name: "cleanup.d"},
}

// EnvironmentDir holds the bash fragments sourced before every phase.
const EnvironmentDir = "environment.d"

var (
	// dib-run-parts' default RUN_PARTS_REGEX.
	hookNameRE = regexp.MustCompile(`^[0-9A-Za-z_-]+$`)
	// dib-run-parts' filter for environment.d (dots allowed).
	envNameRE = regexp.MustCompile(`^[0-9A-Za-z_.-]+$`)
)

// phaseIndex returns the position of name in Phases, or -1.
func phaseIndex(name string) int {
	for i, p := range Phases {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// SortScripts returns names in dib-run-parts order, i.e. `LC_ALL=C sort -n`:
// by the numeric value of the leading number (none -> 0, "-3" is negative,
// "00" == "0"), ties broken by the byte order of the whole name. The input is
// not modified.
func SortScripts(names []string) []string {
	out := append([]string(nil), names...)
	sort.SliceStable(out, func(i, j int) bool {
		if c := compareNumericPrefix(out[i], out[j]); c != 0 {
			return c < 0
		}
		return out[i] < out[j]
	})
	return out
}

// sortNumber is the number GNU sort -n reads at the start of a line in the C
// locale: optional blanks, optional '-', digits, optional '.' and digits. It
// is kept as digit strings so that any length compares correctly.
type sortNumber struct {
	neg        bool
	whole      string // no leading zeros
	fractional string // no trailing zeros
}

func parseSortNumber(s string) sortNumber {
	s = strings.TrimLeft(s, " \t")
	var n sortNumber
	if strings.HasPrefix(s, "-") {
		n.neg = true
		s = s[1:]
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n.whole = strings.TrimLeft(s[:i], "0")
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n.fractional = strings.TrimRight(s[i+1:j], "0")
	}
	if n.whole == "" && n.fractional == "" {
		n.neg = false // -0 == 0, and "-foo" is 0
	}
	return n
}

func compareNumericPrefix(a, b string) int {
	x, y := parseSortNumber(a), parseSortNumber(b)
	if x.neg != y.neg {
		if x.neg {
			return -1
		}
		return 1
	}
	c := compareMagnitude(x, y)
	if x.neg {
		return -c
	}
	return c
}

func compareMagnitude(x, y sortNumber) int {
	if len(x.whole) != len(y.whole) {
		if len(x.whole) < len(y.whole) {
			return -1
		}
		return 1
	}
	if c := strings.Compare(x.whole, y.whole); c != 0 {
		return c
	}
	// Without trailing zeros, fractional digit strings compare lexically.
	return strings.Compare(x.fractional, y.fractional)
}
