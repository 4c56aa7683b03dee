package imagebuild

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

// proxyVars route downloads; they reach hooks but never change what a step
// makes, so they are not part of step keys.
var proxyVars = []string{"http_proxy", "https_proxy", "no_proxy", "ftp_proxy", "all_proxy",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "FTP_PROXY", "ALL_PROXY"}

// hostOnlyVars describe the caller's session, terminal or identity, not
// the build: hooks never see them (DIB's sudo -E would pass them, but an
// image must not depend on who built it or from which terminal).
var hostOnlyVars = map[string]bool{
	"TERM": true, "COLORTERM": true, "DISPLAY": true, "WAYLAND_DISPLAY": true, "XAUTHORITY": true,
	"SSH_AUTH_SOCK": true, "SSH_AGENT_PID": true, "SSH_CLIENT": true, "SSH_CONNECTION": true, "SSH_TTY": true,
	"GPG_AGENT_INFO": true, "DBUS_SESSION_BUS_ADDRESS": true, "SESSION_MANAGER": true, "WINDOWID": true,
	"TMUX": true, "TMUX_PANE": true, "STY": true, "LS_COLORS": true, "PWD": true, "OLDPWD": true,
	"SHLVL": true, "_": true, "MAIL": true, "HISTFILE": true, "HISTSIZE": true, "HISTFILESIZE": true,
	"HISTCONTROL": true, "PS1": true, "PS2": true, "PROMPT_COMMAND": true, "INVOCATION_ID": true,
	"JOURNAL_STREAM": true, "SYSTEMD_EXEC_PID": true, "MANAGERPID": true, "NOTIFY_SOCKET": true,
	"LISTEN_FDS": true, "LISTEN_PID": true, "LISTEN_FDNAMES": true, "KRB5CCNAME": true,
	"COLUMNS": true, "LINES": true, "HOME": true, "PATH": true, "TMPDIR": true, "SHELL": true,
	"HOSTNAME": true, "USER": true, "LOGNAME": true, "EDITOR": true, "VISUAL": true, "PAGER": true,
	"LESS": true, "LESSOPEN": true, "LESSCLOSE": true, "OLDPATH": true, "MOTD_SHOWN": true,
	// Set by podman, docker and systemd-nspawn for what runs in them: where
	// builder runs, not what it builds.
	"container": true, "container_uuid": true,
}

// hostOnlyPrefixes: session (XDG_*), terminal programs, sudo's own record
// of the caller, the state buildah's re-exec leaves in the environment,
// and the dynamic loader's controls (LD_PRELOAD, LD_LIBRARY_PATH...: host
// libraries that do not exist in the image; DIB's sudo drops them too) and
// what preloaded tools such as libfaketime read (FAKETIME*).
var hostOnlyPrefixes = []string{"XDG_", "TERM_", "SUDO_", "_CONTAINERS_", "BASH_FUNC_", "VSCODE_", "GNOME_", "KDE_", "LD_", "FAKETIME", "DONT_FAKE_", "NO_FAKE_"}

// builderOnlyPrefixes are builder's own controls and credentials it uses
// itself (OpenStack's OS_* for publishing, the container tools'
// configuration), never the hooks'.
var builderOnlyPrefixes = []string{"BUILDER_", "OS_", "CONTAINERS_", "BUILDAH_", "STORAGE_", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG"}

// toolReadPrefixes name variables that programs inside the image read
// without an element's file mentioning them (pip, git, apt...): set, they
// are part of every step's key.
var toolReadPrefixes = []string{"PIP_", "PYTHON", "UV_", "GIT_", "APT_", "DEBIAN_", "DEBCONF_", "DPKG_",
	"NPM_CONFIG_", "SOURCE_DATE_EPOCH", "TZ", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// UserEnv picks the variables of the caller's environment that belong to
// the build: all of them, as DIB runs hooks with sudo -E, except the
// caller's session and terminal and builder's own controls.
func UserEnv(environ []string) map[string]string {
	return userVars(EnvMap(environ))
}

// EnvMap turns KEY=value pairs into a map (the last of a repeated key
// wins, as the environment does).
func EnvMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// userVars keeps the variables of an environment that belong to the
// build (see UserEnv).
func userVars(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if !validEnvName(k) || hostOnlyVars[k] || hasAnyPrefix(k, hostOnlyPrefixes) || hasAnyPrefix(k, builderOnlyPrefixes) {
			continue
		}
		out[k] = v
	}
	return out
}

// validEnvName: a name a shell can read (DIB's hooks are shell scripts).
func validEnvName(k string) bool {
	for i, r := range k {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// secretName says whether a variable's value is a credential by its name.
// Such values reach hooks (an element may need a token) but are redacted
// from every log and manifest, and a build fails if one lands in the image.
func secretName(k string) bool {
	u := strings.ToUpper(k)
	if strings.Contains(u, "PUBLIC") || strings.Contains(u, "AUTHORIZED") {
		return false
	}
	for _, w := range []string{"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE", "API_KEY", "APIKEY", "ACCESS_KEY", "AUTH_KEY"} {
		if strings.Contains(u, w) {
			return true
		}
	}
	return false
}

// minSecretLen: shorter values are not treated as secrets (redacting "1"
// everywhere would garble every log and protect nothing).
const minSecretLen = 6

// secretValues returns the values of secret-looking variables.
func secretValues(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if secretName(k) && len(v) >= minSecretLen {
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
	// Name the file that failed (set -e leaves in the middle of it).
	fmt.Fprintf(&script, "trap 'rc=$?; [ $rc -eq 0 ] || [ -z \"${BUILDER_ENV_FILE:-}\" ] || printf \"\\n%s%%s\\n\" \"$BUILDER_ENV_FILE\" >&2' EXIT\n", envFailedMark)
	for _, f := range files {
		// What a file prints must not mix with the variables read below.
		fmt.Fprintf(&script, "BUILDER_ENV_FILE=%s\nsource %s >&2\n", shellQuote(f), shellQuote(f))
	}
	script.WriteString("unset BUILDER_ENV_FILE\nenv -0\n")
	cmd := exec.CommandContext(ctx, "/bin/bash", "-c", script.String())
	cmd.Env = envList(base)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fe := &envFileError{Status: err}
		for _, l := range strings.Split(stderr.String(), "\n") {
			if f, ok := strings.CutPrefix(l, envFailedMark); ok {
				fe.File = f
			} else if l = strings.TrimSpace(l); l != "" {
				fe.Output = append(fe.Output, l)
			}
		}
		if len(fe.Output) > 3 {
			fe.Output = fe.Output[len(fe.Output)-3:]
		}
		return nil, fe
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

const envFailedMark = "##builder-env-failed## "

// envFileError is an environment.d file that failed when sourced: which
// one (File, Element once known), how, and the last lines it printed.
type envFileError struct {
	File, Element string
	Status        error
	Output        []string
}

func (e *envFileError) Error() string {
	who := "environment.d"
	switch {
	case e.Element != "":
		who = fmt.Sprintf("environment.d file %s (element %s)", e.File, e.Element)
	case e.File != "":
		who = "environment.d file " + e.File
	}
	msg := fmt.Sprintf("%s failed (%v)", who, e.Status)
	if len(e.Output) > 0 {
		msg += ": " + strings.Join(e.Output, " | ")
	}
	return msg + "; fix it, or leave its element out"
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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
