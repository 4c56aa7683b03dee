package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"builder/assemble"
	"builder/elements"
	"builder/internal/progress"
	"builder/rootfs"
)

// plan is a resolved build: elements, the hooks tree and the environment.
type plan struct {
	res      *elements.Resolution
	tree     *elements.Tree
	env      map[string]string // after environment.d, on the host
	hookEnv  map[string]string // what hooks get before environment.d
	warnings []string
	vm       bool // the vm element: a bootable disk
	disk     bool // an output is made from a disk image
	aptCache string
	baseKey  string
	// layout is the disk layout; bootStep gives it its identifiers.
	layout *assemble.Layout
}

// hookEnvironment is what every hook starts from: a fixed PATH and locale,
// the user's build variables and the variables DIB defines for hooks. The
// host's own environment stays out.
func hookEnvironment(req Request, res *elements.Resolution, cache string) map[string]string {
	// DIB_* variables and proxies reach hooks; builder's own controls
	// (TMP_DIR, OVERWRITE_OLD_IMAGE, ...) do not.
	env := map[string]string{}
	for k, v := range req.Env {
		if strings.HasPrefix(k, "DIB_") || contains(passThrough, k) {
			env[k] = v
		}
	}
	deb, sec := hostAptMirrors("/")
	set := map[string]string{
		"PATH":            hostPath,
		"HOME":            "/root",
		"LC_ALL":          "C",
		"ARCH":            req.Arch,
		"IMAGE_NAME":      imageName(req),
		"DIB_IMAGE_CACHE": cache,
		"DIB_DEBUG_TRACE": fmt.Sprint(req.Trace),

		"DIB_OFFLINE":                         map[bool]string{true: "1", false: ""}[req.Offline],
		"DIB_NO_TMPFS":                        map[bool]string{true: "1", false: "0"}[req.NoTmpfs],
		"DIB_PYTHON_VERSION":                  "3",
		"BUILDER_USER_HOME":                   os.Getenv("HOME"),
		"ELEMENTS_PATH":                       strings.Join(req.ElementsPath, ":"),
		"BUILDER_HOST_DEBIAN_MIRROR":          deb,
		"BUILDER_HOST_DEBIAN_SECURITY_MIRROR": sec,
	}
	for k, v := range set {
		env[k] = v
	}
	for k, v := range res.Env().Vars() {
		env[k] = v
	}
	if env["DIB_DEFAULT_INSTALLTYPE"] == "" {
		env["DIB_DEFAULT_INSTALLTYPE"] = "source"
	}
	if deb == "" {
		delete(env, "BUILDER_HOST_DEBIAN_MIRROR")
	}
	if sec == "" {
		delete(env, "BUILDER_HOST_DEBIAN_SECURITY_MIRROR")
	}
	return env
}

