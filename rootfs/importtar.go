package rootfs

import (
	"context"
	"fmt"
	"sort"

	"go.podman.io/common/libimage"
)

// ImportTarball imports a root filesystem tarball as image name (one layer).
// The image ID depends only on the tarball, so re-importing is harmless.
func (s *Store) ImportTarball(ctx context.Context, tarPath, name, arch string) (string, error) {
	return s.ImportTarballWithLabels(ctx, tarPath, name, arch, nil)
}

// ImportTarballWithLabels imports a tarball as ImportTarball does, with
// labels in the image's configuration.
func (s *Store) ImportTarballWithLabels(ctx context.Context, tarPath, name, arch string, labels map[string]string) (string, error) {
	rt, err := libimage.RuntimeFromStore(s.st, &libimage.RuntimeOptions{SystemContext: s.sc})
	if err != nil {
		return "", fmt.Errorf("import %s: %w", tarPath, err)
	}
	if arch == "" {
		arch = "amd64"
	}
	id, err := rt.Import(ctx, tarPath, &libimage.ImportOptions{
		CopyOptions: libimage.CopyOptions{SignaturePolicyPath: s.sc.SignaturePolicyPath},
		Tag:         name,
		Changes:     labelChanges(labels),
		OS:          "linux",
		Arch:        arch,
	})
	if err != nil {
		return "", fmt.Errorf("import %s as %s: %w", tarPath, name, err)
	}
	return id, nil
}

func labelChanges(labels map[string]string) []string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("LABEL %s=%q", k, labels[k]))
	}
	return out
}
