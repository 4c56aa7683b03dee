package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"builder/rootfs"
)

// rootfsSourceFile is builder's description of how an operating-system
// element makes its base (DIB does this with a root.d script).
const rootfsSourceFile = "rootfs-source.yaml"

type rootfsSource struct {
	Method         string   `yaml:"method"`
	Suite          string   `yaml:"suite"`
	Variant        string   `yaml:"variant"`
	Sources        string   `yaml:"sources"`
	Packages       []string `yaml:"packages"`
	EssentialHooks []string `yaml:"essential-hooks"`
}

// readRootfsSource reads an OS element's rootfs-source.yaml and expands it
// with the element environment. ok is false when the element has none.
func readRootfsSource(elementDir string, env map[string]string, arch string) (b rootfs.Bootstrap, ok bool, err error) {
	path := filepath.Join(elementDir, rootfsSourceFile)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return b, false, nil
	}
	if err != nil {
		return b, false, err
	}
	var src rootfsSource
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&src); err != nil {
		return b, false, fmt.Errorf("%s: %w", path, err)
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return env[k] })
	}
	b = rootfs.Bootstrap{
		Method:  expand(src.Method),
		Suite:   expand(src.Suite),
		Variant: expand(src.Variant),
		Arch:    arch,
		// Hooks are shell for mmdebstrap, which expands "$1" itself.
		EssentialHooks: src.EssentialHooks,
	}
	for _, p := range src.Packages {
		for _, f := range strings.Fields(expand(p)) {
			b.Packages = append(b.Packages, f)
		}
	}
	// DIB_APT_SOURCES_CONF format: "name:deb URI SUITE COMPONENTS" per line.
	for _, line := range strings.Split(expand(src.Sources), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if name, rest, found := strings.Cut(line, ":"); found && !strings.Contains(name, " ") && strings.HasPrefix(strings.TrimSpace(rest), "deb") {
			line = strings.TrimSpace(rest)
		}
		b.Sources = append(b.Sources, line)
	}
	return b, true, nil
}