func resolve(ctx context.Context, req Request, cache, work string) (*plan, error) {
	builtin, err := elements.ExtractBuiltin(filepath.Join(cache, "builder", "elements"))
	if err != nil {
		return nil, err
	}
	lib, err := elements.LoadLibrary(req.ElementsPath, builtin)
	if err != nil {
		return nil, err
	}
	names := elements.DefaultBlockDeviceNamed(req.Elements, req.Arch, defaultBlockDevice, defaultBlockDevice)
	if !req.SkipBase && !contains(names, "base") {
		names = append([]string{"base"}, names...)
	}
	res, err := lib.Resolve(names)
	if err != nil {
		return nil, err
	}
	tree, err := elements.BuildTree(res, filepath.Join(work, "hooks"))
	if err != nil {
		return nil, err
	}
	if err := rootfs.InstallRunParts(tree.Dir); err != nil {
		return nil, err
	}
	p := &plan{res: res, tree: tree, vm: contains(res.Names(), "vm")}
	for _, o := range res.Overrides {
		p.warnings = append(p.warnings, o)
	}
	for _, w := range tree.Skipped {
		p.warnings = append(p.warnings, w.String())
	}
	for _, w := range tree.Warnings {
		p.warnings = append(p.warnings, w.String())
	}

	p.hookEnv = hookEnvironment(req, res, cache)
	evalBase := copyEnv(p.hookEnv)
	evalBase["TMP_HOOKS_PATH"] = tree.Dir
	env, err := evalEnvironment(ctx, tree.EnvFiles, evalBase)
	if err != nil {
		return nil, err
	}
	p.env = env
	p.disk = req.needsDisk()
	if p.disk {
		// The layout is needed before the hooks run: DIB_ROOT_LABEL and
		// DIB_ROOT_FSTYPE are theirs to read, and fstab is written early.
		if p.layout, err = loadLayout(req, res, env, p.vm); err != nil {
			return nil, err
		}
		root := p.layout.Root()
		for _, m := range []map[string]string{p.hookEnv, p.env} {
			m["DIB_ROOT_LABEL"] = root.Label
			m["DIB_ROOT_FSTYPE"] = root.Type
			m["DIB_MOUNTPOINTS"] = strings.Join(p.layout.Mounts(), "|")
		}
		for _, w := range p.layout.Warnings {
			p.warnings = append(p.warnings, w)
		}
		if b := p.layout.FilesystemAt("/boot"); b != nil {
			p.hookEnv["DIB_BOOT_LABEL"] = b.Label
			p.env["DIB_BOOT_LABEL"] = b.Label
		}
	}
	if err := tree.EnableInstallTypes(env); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(tree.Dir, "builder")); err == nil {
		return nil, fmt.Errorf("an element has a top-level directory named \"builder\": builder keeps its own files there in the hooks tree; rename it")
	}
	distro, release := env["DISTRO_NAME"], env["DIB_RELEASE"]
	if distro == "" {
		return nil, fmt.Errorf("operating-system element %s does not export DISTRO_NAME in environment.d", res.OS.Name)
	}
	// Fail before anything is pulled or run when the base cannot be made.
	if err := checkBaseSource(res.OS.Name, res.OS.Dir, env, req.Arch); err != nil {
		return nil, err
	}

	pis, err := elements.PackageInstalls(res, env)
	if err != nil {
		return nil, err
	}
	maps, err := elements.LoadPkgMaps(res)
	if err != nil {
		return nil, err
	}
	if err := writePackageInstalls(tree.Dir, pis, maps, distro, release); err != nil {
		return nil, err
	}
	if err := writePkgMaps(tree.Dir, maps, distro, release); err != nil {
		return nil, err
	}
	if len(req.Packages) > 0 {
		if err := writePackagesPhase(tree.Dir, req.Packages); err != nil {
			return nil, err
		}
	}
	if elements.Family(distro) == "debian" {
		p.aptCache = filepath.Join(cache, "apt", fmt.Sprintf("%s-%s-%s", distro, release, req.Arch))
		if err := os.MkdirAll(filepath.Join(p.aptCache, "partial"), 0o755); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *plan) ensureBase(ctx context.Context, rep *progress.Reporter, store *rootfs.Store, req Request, cache string, run *runDir) (rootfs.Image, error) {
	src, ok, err := readRootfsSource(p.res.OS.Dir, p.env, req.Arch)
	if err != nil {
		return rootfs.Image{}, err
	}
	var log strings.Builder
	if local := p.env["DIB_LOCAL_IMAGE"]; local != "" {
		// DIB_LOCAL_IMAGE beats any other source, for every OS element.
		t := rep.Phase("base", "DIB_LOCAL_IMAGE "+local)
		path := local
		if strings.HasPrefix(local, "http://") || strings.HasPrefix(local, "https://") {
			st := t.Step("download (verified, cached)")
			path, err = rootfs.Fetch(ctx, local, cache, p.env["DIB_LOCAL_IMAGE_SHA256"], logWriter(req, &log))
			if err != nil {
				st.Fail(err)
				t.Fail(err)
				return rootfs.Image{}, err
			}
			st.Done("")
		}
		img, err := store.ImportLocalImage(ctx, path, rootfs.LocalImageOptions{TmpDir: run.Scratch, Log: logWriter(req, &log),
			Warn: func(s string) { t.Printf("note: %s", s) }})
		if err != nil {
			t.Fail(err)
			return rootfs.Image{}, err
		}
		t.Done("")
		p.baseKey = img.Key
		return img, nil
	}
	if !ok {
		// An operating-system element of the DIB kind: its root.d hooks
		// build the tree from nothing.
		p.baseKey = "scratch"
		return rootfs.Image{Name: "scratch", Key: "scratch"}, nil
	}
	switch src.Method {
	case "local-image":
		return rootfs.Image{}, localImageError(p.res.OS.Name, src)
	case "image":
		t := rep.Phase("base", "container image "+src.Image)
		img, err := store.PullBase(ctx, src.Image, rootfs.PullOptions{Offline: req.Offline, Log: logWriter(req, &log)})
		if err != nil {
			t.Fail(err)
			return rootfs.Image{}, err
		}
		t.Done(img.Name[:12])
		p.baseKey = img.Key
		return img, nil
	}
	bs := src.Bootstrap
	t := rep.Phase("base", fmt.Sprintf("%s %s %s from %s", p.env["DISTRO_NAME"], bs.Suite, bs.Arch, firstMirror(bs.Sources)))
	img, cached, err := store.EnsureBase(ctx, bs, rootfs.BaseOptions{
		StateDir: filepath.Join(cache, "builder", "state"),
		AptCache: p.aptCache,
		TmpDir:   run.Scratch,
		Offline:  req.Offline,
		Log:      logWriter(req, &log),
		Progress: t,
	})
	if err != nil {
		t.Fail(err)
		return rootfs.Image{}, err
	}
	p.baseKey = img.Key
	if cached {
		t.Done("cached")
	} else {
		t.Done("bootstrapped with mmdebstrap")
	}
	return img, nil
}

