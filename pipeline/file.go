// Package pipeline runs a scheduled image pipeline: for each image listed
// in a YAML file, build it, boot-test it and publish it to one or more
// OpenStack clouds. One image failing does not stop the others (unless
// asked), a per-image lock under the image cache keeps two overlapping runs
// from building the same image at once, and the run ends with a summary.
package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"builder/imagebuild"
	"builder/publish"
)

// File is a pipeline file:
//
//	defaults:                       # optional, for every image
//	  image_cache: /var/cache/builder
//	  output_dir: /var/lib/builder/images   # relative to this file
//	  formats: [qcow2]
//	  variables: {DIB_RELEASE: bookworm}
//	  boot_test: {firmware: bios, timeout: 15m}   # or false
//	  publish: {clouds: [prod], visibility: public, keep: 3, rotate: private}
//	images:
//	  - name: debian-12
//	    elements: [debian, vm]
//	    packages: [vim, curl]
//	    variables: {DIB_IMAGE_EXTRA_SIZE: "512"}
//	    size: 4                     # GiB; default from the content
//	    publish: {name: "Debian 12", properties: {hw_qemu_guest_agent: "yes"}}
//	  - name: debian-12-upstream    # downloaded, not built (source.go)
//	    source: {url: https://cloud.example.org/debian-12.qcow2, checksums: https://cloud.example.org/SHA512SUMS}
//	    convert: [compat=0.10]
//	schedule:                       # groups for --group (schedule.go)
//	  production: {clouds: [prod], publish: {smoke_test: true}}
//
// In publish.clouds, "env" means the OS_* variables of the environment the
// pipeline runs in; any other name is a clouds.yaml entry.
type File struct {
	Defaults Defaults          `yaml:"defaults"`
	Images   []Image           `yaml:"images"`
	Schedule map[string]*Group `yaml:"schedule"`
	// Path is the file; relative paths in it are resolved against its
	// directory, Dir.
	Path string `yaml:"-"`
	Dir  string `yaml:"-"`
}

// Defaults apply to every image that does not set the field itself.
type Defaults struct {
	ImageCache string            `yaml:"image_cache"`
	OutputDir  string            `yaml:"output_dir"`
	Formats    []string          `yaml:"formats"`
	Variables  map[string]string `yaml:"variables"`
	BootTest   *BootTest         `yaml:"boot_test"`
	Publish    *Publish          `yaml:"publish"`
	Convert    Convert           `yaml:"convert"`
	// CleanupOrphans: what a run removes from its clouds first.
	CleanupOrphans *OrphanCleanup `yaml:"cleanup_orphans"`
	// Settings are builder image's other settings, by their names in
	// imagebuild.Settings (arch, checksum, offline, root_label,
	// qemu_img_options, no_tmpfs, trace, ...).
	Settings map[string]any `yaml:",inline"`
}

// Image is one image of the pipeline.
type Image struct {
	Name      string            `yaml:"name"`
	Elements  []string          `yaml:"elements"`
	Packages  []string          `yaml:"packages"`
	Variables map[string]string `yaml:"variables"`
	Size      float64           `yaml:"size"` // GiB
	Formats   []string          `yaml:"formats"`
	BootTest  *BootTest         `yaml:"boot_test"`
	Publish   *Publish          `yaml:"publish"`
	// Convert: qemu-img options for the outputs (compat=0.10 ...).
	Convert Convert `yaml:"convert"`
	// Source, instead of elements: the image is downloaded (source.go).
	Source *Source `yaml:"source"`
	// Settings: as in Defaults, for this image.
	Settings map[string]any `yaml:",inline"`
}

// pipelineOwned are settings the pipeline decides itself (the output's
// place and the cache come from output_dir and image_cache; formats, size
// and packages have their own keys).
var pipelineOwned = map[string]string{
	"output":      "output_dir and the image's name",
	"image_cache": "image_cache under defaults",
}

