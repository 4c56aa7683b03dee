package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	stypes "go.podman.io/storage/types"
)

// StoreImage is one image in builder's store, as cache management sees
// it: its names, its own layer and when it was made.
type StoreImage struct {
	ID      string
	Names   []string
	Layer   string // its top layer
	Created time.Time
	Outputs bool // a step that wrote outputs (kept in OutputsDir)
	InUse   bool // a working container uses it
}

// LayerInfo is one layer: its parent and its own size.
type LayerInfo struct {
	ID, Parent string
	Bytes      int64
	Digest     string // sha256 of its uncompressed diff, as recorded
}

// Images lists the images in the store.
func (s *Store) Images() ([]StoreImage, error) {
	imgs, err := s.st.Images()
	if err != nil {
		return nil, fmt.Errorf("list the store's images: %w", err)
	}
	conts, err := s.st.Containers()
	if err != nil {
		return nil, fmt.Errorf("list the store's containers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range conts {
		used[c.ImageID] = true
	}
	out := make([]StoreImage, 0, len(imgs))
	for _, i := range imgs {
		si := StoreImage{ID: i.ID, Names: i.Names, Layer: i.TopLayer, Created: i.Created, InUse: used[i.ID]}
		for _, n := range i.BigDataNames {
			if n == outputsBigData {
				si.Outputs = true
			}
		}
		out = append(out, si)
	}
	return out, nil
}

// Layers lists the store's layers by ID.
func (s *Store) Layers() (map[string]LayerInfo, error) {
	ls, err := s.st.Layers()
	if err != nil {
		return nil, fmt.Errorf("list the store's layers: %w", err)
	}
	out := make(map[string]LayerInfo, len(ls))
	for _, l := range ls {
		out[l.ID] = LayerInfo{ID: l.ID, Parent: l.Parent, Bytes: l.UncompressedSize, Digest: l.UncompressedDigest.String()}
	}
	return out, nil
}

// DeleteImage removes an image and the layers nothing else uses; a step's
// kept outputs go with it.
func (s *Store) DeleteImage(id string) error {
	img, err := s.st.Image(id)
	if err != nil {
		if errors.Is(err, stypes.ErrImageUnknown) {
			return nil
		}
		return err
	}
	if _, err := s.st.DeleteImage(img.ID, true); err != nil {
		return fmt.Errorf("delete image %s: %w", imageLabel(img.Names, img.ID), err)
	}
	return nil
}

func imageLabel(names []string, id string) string {
	if len(names) > 0 {
		return names[0]
	}
	return id[:12]
}

// StepKeyOf returns the step key prefix an image's name carries
// ("localhost/builder/step:<key>"), or "".
func StepKeyOf(names []string) string {
	for _, n := range names {
		if k, ok := strings.CutPrefix(n, "localhost/builder/step:"); ok {
			return k
		}
	}
	return ""
}

// VerifyLayer re-reads a layer's content and checks it against the digest
// recorded when it was written.
func (s *Store) VerifyLayer(ctx context.Context, id string) error {
	l, err := s.st.Layer(id)
	if err != nil {
		return err
	}
	if l.UncompressedDigest == "" {
		return nil // nothing recorded to check against
	}
	unc := archive.Uncompressed
	rc, err := s.st.Diff("", id, &storage.DiffOptions{Compression: &unc})
	if err != nil {
		return fmt.Errorf("read layer %s: %w", id[:12], err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, rc}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The store checks each file against the layer's recorded
		// checksums as it reads.
		return fmt.Errorf("layer %s is damaged: %w", id[:12], err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.UncompressedDigest.String() {
		return fmt.Errorf("layer %s is damaged: its content hashes to %s, %s was recorded", id[:12], got[:19], l.UncompressedDigest.String()[:19])
	}
	return nil
}

// ctxReader stops a long read when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