// checkBaseSource fails when the operating-system element's base can only
// come from DIB_LOCAL_IMAGE and it is not set (centos6, scientific6/7: no
// base images are published for them any more).
func checkBaseSource(osName, osDir string, env map[string]string, arch string) error {
	if env["DIB_LOCAL_IMAGE"] != "" {
		return nil
	}
	src, ok, err := readRootfsSource(osDir, env, arch)
	if err != nil || !ok {
		return err
	}
	if src.Method == "local-image" {
		return localImageError(osName, src)
	}
	return nil
}

func localImageError(osName string, src baseSource) error {
	hint := src.Hint
	if hint == "" {
		hint = "set DIB_LOCAL_IMAGE to a qcow2 or raw cloud image, a rootfs tarball or an OCI archive"
	}
	return fmt.Errorf("operating-system element %s needs DIB_LOCAL_IMAGE: %s", osName, hint)
}

func firstMirror(sources []string) string {
	if len(sources) == 0 {
		return ""
	}
	f := strings.Fields(sources[0])
	if len(f) > 1 {
		return f[1]
	}
	return sources[0]
}

func logWriter(req Request, b *strings.Builder) interface{ Write([]byte) (int, error) } {
	if req.Verbose {
		return req.Out
	}
	return b
}

// steps turns the phases from..to (inclusive, DIB order) into cached steps
// chained after the image with key startKey.
func (p *plan) steps(req Request, rep *progress.Reporter, run *runDir, startKey string, from, to string) ([]rootfs.Step, error) {
	stable := copyEnv(p.hookEnv)
	var steps []rootfs.Step
	in := false
	for _, ph := range elements.Phases {
		if ph.Name == from {
			in = true
		}
		if !in {
			continue
		}
		if ph.Name == "post-install.d" && len(req.Packages) > 0 {
			st, err := p.phaseStep(req, rep, run, elements.Phase{Name: packagesPhase, Inside: true},
				[]rootfs.Hook{{Name: "50-install-packages", Element: "-p"}}, stable)
			if err != nil {
				return nil, err
			}
			steps = append(steps, st)
		}
		if ph.Name == "pre-finalise.d" && p.disk {
			st, err := p.bootStep(req, rep, startKey, steps)
			if err != nil {
				return nil, err
			}
			steps = append(steps, st)
		}
		if !ph.Legacy {
			if st, ok, err := p.hookStep(req, rep, run, ph, stable); err != nil {
				return nil, err
			} else if ok {
				steps = append(steps, st)
			}
		}
		if ph.Name == to {
			break
		}
	}
	return steps, nil
}

// hookStep is the step for one phase's hooks; ok is false when the phase
// has none.
func (p *plan) hookStep(req Request, rep *progress.Reporter, run *runDir, ph elements.Phase, stable map[string]string) (rootfs.Step, bool, error) {
	var hooks []rootfs.Hook
	for _, h := range p.tree.Hooks[ph.Name] {
		hooks = append(hooks, rootfs.Hook{Name: h.Name, Element: h.Element})
	}
	if len(hooks) == 0 {
		return rootfs.Step{}, false, nil
	}
	st, err := p.phaseStep(req, rep, run, ph, hooks, stable)
	return st, err == nil, err
}

