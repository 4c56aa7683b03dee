package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.podman.io/common/libimage"
	"go.podman.io/common/pkg/config"
	"go.podman.io/image/v5/types"
)

// PullOptions say how to reach a registry. Registry configuration
// (registries.conf, mirrors, insecure registries) and credentials come from
// the user's container configuration, as podman reads it:
// CONTAINERS_REGISTRIES_CONF or /etc/containers/registries.conf(.d),
// REGISTRY_AUTH_FILE or ${XDG_RUNTIME_DIR}/containers/auth.json.
type PullOptions struct {
	// Offline uses the image already in the store; no registry is asked.
	Offline bool
	// TLSVerify false skips TLS verification (podman's --tls-verify=false).
	TLSVerify *bool
	AuthFile  string
	Log       io.Writer
}

// PullBase pulls a container image as a base root filesystem and returns it
// keyed by its image ID (the digest of its configuration, so by content). A
// pull only transfers layers the store lacks; every layer is verified
// against its digest, so a bad transfer never becomes a base.
func (s *Store) PullBase(ctx context.Context, ref string, o PullOptions) (Image, error) {
	if !strings.Contains(strings.SplitN(ref, "/", 2)[0], ".") && !strings.Contains(ref, "://") && !strings.HasPrefix(ref, "localhost") &&
		!strings.Contains(strings.SplitN(ref, "/", 2)[0], ":") {
		return Image{}, fmt.Errorf("container image %q is not fully qualified: name the registry, e.g. docker.io/library/%s", ref, ref)
	}
	sc := *s.sc
	// The user's registry configuration and credentials, not builder's
	// private one: insecure registries, mirrors and logins work as in podman.
	sc.SystemRegistriesConfPath = ""
	sc.AuthFilePath = o.AuthFile
	if o.TLSVerify != nil {
		sc.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*o.TLSVerify)
	}
	rt, err := libimage.RuntimeFromStore(s.st, &libimage.RuntimeOptions{SystemContext: &sc})
	if err != nil {
		return Image{}, err
	}
	policy := config.PullPolicyNewer
	if o.Offline {
		policy = config.PullPolicyNever
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	imgs, err := rt.Pull(ctx, ref, policy, &libimage.PullOptions{CopyOptions: libimage.CopyOptions{
		SignaturePolicyPath: s.sc.SignaturePolicyPath,
		AuthFilePath:        o.AuthFile,
		Writer:              log,
	}})
	if err != nil {
		if o.Offline {
			return Image{}, fmt.Errorf("offline build: image %s is not in builder's store yet (build once online): %w", ref, err)
		}
		return Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if len(imgs) == 0 {
		return Image{}, errors.New("pull " + ref + ": no image")
	}
	id := imgs[0].ID()
	return Image{Name: id, Key: "image:" + id}, nil
}
