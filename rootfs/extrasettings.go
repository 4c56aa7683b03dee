package rootfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DIB's /.extra_settings: a root.d hook that runs before the
// operating-system element's bootstrap hook writes shell assignments there
// (debian-systemd: DIB_DEBIAN_ALT_INIT_PACKAGE=systemd-sysv); the bootstrap
// hook (debootstrap, docker, containerfile, yum-minimal, zypper-minimal)
// sources it and deletes it. builder makes its base before root.d, so the
// create-base step reads it instead: what it asks of the bootstrap that
// builder's bootstrap also decides (the release, the mirror, the
// components, the init package) must be what the base is, or the build
// stops naming the variable to set for the build; the rest (debootstrap's
// arguments, keyrings, caches, other tools' settings) concerns DIB's
// bootstrap tools only. The file never reaches the image.

const extraSettings = ".extra_settings"

// ExtraSettingsError is a setting of /.extra_settings the base does not
// have.
type ExtraSettingsError struct {
	Name, Value string
	Base        string // what the base has
	Fix         string
}

func (e *ExtraSettingsError) Error() string {
	return fmt.Sprintf("/%s (written by a root.d hook for DIB's bootstrap) asks for %s=%s, but builder's base, made before root.d, has %s: %s",
		extraSettings, e.Name, e.Value, e.Base, e.Fix)
}

// applyExtraSettings checks the base against /.extra_settings and removes
// the file.
func applyExtraSettings(root string) error {
	p := filepath.Join(root, extraSettings)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read /%s: %w", extraSettings, err)
	}
	settings, err := parseExtraSettings(data)
	if err != nil {
		return err
	}
	if err := checkExtraSettings(root, settings); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove /%s: %w", extraSettings, err)
	}
	return nil
}

var assignRE = regexp.MustCompile(`^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

// parseExtraSettings reads the shell assignments DIB's elements write
// there: NAME=VALUE, optionally exported, the value bare or in single or
// double quotes. Anything else (shell code builder does not run) is
// refused, naming the line.
func parseExtraSettings(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := assignRE.FindStringSubmatch(line)
		v, ok := "", m != nil
		if ok {
			v, ok = shellWord(m[2])
		}
		if !ok {
			return nil, fmt.Errorf("/%s line %d: %q is not a NAME=VALUE assignment builder can read (it does not run shell code there): write plain assignments in the root.d hook that makes the file", extraSettings, n, line)
		}
		out[m[1]] = v
	}
	return out, sc.Err()
}

// shellWord is one shell word without expansions: bare, 'single' or
// "double" quoted.
func shellWord(s string) (string, bool) {
	switch {
	case len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' && !strings.Contains(s[1:len(s)-1], "'"):
		return s[1 : len(s)-1], true
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && !strings.ContainsAny(s[1:len(s)-1], "\"$`\\"):
		return s[1 : len(s)-1], true
	case !strings.ContainsAny(s, " \t'\"$`\\;&|<>()"):
		return s, true
	}
	return "", false
}

