package sbom

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// purl is a package URL (github.com/package-url/purl-spec):
// pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS.
type purl struct {
	Type, Namespace, Name, Version string
	Qualifiers                     map[string]string
}

// purlEscape percent-encodes all but the characters the purl spec leaves
// bare (letters, digits, ".-_~"; ':' in versions, where it is unambiguous).
func purlEscape(s string, keepColon bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || c == '.' || c == '-' || c == '_' || c == '~' || (keepColon && c == ':') {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func (p purl) String() string {
	var b strings.Builder
	b.WriteString("pkg:" + p.Type + "/")
	if p.Namespace != "" {
		b.WriteString(purlEscape(p.Namespace, false) + "/")
	}
	b.WriteString(purlEscape(p.Name, false))
	if p.Version != "" {
		b.WriteString("@" + purlEscape(p.Version, true))
	}
	var keys []string
	for k, v := range p.Qualifiers {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(k + "=" + purlEscape(p.Qualifiers[k], true))
	}
	return b.String()
}

// parsePurl reads a package URL; ok is false for anything else.
func parsePurl(s string) (purl, bool) {
	rest, ok := strings.CutPrefix(s, "pkg:")
	if !ok {
		return purl{}, false
	}
	rest, _, _ = strings.Cut(rest, "#")
	rest, query, _ := strings.Cut(rest, "?")
	var p purl
	p.Qualifiers = map[string]string{}
	for _, kv := range strings.Split(query, "&") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		p.Qualifiers[strings.ToLower(k)] = v
	}
	rest = strings.Trim(rest, "/")
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		v, err := url.PathUnescape(rest[i+1:])
		if err != nil {
			return purl{}, false
		}
		p.Version, rest = v, rest[:i]
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return purl{}, false
	}
	p.Type = strings.ToLower(parts[0])
	name, err := url.PathUnescape(parts[len(parts)-1])
	if err != nil || name == "" {
		return purl{}, false
	}
	p.Name = name
	if len(parts) > 2 {
		ns, err := url.PathUnescape(strings.Join(parts[1:len(parts)-1], "/"))
		if err != nil {
			return purl{}, false
		}
		p.Namespace = ns
	}
	return p, true
}

// packagePurl is the package URL of an installed package: pkg:deb/debian/
// or pkg:rpm/fedora/..., the namespace being the image's os-release ID.
func packagePurl(p Package) string {
	u := purl{Type: p.Manager, Name: p.Name, Qualifiers: map[string]string{"arch": p.Arch}}
	u.Namespace = p.Distro.ID
	if u.Namespace == "" && p.Manager == "deb" {
		u.Namespace = "debian"
	}
	if p.Distro.ID != "" && p.Distro.VersionID != "" {
		u.Qualifiers["distro"] = p.Distro.ID + "-" + p.Distro.VersionID
	}
	u.Version = p.Version
	if p.Manager == "rpm" {
		// rpm's purl carries the epoch as a qualifier.
		_, u.Version = splitEpoch(p.Version)
		u.Qualifiers["epoch"] = p.Epoch
	}
	return u.String()
}
