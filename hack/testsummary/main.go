// Command testsummary reads `go test -json` on stdin, prints the tests'
// output as `go test -v` would, and ends with the counts: tests run,
// passed, skipped (each with its reason) and failed. It exits non-zero when
// a test or a package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type result struct {
	name    string
	elapsed float64
	output  []string
	sub     bool // a subtest
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout))
}

func run(in io.Reader, out io.Writer) int {
	var passed, failed, skipped []result
	var failedPkgs []string
	var pkgTimes []result
	outputs := map[string][]string{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not an event (a build error printed by go test): show it.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			fmt.Fprint(out, e.Output)
			if e.Test != "" {
				outputs[key] = append(outputs[key], e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action != "skip" {
					pkgTimes = append(pkgTimes, result{name: shortPkg(e.Package), elapsed: e.Elapsed})
				}
				if e.Action == "fail" {
					failedPkgs = append(failedPkgs, e.Package)
				}
				continue
			}
			r := result{name: shortPkg(e.Package) + "." + e.Test, elapsed: e.Elapsed, output: outputs[key], sub: strings.Contains(e.Test, "/")}
			delete(outputs, key)
			switch e.Action {
			case "pass":
				passed = append(passed, r)
			case "fail":
				failed = append(failed, r)
			case "skip":
				skipped = append(skipped, r)
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testsummary: reading go test -json: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "\n==== test summary ====\n")
	fmt.Fprintf(out, "run %d (passed %d, failed %d), skipped %d\n", len(passed)+len(failed), len(passed), len(failed), len(skipped))
	if len(skipped) > 0 {
		fmt.Fprintf(out, "skipped:\n")
		for _, r := range sorted(skipped) {
			fmt.Fprintf(out, "  %s: %s\n", r.name, reason(r.output))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(out, "failed:\n")
		for _, r := range sorted(failed) {
			fmt.Fprintf(out, "  %s (%.0f s)\n", r.name, r.elapsed)
		}
	}
	// Where CI's time went: the slowest tests (not subtests) and packages.
	var top []result
	for _, r := range append(append([]result(nil), passed...), failed...) {
		if !r.sub {
			top = append(top, r)
		}
	}
	if len(top) > 0 {
		sort.SliceStable(top, func(i, j int) bool { return top[i].elapsed > top[j].elapsed })
		fmt.Fprintf(out, "slowest tests (a parallel test's time includes its wait for a turn):\n")
		for _, r := range top[:min(len(top), 15)] {
			fmt.Fprintf(out, "  %6.0f s  %s\n", r.elapsed, r.name)
		}
	}
	if len(pkgTimes) > 0 {
		sort.SliceStable(pkgTimes, func(i, j int) bool { return pkgTimes[i].elapsed > pkgTimes[j].elapsed })
		fmt.Fprintf(out, "packages:\n")
		for _, r := range pkgTimes[:min(len(pkgTimes), 8)] {
			fmt.Fprintf(out, "  %6.0f s  %s\n", r.elapsed, r.name)
		}
	}
	pkgsOnly := []string{}
	for _, p := range failedPkgs {
		has := false
		for _, r := range failed {
			if strings.HasPrefix(r.name, shortPkg(p)+".") {
				has = true
			}
		}
		if !has {
			pkgsOnly = append(pkgsOnly, p)
		}
	}
	if len(pkgsOnly) > 0 {
		fmt.Fprintf(out, "packages that failed outside a test (build error, panic, TestMain): %s\n", strings.Join(pkgsOnly, ", "))
	}
	// Last, why each failed test failed: CI's record keeps the end of the
	// output, where the full log's failure may be thousands of lines up.
	if leaves := failedLeaves(failed); len(leaves) > 0 {
		fmt.Fprintf(out, "why (the end of each failed test's own output):\n")
		for i, r := range leaves {
			if i == maxWhyTests {
				fmt.Fprintf(out, "  (and %d more failed tests: see above)\n", len(leaves)-i)
				break
			}
			fmt.Fprintf(out, "  -- %s\n", r.name)
			for _, l := range tail(r.output, whyLines) {
				fmt.Fprintf(out, "  | %s\n", clip(l, 240))
			}
		}
	}
	if len(failed) > 0 || len(failedPkgs) > 0 {
		return 1
	}
	return 0
}

const (
	maxWhyTests = 6
	whyLines    = 30
)

// failedLeaves are the failed tests none of whose subtests failed: a
// parent that failed only through a subtest says nothing of its own.
func failedLeaves(failed []result) []result {
	var leaves []result
	for _, r := range sorted(failed) {
		parent := false
		for _, o := range failed {
			if strings.HasPrefix(o.name, r.name+"/") {
				parent = true
			}
		}
		if !parent {
			leaves = append(leaves, r)
		}
	}
	return leaves
}

// tail is the last n lines of a test's output, without go test's own
// "=== RUN/PAUSE/CONT" and "--- FAIL" lines.
func tail(output []string, n int) []string {
	var lines []string
	for _, chunk := range output {
		for _, l := range strings.Split(strings.TrimRight(chunk, "\n"), "\n") {
			t := strings.TrimSpace(l)
			if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- FAIL") {
				continue
			}
			lines = append(lines, strings.TrimRight(l, " \t"))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " [...]"
}

// reason is the skip message: the last "file_test.go:NN: ..." line before
// "--- SKIP".
func reason(lines []string) string {
	msg := "(no reason given)"
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "--- SKIP") {
			break
		}
		if i := strings.Index(t, ".go:"); i > 0 && strings.Contains(t[i:], ": ") {
			msg = t[strings.Index(t[i+4:], ": ")+i+6:]
		}
	}
	return msg
}

func shortPkg(p string) string {
	return strings.TrimPrefix(p, "builder/")
}

func sorted(rs []result) []result {
	sort.Slice(rs, func(i, j int) bool { return rs[i].name < rs[j].name })
	return rs
}
