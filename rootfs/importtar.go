package rootfs

import (
	"context"
	"fmt"

	"go.podman.io/common/libimage"
)

// ImportTarball imports a root filesystem tarball as image name (one layer)
// through libimage. The image ID depends only on the tarball, so
// re-importing is harmless. A bootstrap's own tarball, digested as it was
// written, takes the cheaper ImportTarFile.
func (s *Store) ImportTarball(ctx context.Context, tarPath, name, arch string) (string, error) {
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
		OS:          "linux",
		Arch:        arch,
	})
	if err != nil {
		return "", fmt.Errorf("import %s as %s: %w", tarPath, name, err)
	}
	return id, nil
}
