package boottest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A boot test that passed is remembered by the image's content: the same
// bytes booted with the same firmware by the same builder need not boot
// again (an unchanged nightly rebuild, a publish after a pipeline's test).
// Only passes are kept; a failure is always tried again.

// FirmwareFor is the firmware a boot test uses: the one asked for, else
// UEFI for a disk that boots only so (disk "uefi") or with Secure Boot,
// else BIOS.
func FirmwareFor(asked, disk string, secureBoot bool) string {
	if asked != "" {
		return asked
	}
	if disk == "uefi" || secureBoot {
		return "uefi"
	}
	return "bios"
}

// Conditions names what a boot test booted with (firmware, architecture,
// Secure Boot), as a pass is remembered under it.
func Conditions(s Spec) string {
	c := s.Firmware
	if s.Arch != "" && s.Arch != "amd64" {
		c = s.Arch + "-" + c
	}
	if s.SecureBoot {
		c += "-secure-boot"
	}
	return c
}

// Passed is a remembered pass.
type Passed struct {
	Digest   string    `json:"digest"` // sha512 of the image file
	Firmware string    `json:"firmware"`
	Builder  string    `json:"builder"` // builder's version, which is the test's
	Summary  string    `json:"summary"`
	At       time.Time `json:"at"`
}

func passedPath(dir, digest, firmware, builder string) string {
	if len(digest) > 64 {
		digest = digest[:64]
	}
	return filepath.Join(dir, "passed", fmt.Sprintf("%s-%s-%s.json", digest, firmware, safeName(builder)))
}

// PassedBefore returns the pass remembered for this image content,
// firmware and builder version in dir (the workspace's boot-test
// directory).
func PassedBefore(dir, digest, firmware, builder string) (*Passed, bool) {
	if dir == "" || digest == "" {
		return nil, false
	}
	b, err := os.ReadFile(passedPath(dir, digest, firmware, builder))
	if err != nil {
		return nil, false
	}
	var p Passed
	if json.Unmarshal(b, &p) != nil || p.Digest != digest || p.Firmware != firmware || p.Builder != builder {
		return nil, false
	}
	return &p, true
}

// RememberPass records a passed boot of this image content.
func RememberPass(dir, digest, firmware, builder string, rep *Report) error {
	if dir == "" || digest == "" || rep == nil || !rep.Passed {
		return errors.New("only a passed boot test of a known image is remembered")
	}
	path := passedPath(dir, digest, firmware, builder)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(Passed{Digest: digest, Firmware: firmware, Builder: builder, Summary: rep.Summary(), At: time.Now().UTC()})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// safeName keeps a version string usable in a file name.
func safeName(s string) string {
	out := []rune(s)
	for i, r := range out {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			out[i] = '_'
		}
	}
	return string(out)
}
