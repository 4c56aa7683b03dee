// Package imagebuild runs one image build end to end: it resolves elements,
// makes the root filesystem with hooks in containers, assembles the disk and
// writes the outputs. It holds no logic of its own beyond wiring the
// packages together; commands translate flags into a Request.
package imagebuild

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// Request is everything a build needs, as plain data.
type Request struct {
	Elements     []string
	Output       string   // -o: image name, may include a directory
	Types        []string // -t: qcow2, raw
	Arch         string   // -a
	Packages     []string // -p
	Trace        int      // -x count (DIB_DEBUG_TRACE)
	ImageSizeGiB float64  // --image-size; 0 = from the content
	ImageCache   string   // --image-cache
	NoTmpfs      bool     // --no-tmpfs (accepted; builder uses no tmpfs)
	SkipBase     bool     // -n
	Checksum     string   // --checksum, DIB_CHECKSUM: "md5,sha256", "md5", "sha256" or ""
	Uncompressed bool     // -u
	QemuImgOpts  string   // --qemu-img-options
	RootLabel    string   // --root-label ("" = cloudimg-rootfs, img-rootfs for xfs)
	MkfsOptions  string   // --mkfs-options, for the root filesystem
	// Env holds the user's build variables (DIB_*, proxies): see UserEnv.
	Env          map[string]string
	ElementsPath []string
	TmpDir       string // TMP_DIR
	RunRoot      string // lock and mount state (tmpfs when possible)
	Isolation    string // chroot (default) or oci
	Runtime      string // runc path for oci
	Offline      bool
	NoCache      bool
	// Out receives progress lines; Verbose also streams hook output.
	Out     io.Writer
	Verbose bool
	// DockerTarget names the image -t docker writes to container storage.
	DockerTarget string
	// DebugShell, if set, opens a shell where a hook failed, reading
	// commands from it (--debug-shell, DIB's break=after-error).
	DebugShell io.Reader
	DebugOut   io.Writer
	// Breaks are DIB's break points (break=before-install,after-finalise):
	// "before-PHASE" and "after-PHASE" with PHASE as DIB names it (root,
	// extra-data, pre-install, install, post-install, post-root,
	// pre-finalise, finalise, cleanup). A debug shell opens there
	// (DebugShell must be set).
	Breaks map[string]bool
	// RamdiskElement is the element `builder ramdisk` adds first.
	RamdiskElement string
	// CacheMaxBytes bounds the cache after the build (0: no pruning).
	CacheMaxBytes int64
	// CacheFrom and CacheTo are registry repositories steps are taken
	// from and pushed to (rootfs.RegistryCache); CacheTLSVerify nil
	// follows registries.conf.
	CacheFrom      []string
	CacheTo        string
	CacheTLSVerify *bool
	// ExplainKeys names a file that receives what each step's key is made
	// of (rootfs.ExplainKey).
	ExplainKeys string
	// Args is the command line as given (DIB_ARGS for hooks).
	Args []string
	// DIBElements is diskimage-builder's element directory, searched after
	// builder's own library; "" finds an installed DIB (NoDIBLibrary off).
	DIBElements  string
	NoDIBLibrary bool
	// SBOM writes NAME.spdx.json and NAME.d/files.json beside the
	// outputs (--sbom, on by default; see sbom.go).
	SBOM bool

	// runID names this build's run (set by Run; see runTag).
	runID string
}

// diskTypes are made from the assembled disk, treeTypes from the root tree;
// docker is committed to container storage and has no file.
var (
	diskTypes = map[string]bool{"qcow2": true, "raw": true, "vhd": true, "vhdx": true, "vmdk": true, "vdi": true}
	treeTypes = map[string]bool{"tar": true, "tgz": true, "squashfs": true}
)

func typeList() string {
	return strings.Join(OutputTypes(), ", ")
}

// OutputTypes are the types -t (a pipeline's formats) takes.
func OutputTypes() []string {
	return []string{"qcow2", "raw", "vhd", "vhdx", "vmdk", "vdi", "tar", "tgz", "squashfs", "docker"}
}

// output is one file the build writes.
type output struct {
	Type  string
	Final string // final path
	Temp  string // written here, renamed to Final at the end
}

// planOutputs checks the output path and types before any slow step, and
// returns where each output goes.
func planOutputs(req Request) ([]output, error) {
	if len(req.Types) == 0 {
		return nil, fmt.Errorf("no output type: use -t qcow2 (or raw)")
	}
	name := req.Output
	if name == "" {
		name = "image"
	}
	// DIB strips a trailing ".<type>" when there is a single type.
	if len(req.Types) == 1 {
		name = strings.TrimSuffix(name, "."+req.Types[0])
	}
	// The name reaches hooks (IMAGE_NAME), manifests and shell lines.
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return nil, fmt.Errorf("output name %q has a control character (newline, tab...): give -o a name without one", name)
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("output directory %s does not exist: create it or change -o", dir)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("output directory %s is not a directory: change -o", dir)
	}
	probe, err := os.CreateTemp(dir, ".builder-probe-*")
	if err != nil {
		return nil, fmt.Errorf("output directory %s is not writable: %v; change -o or its permissions", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	// NAME.d (manifests, logs) of an earlier build must be writable too.
	if st, err := os.Stat(abs + ".d"); err == nil {
		if !st.IsDir() {
			return nil, fmt.Errorf("%s.d is not a directory: remove it or change -o", abs)
		}
		probe, err := os.CreateTemp(abs+".d", ".builder-probe-*")
		if err != nil {
			return nil, fmt.Errorf("%s.d (manifests and logs) is not writable: %v; remove it, fix its permissions or change -o", abs, err)
		}
		probe.Close()
		os.Remove(probe.Name())
	}

	seen := map[string]bool{}
	var outs []output
	for _, t := range req.Types {
		if t == "docker" {
			if req.DockerTarget == "" {
				return nil, fmt.Errorf("-t docker needs --docker-target NAME[:TAG] (the image name in container storage)")
			}
			continue
		}
		if !diskTypes[t] && !treeTypes[t] {
			return nil, fmt.Errorf("unknown output type %q: supported are %s", t, typeList())
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		final := abs + "." + t
		if fi, err := os.Stat(final); err == nil && fi.IsDir() {
			return nil, fmt.Errorf("output %s is a directory: change -o", final)
		}
		outs = append(outs, output{
			Type:  t,
			Final: final,
			Temp:  outputTemp(abs, t, req.runID),
		})
	}
	return outs, nil
}

// outputTemp is where an output of type typ is written before it is
// renamed: beside it, hidden, named after the run (runTag) so that the
// next build removes it should this one be killed.
func outputTemp(abs, typ, runID string) string {
	return filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+"."+typ+"."+runTag(runID)+"tmp")
}

// absOutput is the output path without a type suffix, absolute.
func absOutput(req Request) string {
	abs, err := filepath.Abs(imageName(req))
	if err != nil {
		return imageName(req)
	}
	return abs
}

// imageName is the -o value without a type suffix.
func imageName(req Request) string {
	name := req.Output
	if name == "" {
		name = "image"
	}
	if len(req.Types) == 1 {
		name = strings.TrimSuffix(name, "."+req.Types[0])
	}
	return name
}

// needsDisk reports whether any output is made from an assembled disk.
func (r Request) needsDisk() bool {
	for _, t := range r.Types {
		if diskTypes[t] {
			return true
		}
	}
	return false
}

func (r Request) wantsDocker() bool {
	for _, t := range r.Types {
		if t == "docker" {
			return true
		}
	}
	return false
}
