package assemble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"builder/internal/parttable"
)

// GrubPlatform is a GRUB target, named as in /usr/lib/grub/<platform>.
type GrubPlatform string

// The GRUB platforms builder installs.
const (
	GrubPC  GrubPlatform = "i386-pc"    // legacy BIOS: boot.img + core.img
	GrubEFI GrubPlatform = "x86_64-efi" // UEFI: EFI/BOOT/BOOTX64.EFI
)

// Default locations of the GRUB platform files on Debian.
const (
	DefaultGrubPCDir  = "/usr/lib/grub/i386-pc"
	DefaultGrubEFIDir = "/usr/lib/grub/x86_64-efi"
)

// GrubModules is the module list embedded in core.img or BOOTX64.EFI. All
// of it is embedded because the image has no /boot/grub/<platform>/*.mod
// (there is no grub-install): partition tables, the filesystems a layout
// can put /boot on (ext2/3/4, xfs, vfat, on a partition or LVM), finding
// the root by UUID or label, the commands grub.cfg uses, the serial
// console, and the firmware's disk (biosdisk) or video (efi_gop).
func GrubModules(p GrubPlatform) []string {
	mods := []string{
		"part_gpt", "part_msdos", "ext2", "fat", "xfs", "lvm",
		"search", "search_fs_uuid", "search_label",
		"normal", "linux", "echo", "test", "configfile", "gzio", "loadenv",
		"serial", "terminal", "ls", "cat", "halt", "reboot", "sleep",
	}
	switch p {
	case GrubPC:
		mods = append(mods, "biosdisk")
	case GrubEFI:
		mods = append(mods, "efi_gop", "all_video")
	}
	return mods
}

// EarlyConfigFor is the config embedded in core.img and BOOTX64.EFI. It
// runs before normal mode, so only plain commands (no if blocks): find the
// filesystem holding GRUB's files by UUID (an ext4 or xfs UUID, or a FAT
// volume id XXXX-XXXX), whatever the disk order, and read grub.cfg from it
// under prefix: "/grub" when /boot is a filesystem of its own,
// "/boot/grub" otherwise (Layout.GrubPrefix). PlanDisk puts it in
// Disk.EarlyConfig.
func EarlyConfigFor(bootUUID, prefix string) string {
	return "search.fs_uuid " + bootUUID + " root\n" +
		"set prefix=($root)" + prefix + "\n"
}

// MakeCoreImage builds the i386-pc core.img with the early config and
// every module embedded, from grubDir (e.g. /usr/lib/grub/i386-pc).
func MakeCoreImage(ctx context.Context, grubDir, earlyConfig, outPath string) error {
	return makeGrubImage(ctx, GrubPC, grubDir, earlyConfig, outPath)
}

// MakeEFIImage builds BOOTX64.EFI (x86_64-efi) the same way.
func MakeEFIImage(ctx context.Context, grubDir, earlyConfig, outPath string) error {
	return makeGrubImage(ctx, GrubEFI, grubDir, earlyConfig, outPath)
}

func makeGrubImage(ctx context.Context, p GrubPlatform, grubDir, earlyConfig, outPath string) error {
	if err := checkGrubDir(p, grubDir); err != nil {
		return err
	}
	cfg := outPath + ".early.cfg"
	if err := os.WriteFile(cfg, []byte(earlyConfig), 0o644); err != nil {
		return fmt.Errorf("grub %s image: %w", p, err)
	}
	defer os.Remove(cfg)
	// -p is only the fallback: the early config sets the prefix.
	args := append([]string{"-O", string(p), "-d", grubDir, "-o", outPath, "-c", cfg, "-p", "/boot/grub"}, GrubModules(p)...)
	if _, err := run(ctx, "grub-mkimage", args...); err != nil {
		os.Remove(outPath)
		return fmt.Errorf("grub %s image: %w", p, err)
	}
	return nil
}

// checkGrubDir makes sure the platform directory holds what grub-mkimage
// needs, so a missing package is named instead of a cryptic mkimage error.
func checkGrubDir(p GrubPlatform, dir string) error {
	pkg := map[GrubPlatform]string{GrubPC: "grub-pc-bin", GrubEFI: "grub-efi-amd64-bin"}[p]
	need := []string{"moddep.lst", "kernel.img"}
	if p == GrubPC {
		need = append(need, "boot.img", "diskboot.img")
	}
	for _, m := range GrubModules(p) {
		need = append(need, m+".mod")
	}
	for _, n := range need {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("GRUB %s file %s not found in %s: install %s or set the GRUB directory", p, n, dir, pkg)
		}
	}
	return nil
}

