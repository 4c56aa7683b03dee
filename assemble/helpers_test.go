package assemble

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// needTools skips the test when a host tool is missing, naming it.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := lookTool(tool); err != nil {
			testreq.Missing(t, "%v", err)
		}
	}
}

// tool runs a host tool and fails the test if it fails.
func tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := toolErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func toolErr(name string, args ...string) (string, error) {
	path, err := lookTool(name)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// dumpe2fsField reads one "Name: value" line of dumpe2fs -h.
func dumpe2fsField(t testing.TB, header, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s*(.*)$`).FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("dumpe2fs has no %q line:\n%s", name, header)
	}
	return strings.TrimSpace(m[1])
}

func atoi64(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.Fields(s)[0], 10, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// sfdiskJSON is the part of `sfdisk --json` the tests compare.
type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Device     string `json:"device"`
		Unit       string `json:"unit"`
		FirstLBA   int64  `json:"firstlba"`
		LastLBA    int64  `json:"lastlba"`
		SectorSize int64  `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func readSfdisk(t testing.TB, path string) sfdiskJSON {
	t.Helper()
	var j sfdiskJSON
	out := tool(t, "sfdisk", "--json", path)
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	return j
}

// verifySfdisk runs sfdisk --verify and fails on any complaint.
func verifySfdisk(t testing.TB, path string) {
	t.Helper()
	out, err := toolErr("sfdisk", "--verify", path)
	if err != nil || !strings.Contains(out, "No errors detected") || strings.Contains(strings.ToLower(out), "warning") {
		t.Fatalf("sfdisk --verify %s: %v\n%s", path, err, out)
	}
}

// noTempFiles fails when dir holds a leftover ".*.tmp-<pid>" file.
func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", filepath.Join(dir, e.Name()))
		}
	}
}

var bg = context.Background()

func contextWithCancel() (context.Context, context.CancelFunc) { return context.WithCancel(bg) }

// sampleGPT is a small GPT disk: BIOS boot partition, ESP and root (the
// partition table tests themselves are builder/internal/parttable's).
func sampleGPT() Table {
	return Table{
		Kind:          GPT,
		DiskGUID:      "8E0B6D5A-3C1F-4E2A-9B7C-1D2E3F405162",
		DiskSizeBytes: 300 * MiB,
		Partitions: []Partition{
			{Number: 1, Name: "bios", TypeGUID: BIOSBoot, GUID: "11111111-2222-4333-8444-555555555501", StartBytes: 1 * MiB, SizeBytes: 1 * MiB},
			{Number: 2, Name: "esp", TypeGUID: ESP, GUID: "11111111-2222-4333-8444-555555555502", StartBytes: 2 * MiB, SizeBytes: 100 * MiB},
			{Number: 3, Name: "root-ü", TypeGUID: LinuxRootX86_64, GUID: "11111111-2222-4333-8444-555555555503", StartBytes: 102 * MiB, SizeBytes: 197 * MiB, Bootable: true},
		},
	}
}

// writeTable writes tab into a new sparse disk image and returns its path.
func writeTable(t *testing.T, tab Table) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tab.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return p
}

// partx lists the partitions of img as the kernel's partition parser
// would: number, start, end, type, flags and scheme, one a line.
func partx(t *testing.T, img string) string {
	t.Helper()
	return tool(t, "partx", "--raw", "--output", "NR,START,END,TYPE,FLAGS,SCHEME", "-g", "-b", "-", img)
}
