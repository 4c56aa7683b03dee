// Package diffcmd is `builder diff OLD NEW`: what changed between two
// images, read from their bills of materials (NAME.spdx.json and the file
// inventory NAME.d/files.json that builds write beside their outputs).
//
// Exit status, as diff's: 0 when nothing differs, 1 when something does,
// 2 on bad input.
package diffcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"builder/cmd/boottestcmd"
	"builder/cmd/imagecmd"
	"builder/sbom"
)

// Options are the command's inputs; tests fill them and call Run.
type Options struct {
	Out, Err io.Writer
	Old, New string // images (NAME.qcow2, NAME.raw...) or SBOMs (NAME.spdx.json)
	Format   string // text (default) or json
}

// NewCmdDiff returns `builder diff`.
func NewCmdDiff() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "What changed between two images: packages added, removed, upgraded, downgraded; files added, removed, changed",
		Long: `Compare two images by their bills of materials: the SBOM builder writes beside
each output (NAME.spdx.json, SPDX 2.3) and its file inventory (NAME.d/files.json).
OLD and NEW are images (NAME.qcow2, NAME.raw, NAME.tar...: their SBOM is found
beside them) or SBOM files. Packages are matched by package manager, name and
architecture and ordered by the package manager's own version rules; files by
path, compared by content (sha256, link target), type, mode and owner.

Exit status, as diff's: 0 when nothing differs, 1 when something does, 2 on bad input.`,
		Example: `  builder diff debian-2026.11.26-10.00.00.qcow2 debian.qcow2
  builder diff old.spdx.json new.spdx.json
  builder diff --format json debian-prev.qcow2 debian.qcow2 | jq .counts`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			o.Out, o.Err = c.OutOrStdout(), c.ErrOrStderr()
			o.Old, o.New = args[0], args[1]
			equal, err := Run(c.Context(), o)
			if err != nil {
				return err
			}
			if !equal {
				// Printed already: exit 1 as diff does (main prints
				// nothing more for an ExitError).
				return &boottestcmd.ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Format, "format", "text", "output format: text or json")
	return cmd
}

// Run compares the two and prints the result; equal is true when nothing
// differs. Bad input is an *imagecmd.UsageError (exit 2).
func Run(ctx context.Context, o *Options) (equal bool, err error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Err == nil {
		o.Err = os.Stderr
	}
	if o.Format == "" {
		o.Format = "text"
	}
	if o.Format != "text" && o.Format != "json" {
		return false, usage("--format %q: use text or json", o.Format)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	oldPath, err := sbomPath(o.Old)
	if err != nil {
		return false, err
	}
	newPath, err := sbomPath(o.New)
	if err != nil {
		return false, err
	}
	oldDoc, err := read(oldPath, o.Old)
	if err != nil {
		return false, err
	}
	newDoc, err := read(newPath, o.New)
	if err != nil {
		return false, err
	}
	d := sbom.Compare(oldDoc, newDoc)
	if o.Format == "json" {
		return d.Equal(), printJSON(o, d)
	}
	for _, n := range d.Notes {
		fmt.Fprintf(o.Err, "note: %s\n", n)
	}
	printText(o.Out, d, oldDoc, newDoc)
	return d.Equal(), nil
}

func usage(format string, args ...any) error {
	return &imagecmd.UsageError{Err: fmt.Errorf(format, args...)}
}

// imageExts are the outputs a build writes an SBOM beside.
var imageExts = []string{".qcow2", ".raw", ".vhd", ".vhdx", ".vmdk", ".vdi", ".tar", ".tgz", ".squashfs", ".kernel", ".initramfs"}

// sbomPath finds the SBOM an argument names: the file itself when it is
// one, else NAME.spdx.json beside the image NAME.EXT (or beside NAME).
func sbomPath(arg string) (string, error) {
	if strings.HasSuffix(arg, ".json") {
		if _, err := os.Stat(arg); err != nil {
			return "", usage("%s: %v; give an image (NAME.qcow2...) or its SBOM (NAME.spdx.json)", arg, errors.Unwrap(err))
		}
		return arg, nil
	}
	name := arg
	for _, ext := range imageExts {
		if strings.HasSuffix(arg, ext) {
			name = strings.TrimSuffix(arg, ext)
			break
		}
	}
	p := name + ".spdx.json"
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	_, err := os.Stat(arg)
	switch {
	case err != nil && name == arg:
		return "", usage("%s: no such image or SBOM (looked for %s too); give an image (NAME.qcow2...) or its SBOM (NAME.spdx.json)", arg, filepath.Base(p))
	case err != nil:
		return "", usage("%s: no such file; give an image (NAME.qcow2...) or its SBOM (NAME.spdx.json)", arg)
	}
	return "", usage("%s: no SBOM beside it (%s); build it again with a builder that writes one (--sbom is on by default), or give two SBOM files", arg, filepath.Base(p))
}

func read(path, arg string) (*sbom.Document, error) {
	d, err := sbom.Read(path)
	if err != nil {
		return nil, usage("%s: %v; give the NAME.spdx.json a build wrote", arg, err)
	}
	return d, nil
}

func pkgName(p sbom.Package) string {
	if p.Arch == "" {
		return p.Name
	}
	return p.Name + ":" + p.Arch
}

func printText(w io.Writer, d sbom.Diff, oldDoc, newDoc *sbom.Document) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	np, nf := len(oldDoc.Packages()), len(newDoc.Packages())
	if d.Equal() {
		files := "files not compared"
		if d.FilesCompared {
			files = fmt.Sprintf("%d files", len(newDoc.Files))
		}
		fmt.Fprintf(w, "no differences: %d packages, %s\n", nf, files)
		return
	}
	fmt.Fprintf(tw, "packages: %d upgraded, %d downgraded, %d added, %d removed (%d -> %d)\n",
		len(d.Upgraded), len(d.Downgraded), len(d.Added), len(d.Removed), np, nf)
	for _, c := range d.Upgraded {
		fmt.Fprintf(tw, "  upgraded    %s\t%s -> %s\n", pkgName(sbom.Package{Name: c.Name, Arch: c.Arch}), c.Old, c.New)
	}
	for _, c := range d.Downgraded {
		fmt.Fprintf(tw, "  downgraded  %s\t%s -> %s\n", pkgName(sbom.Package{Name: c.Name, Arch: c.Arch}), c.Old, c.New)
	}
	for _, p := range d.Added {
		fmt.Fprintf(tw, "  added       %s\t%s\n", pkgName(p), p.Version)
	}
	for _, p := range d.Removed {
		fmt.Fprintf(tw, "  removed     %s\t%s\n", pkgName(p), p.Version)
	}
	if d.FilesCompared {
		fmt.Fprintf(tw, "files: %d changed, %d added, %d removed (%d -> %d)\n",
			len(d.FilesChanged), len(d.FilesAdded), len(d.FilesRemoved), len(oldDoc.Files), len(newDoc.Files))
		for _, c := range d.FilesChanged {
			fmt.Fprintf(tw, "  changed     %s\t%s\n", c.Path, changeText(c))
		}
		for _, f := range d.FilesAdded {
			fmt.Fprintf(tw, "  added       %s\t%s\n", f.Path, f.Type)
		}
		for _, f := range d.FilesRemoved {
			fmt.Fprintf(tw, "  removed     %s\t%s\n", f.Path, f.Type)
		}
	} else {
		fmt.Fprintf(tw, "files: not compared\n")
	}
	tw.Flush()
}