// Offsets in GRUB 2's boot.img (include/grub/i386/pc/boot.h) and in the
// first sector of core.img (diskboot.img's blocklist).
const (
	bootBPBStart       = 0x03  // BIOS parameter block, kept from the disk
	bootBPBEnd         = 0x5a  //
	bootKernelSector   = 0x5c  // LE u64: LBA of core.img's first sector
	bootDrive          = 0x64  // 0xFF: use the drive the BIOS passed in DL
	bootDriveCheck     = 0x66  // 2-byte jump replaced by NOPs on hard disks
	bootTableStart     = 0x1b8 // disk signature + partition table, kept
	bootTableEnd       = 0x1fe //
	blocklistOffset    = SectorSize - 12
	coreSegment        = 0x820
	maxCoreSectors     = (0x78000 - 0x9000) / SectorSize // what the real-mode loader can load
	coreBlocklistEntry = 12                              // {u64 start; u16 len; u16 segment}
)

// InstallBIOSBoot makes the disk image f boot with a legacy BIOS, as
// grub-bios-setup does for an embedded core image but on a plain file:
// boot.img goes to LBA 0 (keeping the BPB area and the disk signature and
// partition table of the existing sector 0), and core.img goes to the BIOS
// boot partition (GPT) or to the gap between sector 0 and the first
// partition (MBR), with its first-sector blocklist pointing at the rest of
// itself. No Reed-Solomon codes are added (grub-install adds them to
// survive tools that write into the gap; nothing does here).
func InstallBIOSBoot(f *os.File, bootImg, coreImg []byte) error {
	if len(bootImg) != SectorSize {
		return fmt.Errorf("install BIOS boot: boot.img is %d bytes, expected %d", len(bootImg), SectorSize)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("install BIOS boot: %w", err)
	}
	t, err := parttable.Read(f, st.Size())
	if err != nil {
		return fmt.Errorf("install BIOS boot: read the partition table of %s: %w", f.Name(), err)
	}
	nsec := ceilDiv(int64(len(coreImg)), SectorSize)
	if nsec < 2 {
		return fmt.Errorf("install BIOS boot: core.img is only %d bytes", len(coreImg))
	}
	if nsec > maxCoreSectors {
		return fmt.Errorf("install BIOS boot: core.img is %d sectors, the BIOS loader can load at most %d: embed fewer modules", nsec, maxCoreSectors)
	}
	var startLBA, roomSectors int64
	switch t.Kind {
	case GPT:
		found := false
		for _, p := range t.Partitions {
			if p.TypeGUID == BIOSBoot {
				startLBA, roomSectors, found = p.StartBytes/SectorSize, p.SizeBytes/SectorSize, true
				break
			}
		}
		if !found {
			return errors.New("install BIOS boot: the GPT has no BIOS boot partition (type " + BIOSBoot + ") for core.img")
		}
	case MBR:
		firstLBA := t.DiskSizeBytes / SectorSize
		for _, p := range t.Partitions {
			firstLBA = min(firstLBA, p.ExtentStart(MBR)/SectorSize) // a logical partition's EBR counts
		}
		startLBA, roomSectors = 1, firstLBA-1
	}
	if nsec > roomSectors {
		return fmt.Errorf("install BIOS boot: core.img needs %d sectors but only %d are free at LBA %d", nsec, roomSectors, startLBA)
	}

	core := make([]byte, nsec*SectorSize)
	copy(core, coreImg)
	bl := core[blocklistOffset:]
	if seg := binary.LittleEndian.Uint16(bl[10:]); seg != coreSegment {
		return fmt.Errorf("install BIOS boot: core.img blocklist segment is %#x, expected %#x: not an i386-pc core.img", seg, coreSegment)
	}
	binary.LittleEndian.PutUint64(bl[0:], uint64(startLBA+1))
	binary.LittleEndian.PutUint16(bl[8:], uint16(nsec-1))
	clear(core[blocklistOffset-coreBlocklistEntry : blocklistOffset]) // terminator

	sector0 := make([]byte, SectorSize)
	if _, err := f.ReadAt(sector0, 0); err != nil {
		return fmt.Errorf("install BIOS boot: read sector 0: %w", err)
	}
	boot := append([]byte(nil), bootImg...)
	copy(boot[bootBPBStart:bootBPBEnd], sector0[bootBPBStart:bootBPBEnd])
	copy(boot[bootTableStart:bootTableEnd], sector0[bootTableStart:bootTableEnd])
	binary.LittleEndian.PutUint64(boot[bootKernelSector:], uint64(startLBA))
	boot[bootDrive] = 0xFF
	boot[bootDriveCheck], boot[bootDriveCheck+1] = 0x90, 0x90
	boot[0x1fe], boot[0x1ff] = 0x55, 0xAA

	// core.img first: a boot sector pointing at a missing core is worse
	// than a core nobody points at.
	if _, err := f.WriteAt(core, startLBA*SectorSize); err != nil {
		return fmt.Errorf("install BIOS boot: write core.img at LBA %d: %w", startLBA, err)
	}
	if _, err := f.WriteAt(boot, 0); err != nil {
		return fmt.Errorf("install BIOS boot: write boot.img: %w", err)
	}
	return nil
}

