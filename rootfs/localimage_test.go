package rootfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"builder/internal/parttable"
	"builder/internal/testreq"
)

// findRootFilesystem finds the root of a local disk image through its
// partition table: on a GPT beside an ESP, and in an MBR logical partition.
func TestFindRootFilesystem(t *testing.T) {
	testreq.Tool(t, "blkid", "util-linux")
	mkfs := testreq.Tool(t, "mkfs.ext4", "e2fsprogs")
	const mib = parttable.MiB
	for _, c := range []struct {
		name string
		tab  parttable.Table
		root int64 // the root's offset
	}{
		{"gpt", parttable.Table{Kind: parttable.GPT, DiskGUID: "8E0B6D5A-3C1F-4E2A-9B7C-1D2E3F405162", DiskSizeBytes: 64 * mib, Partitions: []parttable.Partition{
			{Number: 1, TypeGUID: parttable.ESP, GUID: "11111111-2222-4333-8444-555555555501", StartBytes: mib, SizeBytes: 8 * mib},
			{Number: 2, TypeGUID: parttable.LinuxFilesystem, GUID: "11111111-2222-4333-8444-555555555502", StartBytes: 9 * mib, SizeBytes: 50 * mib},
		}}, 9 * mib},
		{"mbr logical", parttable.Table{Kind: parttable.MBR, DiskSizeBytes: 64 * mib, Partitions: []parttable.Partition{
			{Number: 1, MBRType: parttable.MBRESP, StartBytes: mib, SizeBytes: 8 * mib},
			{Number: 5, MBRType: parttable.MBRLinux, StartBytes: 10 * mib, SizeBytes: 50 * mib},
		}}, 10 * mib},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := filepath.Join(t.TempDir(), "disk.raw")
			f, err := os.Create(raw)
			if err != nil {
				t.Fatal(err)
			}
			err = c.tab.WriteTo(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(mkfs, "-q", "-F", "-L", "cloudimg-rootfs", "-E", fmt.Sprintf("offset=%d", c.root), raw, "50M").CombinedOutput(); err != nil {
				t.Fatalf("mkfs.ext4: %v\n%s", err, out)
			}
			p, err := findRootFilesystem(context.Background(), raw)
			if err != nil || p.offset != c.root || p.fsType != "ext4" || p.label != "cloudimg-rootfs" {
				t.Errorf("root %+v %v, want ext4 cloudimg-rootfs at %d", p, err, c.root)
			}
		})
	}
}
