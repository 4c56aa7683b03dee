package elements

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// dibLibraryGlobs are where diskimage-builder's elements are when it is
// installed from Debian's package or with pip (system, user or /usr/local).
var dibLibraryGlobs = []string{
	"/usr/lib/python3/dist-packages/diskimage_builder/elements",
	"/usr/local/lib/python3*/dist-packages/diskimage_builder/elements",
	"/usr/local/lib/python3*/site-packages/diskimage_builder/elements",
	"/usr/lib/python3*/site-packages/diskimage_builder/elements",
	"/usr/lib64/python3*/site-packages/diskimage_builder/elements",
}

// FindDIBLibrary returns the element directory of an installed
// diskimage-builder, or "" when there is none. BUILDER_DIB_ELEMENTS names
// it explicitly ("none" turns the fallback off).
func FindDIBLibrary() string {
	if v, ok := os.LookupEnv("BUILDER_DIB_ELEMENTS"); ok {
		if v == "none" {
			return ""
		}
		return v
	}
	globs := append([]string(nil), dibLibraryGlobs...)
	if home, err := os.UserHomeDir(); err == nil {
		globs = append(globs, filepath.Join(home, ".local/lib/python3*/site-packages/diskimage_builder/elements"))
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(g)
		for _, m := range matches {
			if isDir(m) {
				return m
			}
		}
	}
	// A virtualenv: ask the interpreter disk-image-create runs with.
	if dic, err := exec.LookPath("disk-image-create"); err == nil {
		if py := shebang(dic); py != "" {
			out, err := exec.Command(py, "-c", "import diskimage_builder.paths as p; print(p.get_path('elements'))").Output()
			if err == nil {
				if d := strings.TrimSpace(string(out)); isDir(d) {
					return d
				}
			}
		}
	}
	return ""
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// shebang returns a script's interpreter.
func shebang(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if !strings.HasPrefix(line, "#!") {
		return ""
	}
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(fields) == 0 {
		return ""
	}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
		return fields[1]
	}
	return fields[0]
}