// GrubConfigSpec describes the /boot/grub/grub.cfg builder writes.
//
// With a separate /boot filesystem (Layout.BootFilesystem is not the
// root), GRUB reads the kernel from that filesystem: set BootUUID to its
// UUID and Kernel and Initrd to paths on it, e.g. "/vmlinuz-6.1.0-13-amd64"
// (Layout.PathOnFilesystem("/boot/vmlinuz-6.1.0-13-amd64") gives it). The
// /vmlinuz and /initrd.img symlinks are on the root filesystem and point
// into /boot, so GRUB cannot follow them from there.
type GrubConfigSpec struct {
	RootUUID  string // passed as root=UUID= (and searched for without BootUUID); if "", RootLabel is used
	RootLabel string
	// BootUUID is the filesystem holding the kernel and initrd, searched
	// for by GRUB; "" means the root filesystem.
	BootUUID string
	// KernelCmdline follows root=...; default DefaultKernelCmdline.
	KernelCmdline string
	Timeout       int    // seconds, written as is (0 boots at once, -1 waits)
	Serial        string // e.g. DefaultSerial; "" for no serial console
	Title         string // menu entry title; default "GNU/Linux"
	// Kernel and Initrd default to /vmlinuz and /initrd.img: the symlinks
	// Debian keeps pointing at the newest kernel, so the config survives
	// kernel updates without grub-mkconfig. They are paths on the
	// filesystem GRUB searched (BootUUID's when given).
	Kernel, Initrd string
}

// Defaults for GrubConfigSpec, as cloud images usually want them.
const (
	DefaultKernelCmdline = "ro console=tty0 console=ttyS0,115200 no_timer_check nofb nomodeset gfxpayload=text"
	DefaultSerial        = "serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"
)

// GrubConfig returns the text of /boot/grub/grub.cfg: one menu entry
// booting the kernel and initrd symlinks with the root found by UUID.
func GrubConfig(s GrubConfigSpec) string {
	if s.KernelCmdline == "" {
		s.KernelCmdline = DefaultKernelCmdline
	}
	if s.Title == "" {
		s.Title = "GNU/Linux"
	}
	if s.Kernel == "" {
		s.Kernel = "/vmlinuz"
	}
	if s.Initrd == "" {
		s.Initrd = "/initrd.img"
	}
	search := "search --no-floppy --fs-uuid --set=root " + s.RootUUID
	root := "root=UUID=" + s.RootUUID
	if s.RootUUID == "" {
		search = "search --no-floppy --label --set=root " + grubQuote(s.RootLabel)
		root = "root=LABEL=" + s.RootLabel
	}
	if s.BootUUID != "" {
		search = "search --no-floppy --fs-uuid --set=root " + s.BootUUID
	}
	var b strings.Builder
	fmt.Fprintf(&b, "set timeout=%d\nset default=0\n", s.Timeout)
	if s.Serial != "" {
		b.WriteString(s.Serial + "\n")
		b.WriteString("terminal_input serial console\nterminal_output serial console\n")
	}
	b.WriteString(search + "\n")
	fmt.Fprintf(&b, "menuentry %s {\n", grubQuote(s.Title))
	fmt.Fprintf(&b, "\tlinux %s %s %s\n", s.Kernel, root, s.KernelCmdline)
	fmt.Fprintf(&b, "\tinitrd %s\n", s.Initrd)
	b.WriteString("}\n")
	return b.String()
}

// grubQuote single-quotes s for GRUB's shell-like parser.
func grubQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
