package hosttools

import (
	"os"
	"strconv"
	"strings"
)

// MemAvailable is the memory the kernel says new work can use without
// swapping (/proc/meminfo's MemAvailable), in bytes; 0 when unknown.
func MemAvailable() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