// checkSettings refuses keys that are no setting, with the list of those
// that are.
func checkSettings(where string, m map[string]any) error {
	for k, v := range m {
		s, ok := imagebuild.SettingByName(k)
		if !ok {
			var names []string
			for _, s := range imagebuild.Settings {
				if pipelineOwned[s.Name] == "" {
					names = append(names, s.Name)
				}
			}
			return fmt.Errorf("%s: unknown key %q: an image takes name, elements, packages, variables, size, formats, boot_test, publish and builder image's settings %s", where, k, strings.Join(names, ", "))
		}
		if by := pipelineOwned[s.Name]; by != "" {
			return fmt.Errorf("%s: %s is set by %s in a pipeline file", where, k, by)
		}
		switch v.(type) {
		case string, bool, int, float64, nil:
		default:
			return fmt.Errorf("%s: %s takes one value (a string, number or true/false)", where, k)
		}
	}
	return nil
}

// settingValues are a Settings map's values as the settings table reads
// them.
func settingValues(m map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v == nil {
			out[k] = ""
			continue
		}
		out[k] = fmt.Sprint(v)
	}
	return out
}

// BootTest configures the local boot test; `boot_test: false` turns it off.
type BootTest struct {
	Enabled  bool
	Firmware string        // bios or uefi; default from the disk
	Timeout  time.Duration // default boottest.DefaultTimeout
}

// UnmarshalYAML accepts a boolean or {enabled, firmware, timeout}.
func (b *BootTest) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&b.Enabled)
	}
	var v struct {
		Enabled  *bool  `yaml:"enabled"`
		Firmware string `yaml:"firmware"`
		Timeout  string `yaml:"timeout"`
	}
	if err := strictDecode(n, &v); err != nil {
		return err
	}
	b.Enabled = v.Enabled == nil || *v.Enabled
	b.Firmware = v.Firmware
	if v.Timeout != "" {
		d, err := time.ParseDuration(v.Timeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("line %d: boot_test.timeout %q: use a duration such as 15m", n.Line, v.Timeout)
		}
		b.Timeout = d
	}
	if b.Firmware != "" && b.Firmware != "bios" && b.Firmware != "uefi" {
		return fmt.Errorf("line %d: boot_test.firmware %q: use bios or uefi", n.Line, b.Firmware)
	}
	return nil
}

// Publish says where an image goes. Without clouds it is not published.
type Publish struct {
	Name       string            `yaml:"name"` // Glance name; default the image's name
	Clouds     []string          `yaml:"clouds"`
	Visibility string            `yaml:"visibility"`
	Keep       *int              `yaml:"keep"`
	Rotate     string            `yaml:"rotate"`
	Format     string            `yaml:"format"` // which output to upload; default the first
	Properties map[string]string `yaml:"properties"`
	// Description is a template for the description property, e.g.
	// "Debian 12, built {{.Date}}" (publish.DescriptionData).
	Description string `yaml:"description"`
	// SmokeTest boots the upload in the cloud before promoting it.
	SmokeTest *SmokeTest `yaml:"smoke_test"`
	// SecureBoot publishes the image for Secure Boot (os_secure_boot=
	// required, UEFI, q35) and boot-tests it so; the image must boot
	// through the signed shim.
	SecureBoot *bool `yaml:"secure_boot"`
}

// diskFormats are the build's output types that are disk images Glance
// takes; the build itself checks the types it knows.
var diskFormats = []string{"qcow2", "raw", "vhd", "vhdx", "vmdk", "vdi"}

// EnvCloud in publish.clouds means the OS_* variables of the environment.
const EnvCloud = "env"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Load reads and checks a pipeline file. Errors name the file, the line
// and the fix; unknown keys are errors (a typo must not silently drop a
// setting).
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline file: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("pipeline file %s: %w", path, err)
	}
	f.Path = abs
	return f, nil
}