func (p *plan) phaseStep(req Request, rep *progress.Reporter, run *runDir, ph elements.Phase, hooks []rootfs.Hook, stable map[string]string) (rootfs.Step, error) {
	treeHash, err := phaseTreeHash(p.tree.Dir, ph.Name)
	if err != nil {
		return rootfs.Step{}, err
	}
	keyEnv := copyEnv(stable)
	// The output name and the element set are part of the key only where a
	// file the phase's hooks can see mentions them: -o or an added element
	// must not rebuild everything.
	mentioned, err := phaseMentions(p.tree.Dir, ph.Name, []string{"IMAGE_NAME", "IMAGE_ELEMENT", "get_image_element_array"})
	if err != nil {
		return rootfs.Step{}, err
	}
	if !mentioned["IMAGE_NAME"] {
		delete(keyEnv, "IMAGE_NAME")
	}
	if !mentioned["IMAGE_ELEMENT"] && !mentioned["get_image_element_array"] {
		delete(keyEnv, "IMAGE_ELEMENT")
	}
	// Variables that shape outputs or logs, not the tree.
	for _, k := range outputOnlyVars {
		delete(keyEnv, k)
	}
	delete(keyEnv, "ELEMENTS_PATH")
	// Element paths; IMAGE_ELEMENT has the names.
	delete(keyEnv, "IMAGE_ELEMENT_YAML")
	delete(keyEnv, "BASH_FUNC_get_image_element_array%%")
	env := copyEnv(p.hookEnv)
	var mounts []rootfs.Mount
	var writable, readOnly []string
	if ph.Inside {
		env["TMP_HOOKS_PATH"] = rootfs.InTargetHooks
		if p.aptCache != "" {
			mounts = append(mounts, rootfs.Mount{Source: p.aptCache, Destination: "/var/cache/apt/archives"})
		}
	} else {
		env["TMP_HOOKS_PATH"] = p.tree.Dir
		env["TMP_BUILD_DIR"] = run.Work
		// As DIB: elements' bin/ tools (cache-url, ...) are on the PATH of
		// outside hooks.
		env["PATH"] = hostPath + ":" + filepath.Join(p.tree.Dir, "bin")
		// The only host paths an outside hook may write: its target, the
		// hooks tree, a temp dir of its own and the image cache.
		tmp := filepath.Join(run.Work, "tmp")
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return rootfs.Step{}, err
		}
		env["TMPDIR"] = tmp
		writable = []string{tmp, p.env["DIB_IMAGE_CACHE"]}
		// builder's own state in the cache (the container store) is not
		// the hooks' to change.
		readOnly = []string{filepath.Join(p.env["DIB_IMAGE_CACHE"], "builder")}
	}
	id := sha256.New()
	fmt.Fprintf(id, "runner=%s\ntree=%s\n", rootfs.RunnerID(), treeHash)
	for _, kv := range envList(keyEnv) {
		fmt.Fprintf(id, "%s\n", kv)
	}
	var echo interface{ Write([]byte) (int, error) }
	if req.Verbose || req.Trace > 0 {
		echo = req.Out
	}
	return rootfs.PhaseStep(rootfs.PhaseRun{
		Phase:    ph.Name,
		Hooks:    hooks,
		Inside:   ph.Inside,
		HooksDir: p.tree.Dir,
		Env:      envList(env),
		Mounts:   mounts,
		Writable: writable,
		ReadOnly: readOnly,
		Identity: hex.EncodeToString(id.Sum(nil)),
		Progress: rep,
		Echo:     echo,
		LogDir:   filepath.Join(run.Work, "logs"),
	}), nil
}

// outputOnlyVars are hook-visible variables that change how a build is
// written or logged, not what is in the tree; they are not part of step keys.
var outputOnlyVars = []string{
	"DIB_IMAGE_CACHE", "DIB_CHECKSUM", "DIB_IMAGE_SIZE", "DIB_IMAGE_EXTRA_SIZE",
	"DIB_DEBUG_TRACE", "DIB_NO_TMPFS", "DIB_MIN_TMPFS", "DIB_QUIET", "DIB_NO_TIMESTAMP",
	"DIB_SHOW_IMAGE_USAGE", "DIB_SHOW_IMAGE_USAGE_FULL", "DIB_JOURNAL_SIZE",
	"BUILDER_USER_HOME",
	// The base's own key covers its content.
	"DIB_LOCAL_IMAGE", "DIB_LOCAL_IMAGE_SHA256", "DIB_DEBIAN_CONTAINER_IMAGE",
	"DIB_UBUNTU_CONTAINER_IMAGE", "DIB_CENTOS_CONTAINER_IMAGE", "DIB_FEDORA_CONTAINER_IMAGE",
	"DIB_OPENSUSE_CONTAINER_IMAGE", "DIB_ROCKY_CONTAINER_IMAGE", "DIB_ALMALINUX_CONTAINER_IMAGE",
	"DIB_SCIENTIFIC_CONTAINER_IMAGE",
}

func copyEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
