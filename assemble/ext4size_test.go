package assemble

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// The geometry model must agree with what mke2fs really builds: block
// count, groups, inodes, reserved GDT, journal and, above all, the free
// blocks of an empty filesystem, across the journal and group thresholds.
func TestExt4GeometryMatchesMke2fs(t *testing.T) {
	needTools(t, "mkfs.ext4", "dumpe2fs")
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "fs.img")
	o := defaultExt4Options()
	cases := []struct{ mib, inodes int64 }{
		{8, 1000}, {32, 5000}, {127, 1000}, {128, 1000}, {129, 40000}, {130, 1000},
		{500, 32000}, {1023, 65536}, {1024, 1000}, {1025, 70000}, {2047, 1024}, {2048, 131072},
		{5000, 1280}, {16383, 1 << 20}, {16384, 2048}, {40000, 5008},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dMiB-%dinodes", c.mib, c.inodes), func(t *testing.T) {
			os.Remove(img)
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			tool(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-N", fmt.Sprint(c.inodes),
				"-d", empty, img, fmt.Sprintf("%dk", c.mib*1024))
			h := tool(t, "dumpe2fs", "-h", img)
			g, err := o.geometry(c.mib*MiB, c.inodes)
			if err != nil {
				t.Fatal(err)
			}
			checks := []struct {
				name  string
				model int64
			}{
				{"Block count", g.Blocks},
				{"Inode count", g.Inodes()},
				{"Inodes per group", g.InodesPerGroup},
				{"Free blocks", g.FreeBlocks()},
			}
			if g.BlocksPerGroup == 32768 {
				// When mke2fs shrinks groups to fit the inodes, its reserve
				// follows an intermediate block count; only headroom uses it.
				checks = append(checks, struct {
					name  string
					model int64
				}{"Reserved block count", g.ReservedBlocks})
			}
			for _, ch := range checks {
				if got := atoi64(t, dumpe2fsField(t, h, ch.name)); got != ch.model {
					t.Errorf("%s: mke2fs %d, model %d", ch.name, got, ch.model)
				}
			}
			if g.ReservedGDTBlocks > 0 {
				if got := atoi64(t, dumpe2fsField(t, h, "Reserved GDT blocks")); got != g.ReservedGDTBlocks {
					t.Errorf("Reserved GDT blocks: mke2fs %d, model %d", got, g.ReservedGDTBlocks)
				}
			}
			if got := atoi64(t, dumpe2fsField(t, h, "Total journal blocks")); got != g.JournalBlocks {
				t.Errorf("journal: mke2fs %d blocks, model %d", got, g.JournalBlocks)
			}
		})
	}
}

func TestParseMkfsOptions(t *testing.T) {
	o, err := parseMkfsOptions([]string{"-i", "8192", "-m1", "-E", "lazy_itable_init=1,stride=4", "-O", "^has_journal", "-j", "-T", "news"})
	if err != nil {
		t.Fatal(err)
	}
	if o.InodeRatio != 8192 || !o.RatioGiven || o.ReservedPercent != 1 || o.JournalMiB != -1 {
		t.Errorf("parsed %+v", o)
	}
	if strings.Join(o.Extended, ",") != "lazy_itable_init=1,stride=4" {
		t.Errorf("extended options %q", o.Extended)
	}
	if strings.Join(o.Rest, " ") != "-O ^has_journal -j -T news" {
		t.Errorf("pass-through options %q", o.Rest)
	}
	for _, bad := range [][]string{{"-E", "offset=0"}, {"-L", "x"}, {"-U", "random"}, {"-d", "/"}, {"-i"}, {"-b", "8192"}, {"-n"}, {"junk"}} {
		if _, err := parseMkfsOptions(bad); err == nil {
			t.Errorf("parseMkfsOptions(%q) accepted", bad)
		}
	}
}

// mkfsFill runs mkfs.ext4 -d tree into a fresh fsBytes image the way
// BuildDisk does (same -b/-I/-N), and reports whether the tree fit.
func mkfsFill(t *testing.T, tree string, u TreeUsage, fsBytes int64, img string) (bool, string) {
	t.Helper()
	os.Remove(img)
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer os.Remove(img)
	o := defaultExt4Options()
	out, err := toolErr("mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256",
		"-N", fmt.Sprint(o.inodesFor(fsBytes, u)), "-E", "root_owner=0:0", "-d", tree, img, fmt.Sprintf("%dk", fsBytes/1024))
	if err != nil && !strings.Contains(out, "Could not allocate") && !strings.Contains(out, "No free space") {
		t.Fatalf("mkfs.ext4 failed for another reason than space: %v\n%s", err, out)
	}
	return err == nil, out
}

// minRootFSBytes is the smallest ext4 filesystem (whole MiB) that
// mkfs.ext4 -d can fill with a tree of usage u, with builder's defaults:
// 4 KiB blocks, 256-byte inodes, the inode count builder passes with -N
// (one per 16 KiB, at least the tree's inodes plus a quarter), and the
// journal mke2fs picks for that size (4 MiB below 128 MiB, 16 MiB below
// 1 GiB, 32 MiB below 2 GiB, 64 MiB below 16 GiB, ...). It leaves no free
// space. PlanDisk sizes every ext filesystem with this model; the test
// below holds the model to what mkfs.ext4 really fits.
func minRootFSBytes(u TreeUsage) int64 {
	n, err := defaultExt4Options().minFSBytes(u, 0)
	if err != nil {
		return 0 // only for absurd inode counts; PlanDisk reports the error
	}
	return n
}