// Parse reads a pipeline file's content; dir resolves relative paths.
func Parse(data []byte, dir string) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: list the images under images:, each with a name and elements")
		}
		return nil, oneLine(err, false)
	}
	f.Dir = dir
	if len(f.Images) == 0 {
		return nil, errors.New("no images: list them under images:, each with a name and elements")
	}
	if err := checkSettings("defaults", f.Defaults.Settings); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, img := range f.Images {
		where := fmt.Sprintf("images[%d]", i)
		if img.Name != "" {
			where = fmt.Sprintf("image %q", img.Name)
		}
		if !nameRE.MatchString(img.Name) {
			return nil, fmt.Errorf("%s: name %q must be letters, digits, '.', '_' or '-' (it names the output file and the lock)", where, img.Name)
		}
		if seen[img.Name] {
			return nil, fmt.Errorf("%s: listed twice: names must be unique", where)
		}
		seen[img.Name] = true
		if err := checkSettings(where, img.Settings); err != nil {
			return nil, err
		}
		if img.Source != nil {
			if err := f.checkSource(where, img); err != nil {
				return nil, err
			}
			if err := checkPublish(f.publishFor(img), f.formats(img)); err != nil {
				return nil, fmt.Errorf("%s: publish: %w", where, err)
			}
			continue
		}
		if len(img.Elements) == 0 {
			return nil, fmt.Errorf("%s: no elements: give at least an operating system and vm, e.g. elements: [debian, vm] (or source: the URL of an image to download)", where)
		}
		for k := range f.variables(img) {
			if strings.HasPrefix(k, "OS_") {
				return nil, fmt.Errorf("%s: variable %q: OpenStack settings do not belong in build variables (they would be recorded in the image's manifests); publish reads them from clouds.yaml or the environment", where, k)
			}
		}
		if img.Size < 0 {
			return nil, fmt.Errorf("%s: size %v: give GiB, or leave it out to size from the content", where, img.Size)
		}
		for _, t := range f.formats(img) {
			if !contains(imagebuild.OutputTypes(), t) {
				return nil, fmt.Errorf("%s: format %q: use %s", where, t, strings.Join(imagebuild.OutputTypes(), ", "))
			}
		}
		// The values of its settings and variables, read as a build will.
		if _, err := f.Request(img, nil, "", ""); err != nil {
			return nil, err
		}
		if pub := f.publishFor(img); pub != nil {
			if err := checkPublish(pub, f.formats(img)); err != nil {
				return nil, fmt.Errorf("%s: publish: %w", where, err)
			}
		}
	}
	if err := f.checkSchedule(); err != nil {
		return nil, err
	}
	return &f, nil
}

func checkPublish(p *Publish, formats []string) error {
	if p == nil || len(p.Clouds) == 0 {
		return nil
	}
	if err := publish.ParseDescription(p.Description); err != nil {
		return err
	}
	if st := p.SmokeTest; st != nil && st.Enabled {
		if err := publish.CheckSmokeTest(st.SmokeTest); err != nil {
			return err
		}
	}
	if p.Visibility != "" && !contains(publish.Visibilities, p.Visibility) {
		return fmt.Errorf("visibility %q: use one of %s", p.Visibility, strings.Join(publish.Visibilities, ", "))
	}
	if p.Rotate != "" && !contains(publish.Rotations, p.Rotate) {
		return fmt.Errorf("rotate %q: use private or rename", p.Rotate)
	}
	if p.Keep != nil && *p.Keep < 0 {
		return fmt.Errorf("keep %d: give the number of versions to keep (0 keeps all)", *p.Keep)
	}
	if !contains(formats, p.Format) {
		return fmt.Errorf("format %q is not among the image's formats %v", p.Format, formats)
	}
	if !contains(diskFormats, p.Format) {
		return fmt.Errorf("format %q is not a disk image Glance takes: publish one of %s (set publish.format)", p.Format, strings.Join(diskFormats, ", "))
	}
	seen := map[string]bool{}
	for _, c := range p.Clouds {
		if c == "" || seen[c] {
			return fmt.Errorf("clouds %q: names must be non-empty and unique", p.Clouds)
		}
		seen[c] = true
	}
	return nil
}

