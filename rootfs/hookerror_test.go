package rootfs

import (
	"strings"
	"testing"
)

// An outside hook that wrote where the sandbox keeps the host read-only is
// reported with the path and where it may write instead.
func TestHookErrorNamesReadOnlyPath(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"touch: cannot touch '/var/tmp/x': Read-only file system", "/var/tmp/x"},
		{"/tmp/hooks/root.d/10-a: line 3: /etc/motd: Read-only file system", "/etc/motd"},
		{`mkdir: cannot create directory "/opt/a b": Read-only file system`, "/opt/a b"},
		{"cp: cannot create regular file '/usr/local/bin/tool': Permission denied", ""},
	} {
		if got := readOnlyPath([]string{"other output", c.line}); got != c.want {
			t.Errorf("%q: got %q, want %q", c.line, got, c.want)
		}
	}
	he := &HookError{Phase: "extra-data.d", Script: "10-x", Element: "el", ExitCode: 1, ReadOnly: "/var/tmp/x"}
	if msg := he.Error(); !strings.Contains(msg, "hook extra-data.d/10-x (element el) failed with exit code 1: it wrote to /var/tmp/x, outside its target") ||
		!strings.Contains(msg, "$TARGET_ROOT") || strings.Contains(msg, "\n") {
		t.Errorf("message %q", msg)
	}
}
