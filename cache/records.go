// Package cache manages builder's cache: what is held (per image name and
// step, sizes shared and unique, last use), pruning it (by age, by total
// size, keeping the last builds of each name; never what a running build
// uses) and verifying it (re-hashing layers; a damaged entry is removed and
// rebuilt by the next build). Builds record which steps they used; a build
// prunes the cache to its bound when it ends.
package cache

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"builder/internal/workspace"
)

// Step is one step of a recorded build: the phase and the image it is in
// the store.
type Step struct {
	Phase string `json:"phase"`
	Image string `json:"image"` // store image name
	Key   string `json:"key"`
}

// Build is one finished build of an image name.
type Build struct {
	Time  time.Time `json:"time"`
	Steps []Step    `json:"steps"`
}

// record is the file of one image name: its recent builds, newest last.
type record struct {
	Name   string  `json:"name"`
	Builds []Build `json:"builds"`
}

// maxRecorded builds are kept per name (more than any --keep needs).
const maxRecorded = 30

// RecordBuild adds a finished build of name to its record (written beside
// and renamed: a reader never sees half a file).
func RecordBuild(ws workspace.Workspace, name string, b Build) error {
	dir := ws.BuildRecords()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("build records: %w", err)
	}
	path := filepath.Join(dir, recordFile(name))
	r, _ := readRecord(path)
	r.Name = name
	r.Builds = append(r.Builds, b)
	if len(r.Builds) > maxRecorded {
		r.Builds = r.Builds[len(r.Builds)-maxRecorded:]
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".record-*")
	if err != nil {
		return fmt.Errorf("build records: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("build records: %w", err)
	}
	return nil
}

// recordFile is a file name for an image name (names may hold any
// character a file name cannot).
func recordFile(name string) string {
	safe := make([]rune, 0, len(name))
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			safe = append(safe, r)
		default:
			safe = append(safe, '_')
		}
	}
	return string(safe) + ".json"
}

func readRecord(path string) (record, error) {
	var r record
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(data, &r)
	return r, err
}

// records reads every name's record, sorted by name.
func records(ws workspace.Workspace) ([]record, error) {
	ents, err := os.ReadDir(ws.BuildRecords())
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []record
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		r, err := readRecord(filepath.Join(ws.BuildRecords(), e.Name()))
		if err != nil || r.Name == "" {
			continue // a damaged record only costs the history of one name
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
