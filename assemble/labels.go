package assemble

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Filesystem types and labels: which types builder makes, DIB's label
// rules, and the mkfs_root merge of the image-wide root options that
// decides the root's type and label.

// maxLabelLength is DIB's label limit per filesystem type (swap's is
// mkswap's).
var maxLabelLength = map[string]int{"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "vfat": 11, "swap": 16}

func checkFSType(fs Filesystem) error {
	if _, ok := maxLabelLength[fs.Type]; !ok {
		return fmt.Errorf("mkfs %s: filesystem type %q is not supported: use ext4, ext3, ext2, xfs, vfat or swap", fs.Name, fs.Type)
	}
	return nil
}

// checkLabel applies DIB's label rules: unique and short enough for the
// filesystem (vfat labels are upper-cased first).
func checkLabel(fs Filesystem, used map[string]string) error {
	if other, dup := used[fs.Label]; dup && other != fs.Name {
		return fmt.Errorf("filesystem label %q is used twice (mkfs %s and %s): labels must be unique", fs.Label, other, fs.Name)
	}
	if max := maxLabelLength[fs.Type]; len(fs.Label) > max {
		return fmt.Errorf("label %q of mkfs %s is too long for %s: %d characters, at most %d", fs.Label, fs.Name, fs.Type, len(fs.Label), max)
	}
	if strings.ContainsFunc(fs.Label, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("label %q of mkfs %s: control characters are not allowed in labels", fs.Label, fs.Name)
	}
	return nil
}

// MergeRoot applies the image-wide root filesystem options to the mkfs
// entry named mkfs_root, for each key its YAML did not set, as DIB does at
// "dib-block-device init": fsType is FS_TYPE ("" = ext4), label is
// --root-label ("" = cloudimg-rootfs, or img-rootfs for xfs), opts is
// --mkfs-options. Other filesystems are left alone (DIB passes these
// options to mkfs_root only). Labels are checked again.
func (l *Layout) MergeRoot(fsType, label string, opts []string) error {
	labels := map[string]string{}
	for i := range l.Filesystems {
		fs := &l.Filesystems[i]
		mergeRoot(fs, fsType, label, opts)
		if err := checkFSType(*fs); err != nil {
			return fmt.Errorf("%s: %w (FS_TYPE)", l.Source, err)
		}
		if err := checkLabel(*fs, labels); err != nil {
			if fs.Name == "mkfs_root" && !fs.labelSet && label != "" {
				// The label came from the command line, not the layout.
				return fmt.Errorf("--root-label %q: %w", label, err)
			}
			return fmt.Errorf("%s: %w", l.Source, err)
		}
		labels[fs.Label] = fs.Name
	}
	return nil
}

// mergeRoot is DIB's _merge_rootfs_params for one filesystem: only
// mkfs_root, only the keys its YAML lacks.
func mergeRoot(fs *Filesystem, fsType, label string, opts []string) {
	if fs.Name != "mkfs_root" {
		defaultLabel(fs)
		return
	}
	if !fs.typeSet {
		fs.Type = cmp.Or(fsType, "ext4")
	}
	if !fs.optsSet {
		fs.Opts = slices.Clone(opts)
	}
	if !fs.labelSet {
		switch {
		case label != "":
			fs.Label = label
		case fs.Type == "xfs":
			fs.Label = "img-rootfs"
		default:
			fs.Label = DefaultRootLabel
		}
	}
	if fs.Type == "vfat" {
		fs.Label = strings.ToUpper(fs.Label)
	}
}

// defaultLabel is FilesystemNode's label rule: the node name unless the
// YAML gives one, upper-cased for vfat.
func defaultLabel(fs *Filesystem) {
	if !fs.labelSet {
		fs.Label = fs.Name
	}
	if fs.Type == "vfat" {
		fs.Label = strings.ToUpper(fs.Label)
	}
}
