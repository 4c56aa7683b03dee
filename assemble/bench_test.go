package assemble

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkBuildDisk times the whole path on a real tree given in
// ASSEMBLE_BENCH_TREE (e.g. an mmdebstrap'd bookworm), then the qcow2
// conversion. Run with -benchtime=1x; set ASSEMBLE_BENCH_OUT to write the
// images somewhere other than the test's temp dir.
//
//	ASSEMBLE_BENCH_TREE=/var/tmp/asm-tree go test ./assemble/ -run - -bench BuildDisk -benchtime=1x
func BenchmarkBuildDisk(b *testing.B) {
	tree := os.Getenv("ASSEMBLE_BENCH_TREE")
	if tree == "" {
		b.Skip("skipping: set ASSEMBLE_BENCH_TREE to a root tree")
	}
	out := os.Getenv("ASSEMBLE_BENCH_OUT")
	if out == "" {
		out = b.TempDir()
	}
	for b.Loop() {
		t0 := time.Now()
		d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, HeadroomBytes: 0, Layout: mustLayout(b, hybridGPTYAML)})
		if err != nil {
			b.Fatal(err)
		}
		plan := time.Since(t0)
		d.Spec.Files = append(d.Spec.Files,
			File{Path: "/boot/grub/grub.cfg", Data: []byte(GrubConfig(GrubConfigSpec{RootUUID: testRootUUID, Serial: DefaultSerial}))},
			File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
		img := filepath.Join(out, "bench.raw")
		t1 := time.Now()
		if err := BuildDisk(bg, d, img); err != nil {
			b.Fatal(err)
		}
		build := time.Since(t1)
		t2 := time.Now()
		note, err := ConvertWithNote(bg, img, filepath.Join(out, "bench.qcow2"), QCOW2, ConvertOptions{Compress: true})
		if err != nil {
			b.Fatal(err)
		}
		conv := time.Since(t2)
		st, _ := os.Stat(filepath.Join(out, "bench.qcow2"))
		b.Logf("tree %s: %d files, content %s; disk %s, root fs %s (min %s)",
			tree, d.Usage.Files, humanBytes(d.Usage.ContentBytes()), humanBytes(d.Table.DiskSizeBytes),
			humanBytes(d.RootFSBytes), humanBytes(minRootFSBytes(d.Usage)))
		b.Logf("PlanDisk %.2fs, BuildDisk %.2fs, qcow2 zstd %.2fs (%s) %s",
			plan.Seconds(), build.Seconds(), conv.Seconds(), humanBytes(st.Size()), note)
		b.ReportMetric(build.Seconds(), "build-s")
		b.ReportMetric(conv.Seconds(), "qcow2-s")
	}
}

// BenchmarkBuildDiskLayouts times PlanDisk and BuildDisk on a real tree for
// the DIB layouts: block-device-efi (loopless), a separate /boot and /var
// (loopless, the root built in a private mount namespace), an xfs root
// (loop assembler) and LVM (loop assembler; as root).
//
//	ASSEMBLE_BENCH_TREE=/var/tmp/asm-tree go test ./assemble/ -run - -bench BuildDiskLayouts -benchtime=1x
func BenchmarkBuildDiskLayouts(b *testing.B) {
	tree := os.Getenv("ASSEMBLE_BENCH_TREE")
	if tree == "" {
		b.Skip("skipping: set ASSEMBLE_BENCH_TREE to a root tree")
	}
	out := os.Getenv("ASSEMBLE_BENCH_OUT")
	if out == "" {
		out = b.TempDir()
	}
	efi, err := os.ReadFile(filepath.Join("..", "elements", "library", defaultLayoutFile))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, yaml, fsType string }{
		{"efi", string(efi), "ext4"},
		{"boot+var", separateBootVarYAML, "ext4"},
		{"xfs-root", xfsRootYAML, "xfs"},
		{"lvm", lvmOnXFSYAML, "ext4"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				l, err := ParseBlockDeviceConfig([]byte(c.yaml))
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				d, err := PlanDisk(bg, DiskSpec{RootDir: tree, RootUUID: testRootUUID, RootFSType: c.fsType, Layout: l, HeadroomBytes: 256 * MiB})
				if err != nil {
					b.Fatal(err)
				}
				plan := time.Since(t0)
				d.Spec.Files = append(d.Spec.Files,
					File{Path: "/boot/grub/grub.cfg", Data: []byte(GrubConfig(GrubConfigSpec{RootUUID: d.Layout.Root().UUID}))},
					File{Path: "/etc/fstab", Data: []byte(d.Fstab())})
				img := filepath.Join(out, c.name+".raw")
				t1 := time.Now()
				if err := BuildDisk(bg, d, img); err != nil {
					b.Fatal(err)
				}
				b.Logf("%s: %s assembler, disk %s; PlanDisk %.2fs, BuildDisk %.2fs", c.name, d.Assembler, humanBytes(d.Table.DiskSizeBytes), plan.Seconds(), time.Since(t1).Seconds())
				for _, p := range d.Filesystems {
					b.Logf("  %s %s %s at %d, %s, %d files", p.Name, p.Type, p.mountPoint(), p.OffsetBytes, humanBytes(p.SizeBytes), p.Usage.Files)
				}
				if os.Getenv("ASSEMBLE_BENCH_OUT") == "" {
					os.Remove(img)
				}
			}
		})
	}
}
