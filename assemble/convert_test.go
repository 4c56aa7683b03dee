package assemble

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// sourceImage makes a 256 MiB sparse raw image with a GPT and a few MiB
// of compressible and incompressible data.
func sourceImage(t *testing.T) string {
	t.Helper()
	tab := sampleGPT()
	tab.DiskSizeBytes = 256 * MiB
	tab.Partitions[2].SizeBytes = 150 * MiB
	p := writeTable(t, tab)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt(bytes.Repeat([]byte("compressible "), 400000), 110*MiB)
	noise := make([]byte, 2*MiB)
	for i := range noise {
		noise[i] = byte(i*7919 ^ i>>3)
	}
	f.WriteAt(noise, 200*MiB)
	return p
}

type qemuInfo struct {
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	FormatSpecific struct {
		Data struct {
			Compat          string `json:"compat"`
			CompressionType string `json:"compression-type"`
		} `json:"data"`
	} `json:"format-specific"`
}

func readQemuInfo(t *testing.T, p string) qemuInfo {
	t.Helper()
	var info qemuInfo
	out := tool(t, "qemu-img", "info", "--output=json", p)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	return info
}

func TestConvertQCOW2(t *testing.T) {
	needTools(t, "qemu-img")
	src := sourceImage(t)
	out := t.TempDir()
	for _, c := range []struct {
		name               string
		o                  ConvertOptions
		compat, compressed string
		note               string
	}{
		{"zstd", ConvertOptions{Compress: true}, "1.1", "zstd", ""},
		{"zlib", ConvertOptions{Compress: true, Compression: "zlib"}, "1.1", "zlib", ""},
		{"compat=0.10 falls back to zlib", ConvertOptions{Compress: true, Compression: "zstd", QemuImgOptions: "compat=0.10"}, "0.10", "", "zlib"},
		{"uncompressed", ConvertOptions{}, "1.1", "zlib", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(out, strings.ReplaceAll(c.name, " ", "_")+".qcow2")
			note, err := ConvertWithNote(bg, src, dst, QCOW2, c.o)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(note, c.note) || (c.note == "") != (note == "") {
				t.Errorf("note %q, want one mentioning %q", note, c.note)
			}
			info := readQemuInfo(t, dst)
			if info.Format != "qcow2" || info.VirtualSize != 256*MiB || info.FormatSpecific.Data.Compat != c.compat {
				t.Errorf("qemu-img info: %+v", info)
			}
			if c.compressed != "" && info.FormatSpecific.Data.CompressionType != c.compressed {
				t.Errorf("compression type %q, want %q", info.FormatSpecific.Data.CompressionType, c.compressed)
			}
			tool(t, "qemu-img", "check", dst)
			tool(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src, dst)
			st, _ := os.Stat(dst)
			if c.o.Compress && st.Size() > 4*MiB {
				t.Errorf("compressed qcow2 is %d bytes", st.Size())
			}
		})
	}
	noTempFiles(t, out)
}

func TestConvertOtherFormats(t *testing.T) {
	needTools(t, "qemu-img")
	src := sourceImage(t)
	out := t.TempDir()
	for f, qemuName := range map[Format]string{VMDK: "vmdk", VDI: "vdi", VHDX: "vhdx", VHD: "vpc"} {
		dst := filepath.Join(out, "disk."+string(f))
		if err := Convert(bg, src, dst, f, ConvertOptions{Compress: true}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		info := readQemuInfo(t, dst)
		if info.Format != qemuName || info.VirtualSize != 256*MiB {
			t.Errorf("%s: qemu-img info %+v", f, info)
		}
		tool(t, "qemu-img", "compare", "-f", "raw", "-F", qemuName, src, dst)
	}
}

func TestConvertRaw(t *testing.T) {
	src := sourceImage(t)
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	dst := filepath.Join(out, "copy.raw")
	if err := Convert(bg, src, dst, Raw, ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("raw copy differs from the source")
	}
	var s1, s2 syscall.Stat_t
	syscall.Stat(src, &s1)
	syscall.Stat(dst, &s2)
	if s2.Blocks > s1.Blocks+2048 || s2.Blocks*512 > 16*MiB {
		t.Errorf("raw copy allocates %d sectors, the source %d: holes were filled", s2.Blocks, s1.Blocks)
	}

	// A disposable source on the same filesystem is renamed.
	moved := filepath.Join(filepath.Dir(src), "moved.raw")
	if err := Convert(bg, src, moved, Raw, ConvertOptions{MoveSource: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Error("MoveSource left the source in place")
	}
	if b, _ := os.ReadFile(moved); !bytes.Equal(b, want) {
		t.Error("moved image differs")
	}
	noTempFiles(t, out)
}

// Failures leave no output and no temporary file, and say why.
func TestConvertFailures(t *testing.T) {
	needTools(t, "qemu-img")
	src := sourceImage(t)
	out := t.TempDir()
	dst := filepath.Join(out, "disk.qcow2")
	for _, c := range []struct {
		name string
		dst  string
		f    Format
		o    ConvertOptions
		want string
	}{
		{"missing directory", filepath.Join(out, "nope", "disk.qcow2"), QCOW2, ConvertOptions{}, "does not exist"},
		{"qemu-img rejects an option", dst, QCOW2, ConvertOptions{QemuImgOptions: "compat=9.9"}, "qemu-img"},
		{"unknown format", dst, "iso", ConvertOptions{}, "unknown format"},
		{"bad compression", dst, QCOW2, ConvertOptions{Compress: true, Compression: "lz4"}, "zstd or zlib"},
		{"raw with qemu options", dst, Raw, ConvertOptions{QemuImgOptions: "compat=0.10"}, "do not apply"},
		{"same file", src, QCOW2, ConvertOptions{}, "same file"},
	} {
		err := Convert(bg, src, c.dst, c.f, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	ctx, cancel := contextWithCancel()
	cancel()
	if err := Convert(ctx, src, dst, QCOW2, ConvertOptions{Compress: true}); err == nil {
		t.Error("Convert with a cancelled context succeeded")
	}
	if err := Convert(ctx, src, filepath.Join(out, "x.raw"), Raw, ConvertOptions{}); err == nil {
		t.Error("raw Convert with a cancelled context succeeded")
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed Convert left its output")
	}
	noTempFiles(t, out)

	// qemu-img fails mid-write (the output filesystem fills up): the
	// partial temporary file must go.
	small := filepath.Join(t.TempDir(), "small")
	os.Mkdir(small, 0o755)
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Logf("cannot mount a small tmpfs (%v): mid-write failure not tested", err)
		return
	}
	defer syscall.Unmount(small, syscall.MNT_DETACH)
	for _, f := range []Format{QCOW2, Raw} {
		err := Convert(bg, src, filepath.Join(small, "disk."+string(f)), f, ConvertOptions{})
		if err == nil || !strings.Contains(err.Error(), "space") {
			t.Errorf("%s into a full filesystem: %v", f, err)
		}
		noTempFiles(t, small)
		if ents, _ := os.ReadDir(small); len(ents) != 0 {
			t.Errorf("%s into a full filesystem left %v", f, ents)
		}
	}
}
