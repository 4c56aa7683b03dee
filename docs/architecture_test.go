// Package docs holds the architecture page; its test keeps the page's
// import graph true.
package docs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// importGraph is builder's package graph from go list: one line per
// package, "pkg -> imports..." (builder's own packages, without the module
// prefix), tests and hack/ left out.
func importGraph(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}", "builder/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "|")
		pkg = strings.TrimPrefix(pkg, "builder/")
		if strings.HasPrefix(pkg, "tests/") || strings.HasPrefix(pkg, "hack/") || pkg == "docs" {
			continue
		}
		var own []string
		for _, imp := range strings.Fields(imports) {
			if strings.HasPrefix(imp, "builder/") {
				own = append(own, strings.TrimPrefix(imp, "builder/"))
			}
		}
		b.WriteString(strings.TrimSpace(pkg+" -> "+strings.Join(own, " ")) + "\n")
	}
	return b.String()
}

// The architecture page's import graph is go list's, and internal/ holds
// leaves only: no package under internal/ imports a domain package.
func TestArchitecturePageMatchesImports(t *testing.T) {
	graph := importGraph(t)
	for _, line := range strings.Split(strings.TrimSpace(graph), "\n") {
		pkg, deps, _ := strings.Cut(line, " ->")
		if !strings.HasPrefix(pkg, "internal/") {
			continue
		}
		for _, d := range strings.Fields(deps) {
			if !strings.HasPrefix(d, "internal/") {
				t.Errorf("%s imports the domain package %s: internal/ holds leaves only", pkg, d)
			}
		}
	}
	data, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	const begin, end = "<!-- imports:begin -->\n", "<!-- imports:end -->"
	i, j := strings.Index(page, begin), strings.Index(page, end)
	if i < 0 || j < i {
		t.Fatalf("architecture.md lacks the %q ... %q markers", begin, end)
	}
	want := "```\n" + graph + "```\n"
	if os.Getenv("BUILDER_UPDATE_DOCS") != "" {
		page = page[:i+len(begin)] + want + page[j:]
		if err := os.WriteFile("architecture.md", []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := page[i+len(begin) : j]; got != want {
		t.Errorf("architecture.md's import graph is out of date (BUILDER_UPDATE_DOCS=1 go test ./docs rewrites it):\nhave:\n%s\nwant:\n%s", got, want)
	}
}
