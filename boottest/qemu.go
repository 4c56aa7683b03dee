package boottest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ovmfPairs are the OVMF code/vars pairs tried in order (Debian's ovmf
// package first). The 4M builds are what current distributions boot with;
// the secure-boot builds need SMM and are deliberately not used.
var ovmfPairs = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
	{"/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"},
}

// secureBootPairs are OVMF's Secure Boot builds (they need SMM) with
// Microsoft's keys enrolled in the vars template, so that shim, signed by
// Microsoft's UEFI CA, boots.
var secureBootPairs = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"},
	{"/usr/share/OVMF/OVMF_CODE.ms.fd", "/usr/share/OVMF/OVMF_VARS.ms.fd"},
	{"/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", "/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd"},
	{"/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"},
}

// aavmfPairs are the AArch64 UEFI firmware (Debian's qemu-efi-aarch64).
var aavmfPairs = [][2]string{
	{"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
	{"/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"},
}

// findOVMF returns the first installed OVMF code/vars pair.
func findOVMF() (code, vars string, err error) {
	return findFirmware1(ovmfPairs, "--firmware uefi needs OVMF, and none was found in /usr/share/OVMF or /usr/share/edk2: install the ovmf package")
}

// findFirmware returns the UEFI firmware for the spec's architecture and
// Secure Boot choice.
func findFirmware(s Spec) (code, vars string, err error) {
	switch {
	case s.Arch == "arm64":
		return findFirmware1(aavmfPairs, "arm64 boots need AAVMF, and none was found in /usr/share/AAVMF or /usr/share/edk2/aarch64: install qemu-efi-aarch64")
	case s.SecureBoot:
		return findFirmware1(secureBootPairs, "--secure-boot needs OVMF's Secure Boot build with Microsoft's keys (OVMF_CODE_4M.ms.fd, OVMF_VARS_4M.ms.fd), and none was found in /usr/share/OVMF or /usr/share/edk2: install the ovmf package")
	}
	return findOVMF()
}

func findFirmware1(pairs [][2]string, missing string) (code, vars string, err error) {
	for _, p := range pairs {
		if fileExists(p[0]) && fileExists(p[1]) {
			return p[0], p[1], nil
		}
	}
	return "", "", usagef("%s", missing)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// qemuConfig is one QEMU invocation.
type qemuConfig struct {
	Accel    string // kvm or tcg
	Firmware string // bios or uefi
	// SecureBoot: q35 with SMM and a secure pflash (OVMF's Secure Boot
	// build refuses to start without them).
	SecureBoot bool
	Arch       string // amd64 or arm64 (the virt machine)
	OVMFCode   string // uefi: read-only code
	OVMFVars   string // uefi: this run's writable copy of the vars template
	Memory     int
	CPUs       int
	Overlay    string
	Seed       string
	PidFile    string
	// A ramdisk boot has no Overlay and Seed but a Kernel, an Initrd and
	// their command line (Append).
	Kernel, Initrd, Append string
}

// qemuArgs builds the command line. Choices that matter:
//   - -nographic (not -display none) makes SeaBIOS and GRUB print on the
//     serial port too, so a stall before the kernel is visible; -serial
//     stdio puts that serial port on QEMU's stdout, which we read.
//   - -nodefaults: no default NIC, CD-ROM, VGA or monitor.
//   - -no-reboot: a guest that reboots (panic=N, triple fault) makes QEMU
//     exit instead of looping, so the test fails at once.
//   - The disk is a virtio-blk device with bootindex=1, so firmware boots it
//     and not the seed; the NIC has no option ROM (romfile=), so SeaBIOS
//     does not try a PXE boot when the disk is not bootable.
//   - cache=unsafe on the overlay: it is thrown away, and flushes only slow
//     the guest down.
func qemuArgs(c qemuConfig) []string {
	a := []string{"-machine", "q35"}
	switch {
	case c.Arch == "arm64":
		// virt with a CPU TCG emulates fully; its PL011 is the serial port.
		a = []string{"-machine", "virt", "-cpu", "max"}
	case c.SecureBoot:
		a = []string{"-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"}
	}
	switch c.Accel {
	case "kvm":
		a = append(a, "-accel", "kvm")
	default:
		a = append(a, "-accel", "tcg,thread=multi")
	}
	a = append(a,
		"-m", strconv.Itoa(c.Memory),
		"-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-no-user-config",
		"-nographic", "-serial", "stdio", "-monitor", "none",
		"-no-reboot",
	)
	if c.Firmware == "uefi" {
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+qemuEscape(c.OVMFCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+qemuEscape(c.OVMFVars),
		)
	}
	if c.Kernel != "" {
		// -append takes the command line whole: no escaping.
		a = append(a, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", c.Append)
	} else {
		a = append(a,
			"-drive", "file="+qemuEscape(c.Overlay)+",if=none,id=disk0,format=qcow2,cache=unsafe,discard=unmap",
			"-device", "virtio-blk-pci,drive=disk0,bootindex=1",
			"-drive", "file="+qemuEscape(c.Seed)+",if=none,id=seed0,format=raw,readonly=on",
			"-device", "virtio-blk-pci,drive=seed0",
		)
	}
	a = append(a,
		"-netdev", "user,id=n0",
		"-device", "virtio-net-pci,netdev=n0,romfile=",
		"-pidfile", c.PidFile,
	)
	return a
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// qemuProc is a running QEMU whose serial output arrives on Chunks.
type qemuProc struct {
	cmd     *exec.Cmd
	chunks  chan []byte   // serial output; closed at EOF
	done    chan struct{} // closed when the process has been waited for
	stop    chan struct{} // tells the reader to give up
	waitErr error
	stderr  string // path of the stderr file
	pidFile string
	runDir  string
}

// startQEMU starts QEMU in its own process group, with SIGKILL as its
// parent-death signal: if this process dies without cleaning up (a Go test
// timing out, kill -9), the kernel kills QEMU. Cancelling ctx kills the
// whole group.
func startQEMU(ctx context.Context, bin string, args []string, runDir, stderrPath, pidFile string) (*qemuProc, error) {
	errf, err := os.Create(stderrPath)
	if err != nil {
		return nil, fmt.Errorf("creating QEMU stderr file: %w", err)
	}
	defer errf.Close() // the child has its own copy
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating serial pipe: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = nil // /dev/null: QEMU must never touch the user's terminal
	cmd.Stdout = w
	cmd.Stderr = errf
	cmd.Dir = runDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	w.Close() // only QEMU writes now; EOF comes when it is gone
	p := &qemuProc{
		cmd:     cmd,
		chunks:  make(chan []byte, 64),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		stderr:  stderrPath,
		pidFile: pidFile,
		runDir:  runDir,
	}
	go p.read(r)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *qemuProc) read(r *os.File) {
	defer r.Close()
	defer close(p.chunks)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			b := append([]byte(nil), buf[:n]...)
			select {
			case p.chunks <- b:
			case <-p.stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// killGroup sends SIGKILL to the process group led by pid. There is no
// graceful shutdown on purpose: the guest's disk is a throw-away overlay.
func killGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Kill ends QEMU (its whole process group) and waits for it, then checks
// the pid file and /proc for anything still referring to the run directory.
// It is safe to call more than once.
func (p *qemuProc) Kill() error {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	var errs []error
	select {
	case <-p.done:
		// Already reaped: its pid (and group id) may belong to someone
		// else by now, so do not signal it.
	default:
		if err := killGroup(p.cmd.Process.Pid); err != nil {
			errs = append(errs, fmt.Errorf("killing QEMU (pid %d): %w", p.cmd.Process.Pid, err))
		}
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		errs = append(errs, fmt.Errorf("QEMU (pid %d) did not exit 15 s after SIGKILL", p.cmd.Process.Pid))
	}
	if pid, err := readPidFile(p.pidFile); err == nil && processRefersTo(pid, p.runDir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		errs = append(errs, fmt.Errorf("QEMU pid %d from %s was still running after the kill; killed it", pid, filepath.Base(p.pidFile)))
	}
	return errors.Join(errs...)
}

// Stderr returns the last 64 KiB of QEMU's stderr.
func (p *qemuProc) Stderr() string {
	return readTail(p.stderr, 64<<10)
}

func readTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// processRefersTo reports whether process pid is alive and names a file in
// dir on its command line. Every QEMU we start names files in its run
// directory, and that directory's name is unique, so this identifies our
// own processes without killing anything by name. The trailing slash
// matters: /tmp/builder-boot-test-12 must not match another run's
// /tmp/builder-boot-test-123.
func processRefersTo(pid int, dir string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte(strings.TrimSuffix(dir, "/")+"/"))
}

// processesReferringTo lists live processes whose command line contains dir.
func processesReferringTo(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if processRefersTo(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killStragglers kills any process still referring to dir: the last line
// of defence behind the process group and the pid file.
func killStragglers(dir string) error {
	pids := processesReferringTo(dir)
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return fmt.Errorf("processes %v were still using %s; killed them", pids, dir)
}

// Run directories carry an owner file "PID STARTTIME" so that a later run
// can tell a directory left by a killed run (owner gone) from one in use.
const (
	runDirPrefix = "builder-boot-test-"
	ownerFile    = "owner"
)

func processStartTime(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after the last ')' are fixed. starttime is field 22.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return f[19], nil
}

func writeOwner(dir string) error {
	st, err := processStartTime(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), fmt.Appendf(nil, "%d %s\n", os.Getpid(), st), 0o600)
}

// ownerAlive reports whether the process that made dir is still running.
// Without a readable owner file it answers true, so that a directory being
// set up right now is never taken.
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		st, serr := os.Stat(dir)
		// No owner file an hour after creation: the run died during setup.
		return serr == nil && time.Since(st.ModTime()) < time.Hour
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return true
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return true
	}
	st, err := processStartTime(pid)
	return err == nil && st == f[1]
}

// sweepStale removes run directories whose owner has died (killed with
// SIGKILL, machine crash of a previous session), after killing any QEMU
// still referring to them. It returns what it removed.
func sweepStale(workDir string) []string {
	ents, err := os.ReadDir(workDir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), runDirPrefix) {
			continue
		}
		dir := filepath.Join(workDir, e.Name())
		if ownerAlive(dir) {
			continue
		}
		_ = killStragglers(dir)
		if err := os.RemoveAll(dir); err == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}
