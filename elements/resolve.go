package elements

import (
	"fmt"
	"sort"
	"strings"
)

// osProvide is the virtual name an operating-system element must provide.
const osProvide = "operating-system"

// Resolution is the outcome of Resolve.
type Resolution struct {
	Elements   []*Element        // the expanded set (final - provided), sorted by name
	Requested  []string          // the requested names, de-duplicated, in the order given
	ProvidedBy map[string]string // virtual name -> the element providing it
	OS         *Element          // the element that provides "operating-system"
	Overrides  []string          // "element X from DIR overrides DIR2", for resolved elements
}

// MissingElementError: a requested or depended-on name is neither an element
// nor provided by an element processed before it.
type MissingElementError struct {
	Name       string
	RequiredBy string   // "" when requested directly
	Searched   []string // ELEMENTS_PATH entries, then "builtin"
	Providers  []string // library elements that provide Name, if it is a virtual name
	Pending    []string // providers already in the set, reached only after Name was needed
}

func (e *MissingElementError) Error() string {
	by := "requested"
	if e.RequiredBy != "" {
		by = fmt.Sprintf("required by %q", e.RequiredBy)
	}
	if len(e.Pending) > 0 {
		// DIB's breadth-first walk looks the name up before it processes
		// the provider another dependency pulled in; requested elements are
		// processed first, so requesting the provider fixes it.
		return fmt.Sprintf("element %q not found (%s); it is provided by %s, which the breadth-first resolution reaches only later: request %s explicitly",
			e.Name, by, quoteJoin(e.Pending, " and "), quoteJoin(e.Pending, " or "))
	}
	if len(e.Providers) > 0 {
		// DIB says only "Element 'block-device' not found" for `vm`
		// without a block-device element; name the candidates instead.
		return fmt.Sprintf("element %q not found (%s); it is provided by %s: add one of them to the elements",
			e.Name, by, strings.Join(e.Providers, ", "))
	}
	if strings.Contains(e.Name, "/") {
		// A path given where a name belongs.
		return fmt.Sprintf("element %q not found (%s): elements are named, not given as paths; put the directory that holds it on ELEMENTS_PATH and use its name",
			e.Name, by)
	}
	return fmt.Sprintf("element %q not found (%s); check ELEMENTS_PATH (searched: %s)",
		e.Name, by, strings.Join(e.Searched, ", "))
}

// AlreadyProvidedError: two elements provide the same name, or a requested
// name is provided by another element.
type AlreadyProvidedError struct {
	Name      string
	Providers []string
	Requested bool // Name was requested by the user and is provided by Providers
}

func (e *AlreadyProvidedError) Error() string {
	if e.Requested {
		return fmt.Sprintf("%q was requested but is provided by %s; request only one of them",
			e.Name, quoteJoin(e.Providers, " and "))
	}
	return fmt.Sprintf("%q is provided by both %s; use only one of them", e.Name, quoteJoin(e.Providers, " and "))
}

// MissingOSError: no resolved element provides "operating-system".
type MissingOSError struct {
	Candidates []string // library elements that provide operating-system
}

func (e *MissingOSError) Error() string {
	if len(e.Candidates) == 0 {
		return "no operating-system element: no element in the library provides operating-system; check ELEMENTS_PATH"
	}
	return fmt.Sprintf("no operating-system element: add one of %s (elements that provide operating-system in the library)",
		strings.Join(e.Candidates, ", "))
}

func quoteJoin(names []string, sep string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, sep)
}

// Resolve expands names with element-deps exactly as DIB's
// _expand_element_dependencies: breadth-first; a name already provided when
// it is dequeued is never looked up (so virtual names work, and a real
// element of that name is dropped); providing a name twice is an error; a
// requested name that ends up provided is an error; something must provide
// operating-system. Cycles and self-dependencies are harmless.
func (l *Library) Resolve(names []string) (*Resolution, error) {
	var requested []string
	final := map[string]bool{}
	for _, n := range names {
		if !final[n] {
			final[n] = true
			requested = append(requested, n)
		}
	}
	queue := append([]string(nil), requested...)
	requiredBy := map[string]string{}
	provided := map[string]bool{}
	providedBy := map[string][]string{}

	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if provided[name] {
			continue
		}
		e, ok := l.elements[name]
		if !ok {
			err := &MissingElementError{Name: name, RequiredBy: requiredBy[name],
				Searched: l.searched, Providers: l.providersOf(name)}
			for _, p := range err.Providers {
				if final[p] {
					err.Pending = append(err.Pending, p)
				}
			}
			return nil, err
		}
		for _, p := range e.Provides {
			if provided[p] {
				return nil, &AlreadyProvidedError{Name: p, Providers: append(append([]string(nil), providedBy[p]...), name)}
			}
			providedBy[p] = append(providedBy[p], name)
		}
		for _, p := range e.Provides {
			provided[p] = true
		}
		for _, d := range e.Deps {
			if !final[d] && !provided[d] {
				queue = append(queue, d)
				requiredBy[d] = name
			}
			final[d] = true
		}
	}

	for _, n := range requested {
		if provided[n] {
			return nil, &AlreadyProvidedError{Name: n, Providers: providedBy[n], Requested: true}
		}
	}
	if !provided[osProvide] {
		return nil, &MissingOSError{Candidates: l.providersOf(osProvide)}
	}

	res := &Resolution{Requested: requested, ProvidedBy: map[string]string{}}
	for p, by := range providedBy {
		res.ProvidedBy[p] = by[0] // unique: a second provider is an error above
	}
	for n := range final {
		if !provided[n] {
			res.Elements = append(res.Elements, l.elements[n])
		}
	}
	sort.Slice(res.Elements, func(i, j int) bool { return res.Elements[i].Name < res.Elements[j].Name })
	res.OS = l.elements[res.ProvidedBy[osProvide]]
	for _, e := range res.Elements {
		for _, s := range e.Shadows {
			res.Overrides = append(res.Overrides, fmt.Sprintf("element %s from %s overrides %s", e.Name, e.Dir, s))
		}
	}
	return res, nil
}

// Names returns the names of the resolved elements, sorted.
func (r *Resolution) Names() []string {
	out := make([]string, len(r.Elements))
	for i, e := range r.Elements {
		out[i] = e.Name
	}
	return out
}

// DefaultBlockDevice is DIB's _arg_defaults_hack with DIB's element names:
// when the literal element "vm" is requested and no block-device-* element
// is, it appends block-device-efi on arm64/aarch64 and block-device-mbr
// elsewhere.
func DefaultBlockDevice(args []string, arch string) []string {
	return DefaultBlockDeviceNamed(args, arch, "block-device-mbr", "block-device-efi")
}

// DefaultBlockDeviceNamed is DefaultBlockDevice with the element names as
// parameters, so builder can default to its own block-device element.
// arm64Name == "" means name on every architecture. The result is a new
// slice; args is not modified.
//
// DIB tests `[[ "arm64 aarch64" =~ $ARCH ]]`, an unanchored regex that also
// matches "arm", "64" or an empty ARCH; this compares the whole name.
func DefaultBlockDeviceNamed(args []string, arch, name, arm64Name string) []string {
	out := append([]string(nil), args...)
	vm := false
	for _, a := range args {
		if strings.HasPrefix(a, "block-device-") {
			return out
		}
		if a == "vm" {
			vm = true
		}
	}
	if !vm {
		return out
	}
	if arm64Name != "" && (arch == "arm64" || arch == "aarch64") {
		return append(out, arm64Name)
	}
	return append(out, name)
}
