package imagebuild

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
	Method string `yaml:"method"`
	// Image is the container image of method "image".
	Image string `yaml:"image"`
	// LocalImageHint is shown when method "local-image" has no
	// DIB_LOCAL_IMAGE.
	LocalImageHint string `yaml:"local-image-hint"`
	// mmdebstrap:
	Suite          string   `yaml:"suite"`
	Variant        string   `yaml:"variant"`
	Sources        string   `yaml:"sources"`
	Packages       []string `yaml:"packages"`
	EssentialHooks []string `yaml:"essential-hooks"`
}

// baseSource is where the base root filesystem comes from.
type baseSource struct {
	Method    string // mmdebstrap, image or local-image
	Image     string
	Hint      string
	Bootstrap rootfs.Bootstrap
}

// readRootfsSource reads an OS element's rootfs-source.yaml and expands it
// with the element environment. ok is false when the element has none.
func readRootfsSource(elementDir string, env map[string]string, arch string) (src baseSource, ok bool, err error) {
	var b rootfs.Bootstrap
	path := filepath.Join(elementDir, rootfsSourceFile)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return src, false, nil
	}
	if err != nil {
		return src, false, err
	}
	var y rootfsSource
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&y); err != nil {
		return src, false, fmt.Errorf("%s: %w", path, err)
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return env[k] })
	}
	src = baseSource{Method: expand(y.Method), Image: strings.TrimSpace(expand(y.Image)), Hint: expand(y.LocalImageHint)}
	switch src.Method {
	case "mmdebstrap":
	case "image":
		if src.Image == "" {
			return src, false, fmt.Errorf("%s: method image needs an image reference (is its variable set?)", path)
		}
		return src, true, nil
	case "local-image":
		return src, true, nil
	default:
		return src, false, fmt.Errorf("%s: method %q is not known (mmdebstrap, image, local-image)", path, src.Method)
	}
	b = rootfs.Bootstrap{
		Method:  src.Method,
		Suite:   expand(y.Suite),
		Variant: expand(y.Variant),
		Arch:    arch,
		// Hooks are shell for mmdebstrap, which expands "$1" itself.
		EssentialHooks: y.EssentialHooks,
	}
	for _, p := range y.Packages {
		b.Packages = append(b.Packages, strings.Fields(expand(p))...)
	}
	// DIB_APT_SOURCES_CONF format: "name:deb URI SUITE COMPONENTS" per line.
	for _, line := range strings.Split(expand(y.Sources), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if name, rest, found := strings.Cut(line, ":"); found && !strings.Contains(name, " ") && strings.HasPrefix(strings.TrimSpace(rest), "deb") {
			line = strings.TrimSpace(rest)
		}
		b.Sources = append(b.Sources, line)
	}
	src.Bootstrap = b
	return src, true, nil
}