// changeText says how a file changed: "content", "target a -> b", "mode
// 0644 -> 0600", "owner 0:0 -> 0:42".
func changeText(c sbom.FileChange) string {
	var parts []string
	for _, w := range c.What {
		switch {
		case w == "content" && c.Old.Type == "symlink" && c.New.Type == "symlink":
			parts = append(parts, fmt.Sprintf("target %s -> %s", c.Old.Target, c.New.Target))
		case w == "content" && c.Old.Device != c.New.Device:
			parts = append(parts, fmt.Sprintf("device %s -> %s", c.Old.Device, c.New.Device))
		case w == "content" && c.Old.Type == "file" && c.New.Type == "file":
			parts = append(parts, fmt.Sprintf("content (%d -> %d bytes)", c.Old.Size, c.New.Size))
		case w == "type":
			parts = append(parts, fmt.Sprintf("type %s -> %s", c.Old.Type, c.New.Type))
		case w == "mode":
			parts = append(parts, fmt.Sprintf("mode %s -> %s", c.Old.Mode, c.New.Mode))
		case w == "owner":
			parts = append(parts, fmt.Sprintf("owner %d:%d -> %d:%d", c.Old.UID, c.Old.GID, c.New.UID, c.New.GID))
		default:
			parts = append(parts, w)
		}
	}
	return strings.Join(parts, ", ")
}

// Report is the JSON output.
type Report struct {
	Old    string `json:"old"`
	New    string `json:"new"`
	Equal  bool   `json:"equal"`
	Counts struct {
		PackagesUpgraded   int `json:"packagesUpgraded"`
		PackagesDowngraded int `json:"packagesDowngraded"`
		PackagesAdded      int `json:"packagesAdded"`
		PackagesRemoved    int `json:"packagesRemoved"`
		FilesChanged       int `json:"filesChanged"`
		FilesAdded         int `json:"filesAdded"`
		FilesRemoved       int `json:"filesRemoved"`
	} `json:"counts"`
	Diff sbom.Diff `json:"diff"`
}

func printJSON(o *Options, d sbom.Diff) error {
	r := Report{Old: o.Old, New: o.New, Equal: d.Equal(), Diff: d}
	r.Counts.PackagesUpgraded, r.Counts.PackagesDowngraded = len(d.Upgraded), len(d.Downgraded)
	r.Counts.PackagesAdded, r.Counts.PackagesRemoved = len(d.Added), len(d.Removed)
	r.Counts.FilesChanged, r.Counts.FilesAdded, r.Counts.FilesRemoved = len(d.FilesChanged), len(d.FilesAdded), len(d.FilesRemoved)
	enc := json.NewEncoder(o.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