// formats of an image: its own, the defaults', or qcow2.
func (f *File) formats(img Image) []string {
	if len(img.Formats) > 0 {
		return img.Formats
	}
	if len(f.Defaults.Formats) > 0 {
		return f.Defaults.Formats
	}
	return []string{"qcow2"}
}

// variables of an image: the defaults', then its own.
func (f *File) variables(img Image) map[string]string {
	m := map[string]string{}
	for k, v := range f.Defaults.Variables {
		m[k] = v
	}
	for k, v := range img.Variables {
		m[k] = v
	}
	return m
}

func (f *File) bootTest(img Image) BootTest {
	switch {
	case img.BootTest != nil:
		return *img.BootTest
	case f.Defaults.BootTest != nil:
		return *f.Defaults.BootTest
	}
	return BootTest{Enabled: true}
}

// publishFor merges the image's publish settings over the defaults'; nil
// when the image is not published anywhere.
func (f *File) publishFor(img Image) *Publish {
	p := *overlay(f.Defaults.Publish, img.Publish)
	if len(p.Clouds) == 0 {
		return nil
	}
	if p.Name == "" {
		p.Name = img.Name
	}
	if p.Format == "" {
		// The first disk image among the outputs (tar or docker outputs
		// cannot go to Glance).
		p.Format = f.formats(img)[0]
		for _, t := range f.formats(img) {
			if contains(diskFormats, t) {
				p.Format = t
				break
			}
		}
	}
	return &p
}

// path resolves a path of the file against its directory.
func (f *File) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.Dir, p)
}

func strictDecode(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// The lines in err are the re-encoded node's, not the file's.
		return fmt.Errorf("line %d: %w", n.Line, oneLine(err, true))
	}
	return nil
}

var (
	fieldNotFoundRE   = regexp.MustCompile(`(?s)^(line \d+: )?field (.+) not found in type .+$`)
	cannotUnmarshalRE = regexp.MustCompile("(?s)^(line \\d+: )?cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	lineRE            = regexp.MustCompile(`^line \d+: `)
)

// oneLine turns go-yaml's decoding errors, one line each under a heading
// and in Go's words (field x not found in type pipeline.File), into one
// line in the file's words; dropLines leaves out their line numbers.
func oneLine(err error, dropLines bool) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := fieldNotFoundRE.FindStringSubmatch(e); m != nil {
			e = fmt.Sprintf("%sunknown key %q", m[1], m[2])
		} else if m := cannotUnmarshalRE.FindStringSubmatch(e); m != nil {
			found := map[string]string{"str": "a string", "seq": "a list", "map": "a mapping", "int": "a number",
				"float": "a number", "bool": "true or false", "null": "nothing"}[m[2]]
			if found == "" || m[3] != "" {
				found = fmt.Sprintf("%q", m[3])
			}
			e = fmt.Sprintf("%sfound %s where %s belongs", m[1], found, goKind(m[4]))
		}
		if dropLines {
			e = lineRE.ReplaceAllString(e, "")
		}
		// A value or tag can hold a line break ("!\n"): one line still.
		msgs = append(msgs, strings.Join(strings.Fields(e), " "))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// goKind names a Go type the way the file spells its values.
func goKind(t string) string {
	switch {
	case t == "string":
		return "a string"
	case t == "bool" || t == "*bool":
		return "true or false"
	case strings.Contains(t, "int") || strings.Contains(t, "float"):
		return "a number"
	case t == "[]string":
		return "a list of strings"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case t == "map[string]string":
		return "a mapping of names to strings"
	}
	return "a mapping"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
