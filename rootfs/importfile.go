package rootfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
)

// TarImport describes an image of one layer made from a tarball.
type TarImport struct {
	Name   string            // the image's name in the store
	Arch   string            // its architecture ("" is amd64)
	Epoch  int64             // its configuration's creation time (reproducible: not now)
	Labels map[string]string // in its configuration
}

// ImportTarFile makes the image im.Name of the tarball at path, whose
// uncompressed digest the caller computed as it was written. The layer is
// applied straight from the file, under the ID containers/image gives a
// base layer of that digest, so the commits of later steps find it
// instead of copying it. A tarball import through libimage stages a whole
// second copy of the blob in the store first: seconds for a base.
//
// On error the layer is removed; a process killed meanwhile leaves a
// layer the store marks incomplete and removes when next opened.
func (s *Store) ImportTarFile(path string, diffID digest.Digest, im TarImport) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	id := diffID.Encoded()
	// The store digests what it applies: the ID is checked, not taken on
	// trust. A layer with the ID already there (an earlier base with the
	// same tarball, or another build applying it now) is that tarball's.
	fresh := true
	layer, _, err := s.st.PutLayer(id, "", nil, "", false, nil, f)
	if errors.Is(err, storage.ErrDuplicateID) {
		fresh = false
		layer, err = s.st.Layer(id)
	}
	if err != nil {
		return "", fmt.Errorf("import into the store as %s: %w", im.Name, err)
	}
	if fresh && layer.UncompressedDigest != diffID {
		_ = s.st.DeleteLayer(layer.ID)
		return "", fmt.Errorf("import into the store as %s: the tarball's digest is %s, not %s: it changed after it was written", im.Name, layer.UncompressedDigest, diffID)
	}
	imgID, err := s.imageOfLayer(layer, im)
	if err != nil {
		if fresh {
			_ = s.st.DeleteLayer(layer.ID)
		}
		return "", fmt.Errorf("import into the store as %s: %w", im.Name, err)
	}
	return imgID, nil
}

// imageOfLayer records an image whose one layer is layer, with the
// configuration and manifest containers/image would have written for it:
// builds, pushes to a registry cache and `podman` read it like any other.
func (s *Store) imageOfLayer(layer *storage.Layer, im TarImport) (string, error) {
	if layer.UncompressedDigest == "" {
		return "", errors.New("the store did not digest the layer")
	}
	arch := im.Arch
	if arch == "" {
		arch = "amd64"
	}
	created := time.Unix(im.Epoch, 0).UTC()
	config := imgspecv1.Image{
		Created:  &created,
		Platform: imgspecv1.Platform{Architecture: arch, OS: "linux"},
		Config:   imgspecv1.ImageConfig{Labels: im.Labels},
		RootFS:   imgspecv1.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.UncompressedDigest}},
		History:  []imgspecv1.History{{Created: &created, CreatedBy: "builder: bootstrap streamed into the store"}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return "", err
	}
	configDigest := digest.FromBytes(configJSON)
	manifest := imgspecv1.Manifest{
		Versioned: imgspecs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config:    imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: configDigest, Size: int64(len(configJSON))},
		Layers:    []imgspecv1.Descriptor{{MediaType: imgspecv1.MediaTypeImageLayer, Digest: layer.UncompressedDigest, Size: layer.UncompressedSize}},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return "", err
	}
	manifestDigest := digest.FromBytes(manifestJSON)
	// The keys are containers/image's: the configuration under its digest,
	// the manifest under "manifest-DIGEST" and under "manifest".
	bigData := []storage.ImageBigDataOption{
		{Key: configDigest.String(), Data: configJSON, Digest: configDigest},
		{Key: storage.ImageDigestManifestBigDataNamePrefix + "-" + manifestDigest.String(), Data: manifestJSON, Digest: manifestDigest},
		{Key: storage.ImageDigestBigDataKey, Data: manifestJSON, Digest: manifestDigest},
	}
	// As containers/image does, the image's ID is its configuration's
	// digest: the same stream gives the same image.
	id := configDigest.Encoded()
	img, err := s.st.CreateImage(id, []string{im.Name}, layer.ID, "", &storage.ImageOptions{
		CreationDate: time.Now(), // when the store got it: the cache's age
		Digest:       manifestDigest,
		BigData:      bigData,
	})
	if errors.Is(err, storage.ErrDuplicateID) {
		// Made before under another key: that image, with this name too.
		if err := s.st.AddNames(id, []string{im.Name}); err != nil {
			return "", err
		}
		return id, nil
	}
	if err != nil {
		return "", err
	}
	return img.ID, nil
}
