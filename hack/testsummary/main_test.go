package main

import (
	"strings"
	"testing"
)

// The summary counts every outcome, gives each skip its reason and fails
// on a failed test or a package that failed outside any test.
func TestSummaryCountsAndReasons(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"builder/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"builder/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"pass","Package":"builder/a","Test":"TestOK","Elapsed":0.1}`,
		`{"Action":"output","Package":"builder/a","Test":"TestSkip","Output":"    x_test.go:12: missing prerequisite: podman is not installed\n"}`,
		`{"Action":"output","Package":"builder/a","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}`,
		`{"Action":"skip","Package":"builder/a","Test":"TestSkip"}`,
		`{"Action":"fail","Package":"builder/a","Test":"TestBad","Elapsed":3}`,
		`{"Action":"pass","Package":"builder/a","Test":"TestBad/sub","Elapsed":2}`,
		`{"Action":"pass","Package":"builder/tests/e2e","Test":"TestLong","Elapsed":700}`,
		`{"Action":"fail","Package":"builder/a","Elapsed":5}`,
		`{"Action":"fail","Package":"builder/b"}`,
	}, "\n")
	var out strings.Builder
	code := run(strings.NewReader(in), &out)
	s := out.String()
	for _, want := range []string{"run 4 (passed 3, failed 1), skipped 1", "a.TestSkip: missing prerequisite: podman is not installed", "a.TestBad (3 s)", "outside a test (build error, panic, TestMain): builder/b",
		"slowest tests (a parallel test's time includes its wait for a turn):\n     700 s  tests/e2e.TestLong\n       3 s  a.TestBad\n       0 s  a.TestOK\n", "packages:\n       5 s  a\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if code == 0 {
		t.Errorf("exit 0 with a failure")
	}
	out.Reset()
	in = strings.Join([]string{
		`{"Action":"output","Package":"builder/a","Test":"TestP","Output":"=== RUN   TestP\n"}`,
		`{"Action":"output","Package":"builder/a","Test":"TestP","Output":"    p_test.go:3: parent's own log\n"}`,
		`{"Action":"output","Package":"builder/a","Test":"TestP/sub","Output":"    p_test.go:9: builder boot-test -> exit 1\n        boot-test: no login prompt after 900 s\n"}`,
		`{"Action":"output","Package":"builder/a","Test":"TestP/sub","Output":"    p_test.go:10: the guest did not boot\n"}`,
		`{"Action":"output","Package":"builder/a","Test":"TestP/sub","Output":"--- FAIL: TestP/sub (900.00s)\n"}`,
		`{"Action":"fail","Package":"builder/a","Test":"TestP/sub","Elapsed":900}`,
		`{"Action":"fail","Package":"builder/a","Test":"TestP","Elapsed":901}`,
	}, "\n")
	run(strings.NewReader(in), &out)
	_, why, _ := strings.Cut(out.String(), "why (")
	want := "  -- a.TestP/sub\n  |     p_test.go:9: builder boot-test -> exit 1\n  |         boot-test: no login prompt after 900 s\n  |     p_test.go:10: the guest did not boot\n"
	if !strings.HasSuffix(why, want) || strings.Contains(why, "parent's own log") {
		t.Errorf("the failure's reason is not the summary's end (want %q):\n%s", want, why)
	}
	out.Reset()
	if code := run(strings.NewReader(`{"Action":"pass","Package":"builder/a","Test":"T"}`+"\n"+`{"Action":"pass","Package":"builder/a"}`), &out); code != 0 {
		t.Errorf("exit %d for an all-pass run", code)
	}
}
