package pipeline

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"builder/publish"
)

// Group is one schedule of the file: the clouds a scheduled run publishes
// to, the images it takes, and what differs for those clouds. A cron
// entry or timer per group runs `builder pipeline run --group NAME`:
//
//	schedule:
//	  production:                  # twice a month (its timer says when)
//	    clouds: [prod]
//	    convert: [compat=0.10]     # its hypervisors' QEMU is older than 5.1
//	    publish: {visibility: public, keep: 3, smoke_test: true}
//	  development:                 # daily
//	    clouds: [dev]
//	    images: [debian-12]
//	    publish: {visibility: private, keep: 1}
//
// A group's publish settings go over the image's and the defaults' (its
// clouds replace theirs), its convert over the image's.
type Group struct {
	Clouds  []string `yaml:"clouds"`
	Images  []string `yaml:"images"` // default: every image
	Convert Convert  `yaml:"convert"`
	Publish *Publish `yaml:"publish"`
}

// SmokeTest configures the smoke test in the cloud (publish.SmokeTest):
// `smoke_test: true`, or {flavor, network, console, timeout}; false turns
// off a default's.
type SmokeTest struct {
	Enabled bool
	publish.SmokeTest
}

// UnmarshalYAML accepts a boolean or {enabled, flavor, network, console, timeout}.
func (s *SmokeTest) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&s.Enabled)
	}
	var v struct {
		Enabled *bool    `yaml:"enabled"`
		Flavor  string   `yaml:"flavor"`
		Network string   `yaml:"network"`
		Console []string `yaml:"console"`
		Timeout string   `yaml:"timeout"`
	}
	if err := strictDecode(n, &v); err != nil {
		return err
	}
	s.Enabled = v.Enabled == nil || *v.Enabled
	s.Flavor, s.Network, s.Console = v.Flavor, v.Network, v.Console
	if v.Timeout != "" {
		d, err := time.ParseDuration(v.Timeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("line %d: smoke_test.timeout %q: use a duration such as 15m", n.Line, v.Timeout)
		}
		s.Timeout = d
	}
	return nil
}

// OrphanCleanup is defaults.cleanup_orphans: before a run publishes
// anything, each of its clouds is rid of the temporary uploads and
// smoke-test servers crashed runs left (publish.CleanupOrphans). A
// duration (default 6h: only what is that old) or false.
type OrphanCleanup struct {
	Disabled  bool
	OlderThan time.Duration
}

// UnmarshalYAML accepts false, true or a duration.
func (o *OrphanCleanup) UnmarshalYAML(n *yaml.Node) error {
	var on bool
	if n.Kind == yaml.ScalarNode && n.Decode(&on) == nil {
		o.Disabled = !on
		return nil
	}
	var s string
	if err := n.Decode(&s); err == nil {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			o.OlderThan = d
			return nil
		}
	}
	return fmt.Errorf("line %d: cleanup_orphans: give how old a leftover must be (a duration such as 6h), or false", n.Line)
}

// orphanAge is how old leftovers must be for the run's cleanup; 0 when off.
func (f *File) orphanAge() time.Duration {
	c := f.Defaults.CleanupOrphans
	switch {
	case c == nil:
		return publish.DefaultOrphanAge
	case c.Disabled:
		return 0
	case c.OlderThan > 0:
		return c.OlderThan
	}
	return publish.DefaultOrphanAge
}

// checkSchedule checks the groups against the images.
func (f *File) checkSchedule() error {
	for _, name := range f.groupNames() {
		g := f.Schedule[name]
		where := fmt.Sprintf("schedule %q", name)
		if !nameRE.MatchString(name) {
			return fmt.Errorf("%s: a group's name must be letters, digits, '.', '_' or '-' (it is given to --group)", where)
		}
		if g == nil || len(g.Clouds) == 0 {
			return fmt.Errorf("%s: no clouds: a group publishes to its clouds, e.g. clouds: [prod]", where)
		}
		if g.Publish != nil && g.Publish.Clouds != nil {
			return fmt.Errorf("%s: publish.clouds: a group's clouds are its clouds: key, not publish's", where)
		}
		seen := map[string]bool{}
		for _, n := range g.Images {
			if seen[n] {
				return fmt.Errorf("%s: image %q listed twice", where, n)
			}
			seen[n] = true
			if _, ok := f.image(n); !ok {
				return fmt.Errorf("%s: image %q is not among the file's images (%s)", where, n, strings.Join(f.imageNames(), ", "))
			}
		}
		for _, img := range f.groupImages(g) {
			img = f.inGroup(img, g)
			iw := fmt.Sprintf("%s, image %q", where, img.Name)
			if img.Source != nil {
				if err := f.checkSource(iw, img); err != nil {
					return err
				}
			} else if _, err := f.Request(img, nil, "", ""); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if err := checkPublish(f.publishFor(img), f.formats(img)); err != nil {
				return fmt.Errorf("%s: publish: %w", iw, err)
			}
		}
	}
	return nil
}

// Group returns the named group, or an error listing the file's groups.
func (f *File) Group(name string) (*Group, error) {
	if g, ok := f.Schedule[name]; ok {
		return g, nil
	}
	if len(f.Schedule) == 0 {
		return nil, fmt.Errorf("--group %s: the pipeline file has no schedule: groups", name)
	}
	return nil, fmt.Errorf("--group %s: no such group in the pipeline file's schedule (groups: %s)", name, strings.Join(f.groupNames(), ", "))
}

func (f *File) groupNames() []string {
	var names []string
	for n := range f.Schedule {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// groupImages are the images a group runs, in the file's order.
func (f *File) groupImages(g *Group) []Image {
	if len(g.Images) == 0 {
		return f.Images
	}
	var out []Image
	for _, img := range f.Images {
		if contains(g.Images, img.Name) {
			out = append(out, img)
		}
	}
	return out
}

// inGroup is img as the group runs it: the group's convert and publish
// settings over its own, published to the group's clouds.
func (f *File) inGroup(img Image, g *Group) Image {
	if g == nil {
		return img
	}
	if len(g.Convert) > 0 {
		img.Convert = g.Convert
	}
	p := overlay(img.Publish, g.Publish)
	p.Clouds = g.Clouds
	img.Publish = p
	return img
}

// overlay is a's publish settings with b's set ones over them.
func overlay(a, b *Publish) *Publish {
	var p Publish
	if a != nil {
		p = *a
	}
	props := map[string]string{}
	if a != nil {
		for k, v := range a.Properties {
			props[k] = v
		}
	}
	if b != nil {
		if b.Name != "" {
			p.Name = b.Name
		}
		if b.Clouds != nil {
			p.Clouds = b.Clouds
		}
		if b.Visibility != "" {
			p.Visibility = b.Visibility
		}
		if b.Keep != nil {
			p.Keep = b.Keep
		}
		if b.Rotate != "" {
			p.Rotate = b.Rotate
		}
		if b.Format != "" {
			p.Format = b.Format
		}
		if b.Description != "" {
			p.Description = b.Description
		}
		if b.SmokeTest != nil {
			p.SmokeTest = b.SmokeTest
		}
		if b.SecureBoot != nil {
			p.SecureBoot = b.SecureBoot
		}
		for k, v := range b.Properties {
			props[k] = v
		}
	}
	p.Properties = props
	return &p
}

func (f *File) image(name string) (Image, bool) {
	for _, img := range f.Images {
		if img.Name == name {
			return img, true
		}
	}
	return Image{}, false
}

func (f *File) imageNames() []string {
	var names []string
	for _, img := range f.Images {
		names = append(names, img.Name)
	}
	return names
}
