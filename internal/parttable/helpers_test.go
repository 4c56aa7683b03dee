package parttable

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// lookTool finds a host tool in PATH or the sbin directories a non-root
// PATH lacks (sfdisk and partx live there).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// needTools skips the test when a host tool is missing, naming it.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := lookTool(tool); err != nil {
			testreq.Missing(t, "%s is not installed (apt-get install util-linux fdisk)", tool)
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
			Attrs    string `json:"attrs"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// readSfdisk is sfdisk's view of the table (its notes on stderr, such as
// that it fell back to the backup GPT, are left out).
func readSfdisk(t testing.TB, path string) sfdiskJSON {
	t.Helper()
	p, err := lookTool("sfdisk")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(p, "--json", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v\n%s", path, err, stderr.String())
	}
	var j sfdiskJSON
	if err := json.Unmarshal(out, &j); err != nil {
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

// readFile reads the table of a whole disk image file.
func readFile(f *os.File) (Table, error) {
	st, err := f.Stat()
	if err != nil {
		return Table{}, err
	}
	return Read(f, st.Size())
}
