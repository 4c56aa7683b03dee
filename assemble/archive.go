package assemble

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// TreeFormat is an output made from the root tree itself, not the disk.
type TreeFormat string

// Tree outputs.
const (
	Tar      TreeFormat = "tar"      // GNU tar, numeric owners, xattrs and ACLs
	TarGz    TreeFormat = "tgz"      // the same, gzip-compressed (pigz when installed)
	Squashfs TreeFormat = "squashfs" // mksquashfs, zstd level 6 (the default 15 is 10x slower for 3% less)
)

// WriteTree writes the tree at root (a read-only mount is fine) as dst in
// format f, beside dst under a temporary name renamed when complete. epoch,
// when set, is SOURCE_DATE_EPOCH for tools that stamp their output.
func WriteTree(ctx context.Context, root, dst string, f TreeFormat, epoch int64) (err error) {
	tmp := tempPath(dst)
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	switch f {
	case Tar, TarGz:
		err = writeTar(ctx, root, tmp, f == TarGz)
	case Squashfs:
		// mksquashfs takes its own time stamp from SOURCE_DATE_EPOCH.
		var env []string
		if epoch > 0 {
			env = []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch)}
		}
		_, err = runEnv(ctx, env, "mksquashfs", root, tmp, "-noappend", "-comp", "zstd", "-Xcompression-level", "6", "-no-progress", "-quiet")
	default:
		return fmt.Errorf("unknown tree output %q (known: tar, tgz, squashfs)", f)
	}
	if err != nil {
		// tar says a full disk is a short write ("Wrote only 4096 of
		// 10240 bytes"): name it for what it is.
		var st syscall.Statfs_t
		if !errors.Is(err, syscall.ENOSPC) && syscall.Statfs(filepath.Dir(dst), &st) == nil && int64(st.Bavail)*st.Bsize < 1<<20 {
			err = fmt.Errorf("%w: %w", syscall.ENOSPC, err)
		}
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return os.Rename(tmp, dst)
}

func writeTar(ctx context.Context, root, dst string, gz bool) error {
	// Sorted, without access and change times and without the process id
	// GNU tar puts in extended header names: the same tree gives the same
	// archive.
	args := []string{"--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--sort=name",
		"--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime", "-C", root, "-cpf", "-", "."}
	tarCmd := exec.CommandContext(ctx, "tar", args...)
	killGroupOnCancel(tarCmd)
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	var stderr tailWriter
	tarCmd.Stderr = &stderr
	if !gz {
		tarCmd.Stdout = out
		if err := tarCmd.Run(); err != nil {
			return fmt.Errorf("tar: %w: %s", err, stderr.String())
		}
		return out.Close()
	}
	zip := "gzip"
	if _, err := exec.LookPath("pigz"); err == nil {
		zip = "pigz"
	}
	// -n: no name or time stamp in the header.
	zipCmd := exec.CommandContext(ctx, zip, "-6", "-n", "-c")
	killGroupOnCancel(zipCmd)
	zipCmd.Stdout = out
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		return err
	}
	zipCmd.Stdin = pipe
	if err := tarCmd.Start(); err != nil {
		return err
	}
	if err := zipCmd.Start(); err != nil {
		_ = tarCmd.Process.Kill()
		_ = tarCmd.Wait()
		return err
	}
	terr := tarCmd.Wait()
	zerr := zipCmd.Wait()
	if terr != nil {
		return fmt.Errorf("tar: %w: %s", terr, stderr.String())
	}
	if zerr != nil {
		return fmt.Errorf("%s: %w", zip, zerr)
	}
	return out.Close()
}

// tailWriter keeps the end of a command's stderr for error messages.
type tailWriter struct{ b []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return string(t.b) }
