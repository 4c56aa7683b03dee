package imagebuild

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"builder/rootfs"
)

// runtimeFS is what DIB's runtime gives hooks besides the elements: its
// library ($_LIB: die, common-functions, img-functions, ...) and the
// tools on their PATH (sudo for outside hooks, dib-run-parts), all
// written for builder.
//
//go:embed runtime
var runtimeFS embed.FS

// Where the runtime goes in the hooks tree (builder's own directory there).
const (
	runtimeLibDir = "builder/lib"
	runtimeBinDir = "builder/bin"
)

// installRuntime writes the runtime into the hooks tree.
func installRuntime(hooksDir string) error {
	err := fs.WalkDir(runtimeFS, "runtime", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := runtimeFS.ReadFile(p)
		if err != nil {
			return err
		}
		rel := p[len("runtime/"):]
		mode := fs.FileMode(0o644)
		if path.Dir(rel) == "bin" {
			mode = 0o755
		}
		dst := filepath.Join(hooksDir, "builder", rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, mode)
	})
	if err != nil {
		return fmt.Errorf("install builder's runtime for hooks: %w", err)
	}
	// dib-run-parts: in $_LIB as DIB keeps it, and on the hooks' PATH.
	for _, dir := range []string{runtimeLibDir, runtimeBinDir} {
		if err := rootfs.InstallRunParts(filepath.Join(hooksDir, dir)); err != nil {
			return err
		}
	}
	return rootfs.InstallRunParts(hooksDir)
}
