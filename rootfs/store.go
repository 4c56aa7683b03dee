// Package rootfs turns a plan of steps into a root filesystem: a base image
// in a project-owned container store, then one buildah container per step,
// each committed under the step's content key so unchanged steps are reused.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	nettypes "go.podman.io/common/libnetwork/types"
	is "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	stypes "go.podman.io/storage/types"
)

// StoreOptions says where the container store lives.
type StoreOptions struct {
	// Dir holds the store, one graph root per driver (a store opened with
	// another driver would silently hide the first driver's images).
	Dir string
	// RunRoot holds mount and lock state that must not survive a reboot.
	RunRoot string
	// Driver is "overlay", "fuse-overlayfs", "vfs" or "" to pick the
	// first that works.
	Driver string
	// RunID, for a build, names its own directory for the blobs commits
	// stage, so that a build killed while committing has it removed by
	// the next one (RemoveRun).
	RunID string
	// Arch is the build's architecture (Debian's and Go's names agree on
	// amd64 and arm64): images of it are expected, and pulled from
	// multi-architecture bases. "" is the host's.
	Arch string
}

// Store is builder's own container store with zero host configuration:
// no storage.conf, registries.conf, policy.json or containers.conf is read.
type Store struct {
	st     storage.Store
	sc     *types.SystemContext
	driver string
	dir    string
	runTmp string // this run's own staging directory, removed at Close
}

