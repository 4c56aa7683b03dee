package sbom

import (
	"regexp"
	"strings"

	"github.com/github/go-spdx/v2/spdxexp"
	"github.com/github/go-spdx/v2/spdxexp/spdxlicenses"
)

const noAssertion = "NOASSERTION"

// licenseRef is a licence without an SPDX identifier, named LicenseRef-...
// in expressions; the document lists each once (hasExtractedLicensingInfos).
type licenseRef struct {
	ID   string // LicenseRef-public-domain
	Name string // as the package named it: public-domain
}

// rpmLicense turns an rpm License tag into an SPDX expression: new
// packages already write one ("MIT AND Apache-2.0"), older ones Fedora's
// short names ("GPLv2+ and LGPLv2+", "ASL 2.0").
func rpmLicense(s string) (string, []licenseRef) {
	s = strings.TrimSpace(s)
	if s == "" || s == "(none)" {
		return noAssertion, nil
	}
	if ok, _ := spdxexp.ValidateLicenses([]string{s}); ok && !strings.Contains(s, "LicenseRef-") {
		return s, nil
	}
	return licenseExpression(s)
}

// licenseExpression parses words, "and"/"or", "with ... exception",
// parentheses and DEP-5's ", and" (which groups what comes before it), and
// maps each licence name to its SPDX identifier or a LicenseRef-. The
// result is checked with go-spdx; should it still not parse, the whole
// string becomes one LicenseRef-.
func licenseExpression(s string) (string, []licenseRef) {
	p := &licParser{toks: licTokens(s)}
	e := p.expr()
	if e == "" {
		return noAssertion, nil
	}
	if ok, _ := spdxexp.ValidateLicenses([]string{e}); !ok {
		r := newRef(s)
		return r.ID, []licenseRef{r}
	}
	return e, p.refs
}

func licTokens(s string) []string {
	s = strings.NewReplacer(",", " , ", "(", " ( ", ")", " ) ").Replace(s)
	return strings.Fields(s)
}

type licParser struct {
	toks []string
	i    int
	refs []licenseRef
}

func isOp(t string) bool {
	l := strings.ToLower(t)
	return l == "and" || l == "or"
}

// expr reads until a closing parenthesis or the end.
func (p *licParser) expr() string {
	out, pending := "", ""
	var cur []string
	closeGroup := func() {
		g := strings.Join(trimOps(cur), " ")
		cur = nil
		if g == "" {
			return
		}
		if out == "" {
			out = g
			return
		}
		if pending == "" {
			pending = "AND"
		}
		out = paren(out) + " " + pending + " " + paren(g)
		pending = ""
	}
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		switch {
		case t == ")":
			closeGroup()
			return out
		case t == ",":
			closeGroup()
			p.i++
			if p.i < len(p.toks) && isOp(p.toks[p.i]) {
				pending = strings.ToUpper(p.toks[p.i])
				p.i++
			}
		case isOp(t):
			cur = append(cur, strings.ToUpper(t))
			p.i++
		case t == "(":
			p.i++
			sub := p.expr()
			if p.i < len(p.toks) && p.toks[p.i] == ")" {
				p.i++
			}
			if sub != "" {
				cur = append(cur, paren(sub))
			}
		default:
			cur = append(cur, p.term())
		}
	}
	closeGroup()
	return out
}

// trimOps drops operators with nothing on one side ("GPL-2 or", "and MIT")
// and a doubled operator.
func trimOps(parts []string) []string {
	var out []string
	for _, x := range parts {
		op := x == "AND" || x == "OR"
		if op && (len(out) == 0 || out[len(out)-1] == "AND" || out[len(out)-1] == "OR") {
			continue
		}
		out = append(out, x)
	}
	for len(out) > 0 && (out[len(out)-1] == "AND" || out[len(out)-1] == "OR") {
		out = out[:len(out)-1]
	}
	return out
}

// term reads one licence: words up to an operator, a comma or a
// parenthesis, with an optional "with WORDS [exception]".
func (p *licParser) term() string {
	var name, exc []string
	with := false
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if t == "(" || t == ")" || t == "," || isOp(t) {
			break
		}
		p.i++
		if strings.EqualFold(t, "with") && len(name) > 0 && !with {
			with = true
			continue
		}
		if with {
			exc = append(exc, t)
		} else {
			name = append(name, t)
		}
	}
	full := strings.Join(name, " ")
	id, ok := spdxLicenseID(full)
	if len(exc) == 0 {
		if ok {
			return id
		}
		return p.ref(full)
	}
	if e, found := spdxException(exc); ok && found && !strings.Contains(id, " ") {
		return id + " WITH " + e
	}
	return p.ref(full + " with " + strings.Join(exc, " "))
}

func (p *licParser) ref(name string) string {
	r := newRef(name)
	p.refs = append(p.refs, r)
	return r.ID
}

func newRef(name string) licenseRef {
	var b strings.Builder
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
			b.WriteRune(c)
		case c == '+':
			b.WriteString("plus")
		default:
			b.WriteByte('-')
		}
	}
	id := b.String()
	for strings.Contains(id, "--") {
		id = strings.ReplaceAll(id, "--", "-")
	}
	id = strings.Trim(id, "-")
	if id == "" {
		id = "unknown"
	}
	return licenseRef{ID: "LicenseRef-" + id, Name: name}
}

