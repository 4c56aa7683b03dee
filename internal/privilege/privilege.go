// Package privilege tells what this process may do on the host: real root,
// root of a user namespace, or an ordinary user, and its capabilities.
package privilege

import (
	"os"
	"strconv"
	"strings"
)

// RealRoot reports whether builder runs as root of the initial user
// namespace: only then do loop devices and block-device mounts work.
// Rootless builds run as root of their own user namespace, where euid is
// 0 too.
func RealRoot() bool {
	if os.Geteuid() != 0 {
		return false
	}
	m, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	f := strings.Fields(string(m))
	if len(f) < 3 || f[0] != "0" || f[1] != "0" || f[2] != "4294967295" {
		return false
	}
	// Root of an unprivileged container has the full map but not
	// CAP_SYS_ADMIN: no mounts of block devices there.
	return CapSysAdmin("CapEff")
}

// CapSysAdmin reports whether CAP_SYS_ADMIN is in one of this process's
// capability sets, named as /proc/self/status does: "CapEff" (held now) or
// "CapBnd" (what a setuid program could gain).
func CapSysAdmin(set string) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, set+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<21) != 0
		}
	}
	return false
}

// RealUID is the user builder acts for: the caller's uid, also inside
// builder's own user namespace.
func RealUID() int {
	m, err := os.ReadFile("/proc/self/uid_map")
	if err == nil {
		for _, line := range strings.Split(string(m), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "0" && f[2] != "4294967295" {
				if uid, err := strconv.Atoi(f[1]); err == nil {
					return uid
				}
			}
		}
	}
	return os.Geteuid()
}
