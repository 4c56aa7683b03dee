package doctor

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/binfmt"
	"builder/internal/testreq"
)

func TestSubIDs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(p, []byte("alice:100000:65536\nbob:200000:1000\n1234:300000:999\n1234:400000:64535\nbad line\n"), 0o644)
	u := &user.User{Username: "carol", Uid: "1234"}
	rs, err := subIDs(p, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || total(rs) != 65534 || rs[1].start != 400000 {
		t.Errorf("ranges by uid = %+v", rs)
	}
	rs, _ = subIDs(p, &user.User{Username: "bob", Uid: "1"})
	if total(rs) != 1000 {
		t.Errorf("bob has %d ids", total(rs))
	}
}

func TestMappedIDs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "uid_map")
	os.WriteFile(p, []byte("         0       1000          1\n         1     100000      65536\n"), 0o644)
	if n := mappedIDs(p); n != 65537 {
		t.Errorf("mappedIDs = %d", n)
	}
}

func TestErrListsEachFailureWithItsFix(t *testing.T) {
	if Err([]Finding{{Check: "a", Status: OK}, {Check: "b", Status: Warn, Fix: "x"}}) != nil {
		t.Errorf("no failure, yet an error")
	}
	err := Err([]Finding{{Check: "privileges", Status: Fail, Detail: "no ids", Fix: "usermod ..."}, {Check: "GRUB images", Status: Fail, Detail: "none", Fix: "apt-get install grub-pc-bin"}})
	if err == nil {
		t.Fatal("failures, no error")
	}
	for _, want := range []string{"privileges: no ids", "fix: usermod", "GRUB images: none", "fix: apt-get install grub-pc-bin"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestSpaceFailsBelowTheMinimum(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	if f := space("cache", dir, 1); f.Status != OK {
		t.Errorf("1 byte wanted: %+v", f)
	}
	if f := space("cache", dir, 1<<62); f.Status != Fail || !strings.Contains(f.Fix, "free space") {
		t.Errorf("4 EiB wanted: %+v", f)
	}
}

func TestMissingToolNamesItsPackage(t *testing.T) {
	f := tools("x", "qemu-img", "no-such-tool-here")
	if f.Status != Fail || !strings.Contains(f.Detail, "no-such-tool-here") || strings.Contains(f.Detail, "qemu-img") {
		t.Errorf("%+v", f)
	}
}

func TestPrivilegeAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		testreq.Missing(t, "runs as root")
	}
	if f := Privilege(context.Background()); f.Status != OK {
		t.Errorf("root: %+v", f)
	}
}

// TestOwnNamespaceEmulation: on this kernel (6.7 or later) with
// qemu-user-static installed, a rootless build can register the arm64
// interpreter in its own user namespace; for an architecture without an
// emulator it cannot, and the reason names it.
func TestOwnNamespaceEmulation(t *testing.T) {
	if _, err := binfmt.PackagedInterpreter("arm64"); err != nil {
		testreq.Missing(t, "%v", err)
	}
	if err := ownNamespace(context.Background(), "arm64"); err != nil {
		t.Fatalf("ownNamespace: %v", err)
	}
	if err := ownNamespace(context.Background(), "sparc"); err == nil || !strings.Contains(err.Error(), `"sparc"`) {
		t.Errorf("sparc (no emulator known): %v, want the architecture named", err)
	}
}