// defaultHeadroom is 10% of the content plus 256 MiB: free space for a
// usable root filesystem.
func defaultHeadroom(u TreeUsage) int64 {
	return u.ContentBytes()/10 + 256*MiB
}

// minRootFSBytes must be enough for mkfs.ext4 -d to fill the filesystem
// with a real tree, and tight: 10% less must not be enough.
func TestMinRootFSBytesFillsRealTrees(t *testing.T) {
	needTools(t, "mkfs.ext4")
	trees := []string{"/usr/share/doc", "/usr/share/locale", "/usr/lib/python3.11"}
	if env := os.Getenv("ASSEMBLE_FILL_TREES"); env != "" {
		trees = filepath.SplitList(env)
	}
	img := filepath.Join(t.TempDir(), "fill.img")
	for _, tree := range trees {
		t.Run(strings.ReplaceAll(tree, "/", "_"), func(t *testing.T) {
			if _, err := os.Stat(tree); err != nil {
				testreq.Missing(t, "%v", err)
			}
			u, err := MeasureTree(bg, tree)
			if err != nil {
				t.Fatal(err)
			}
			if len(u.MountPoints) > 0 {
				testreq.Missing(t, "%s has mount points %v", tree, u.MountPoints)
			}
			min := minRootFSBytes(u)
			t.Logf("%s: %d files, %d dirs, content %s, minRootFSBytes %s", tree, u.Files, u.Dirs,
				humanBytes(u.ContentBytes()), humanBytes(min))
			if min < u.ContentBytes() {
				t.Fatalf("minRootFSBytes %d is below the content %d", min, u.ContentBytes())
			}
			if ok, out := mkfsFill(t, tree, u, min, img); !ok {
				t.Fatalf("mkfs.ext4 -d could not fill minRootFSBytes = %s:\n%s", humanBytes(min), out)
			}
			small := min * 9 / 10 / MiB * MiB
			if ok, _ := mkfsFill(t, tree, u, small, img); ok {
				t.Errorf("mkfs.ext4 -d filled 90%% of minRootFSBytes (%s): the estimate is loose", humanBytes(small))
			}
			if os.Getenv("ASSEMBLE_BISECT") != "" {
				lo, hi := small, min // lo fails, hi fits
				for hi-lo > MiB {
					mid := (lo + hi) / 2 / MiB * MiB
					if ok, _ := mkfsFill(t, tree, u, mid, img); ok {
						hi = mid
					} else {
						lo = mid
					}
				}
				t.Logf("real minimum %s, minRootFSBytes %s (+%.2f%%)", humanBytes(hi), humanBytes(min), 100*float64(min-hi)/float64(hi))
			}
		})
	}
}

// On a host whose mke2fs.conf turns on orphan_file and metadata_csum_seed
// (upstream 1.47 defaults), builder pins them off so older guests' e2fsck
// accepts the filesystem; on Debian 12's config nothing is pinned.
func TestFeaturePins(t *testing.T) {
	needTools(t, "mkfs.ext4", "dumpe2fs")
	if !mke2fsAtLeast147(bg) {
		testreq.Missing(t, "mke2fs older than 1.47 has no orphan_file")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "mke2fs.conf")
	os.WriteFile(conf, []byte("[defaults]\n\tblocksize = 4096\n\tinode_size = 256\n[fs_types]\n\text4 = {\n"+
		"\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,metadata_csum_seed,64bit,dir_nlink,extra_isize,orphan_file\n\t}\n"), 0o644)
	t.Setenv("MKE2FS_CONFIG", conf)
	pins := featurePins(bg)
	if strings.Join(pins, ",") != "^orphan_file,^metadata_csum_seed" {
		t.Fatalf("pins %q", pins)
	}
	img := filepath.Join(dir, "fs.img")
	os.WriteFile(img, nil, 0o644)
	tool(t, "mkfs.ext4", "-q", "-F", "-O", strings.Join(pins, ","), img, "64M")
	if f := dumpe2fsField(t, tool(t, "dumpe2fs", "-h", img), "Filesystem features"); strings.Contains(f, "orphan_file") || strings.Contains(f, "metadata_csum_seed") {
		t.Errorf("pinned filesystem has features %q", f)
	}
	// Without the pins this config does enable them (the test can fail).
	tool(t, "mkfs.ext4", "-q", "-F", img, "64M")
	if f := dumpe2fsField(t, tool(t, "dumpe2fs", "-h", img), "Filesystem features"); !strings.Contains(f, "orphan_file") {
		t.Errorf("the test config does not enable orphan_file: %q", f)
	}

	os.WriteFile(conf, []byte("[fs_types]\n\text4 = {\n\t\tfeatures = has_journal,extent,64bit\n\t}\n"), 0o644)
	if pins := featurePins(bg); len(pins) != 0 {
		t.Errorf("pins %q for a config without the features", pins)
	}
}