func checkExtraSettings(root string, s map[string]string) error {
	if want := s["DIB_RELEASE"]; want != "" {
		if have := osRelease(root)["VERSION_CODENAME"]; have != "" && have != want {
			return &ExtraSettingsError{Name: "DIB_RELEASE", Value: want, Base: have, Fix: "set DIB_RELEASE=" + want + " for the build"}
		}
	}
	srcs := aptSources(root)
	if want := s["DIB_DISTRIBUTION_MIRROR"]; want != "" && len(srcs) > 0 {
		var have []string
		found := false
		for _, src := range srcs {
			have = append(have, src.uri)
			found = found || src.uri == strings.TrimSuffix(want, "/")
		}
		if !found {
			return &ExtraSettingsError{Name: "DIB_DISTRIBUTION_MIRROR", Value: want, Base: "sources from " + strings.Join(have, " "),
				Fix: "set DIB_DISTRIBUTION_MIRROR=" + want + " for the build"}
		}
	}
	if want := s["DIB_DEBIAN_COMPONENTS"]; want != "" && len(srcs) > 0 {
		have := map[string]bool{}
		for _, c := range srcs[0].components {
			have[c] = true
		}
		for _, c := range strings.Split(want, ",") {
			if c = strings.TrimSpace(c); c != "" && !have[c] {
				return &ExtraSettingsError{Name: "DIB_DEBIAN_COMPONENTS", Value: want, Base: "components " + strings.Join(srcs[0].components, ","),
					Fix: "set DIB_DEBIAN_COMPONENTS=" + want + " for the build"}
			}
		}
	}
	// DIB's debian element installs it unless it is sysvinit (Debian's
	// default init then).
	if want := s["DIB_DEBIAN_ALT_INIT_PACKAGE"]; want != "" && want != "sysvinit" {
		if installed, ok := dpkgInstalled(root); ok && !installed[want] {
			return &ExtraSettingsError{Name: "DIB_DEBIAN_ALT_INIT_PACKAGE", Value: want, Base: "no package " + want,
				Fix: "install it from an element's package-installs.yaml, or leave that element out"}
		}
	}
	return nil
}

// osRelease reads the tree's os-release.
func osRelease(root string) map[string]string {
	out := map[string]string{}
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
				out[k] = strings.Trim(v, `"'`)
			}
		}
		return out
	}
	return out
}

type aptSource struct {
	uri        string
	components []string
}

// aptSources reads the tree's apt sources of packages ("deb" lines and
// deb822 .sources files), the main one first.
func aptSources(root string) []aptSource {
	var out []aptSource
	files := []string{filepath.Join(root, "etc/apt/sources.list")}
	more, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*"))
	files = append(files, more...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.HasSuffix(f, ".sources") {
			out = append(out, deb822Sources(string(data))...)
			continue
		}
		if !strings.HasSuffix(f, ".list") && filepath.Base(f) != "sources.list" {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			fields := strings.Fields(l)
			if len(fields) < 3 || fields[0] != "deb" {
				continue
			}
			fields = fields[1:]
			if strings.HasPrefix(fields[0], "[") { // [arch=amd64 signed-by=...]
				for len(fields) > 0 && !strings.HasSuffix(fields[0], "]") {
					fields = fields[1:]
				}
				if len(fields) > 0 {
					fields = fields[1:]
				}
			}
			if len(fields) >= 2 {
				out = append(out, aptSource{uri: strings.TrimSuffix(fields[0], "/"), components: fields[2:]})
			}
		}
	}
	return out
}

func deb822Sources(data string) []aptSource {
	var out []aptSource
	for _, stanza := range strings.Split(data, "\n\n") {
		fields := map[string]string{}
		for _, l := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "#") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !strings.Contains(" "+fields["types"]+" ", " deb ") {
			continue
		}
		for _, u := range strings.Fields(fields["uris"]) {
			out = append(out, aptSource{uri: strings.TrimSuffix(u, "/"), components: strings.Fields(fields["components"])})
		}
	}
	return out
}

// dpkgInstalled lists the tree's installed packages; ok is false on a tree
// without dpkg's database.
func dpkgInstalled(root string) (map[string]bool, bool) {
	data, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return nil, false
	}
	out := map[string]bool{}
	for _, stanza := range strings.Split(string(data), "\n\n") {
		var name string
		installed := false
		for _, l := range strings.Split(stanza, "\n") {
			switch {
			case strings.HasPrefix(l, "Package: "):
				name = strings.TrimSpace(strings.TrimPrefix(l, "Package: "))
			case strings.HasPrefix(l, "Status: "):
				installed = strings.HasSuffix(strings.TrimSpace(l), " installed")
			}
		}
		if name != "" && installed {
			out[name] = true
		}
	}
	return out, true
}
