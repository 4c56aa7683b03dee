package imagebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"builder/rootfs"
)

// errSecretFound stops the walk at the first secret found.
var errSecretFound = errors.New("secret found")

// checkNoSecrets fails the build when the value of a secret-looking
// variable (a token, a password given to hooks) was written into the
// image. The verdict is remembered per image and set of secrets, so an
// unchanged rebuild does not read the tree again.
func checkNoSecrets(ctx context.Context, store *rootfs.Store, img rootfs.Image, secrets map[string]string, stateDir string) error {
	if len(secrets) == 0 {
		return nil
	}
	names := sortedKeys(secrets)
	h := sha256.New()
	fmt.Fprintf(h, "secret-scan-v1\x00%s\x00", img.Key)
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%s\x00", n, secrets[n])
	}
	stamp := filepath.Join(stateDir, "secret-scan", hex.EncodeToString(h.Sum(nil)))
	if _, err := os.Stat(stamp); err == nil {
		return nil
	}
	root, release, err := store.MountImage(img.Name)
	if err != nil {
		return err
	}
	defer release()
	var foundName, foundPath string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable entries cannot be checked; not a reason to fail
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, n := range names {
			if bytes.Contains(data, []byte(secrets[n])) {
				foundName, foundPath = n, "/"+mustRel(root, p)
				return errSecretFound
			}
		}
		return nil
	})
	if errors.Is(err, errSecretFound) {
		return fmt.Errorf("the value of %s (a credential, by its name) was written into the image, in %s: remove it in a cleanup.d hook, or rename the variable if it is not a secret", foundName, foundPath)
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err == nil {
		_ = os.WriteFile(stamp, nil, 0o644)
	}
	return nil
}

func mustRel(root, p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}
