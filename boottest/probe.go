package boottest

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// probeMarker starts the one line the guest-side probe writes to ttyS0.
const probeMarker = "BUILDER-PROBE "

// Probe holds the facts the guest reported about itself.
type Probe struct {
	// Cmdline is the guest's /proc/cmdline.
	Cmdline string `json:"cmdline"`
	// RootBytes is the size of the filesystem mounted on / (df).
	RootBytes int64 `json:"root_bytes"`
	// DiskBytes is the size of the whole disk that holds /.
	DiskBytes int64 `json:"disk_bytes"`
	// PartBytes is the size of the partition holding / and TailBytes the
	// disk space after it (-1 when / is not on a partition or the guest
	// could not tell): with other partitions (an ESP) on the disk, "the root
	// grew" means the partition reaches the end and the filesystem fills it.
	PartBytes int64 `json:"part_bytes"`
	TailBytes int64 `json:"tail_bytes"`
	// User is the output of `id USER` inside the guest.
	User string `json:"user"`
	// FailedUnits is the number of failed systemd units when the probe ran
	// (-1 when systemctl was not available).
	FailedUnits int `json:"failed_units"`
	// FailedUnitNames names them (absent from older probes).
	FailedUnitNames []string `json:"failed_unit_names,omitempty"`
	// Sudo is "yes" when the test user may sudo without a password, "no"
	// when not, "" when the guest could not tell (no sudo installed).
	Sudo string `json:"sudo,omitempty"`
	// SecureBoot is the guest's Secure Boot state from its SecureBoot EFI
	// variable: "1" enabled, "0" disabled, "bios" when it did not boot
	// with UEFI, "unknown" when the variable could not be read, "" from
	// older probes.
	SecureBoot string `json:"secure_boot,omitempty"`
}

// ParseProbe parses a line starting with "BUILDER-PROBE ". Fields are
// key=value separated by spaces; text fields are base64 so that they cannot
// contain spaces. Unknown keys are ignored so the probe can grow.
func ParseProbe(line string) (*Probe, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), strings.TrimSpace(probeMarker))
	if !ok {
		return nil, fmt.Errorf("probe line does not start with %q", probeMarker)
	}
	seen := map[string]bool{}
	p := Probe{PartBytes: -1, TailBytes: -1}
	for _, f := range strings.Fields(rest) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("probe field %q has no '=' (line garbled by other console output?)", f)
		}
		var err error
		switch k {
		case "cmdline":
			p.Cmdline, err = decodeB64(v)
			p.Cmdline = strings.TrimSpace(p.Cmdline)
		case "root_bytes":
			p.RootBytes, err = strconv.ParseInt(v, 10, 64)
		case "disk_bytes":
			p.DiskBytes, err = strconv.ParseInt(v, 10, 64)
		case "part_bytes":
			p.PartBytes, err = strconv.ParseInt(v, 10, 64)
		case "tail_bytes":
			p.TailBytes, err = strconv.ParseInt(v, 10, 64)
		case "user":
			p.User, err = decodeB64(v)
			p.User = strings.TrimSpace(p.User)
		case "failed_units":
			p.FailedUnits, err = strconv.Atoi(v)
		case "failed_names":
			var names string
			names, err = decodeB64(v)
			if f := strings.Fields(names); len(f) > 0 {
				p.FailedUnitNames = f
			}
		case "sudo":
			p.Sudo = v
		case "secure_boot":
			p.SecureBoot = v
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("probe field %s: %w", k, err)
		}
		seen[k] = true
	}
	for _, k := range []string{"cmdline", "root_bytes", "disk_bytes", "user", "failed_units"} {
		if !seen[k] {
			return nil, fmt.Errorf("probe line has no %s field (line cut short?)", k)
		}
	}
	return &p, nil
}

func decodeB64(v string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// probeScript is the guest-side probe, run by cloud-init's runcmd (final
// stage, so growpart and resizefs have run). It must stay POSIX sh and use
// only what a minimal Debian/Ubuntu/Fedora has; a missing tool gives 0 or
// -1, never a missing field. It writes exactly one line to the serial
// console the host reads (ttyS0, or the PL011 ttyAMA0 on arm64).
const probeScript = `#!/bin/sh
# builder boot-test probe: report facts about this boot on the serial console.
# Errors of missing tools must not reach the console (cloud-init copies
# runcmd output there); a missing fact becomes 0 or -1 instead.
exec 2>/dev/null
b64() { base64 -w0 2>/dev/null || base64 | tr -d '\n'; }
cmdline=$(b64 < /proc/cmdline)
root_bytes=$(df -B1 --output=size / 2>/dev/null | tail -n 1 | tr -d ' ')
src=$(findmnt -n -o SOURCE / 2>/dev/null)
src=${src%%\[*}
disk_bytes=$(lsblk -b -s -n -l -o TYPE,SIZE "$src" 2>/dev/null | awk '$1=="disk"{print $2; exit}')
part_bytes=-1 tail_bytes=-1
part=$(basename "$(readlink -f "$src")")
disk=$(lsblk -n -o PKNAME "$src" 2>/dev/null | head -n 1)
if [ -r "/sys/class/block/$part/start" ] && [ -n "$disk" ] && [ -r "/sys/class/block/$disk/size" ]; then
  pstart=$(cat "/sys/class/block/$part/start"); psize=$(cat "/sys/class/block/$part/size"); dsize=$(cat "/sys/class/block/$disk/size")
  part_bytes=$((psize * 512)); tail_bytes=$(( (dsize - pstart - psize) * 512 ))
fi
user=$(id "$1" 2>&1 | b64)
if command -v systemctl >/dev/null 2>&1; then
  names=$(systemctl list-units --failed --no-legend --plain 2>/dev/null | awk '{print $1}')
  failed=$(printf '%s' "$names" | grep -c .)
else
  names= failed=-1
fi
sudo=
if command -v sudo >/dev/null 2>&1; then
  if sudo -n -l -U "$1" 2>/dev/null | grep -q NOPASSWD; then sudo=yes; else sudo=no; fi
fi
# Secure Boot: the last byte of the SecureBoot variable (after 4 bytes of
# attributes) is 1 when it is on.
sb=bios
if [ -d /sys/firmware/efi ]; then
  sb=unknown
  f=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
  [ -r "$f" ] && sb=$(od -An -t u1 -j4 -N1 "$f" | tr -d ' \n')
  case $sb in 0|1) ;; *) sb=unknown ;; esac
fi
con=/dev/ttyS0
[ -c /dev/ttyAMA0 ] && con=/dev/ttyAMA0
printf 'BUILDER-PROBE cmdline=%s root_bytes=%s disk_bytes=%s part_bytes=%s tail_bytes=%s user=%s failed_units=%s failed_names=%s sudo=%s secure_boot=%s\n' \
  "$cmdline" "${root_bytes:-0}" "${disk_bytes:-0}" "$part_bytes" "$tail_bytes" "$user" "${failed:--1}" "$(printf '%s' "$names" | b64)" "$sudo" "$sb" > "$con"
`
