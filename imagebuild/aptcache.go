package imagebuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"builder/internal/cleanup"
)

// aptRunDir gives this build its own package archive for the hooks inside
// the image (/var/cache/apt/archives), filled with hard links to the
// shared cache's packages and harvested back after each step. Concurrent
// builds then never meet on apt's archive lock, and a hook's `apt-get
// clean` empties only this build's view.
func (p *plan) startAptRun(run *runDir, stack *cleanup.Stack) error {
	if p.aptCache == "" {
		return nil
	}
	// Named like the run's other directories, so that the next build
	// removes it if this one is killed.
	dir := filepath.Join(p.aptCache, "builder."+run.ID+".apt")
	if err := run.record(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "partial"), 0o755); err != nil {
		return fmt.Errorf("package cache: %w", err)
	}
	stack.Push("package archive "+dir, func() error { return os.RemoveAll(dir) })
	p.aptRun = dir
	return linkDebs(p.aptCache, dir)
}

// linkDebs hard-links the .deb files of from that to lacks.
func linkDebs(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return fmt.Errorf("package cache: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".deb") {
			continue
		}
		dst := filepath.Join(to, e.Name())
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := os.Link(filepath.Join(from, e.Name()), dst); err != nil && !os.IsExist(err) {
			return fmt.Errorf("package cache: %w", err)
		}
	}
	return nil
}

// refreshApt takes in what other builds downloaded meanwhile; harvestApt
// gives what this build's hooks downloaded to the shared cache.
func (p *plan) refreshApt() error {
	if p.aptRun == "" {
		return nil
	}
	return linkDebs(p.aptCache, p.aptRun)
}

func (p *plan) harvestApt() error {
	if p.aptRun == "" {
		return nil
	}
	return linkDebs(p.aptRun, p.aptCache)
}