// OpenStore opens (creating if needed) the store under opts.Dir.
func OpenStore(ctx context.Context, opts StoreOptions) (*Store, error) {
	if opts.Dir == "" || opts.RunRoot == "" {
		return nil, errors.New("open store: directory and run root are required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	policy := filepath.Join(opts.Dir, "policy.json")
	// Images here are either bootstrapped locally or pulled by explicit
	// reference; signature policy is not what protects them.
	if err := writeIfDifferent(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`+"\n")); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	registries := filepath.Join(opts.Dir, "registries.conf")
	if err := writeIfDifferent(registries, []byte("# builder: no unqualified-search registries; names are fully qualified\n")); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	tmp, runTmp := filepath.Join(opts.Dir, "tmp"), ""
	if opts.RunID != "" {
		tmp = filepath.Join(tmp, "builder."+opts.RunID+".commit")
		runTmp = tmp
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	var errs []error
	for _, d := range driverChoices(opts.Driver) {
		st, err := storage.GetStore(stypes.StoreOptions{
			GraphRoot:          filepath.Join(opts.Dir, "storage-"+d.name),
			RunRoot:            filepath.Join(opts.RunRoot, "storage-"+d.name),
			GraphDriverName:    d.name,
			GraphDriverOptions: d.options,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.label, err))
			continue
		}
		return &Store{
			st:     st,
			driver: d.label,
			dir:    opts.Dir,
			runTmp: runTmp,
			sc: &types.SystemContext{
				SignaturePolicyPath:      policy,
				SystemRegistriesConfPath: registries,
				BigFilesTemporaryDir:     tmp,
				ArchitectureChoice:       opts.Arch,
			},
		}, nil
	}
	return nil, fmt.Errorf("open container store in %s: no storage driver works here: %w", opts.Dir, errors.Join(errs...))
}

// DriverOrder names the storage drivers a store opened here would try, in
// order (the first that works is used).
func DriverOrder() []string {
	var names []string
	for _, d := range driverChoices("") {
		names = append(names, d.label)
	}
	return names
}

type driverChoice struct {
	name, label string
	options     []string
}

// driverChoices is the order drivers are tried in: the kernel's overlay
// (also in a user namespace since Linux 5.13), fuse-overlayfs where the
// kernel refuses (older kernels, overlay on overlay inside a container) and
// /dev/fuse exists, then vfs, which works everywhere but copies every layer.
// Both overlay variants keep layers in the same format, so they share one
// graph root.
func driverChoices(want string) []driverChoice {
	native := driverChoice{name: "overlay", label: "overlay"}
	fuse := driverChoice{name: "overlay", label: "overlay (fuse-overlayfs)"}
	vfs := driverChoice{name: "vfs", label: "vfs"}
	fuseOK := false
	if p, err := exec.LookPath("fuse-overlayfs"); err == nil {
		if _, err := os.Stat("/dev/fuse"); err == nil {
			fuse.options = []string{"overlay.mount_program=" + p}
			fuseOK = true
		}
	}
	switch want {
	case "overlay":
		return []driverChoice{native}
	case "fuse-overlayfs":
		return []driverChoice{fuse}
	case "vfs":
		return []driverChoice{vfs}
	}
	if fuseOK {
		return []driverChoice{native, fuse, vfs}
	}
	return []driverChoice{native, vfs}
}

// Driver is the storage driver in use.
func (s *Store) Driver() string { return s.driver }

// Close releases the store. Mounts made through it are released first.
func (s *Store) Close() error {
	if s.runTmp != "" {
		os.RemoveAll(s.runTmp)
	}
	_, err := s.st.Shutdown(false)
	// Other builds may share the store and have layers mounted; ours were
	// released before Close.
	if errors.Is(err, stypes.ErrLayerUsedByContainer) {
		return nil
	}
	return err
}

// HasImage reports whether an image with this name exists.
func (s *Store) HasImage(name string) bool {
	_, err := s.st.Image(name)
	return err == nil
}

// ImageID returns the ID of the named image.
func (s *Store) ImageID(name string) (string, error) {
	img, err := s.st.Image(name)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// MountImage mounts an image read-only and returns the path and a release
// function. The mount is visible to this process (and, as real root, to the
// host); rootless, only inside builder's user namespace.
func (s *Store) MountImage(name string) (string, func() error, error) {
	img, err := s.st.Image(name)
	if err != nil {
		return "", nil, fmt.Errorf("mount image %s: %w", name, err)
	}
	p, err := s.st.MountImage(img.ID, []string{"ro"}, "")
	if err != nil {
		return "", nil, fmt.Errorf("mount image %s: %w", name, err)
	}
	return p, func() error {
		_, err := s.st.UnmountImage(img.ID, true)
		return err
	}, nil
}

// RemoveImage deletes an image and its layers that nothing else uses.
func (s *Store) RemoveImage(name string) error {
	img, err := s.st.Image(name)
	if err != nil {
		if errors.Is(err, stypes.ErrImageUnknown) {
			return nil
		}
		return err
	}
	_, err = s.st.DeleteImage(img.ID, true)
	return err
}

// RemoveContainersWithPrefix deletes working containers whose name starts
// with prefix; a later run uses it to clear what a killed run left.
func (s *Store) RemoveContainersWithPrefix(prefix string) (int, error) {
	cs, err := s.st.Containers()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, c := range cs {
		match := false
		for _, name := range c.Names {
			if strings.HasPrefix(name, prefix) {
				match = true
			}
		}
		if !match {
			continue
		}
		_, _ = s.st.Unmount(c.ID, true)
		if err := s.st.DeleteContainer(c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// RemoveRun removes what run runID, killed outright, left in the store:
// its working containers (and their mounts), the blobs its commits were
// staging, and the step outputs it was copying in.
func (s *Store) RemoveRun(runID string) error {
	_, err := s.RemoveContainersWithPrefix("builder-" + runID + "-")
	left, _ := filepath.Glob(filepath.Join(s.dir, "tmp", "builder."+runID+".*"))
	outs, _ := filepath.Glob(filepath.Join(s.dir, "step-outputs", "*"+runTemp(runID)+"*"))
	for _, p := range append(left, outs...) {
		if rerr := os.RemoveAll(p); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// ContainerNames lists working containers (for leak checks in tests).
func (s *Store) ContainerNames() ([]string, error) {
	cs, err := s.st.Containers()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Names...)
	}
	return names, nil
}

func (s *Store) ref(name string) (types.ImageReference, error) {
	return is.Transport.ParseStoreReference(s.st, name)
}

func writeIfDifferent(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// hardLimits returns "name=H:H" ulimits at the current hard limits: buildah
// otherwise raises them to 1048576, which fails without CAP_SYS_RESOURCE.
func hardLimits() []string {
	var out []string
	for _, l := range []struct {
		name string
		res  int
	}{{"nofile", syscall.RLIMIT_NOFILE}, {"nproc", 6 /* RLIMIT_NPROC */}} {
		var r syscall.Rlimit
		if err := syscall.Getrlimit(l.res, &r); err != nil {
			continue
		}
		h := r.Max
		if h == ^uint64(0) {
			out = append(out, l.name+"=-1:-1")
			continue
		}
		out = append(out, fmt.Sprintf("%s=%d:%d", l.name, h, h))
	}
	return out
}

// hostNetworkOnly is a NetworkInterface for builds that always use the
// host's network: it keeps buildah from looking for netavark.
type hostNetworkOnly struct{ nettypes.ContainerNetwork }

func (hostNetworkOnly) DefaultNetworkName() string                      { return "host" }
func (hostNetworkOnly) Drivers() []string                               { return nil }
func (hostNetworkOnly) NetworkInfo() nettypes.NetworkInfo               { return nettypes.NetworkInfo{} }
func (hostNetworkOnly) Teardown(string, nettypes.TeardownOptions) error { return nil }
func (hostNetworkOnly) Setup(string, nettypes.SetupOptions) (map[string]nettypes.StatusBlock, error) {
	return nil, errors.New("builder runs hooks with the host network only")
}

// ImageSize is the apparent size of an image's files (all its layers), a
// lower bound for the filesystem that will hold it.
func (s *Store) ImageSize(name string) (int64, error) {
	img, err := s.st.Image(name)
	if err != nil {
		return 0, err
	}
	return s.st.ImageSize(img.ID)
}
