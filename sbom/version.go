package sbom

import (
	"strconv"
	"strings"
)

// CompareVersions orders two versions of a package the way its package
// manager does: dpkg's rules for deb, rpm's for rpm. It returns -1, 0 or 1.
func CompareVersions(manager, a, b string) int {
	var c int
	if manager == "rpm" {
		c = rpmCompare(a, b)
	} else {
		c = debCompare(a, b)
	}
	switch {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}

// splitEpoch splits "E:rest" (E all digits) from a version.
func splitEpoch(v string) (int, string) {
	if i := strings.IndexByte(v, ':'); i > 0 {
		if e, err := strconv.Atoi(v[:i]); err == nil {
			return e, v[i+1:]
		}
	}
	return 0, v
}

// debCompare is dpkg's version comparison (lib/dpkg/version.c):
// epoch, then upstream version, then Debian revision, each compared by
// verrevcmp.
func debCompare(a, b string) int {
	ea, ra := splitEpoch(a)
	eb, rb := splitEpoch(b)
	if ea != eb {
		return ea - eb
	}
	ua, reva := splitRevision(ra)
	ub, revb := splitRevision(rb)
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(reva, revb)
}

func splitRevision(v string) (string, string) {
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// debOrder: '~' sorts before everything, even the end; letters before
// other characters.
func debOrder(c int) int {
	switch {
	case c >= 0 && c <= 255 && isDigit(byte(c)):
		return 0
	case c >= 0 && c <= 255 && isAlpha(byte(c)):
		return c
	case c == '~':
		return -1
	case c != 0:
		return c + 256
	}
	return 0
}

func verrevcmp(a, b string) int {
	at := func(s string, i int) int {
		if i < len(s) {
			return int(s[i])
		}
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := debOrder(at(a, i)), debOrder(at(b, j))
			if ac != bc {
				return ac - bc
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		for i < len(a) && j < len(b) && isDigit(a[i]) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return firstDiff
		}
	}
	return 0
}

// rpmCompare compares "[E:]V-R" as rpm does: epoch (absent is 0), then
// version and release with rpmvercmp.
func rpmCompare(a, b string) int {
	ea, ra := splitEpoch(a)
	eb, rb := splitEpoch(b)
	if ea != eb {
		return ea - eb
	}
	va, rela := splitRevision(ra)
	vb, relb := splitRevision(rb)
	if c := rpmvercmp(va, vb); c != 0 {
		return c
	}
	return rpmvercmp(rela, relb)
}

func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// rpmvercmp is rpm's segment comparison (rpmio/rpmvercmp.c), with '~'
// (sorts before everything) and '^' (after the base, before anything else).
func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	one, two := a, b
	for len(one) > 0 || len(two) > 0 {
		for len(one) > 0 && !isAlnum(one[0]) && one[0] != '~' && one[0] != '^' {
			one = one[1:]
		}
		for len(two) > 0 && !isAlnum(two[0]) && two[0] != '~' && two[0] != '^' {
			two = two[1:]
		}
		if (len(one) > 0 && one[0] == '~') || (len(two) > 0 && two[0] == '~') {
			if len(one) == 0 || one[0] != '~' {
				return 1
			}
			if len(two) == 0 || two[0] != '~' {
				return -1
			}
			one, two = one[1:], two[1:]
			continue
		}
		if (len(one) > 0 && one[0] == '^') || (len(two) > 0 && two[0] == '^') {
			if len(one) == 0 {
				return -1
			}
			if len(two) == 0 {
				return 1
			}
			if one[0] != '^' {
				return 1
			}
			if two[0] != '^' {
				return -1
			}
			one, two = one[1:], two[1:]
			continue
		}
		if len(one) == 0 || len(two) == 0 {
			break
		}
		num := isDigit(one[0])
		take := func(s string) (string, string) {
			k := 0
			for k < len(s) && ((num && isDigit(s[k])) || (!num && isAlpha(s[k]))) {
				k++
			}
			return s[:k], s[k:]
		}
		var s1, s2 string
		s1, one = take(one)
		s2, two = take(two)
		if len(s2) == 0 {
			if num {
				return 1
			}
			return -1
		}
		if num {
			s1 = strings.TrimLeft(s1, "0")
			s2 = strings.TrimLeft(s2, "0")
			if len(s1) != len(s2) {
				return len(s1) - len(s2)
			}
		}
		if c := strings.Compare(s1, s2); c != 0 {
			return c
		}
	}
	if len(one) == 0 && len(two) == 0 {
		return 0
	}
	if len(one) > 0 {
		return 1
	}
	return -1
}
