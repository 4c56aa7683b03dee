package rootfs

import (
	"context"
	"fmt"
	"io"

	"go.podman.io/common/libimage"
	stypes "go.podman.io/storage/types"
)

// LocalStorage is the user's default container storage (what podman and
// buildah use), as "[driver@graphroot+runroot]".
func LocalStorage() (string, error) {
	o, err := stypes.DefaultStoreOptions()
	if err != nil {
		return "", fmt.Errorf("default container storage: %w", err)
	}
	driver := o.GraphDriverName
	if driver == "" {
		driver = "overlay"
	}
	return fmt.Sprintf("[%s@%s+%s]", driver, o.GraphRoot, o.RunRoot), nil
}

// runtime is libimage over builder's store.
func (s *Store) runtime() (*libimage.Runtime, error) {
	return libimage.RuntimeFromStore(s.st, &libimage.RuntimeOptions{SystemContext: s.sc})
}

// ExportImage copies an image of builder's store into container storage
// (storage as from LocalStorage) under target, e.g. "localhost/web:latest":
// DIB's docker output, without a docker daemon.
func (s *Store) ExportImage(ctx context.Context, name, storage, target string, log io.Writer) error {
	rt, err := s.runtime()
	if err != nil {
		return err
	}
	if log == nil {
		log = io.Discard
	}
	_, err = rt.Push(ctx, name, "containers-storage:"+storage+target, &libimage.PushOptions{
		CopyOptions: libimage.CopyOptions{SignaturePolicyPath: s.sc.SignaturePolicyPath, Writer: log},
	})
	if err != nil {
		return fmt.Errorf("export %s to %s: %w", name, target, err)
	}
	return nil
}
