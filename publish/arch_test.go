package publish

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// elfHeader is the start of an ELF file for machine, 64-bit unless
// class32, little-endian unless big.
func elfHeader(machine uint16, class32, big bool) []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5] = 2, 1
	if class32 {
		h[4] = 1
	}
	if big {
		h[5] = 2
		binary.BigEndian.PutUint16(h[18:], machine)
	} else {
		binary.LittleEndian.PutUint16(h[18:], machine)
	}
	return h
}

func TestELFArch(t *testing.T) {
	for _, c := range []struct {
		h    []byte
		want string
	}{
		{elfHeader(0x3e, false, false), "amd64"},
		{elfHeader(0xb7, false, false), "arm64"},
		{elfHeader(0x03, true, false), "i386"},
		{elfHeader(0x28, true, false), "armhf"},
		{elfHeader(0x15, false, false), "ppc64el"},
		{elfHeader(0x15, false, true), "ppc64"},
		{elfHeader(0x16, false, true), "s390x"},
		{elfHeader(0xf3, false, false), "riscv64"},
		{elfHeader(0x1234, false, false), ""},
		{[]byte("#!/bin/sh\necho not a program\n"), ""},
		{[]byte("\x7fELF"), ""},
	} {
		if got := elfArch(c.h); got != c.want {
			t.Errorf("elfArch(% x) = %q, want %q", c.h[:min(len(c.h), 20)], got, c.want)
		}
	}
}

// An arm64 image, told by the programs in its root filesystem: boot-test
// boots it in the arm64 QEMU and publish says architecture=aarch64, raw or
// qcow2, without being told.
func TestDetectArchFromTheRootsPrograms(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs", "sfdisk", "qemu-img"} {
		testreq.Tool(t, tool, "e2fsprogs, fdisk and qemu-utils")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for p, data := range map[string][]byte{
		"usr/bin/ls":     elfHeader(0xb7, false, false),
		"etc/os-release": []byte("ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fs := filepath.Join(dir, "fs.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", root, fs, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	fsData, err := os.ReadFile(fs)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, make([]byte, 10<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sf := exec.Command("sfdisk", "-q", disk)
	sf.Stdin = strings.NewReader("label: gpt\nstart=2048, size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(fsData, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	qcow2 := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", disk, qcow2).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	ctx := context.Background()
	for _, img := range []string{disk, qcow2} {
		if arch, err := DetectArch(ctx, img, InspectOptions{TempDir: dir}); err != nil || arch != "arm64" {
			t.Errorf("DetectArch(%s) = %q, %v; want arm64", filepath.Base(img), arch, err)
		}
	}
	li, warnings, err := Inspect(ctx, qcow2, InspectOptions{TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if li.Arch != "arm64" || li.OSDistro != "debian" {
		t.Errorf("Inspect: arch %q, os_distro %q (warnings %v); want arm64, debian", li.Arch, li.OSDistro, warnings)
	}
	p := &publisher{li: li, req: Request{Name: "x"}}
	if got := p.properties()["architecture"]; got != "aarch64" {
		t.Errorf("architecture property %q, want aarch64 (Glance's name)", got)
	}
}
