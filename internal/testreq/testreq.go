// Package testreq lets tests say what they need from the machine. Run by
// hand, a test whose prerequisite is missing is skipped with the reason;
// in CI (BUILDER_TEST_STRICT=1, which hack/test.sh sets) it fails, so a
// missing tool, service or privilege can never pass as a green run.
package testreq

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing prerequisites fail tests.
func Strict() bool {
	v := os.Getenv("BUILDER_TEST_STRICT")
	return v != "" && v != "0"
}

// Missing ends t because a prerequisite is missing: a skip, or a failure
// in strict mode. The message should name what is missing and the fix.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("missing prerequisite (BUILDER_TEST_STRICT): "+format, args...)
	}
	t.Skipf("missing prerequisite: "+format, args...)
}

// Short skips t in -short mode, which runs only the fast tests on purpose.
func Short(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip(what)
	}
}

// Root ends t unless it runs as root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root (%s)", why)
	}
}

// Tool ends t unless the program is on PATH; pkg is the Debian package.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed (apt-get install %s; hack/test.sh installs it)", name, pkg)
	}
	return p
}
