package assemble

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/testreq"
)

func TestEarlyConfig(t *testing.T) {
	got := EarlyConfigFor(testRootUUID, "/boot/grub")
	want := "search.fs_uuid " + testRootUUID + " root\nset prefix=($root)/boot/grub\n"
	if got != want {
		t.Errorf("EarlyConfig:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(got, "if ") {
		t.Error("the early config runs before normal mode and must not use if blocks")
	}
}

func TestGrubConfig(t *testing.T) {
	got := GrubConfig(GrubConfigSpec{RootUUID: testRootUUID, Serial: DefaultSerial, Timeout: 1, Title: "Debian's image"})
	want := `set timeout=1
set default=0
serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1
terminal_input serial console
terminal_output serial console
search --no-floppy --fs-uuid --set=root ` + testRootUUID + `
menuentry 'Debian'\''s image' {
	linux /vmlinuz root=UUID=` + testRootUUID + ` ro console=tty0 console=ttyS0,115200 no_timer_check nofb nomodeset gfxpayload=text
	initrd /initrd.img
}
`
	if got != want {
		t.Errorf("GrubConfig:\n%s\nwant:\n%s", got, want)
	}
	byLabel := GrubConfig(GrubConfigSpec{RootLabel: "cloudimg-rootfs", KernelCmdline: "ro quiet", Kernel: "/boot/vmlinuz-6.1", Initrd: "/boot/initrd.img-6.1"})
	for _, w := range []string{"search --no-floppy --label --set=root 'cloudimg-rootfs'", "linux /boot/vmlinuz-6.1 root=LABEL=cloudimg-rootfs ro quiet", "initrd /boot/initrd.img-6.1"} {
		if !strings.Contains(byLabel, w) {
			t.Errorf("GrubConfig by label lacks %q:\n%s", w, byLabel)
		}
	}
	if strings.Contains(byLabel, "serial") {
		t.Errorf("no Serial given, yet:\n%s", byLabel)
	}
}

// Both images build with every module embedded; core.img is an i386-pc
// image InstallBIOSBoot accepts, BOOTX64.EFI a PE file with the config.
func TestMakeGrubImages(t *testing.T) {
	needTools(t, "grub-mkimage")
	dir := t.TempDir()
	core := filepath.Join(dir, "core.img")
	if err := MakeCoreImage(bg, DefaultGrubPCDir, EarlyConfigFor(testRootUUID, "/boot/grub"), core); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	if n := ceilDiv(int64(len(b)), 512); n > maxCoreSectors || n < 100 {
		t.Errorf("core.img is %d sectors", n)
	}
	if b[0x1fe] != 0x20 || b[0x1ff] != 0x08 {
		t.Errorf("core.img first sector has no diskboot blocklist (segment 0x820)")
	}
	efi := filepath.Join(dir, "BOOTX64.EFI")
	if err := MakeEFIImage(bg, DefaultGrubEFIDir, EarlyConfigFor(testRootUUID, "/boot/grub"), efi); err != nil {
		t.Fatal(err)
	}
	if e, _ := os.ReadFile(efi); !strings.HasPrefix(string(e), "MZ") || !strings.Contains(string(e), EarlyConfigFor(testRootUUID, "/boot/grub")) {
		t.Error("BOOTX64.EFI is not a PE image with the early config")
	}
	if _, err := os.Stat(efi + ".early.cfg"); err == nil {
		t.Error("the early config file was left behind")
	}
	// A platform directory without GRUB names the package to install.
	err = MakeCoreImage(bg, dir, "", filepath.Join(dir, "x.img"))
	if err == nil || !strings.Contains(err.Error(), "grub-pc-bin") {
		t.Errorf("MakeCoreImage from an empty dir: %v", err)
	}
}

// InstallBIOSBoot refuses what would not boot, before writing anything.
func TestInstallBIOSBootRefuses(t *testing.T) {
	needTools(t, "grub-mkimage")
	boot, err := os.ReadFile(filepath.Join(DefaultGrubPCDir, "boot.img"))
	if err != nil {
		testreq.Missing(t, "%v", err)
	}
	core := filepath.Join(t.TempDir(), "core.img")
	if err := MakeCoreImage(bg, DefaultGrubPCDir, EarlyConfigFor(testRootUUID, "/boot/grub"), core); err != nil {
		t.Fatal(err)
	}
	coreImg, _ := os.ReadFile(core)

	open := func(tab Table) *os.File {
		f, err := os.OpenFile(writeTable(t, tab), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	noBIOS := sampleGPT()
	noBIOS.Partitions = noBIOS.Partitions[1:]
	for _, c := range []struct {
		name       string
		f          *os.File
		boot, core []byte
		want       string
	}{
		{"no BIOS boot partition", open(noBIOS), boot, coreImg, "no BIOS boot partition"},
		{"short boot.img", open(sampleGPT()), boot[:100], coreImg, "boot.img is 100 bytes"},
		{"not a core.img", open(sampleGPT()), boot, make([]byte, 4096), "not an i386-pc core.img"},
		{"huge core.img", open(sampleGPT()), boot, make([]byte, 500*1024), "at most"},
	} {
		before := make([]byte, 512)
		c.f.ReadAt(before, 0)
		if err := InstallBIOSBoot(c.f, c.boot, c.core); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
		after := make([]byte, 512)
		c.f.ReadAt(after, 0)
		if string(before) != string(after) {
			t.Errorf("%s: the refused InstallBIOSBoot changed sector 0", c.name)
		}
	}
	// An image with no partition table at all.
	blank, _ := os.Create(filepath.Join(t.TempDir(), "blank"))
	defer blank.Close()
	blank.Truncate(MiB)
	if err := InstallBIOSBoot(blank, boot, coreImg); err == nil || !strings.Contains(err.Error(), "no partition table") {
		t.Errorf("InstallBIOSBoot on a blank file: %v", err)
	}
}

// A separate /boot: GRUB searches the boot filesystem and loads the
// kernel by its path there; the kernel still gets the root's UUID.
func TestGrubConfigSeparateBoot(t *testing.T) {
	const boot = "0b5c3e88-53f3-4d6b-9e34-2f1c7d1f7a01"
	if got := EarlyConfigFor(boot, "/grub"); got != "search.fs_uuid "+boot+" root\nset prefix=($root)/grub\n" {
		t.Errorf("EarlyConfigFor: %q", got)
	}
	cfg := GrubConfig(GrubConfigSpec{RootUUID: testRootUUID, BootUUID: boot, Kernel: "/vmlinuz-6.1.0-13-amd64", Initrd: "/initrd.img-6.1.0-13-amd64"})
	for _, w := range []string{"search --no-floppy --fs-uuid --set=root " + boot + "\n", "linux /vmlinuz-6.1.0-13-amd64 root=UUID=" + testRootUUID + " ro", "initrd /initrd.img-6.1.0-13-amd64"} {
		if !strings.Contains(cfg, w) {
			t.Errorf("grub.cfg lacks %q:\n%s", w, cfg)
		}
	}
}
