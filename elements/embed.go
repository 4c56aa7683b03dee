package elements

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// builtinFS is builder's own element library. "all:" keeps dot files.
//
//go:embed all:library
var builtinFS embed.FS

// stampName is written last into an extracted library; it holds the content
// hash, so a complete extraction can be recognised and reused.
const stampName = ".builder-library-stamp"

// Builtin returns the embedded element library (one directory per element).
// Embedded files carry no mode bits; ExtractBuiltin restores them.
func Builtin() fs.FS {
	sub, err := fs.Sub(builtinFS, "library")
	if err != nil {
		panic(err) // "library" is a constant, valid path
	}
	return sub
}

// ExtractBuiltin writes the builtin library below dir and returns the
// directory to pass to LoadLibrary as builtinDir: dir/<content hash>. It is
// idempotent (an existing extraction whose stamp matches is reused) and
// atomic (written to a temporary directory and renamed), so concurrent
// builds can share dir. Old extractions are left alone: a running build of
// another builder version may still use them.
func ExtractBuiltin(dir string) (string, error) {
	return extractLibrary(Builtin(), dir)
}

// libraryMode decides the mode of an embedded file, since embed loses it.
// Executable: files in phase directories (also in their subdirectories,
// which install-types links into the phase), files in bin/, and any other
// file starting with "#!" (a script under static/, such as
// static/usr/local/sbin/growroot, must reach the image executable).
// environment.d is sourced, not run, and package-installs-<element> files
// are data that dib-run-parts would otherwise run.
func libraryMode(name string, data []byte) fs.FileMode {
	if executableInLibrary(name, data) {
		return 0o755
	}
	return 0o644
}

func executableInLibrary(name string, data []byte) bool {
	parts := strings.Split(name, "/")
	if len(parts) < 2 { // top-level files of the library itself
		return false
	}
	switch {
	case parts[1] == EnvironmentDir:
		return false
	case len(parts) >= 3 && parts[1] == "bin":
		return true
	case len(parts) >= 3 && phaseIndex(parts[1]) >= 0:
		return !strings.HasPrefix(parts[len(parts)-1], "package-installs-")
	}
	return bytes.HasPrefix(data, []byte("#!"))
}

type libFile struct {
	name string
	data []byte
}

func extractLibrary(fsys fs.FS, dir string) (string, error) {
	var files []libFile
	var dirs []string
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, name)
			fmt.Fprintf(h, "d %s\x00", name)
			return nil
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		files = append(files, libFile{name, data})
		fmt.Fprintf(h, "f %s %o %d\x00", name, libraryMode(name, data), len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("builtin library: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	target := filepath.Join(dir, sum[:16])
	if stampMatches(target, sum) {
		return target, nil
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("extract builtin library: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".extract-")
	if err != nil {
		return "", fmt.Errorf("extract builtin library: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("extract builtin library: %w", err)
	}
	for _, d := range dirs {
		if err := os.Mkdir(filepath.Join(tmp, filepath.FromSlash(d)), 0o755); err != nil {
			return "", fmt.Errorf("extract builtin library: %w", err)
		}
	}
	for _, f := range files {
		p := filepath.Join(tmp, filepath.FromSlash(f.name))
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			return "", fmt.Errorf("extract builtin library: %w", err)
		}
		// Chmod, not the WriteFile mode: the umask must not decide.
		if err := os.Chmod(p, libraryMode(f.name, f.data)); err != nil {
			return "", fmt.Errorf("extract builtin library: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, stampName), []byte(sum+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("extract builtin library: %w", err)
	}

	if err := os.Rename(tmp, target); err != nil {
		if stampMatches(target, sum) {
			return target, nil // another process won the race
		}
		// An incomplete or damaged extraction (no stamp): move it away.
		if _, serr := os.Lstat(target); serr != nil {
			return "", fmt.Errorf("extract builtin library: %w", err)
		}
		old := target + ".old-" + path.Base(tmp)
		if err := os.Rename(target, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("extract builtin library: replace %s: %w", target, err)
		}
		defer os.RemoveAll(old)
		if err := os.Rename(tmp, target); err != nil {
			if stampMatches(target, sum) {
				return target, nil
			}
			return "", fmt.Errorf("extract builtin library: %w", err)
		}
	}
	return target, nil
}

func stampMatches(dir, sum string) bool {
	b, err := os.ReadFile(filepath.Join(dir, stampName))
	return err == nil && bytes.Equal(bytes.TrimSpace(b), []byte(sum))
}
