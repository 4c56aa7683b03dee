package publish

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// A description template gets the build's facts; a mistyped field or a
// broken template is found when it is checked, with the fields it may use.
func TestDescriptionTemplate(t *testing.T) {
	p := &publisher{
		li:  &LocalImage{OSDistro: "debian", OSVersion: "12", ModTime: t0},
		req: Request{Name: "Debian 12", Meta: Metadata{Elements: []string{"debian", "vm"}, BuildDate: time.Date(2026, 11, 26, 23, 30, 0, 0, time.FixedZone("x", -2*3600)), Source: "https://example.org/d.qcow2"}},
	}
	got, err := RenderDescription(`{{.Name}} ({{.OSDistro}} {{.OSVersion}}: {{.Elements}}), built {{.Date}}, {{.BuildDate.Format "2 January 2006"}} from {{.Source}}`, p.descriptionData())
	want := "Debian 12 (debian 12: debian vm), built 2026-11-27, 27 November 2026 from https://example.org/d.qcow2"
	if err != nil || got != want {
		t.Errorf("got %q, %v\nwant %q", got, err, want)
	}
	if s, err := RenderDescription("", p.descriptionData()); s != "" || err != nil {
		t.Errorf("empty template: %q %v", s, err)
	}
	for _, bad := range []string{"built {{.When}}", "built {{.Date", "{{template \"x\"}}"} {
		if err := ParseDescription(bad); err == nil || !strings.Contains(err.Error(), "fields: .Name .Date") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// Without a build date, the file's time.
	p.req.Meta.BuildDate = time.Time{}
	if d := p.descriptionData(); d.Date != "2026-11-01" {
		t.Errorf("date from the file: %s", d.Date)
	}
}

// The names cleanup recognises are exactly the ones publish makes.
func TestOrphanNames(t *testing.T) {
	run := newRunID()
	if m := tempNameRE.FindStringSubmatch("Debian 12.uploading-" + run); m == nil || m[1] != "Debian 12" || m[2] != run {
		t.Errorf("temporary name of run %s: %v", run, m)
	}
	if !smokeNameRE.MatchString(SmokeServerPrefix + run) {
		t.Errorf("smoke server name of run %s", run)
	}
	for _, n := range []string{"deb.uploading-x", "deb.uploading-20260101T000000Z-abcdeg", "deb", "deb.uploading-20260101T000000Z-abcdef.bak"} {
		if tempNameRE.MatchString(n) {
			t.Errorf("%q taken for a temporary name", n)
		}
	}
	for _, n := range []string{"builder-smoke-web", "builder-smoke-20260101T000000Z-abcdef-2", "web-1"} {
		if smokeNameRE.MatchString(n) {
			t.Errorf("%q taken for a smoke-test server", n)
		}
	}
	st := SmokeTest{}
	if err := st.check(); err != nil || st.Timeout != 15*time.Minute || len(st.Console) != len(DefaultConsolePatterns) {
		t.Errorf("defaults: %+v %v", st, err)
	}
	// The default patterns: a getty's prompt and cloud-init's last line
	// are a guest that came up; Nova's fake driver's text is not.
	up := func(console string) bool {
		for _, p := range DefaultConsolePatterns {
			if regexp.MustCompile("(?m)" + p).MatchString(console) {
				return true
			}
		}
		return false
	}
	for console, want := range map[string]bool{
		"[  OK  ] Started getty\n\nDebian GNU/Linux 12 debian ttyS0\n\ndebian login: ":                          true,
		"Cloud-init v. 22.4.2 finished at Thu, 26 Nov 2026 10:00:01 +0000. Datasource DataSourceConfigDrive.\n": true,
		"builder-ramdisk: ready: network up on eth0 10.0.2.15\n":                                                true,
		"FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE":                                                               false,
		"login: failed\nKernel panic":                                                                           false,
	} {
		if up(console) != want {
			t.Errorf("console %q: came up %v, want %v", console, !want, want)
		}
	}
	if err := (&SmokeTest{Console: []string{"("}}).check(); err == nil {
		t.Error("a broken console pattern passed")
	}
}