func paren(e string) string {
	if !strings.Contains(e, " ") || (strings.HasPrefix(e, "(") && balancedOuter(e)) {
		return e
	}
	return "(" + e + ")"
}

// balancedOuter reports whether e's first parenthesis closes at its end.
func balancedOuter(e string) bool {
	depth := 0
	for i, c := range e {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 && i != len(e)-1 {
				return false
			}
		}
	}
	return depth == 0
}

// gnuFamily matches the GNU licences' short names in their Debian and
// Fedora spellings: GPL-2+, GPLv2+, LGPL-2.1, GFDL-NIV-1.3+, AGPL-3.0-only.
var gnuFamily = regexp.MustCompile(`(?i)^(agpl|lgpl|gpl|gfdl-niv|gfdl)[-_ ]?v?(\d+(?:\.\d+)?)?(\+|-or-later|-only)?$`)

// licenseAliases are names Debian's and Fedora's metadata use for licences
// that have an SPDX identifier under another name.
var licenseAliases = map[string]string{
	"expat":      "MIT",
	"mit/expat":  "MIT",
	"perl":       "(Artistic-1.0-Perl OR GPL-1.0-or-later)",
	"artistic":   "Artistic-1.0",
	"artistic-1": "Artistic-1.0",
	"artistic-2": "Artistic-2.0",
	"apache-2":   "Apache-2.0",
	"asl 2.0":    "Apache-2.0",
	"asl 1.1":    "Apache-1.1",
	"boost":      "BSL-1.0",
	"cc0":        "CC0-1.0",
	"psf-2":      "PSF-2.0",
	"python-2":   "Python-2.0",
	"mplv2.0":    "MPL-2.0",
	"mplv1.1":    "MPL-1.1",
	"zlib":       "Zlib",
	"openldap":   "OLDAP-2.8",
}

// gnuFirst is the version a GNU licence named without one starts from.
var gnuFirst = map[string]string{"gpl": "1.0", "lgpl": "2.0", "agpl": "1.0", "gfdl": "1.1", "gfdl-niv": "1.1"}

// spdxLicenseID maps a licence's short name to an SPDX identifier (or,
// for Perl's dual licence, a parenthesised expression).
func spdxLicenseID(name string) (string, bool) {
	n := strings.TrimSpace(name)
	if n == "" {
		return "", false
	}
	if ok, id := spdxlicenses.IsActiveLicense(n); ok {
		return id, true
	}
	if a, ok := licenseAliases[strings.ToLower(n)]; ok {
		return a, true
	}
	if m := gnuFamily.FindStringSubmatch(n); m != nil {
		fam := strings.ToLower(m[1])
		v := m[2]
		later := m[3] == "+" || strings.EqualFold(m[3], "-or-later")
		if v == "" {
			v, later = gnuFirst[fam], true
		}
		if !strings.Contains(v, ".") {
			v += ".0"
		}
		base := strings.ToUpper(fam)
		if fam == "gfdl-niv" {
			base = "GFDL"
		}
		id := base + "-" + v
		if fam == "gfdl-niv" {
			id += "-no-invariants"
		}
		if later {
			id += "-or-later"
		} else {
			id += "-only"
		}
		if ok, canon := spdxlicenses.IsActiveLicense(id); ok {
			return canon, true
		}
	}
	plus := strings.HasSuffix(n, "+")
	base := strings.TrimSuffix(n, "+")
	for _, cand := range []string{base, base + ".0"} {
		if ok, id := spdxlicenses.IsActiveLicense(cand); ok {
			if plus {
				return id + "+", true
			}
			return id, true
		}
	}
	return "", false
}

// spdxException finds the SPDX exception named by the words of "with
// WORDS exception": Linux-syscall-note, Texinfo-exception, or the single
// exception whose identifier starts with NAME-exception (Bison-exception-2.2
// is not chosen while Bison-exception-1.24 also exists).
func spdxException(words []string) (string, bool) {
	w := words
	if len(w) > 1 && strings.EqualFold(w[len(w)-1], "exception") {
		w = w[:len(w)-1]
	}
	joined := strings.Join(w, "-")
	for _, cand := range []string{joined, joined + "-exception"} {
		if ok, id := spdxlicenses.IsException(cand); ok {
			return id, true
		}
	}
	prefix := strings.ToUpper(joined + "-exception")
	found := ""
	for _, id := range spdxlicenses.GetExceptions() {
		if strings.HasPrefix(strings.ToUpper(id), prefix) {
			if found != "" {
				return "", false
			}
			found = id
		}
	}
	return found, found != ""
}

// joinExpressions joins with op, parenthesising compound parts.
func joinExpressions(exprs []string, op string) string {
	if len(exprs) == 1 {
		return exprs[0]
	}
	parts := make([]string, len(exprs))
	for i, e := range exprs {
		parts[i] = paren(e)
	}
	return strings.Join(parts, " "+op+" ")
}
