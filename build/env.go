package build

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// hostPath is the PATH hooks get, inside and outside: the image's standard
// directories, never the user's.
const hostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// passThrough are host variables a build may legitimately need (proxies for
// the package mirror); everything else of the host stays out of hooks.
var passThrough = []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}

// UserEnv picks the variables of the user's environment that belong to the
// build: DIB_* and the few other names DIB elements read.
func UserEnv(environ []string) map[string]string {
	keep := map[string]bool{"ELEMENTS_PATH": true, "TMP_DIR": true, "FS_TYPE": true, "ROOT_LABEL": true, "OVERWRITE_OLD_IMAGE": true, "break": true}
	for _, p := range passThrough {
		keep[p] = true
	}
	out := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if strings.HasPrefix(k, "DIB_") || keep[k] {
			out[k] = v
		}
	}
	return out
}

// envList turns a map into sorted KEY=VALUE pairs.
func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// evalEnvironment sources the environment.d files on the host, as DIB does
// before every outside phase, and returns the resulting variables. A file
// that exits non-zero (DIB's way to reject a build) is reported by name.
func evalEnvironment(ctx context.Context, files []string, base map[string]string) (map[string]string, error) {
	var script strings.Builder
	script.WriteString("set -eu\nset -o pipefail\n")
	for _, f := range files {
		fmt.Fprintf(&script, "BUILDER_ENV_FILE=%s\nsource %s\n", shellQuote(f), shellQuote(f))
	}
	script.WriteString("unset BUILDER_ENV_FILE\nenv -0\n")
	cmd := exec.CommandContext(ctx, "/bin/bash", "-c", script.String())
	cmd.Env = envList(base)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		return nil, fmt.Errorf("environment.d failed: %w: %s", err, lastLines(msg, 5))
	}
	out := map[string]string{}
	for _, kv := range bytes.Split(stdout.Bytes(), []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok && k != "" && k != "_" && k != "SHLVL" && k != "PWD" && k != "OLDPWD" {
			out[k] = v
		}
	}
	return out, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hostAptMirrors finds the Debian (and debian-security) mirror the build
// host's apt uses, so Debian images come from the same place by default.
func hostAptMirrors(root string) (debian, security string) {
	var uris []string
	files, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*"))
	files = append([]string{filepath.Join(root, "etc/apt/sources.list")}, files...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			switch {
			case strings.HasSuffix(f, ".sources") && len(fields) >= 2 && fields[0] == "URIs:":
				uris = append(uris, fields[1:]...)
			case strings.HasSuffix(f, ".list") || strings.HasSuffix(f, "sources.list"):
				if len(fields) >= 3 && fields[0] == "deb" {
					u := fields[1]
					if strings.HasPrefix(u, "[") {
						for i, fl := range fields {
							if strings.HasSuffix(fl, "]") && i+1 < len(fields) {
								u = fields[i+1]
								break
							}
						}
					}
					uris = append(uris, u)
				}
			}
		}
	}
	for _, u := range uris {
		u = strings.TrimSuffix(u, "/")
		switch {
		case strings.HasSuffix(u, "/debian-security") && security == "":
			security = u
		case strings.HasSuffix(u, "/debian") && debian == "":
			debian = u
		}
	}
	return debian, security
}
