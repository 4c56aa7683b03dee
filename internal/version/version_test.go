package version

import (
	"strings"
	"testing"
)

// The code identity names this executable, never an unknown (random) one:
// a random identity would make every cached step unusable.
func TestCodeIDNamesTheExecutable(t *testing.T) {
	id := CodeID()
	if !strings.HasPrefix(id, "exe:") && !strings.HasPrefix(id, "rev:") {
		t.Fatalf("CodeID() = %q, want exe:... or rev:...", id)
	}
	if CodeID() != id {
		t.Errorf("CodeID changed between calls")
	}
}
