package pipeline

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Shard is one runner's part of a pipeline spread over Count runners (a CI
// matrix, a Kubernetes Indexed Job): the images whose position among the
// sorted names is Index modulo Count. Sorting makes the split the same on
// every runner whatever the file's order; the zero value is the whole
// pipeline.
type Shard struct {
	Index, Count int
}

// ParseShard reads "I/N" (0 <= I < N): the form of --shard, where I is the
// runner's index counted from 0 (a Kubernetes completion index, a GitHub
// Actions matrix entry; GitLab's CI_NODE_INDEX counts from 1).
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	idx, err1 := strconv.Atoi(strings.TrimSpace(i))
	count, err2 := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err1 != nil || err2 != nil || count < 1 || idx < 0 || idx >= count {
		return Shard{}, fmt.Errorf("--shard %q: want I/N with 0 <= I < N, e.g. --shard 0/4 for the first of 4 runners", s)
	}
	return Shard{Index: idx, Count: count}, nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Selection is which images of a file a run takes.
type Selection struct {
	// Group: the schedule group's images, with its settings.
	Group string
	// Only: these names (in this order).
	Only []string
	// Shard: this runner's part of the sorted names.
	Shard Shard
}

// Select returns the images a run with s builds, with the group's settings
// applied, in the order they run. Only and Shard exclude each other.
func (f *File) Select(s Selection) ([]Image, error) {
	if len(s.Only) > 0 && s.Shard.Count > 0 {
		return nil, fmt.Errorf("--only and --shard both choose the images: give one")
	}
	todo := f.Images
	var group *Group
	if s.Group != "" {
		g, err := f.Group(s.Group)
		if err != nil {
			return nil, err
		}
		group, todo = g, nil
		for _, img := range f.groupImages(g) {
			todo = append(todo, f.inGroup(img, g))
		}
	}
	if len(s.Only) > 0 {
		all := todo
		todo = nil
		for _, name := range s.Only {
			found := false
			for _, img := range all {
				if img.Name == name {
					todo, found = append(todo, img), true
				}
			}
			if !found {
				if group != nil {
					return nil, fmt.Errorf("--only %s: no such image in group %s", name, s.Group)
				}
				return nil, fmt.Errorf("--only %s: no such image in the pipeline file", name)
			}
		}
	}
	if s.Shard.Count > 0 {
		var part []Image
		for i, img := range sortedByName(todo) {
			if i%s.Shard.Count == s.Shard.Index {
				part = append(part, img)
			}
		}
		todo = part
	}
	return todo, nil
}

func sortedByName(images []Image) []Image {
	out := append([]Image(nil), images...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// PlanImage is one image of a plan: its index (its position among the
// sorted names, so --shard INDEX/COUNT with COUNT = the number of images
// runs exactly it), what it is made of and the command that runs it alone.
type PlanImage struct {
	Index    int           `json:"index"`
	Name     string        `json:"name"`
	Settings PlanSettings  `json:"settings"`
	Command  []string      `json:"command"`
	Publish  []PlanPublish `json:"publish,omitempty"`
}

// PlanSettings are an image's settings after the defaults and the group
// are applied (the environment's build variables are the runner's).
type PlanSettings struct {
	Elements  []string          `json:"elements,omitempty"`
	Source    string            `json:"source,omitempty"`
	Packages  []string          `json:"packages,omitempty"`
	Formats   []string          `json:"formats"`
	Size      float64           `json:"size,omitempty"`
	Variables map[string]string `json:"variables,omitempty"`
	BootTest  bool              `json:"boot_test"`
	Convert   []string          `json:"convert,omitempty"`
	// Other: builder image's other settings (cache_from, arch, ...).
	Other map[string]string `json:"other,omitempty"`
}

// PlanPublish is where an image is published.
type PlanPublish struct {
	Cloud string `json:"cloud"`
	Name  string `json:"name"`
}

// Plan is a pipeline spread over runners: `builder pipeline plan`.
type Plan struct {
	File   string      `json:"file"`
	Group  string      `json:"group,omitempty"`
	Images []PlanImage `json:"images"`
}

// Plan lists the images of the group (all images when group is ""),
// sorted by name, each with the command that runs it alone. file is the
// pipeline file as the runners name it.
func (f *File) Plan(group, file string) (*Plan, error) {
	todo, err := f.Select(Selection{Group: group})
	if err != nil {
		return nil, err
	}
	p := &Plan{File: file, Group: group, Images: []PlanImage{}}
	for i, img := range sortedByName(todo) {
		cmd := []string{"builder", "pipeline", "run"}
		if group != "" {
			cmd = append(cmd, "--group", group)
		}
		cmd = append(cmd, "--only", img.Name, file)
		st := PlanSettings{Elements: img.Elements, Packages: img.Packages, Formats: f.formats(img), Size: img.Size,
			BootTest: f.bootTest(img).Enabled, Convert: f.convert(img), Other: map[string]string{}}
		if img.Source != nil {
			st.Source = img.Source.URL
		}
		if v := f.variables(img); len(v) > 0 {
			st.Variables = v
		}
		for k, v := range settingValues(f.Defaults.Settings) {
			st.Other[k] = v
		}
		for k, v := range settingValues(img.Settings) {
			st.Other[k] = v
		}
		pi := PlanImage{Index: i, Name: img.Name, Settings: st, Command: cmd}
		if pub := f.publishFor(img); pub != nil {
			for _, c := range pub.Clouds {
				pi.Publish = append(pi.Publish, PlanPublish{Cloud: c, Name: pub.Name})
			}
		}
		p.Images = append(p.Images, pi)
	}
	return p, nil
}
