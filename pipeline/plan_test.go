package pipeline

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

// Images listed out of order: the split must follow the names, not the
// file, so every runner of a matrix computes the same one.
const fiveImages = `
defaults:
  publish: {clouds: [env]}
  cache_from: 127.0.0.1:5000/builder/cache
images:
  - {name: echo, elements: [debian, vm], boot_test: false}
  - {name: alpha, elements: [debian, vm], packages: [vim], publish: {name: "Alpha 1"}}
  - {name: delta, elements: [debian-minimal, vm], variables: {DIB_RELEASE: trixie}}
  - {name: bravo, elements: [debian, vm]}
  - {name: charlie, elements: [debian, vm]}
schedule:
  nightly: {clouds: [dev], images: [echo, bravo]}
`

func names(images []Image) []string {
	var out []string
	for _, img := range images {
		out = append(out, img.Name)
	}
	return out
}

func TestShardSplitsSortedNames(t *testing.T) {
	f, err := Parse([]byte(fiveImages), "/p")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"0/2": {"alpha", "charlie", "echo"},
		"1/2": {"bravo", "delta"},
		"0/1": {"alpha", "bravo", "charlie", "delta", "echo"},
		"3/5": {"delta"},
		"6/7": nil, // more runners than images: this one has nothing to do
	}
	for s, w := range want {
		sh, err := ParseShard(s)
		if err != nil {
			t.Fatalf("ParseShard(%q): %v", s, err)
		}
		got, err := f.Select(Selection{Shard: sh})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(names(got), w) {
			t.Errorf("--shard %s: got %v, want %v", s, names(got), w)
		}
	}
	// Every image in exactly one shard, for any runner count.
	for n := 1; n <= 6; n++ {
		seen := map[string]int{}
		for i := 0; i < n; i++ {
			got, _ := f.Select(Selection{Shard: Shard{Index: i, Count: n}})
			for _, name := range names(got) {
				seen[name]++
			}
		}
		if len(seen) != 5 {
			t.Errorf("%d runners cover %v", n, seen)
		}
		for name, c := range seen {
			if c != 1 {
				t.Errorf("%d runners build %s %d times", n, name, c)
			}
		}
	}
	// A group is sharded over its own images, with its settings.
	got, _ := f.Select(Selection{Group: "nightly", Shard: Shard{Index: 1, Count: 2}})
	if !reflect.DeepEqual(names(got), []string{"echo"}) || got[0].Publish == nil || got[0].Publish.Clouds[0] != "dev" {
		t.Errorf("group nightly, shard 1/2: %+v", got)
	}
}

func TestParseShardRefusesNonsense(t *testing.T) {
	for _, s := range []string{"", "1", "2/2", "-1/3", "a/b", "0/0", "1/2/3"} {
		if _, err := ParseShard(s); err == nil || !strings.Contains(err.Error(), "0 <= I < N") {
			t.Errorf("ParseShard(%q) = %v, want a usage error", s, err)
		}
	}
}

func TestSelectOnly(t *testing.T) {
	f, err := Parse([]byte(fiveImages), "/p")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Select(Selection{Only: []string{"delta", "alpha"}})
	if err != nil || !reflect.DeepEqual(names(got), []string{"delta", "alpha"}) {
		t.Errorf("--only delta,alpha: %v %v", names(got), err)
	}
	if _, err := f.Select(Selection{Only: []string{"zulu"}}); err == nil || !strings.Contains(err.Error(), "--only zulu: no such image") {
		t.Errorf("--only zulu: %v", err)
	}
	if _, err := f.Select(Selection{Group: "nightly", Only: []string{"alpha"}}); err == nil || !strings.Contains(err.Error(), "group nightly") {
		t.Errorf("--only outside the group: %v", err)
	}
	if _, err := f.Select(Selection{Only: []string{"alpha"}, Shard: Shard{0, 2}}); err == nil || !strings.Contains(err.Error(), "give one") {
		t.Errorf("--only with --shard: %v", err)
	}
}

// The plan's index is the shard that runs the image alone, and its command
// names it.
func TestPlanIndexesMatchShards(t *testing.T) {
	f, err := Parse([]byte(fiveImages), "/p")
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Plan("", "pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 5 {
		t.Fatalf("plan has %d images", len(p.Images))
	}
	for i, pi := range p.Images {
		if pi.Index != i {
			t.Errorf("image %s has index %d at position %d", pi.Name, pi.Index, i)
		}
		one, _ := f.Select(Selection{Shard: Shard{Index: i, Count: len(p.Images)}})
		if len(one) != 1 || one[0].Name != pi.Name {
			t.Errorf("--shard %d/%d runs %v, the plan says %s", i, len(p.Images), names(one), pi.Name)
		}
		want := []string{"builder", "pipeline", "run", "--only", pi.Name, "pipeline.yaml"}
		if !reflect.DeepEqual(pi.Command, want) {
			t.Errorf("command %v, want %v", pi.Command, want)
		}
	}
	a := p.Images[0]
	if a.Name != "alpha" || a.Settings.Packages[0] != "vim" || a.Settings.Formats[0] != "qcow2" || !a.Settings.BootTest ||
		a.Settings.Other["cache_from"] != "127.0.0.1:5000/builder/cache" || len(a.Publish) != 1 || a.Publish[0].Name != "Alpha 1" {
		t.Errorf("alpha's plan entry: %+v", a)
	}
	if d := p.Images[3]; d.Name != "delta" || d.Settings.Variables["DIB_RELEASE"] != "trixie" {
		t.Errorf("delta's plan entry: %+v", d)
	}
	if e := p.Images[4]; e.Settings.BootTest {
		t.Errorf("echo has boot_test: false, the plan says %+v", e.Settings)
	}
	g, err := f.Plan("nightly", "pipeline.yaml")
	if err != nil || len(g.Images) != 2 || g.Images[0].Name != "bravo" ||
		!reflect.DeepEqual(g.Images[0].Command, []string{"builder", "pipeline", "run", "--group", "nightly", "--only", "bravo", "pipeline.yaml"}) {
		t.Errorf("group plan: %+v %v", g, err)
	}
}

// A sharded run builds its images only, and says which.
func TestRunShard(t *testing.T) {
	f, err := Parse([]byte(fiveImages), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sum, err := Run(context.Background(), f, Options{DryRun: true, Shard: Shard{Index: 1, Count: 2}, Out: &out, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range sum.Images {
		got = append(got, r.Name)
	}
	if !reflect.DeepEqual(got, []string{"bravo", "delta"}) {
		t.Errorf("shard 1/2 ran %v", got)
	}
	if !strings.Contains(out.String(), "shard 1/2: bravo, delta") {
		t.Errorf("the run does not say what its shard is:\n%s", out.String())
	}
	// A bad override is refused before anything runs.
	if _, err := Run(context.Background(), f, Options{DryRun: true, Settings: map[string]string{"cache_to": "http://x/y"}, Environ: []string{}}); err == nil || !strings.Contains(err.Error(), "without a scheme") {
		t.Errorf("cache_to http://x/y: %v", err)
	}
}
