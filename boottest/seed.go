package boottest

import (
	"builder/internal/hosttools"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// seedConfig is what goes into the NoCloud seed.
type seedConfig struct {
	User         string
	PasswordHash string
	SSHKeys      []string
	InstanceID   string
	Hostname     string
}

// yamlString quotes s for YAML: a JSON string is a valid YAML
// double-quoted scalar, and it escapes everything that needs it.
func yamlString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// userData renders the #cloud-config: one user with the password hash and
// keys, passwordless sudo, and the probe run from runcmd (final stage, after
// growpart/resizefs). The script is passed the user name as $1.
func userData(c seedConfig) string {
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	b.WriteString("# Written by builder boot-test; the instance is thrown away after the test.\n")
	b.WriteString("users:\n")
	fmt.Fprintf(&b, "  - name: %s\n", yamlString(c.User))
	b.WriteString("    gecos: \"builder boot-test\"\n")
	b.WriteString("    shell: /bin/bash\n")
	b.WriteString("    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n")
	b.WriteString("    lock_passwd: false\n")
	fmt.Fprintf(&b, "    hashed_passwd: %s\n", yamlString(c.PasswordHash))
	if len(c.SSHKeys) > 0 {
		b.WriteString("    ssh_authorized_keys:\n")
		for _, k := range c.SSHKeys {
			fmt.Fprintf(&b, "      - %s\n", yamlString(k))
		}
	}
	b.WriteString("write_files:\n")
	b.WriteString("  - path: /run/builder-boot-probe\n")
	b.WriteString("    owner: root:root\n")
	b.WriteString("    permissions: \"0755\"\n")
	b.WriteString("    content: |\n")
	for _, l := range strings.SplitAfter(probeScript, "\n") {
		if l == "" {
			continue
		}
		b.WriteString("      " + l)
	}
	b.WriteString("runcmd:\n")
	fmt.Fprintf(&b, "  - [/bin/sh, /run/builder-boot-probe, %s]\n", yamlString(c.User))
	return b.String()
}

func metaData(c seedConfig) string {
	return fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", c.InstanceID, c.Hostname)
}

// newInstanceID is unique per run so cloud-init always treats the boot as a
// first boot, even for an image that was booted before.
func newInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go >= 1.24)
	return "builder-boot-test-" + hex.EncodeToString(b[:])
}

// newPassword is a random password for the test user, 26 characters of
// base32 (130 bits).
func newPassword() string { return rand.Text() }

// hashPassword returns a SHA-512 crypt hash of password. It prefers
// `openssl passwd -6` (the password goes in on stdin, never on a command
// line that ps could show) and falls back to the Go implementation.
func hashPassword(ctx context.Context, password string) (hash, how string, err error) {
	if openssl, lerr := exec.LookPath("openssl"); lerr == nil {
		cmd := exec.CommandContext(ctx, openssl, "passwd", "-6", "-stdin")
		cmd.Stdin = strings.NewReader(password + "\n")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return "", "", fmt.Errorf("openssl passwd -6: %w: %s", err, strings.TrimSpace(errb.String()))
		}
		h := strings.TrimSpace(out.String())
		if !strings.HasPrefix(h, "$6$") {
			return "", "", fmt.Errorf("openssl passwd -6 printed %q, not a $6$ hash", h)
		}
		return h, "openssl", nil
	}
	// rand.Text is base32: every character is in the crypt alphabet.
	return sha512Crypt(password, rand.Text()[:16]), "go", nil
}

// lookTool finds a program as every part of builder does (hosttools);
// pkg is named in the error when hosttools does not know the tool.
func lookTool(name, pkg string) (string, error) {
	p, err := hosttools.Look(name)
	if err == nil {
		return p, nil
	}
	if hosttools.Packages[name] == "" {
		return "", &UsageError{Msg: fmt.Sprintf("%s not found: install %s", name, pkg), Err: err}
	}
	return "", &UsageError{Msg: err.Error(), Err: err}
}

// makeSeed writes a NoCloud seed to dir/seed.img: a 2 MiB FAT filesystem
// labelled CIDATA holding user-data and meta-data. mkfs.vfat and mtools
// work on a plain file, so this needs no root, no loop device and no
// genisoimage.
func makeSeed(ctx context.Context, dir string, c seedConfig) (string, error) {
	mkfs, err := lookTool("mkfs.vfat", "dosfstools")
	if err != nil {
		return "", err
	}
	mcopy, err := lookTool("mcopy", "mtools")
	if err != nil {
		return "", err
	}
	src := filepath.Join(dir, "seed")
	if err := os.MkdirAll(src, 0o700); err != nil {
		return "", fmt.Errorf("creating seed directory: %w", err)
	}
	ud := filepath.Join(src, "user-data")
	md := filepath.Join(src, "meta-data")
	if err := os.WriteFile(ud, []byte(userData(c)), 0o600); err != nil {
		return "", fmt.Errorf("writing user-data: %w", err)
	}
	if err := os.WriteFile(md, []byte(metaData(c)), 0o600); err != nil {
		return "", fmt.Errorf("writing meta-data: %w", err)
	}
	img := filepath.Join(dir, "seed.img")
	if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("removing old seed: %w", err)
	}
	if err := runTool(ctx, nil, mkfs, "-n", "CIDATA", "-C", img, "2048"); err != nil {
		return "", fmt.Errorf("making the seed filesystem: %w", err)
	}
	// MTOOLS_SKIP_CHECK: mtools otherwise refuses images whose geometry it
	// finds odd; the image is ours and only cloud-init reads it.
	env := []string{"MTOOLS_SKIP_CHECK=1"}
	if err := runTool(ctx, env, mcopy, "-o", "-i", img, ud, md, "::"); err != nil {
		return "", fmt.Errorf("copying user-data and meta-data into the seed: %w", err)
	}
	return img, nil
}

// runTool runs a helper program and puts its stderr into the error.
func runTool(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
