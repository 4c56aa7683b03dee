package binfmt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"builder/internal/testreq"
)

// childEnv makes the test binary the child of TestRegisterOwn: it runs in
// a user and mount namespace of its own, registers there and reports.
const childEnv = "BINFMT_TEST_OWN_CHILD"

func TestMain(m *testing.M) {
	if prog := os.Getenv(childEnv); prog != "" {
		os.Exit(ownChild(prog))
	}
	os.Exit(m.Run())
}

// arm64Exit42 writes the smallest arm64 Linux program: exit(42).
func arm64Exit42(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	w := func(v any) {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	const base, hdr = 0x400000, 64 + 56 // ELF header, one program header
	// mov x0, #42; mov x8, #93 (exit); svc #0
	code := []uint32{0xD2800540, 0xD2800BA8, 0xD4000001}
	size := uint64(hdr + 4*len(code))
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w(uint16(elf.ET_EXEC))
	w(uint16(elf.EM_AARCH64))
	w(uint32(1))
	w(uint64(base + hdr)) // entry
	w(uint64(64))         // program headers
	w(uint64(0))          // no sections
	w(uint32(0))
	w([]uint16{64, 56, 1, 0, 0, 0})
	w([]uint32{uint32(elf.PT_LOAD), uint32(elf.PF_R | elf.PF_X)})
	w([]uint64{0, base, base, size, size, 0x1000})
	w(code)
	p := filepath.Join(t.TempDir(), "exit42")
	if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// ownChild runs in the new namespaces: register, run the program, then
// remove the entry and see the program refused although the host may have
// an entry of its own.
func ownChild(prog string) int {
	fail := func(format string, a ...any) int {
		os.Stderr.WriteString("child: " + strings.TrimSpace(fmt.Sprintf(format, a...)) + "\n")
		return 1
	}
	if InitialUserNamespace() {
		return fail("in the initial user namespace")
	}
	st, err := RegisterOwn("arm64")
	if err != nil {
		return fail("RegisterOwn: %v", err)
	}
	if !st.Fixed || st.Entry != "qemu-aarch64" {
		return fail("status %+v", st)
	}
	// A second registration (another build of the process) is harmless.
	if _, err := RegisterOwn("arm64"); err != nil {
		return fail("second RegisterOwn: %v", err)
	}
	err = exec.Command(prog).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		return fail("the arm64 program under the own entry: %v, want exit status 42", err)
	}
	if err := os.WriteFile(filepath.Join(Dir, st.Entry), []byte("-1"), 0); err != nil {
		return fail("remove the own entry: %v", err)
	}
	if err := exec.Command(prog).Run(); !errors.Is(err, syscall.ENOEXEC) {
		return fail("without the own entry the program gave %v, want exec format error (the host's entry must not be used)", err)
	}
	return 0
}

func TestInterpreterOf(t *testing.T) {
	line := `:qemu-aarch64:M::\x7f\x45\x4c\x46:\xff\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF`
	if got := interpreterOf(line); got != "/usr/libexec/qemu-binfmt/aarch64-binfmt-P" {
		t.Errorf("interpreterOf = %q", got)
	}
	for _, bad := range []string{"", ":", ":a:M:"} {
		if got := interpreterOf(bad); got != "" {
			t.Errorf("interpreterOf(%q) = %q, want nothing", bad, got)
		}
	}
}

// TestRegisterOwn registers the packaged qemu-aarch64 in a binfmt_misc of
// a fresh user namespace (as a rootless build does), runs a real arm64
// program through it, and checks that the host's registrations are
// untouched.
func TestRegisterOwn(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		testreq.Missing(t, "an amd64 host: the test's foreign program is arm64, and this host is %s", runtime.GOARCH)
	}
	if _, _, err := packaged("arm64"); err != nil {
		testreq.Missing(t, "%v", err)
	}
	prog := arm64Exit42(t)
	before := hostEntries(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+prog)
	uid, gid := os.Getuid(), os.Getgid()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "the kernel allows it from Linux 6.7") {
			testreq.Missing(t, "a kernel that lets a user namespace mount binfmt_misc (Linux 6.7 or later): %s", out)
		}
		t.Fatalf("%v\n%s", err, out)
	}
	if after := hostEntries(t); after != before {
		t.Errorf("the host's binfmt_misc changed:\nbefore %s\nafter  %s", before, after)
	}
}

// hostEntries lists the host's binfmt_misc entries and their state.
func hostEntries(t *testing.T) string {
	t.Helper()
	des, err := os.ReadDir(Dir)
	if err != nil {
		return "not mounted"
	}
	var b strings.Builder
	for _, de := range des {
		if de.Name() == "register" {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(Dir, de.Name()))
		first, _, _ := strings.Cut(string(data), "\n")
		b.WriteString(de.Name() + "=" + first + " ")
	}
	return b.String()
}
