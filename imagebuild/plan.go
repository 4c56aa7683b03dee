package imagebuild

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"builder/assemble"
	"builder/elements"
	"builder/internal/binfmt"
	"builder/internal/progress"
	"builder/internal/redact"
	"builder/internal/workspace"
	"builder/rootfs"
)

// plan is a resolved build: elements, the hooks tree and the environment.
type plan struct {
	// epoch is SOURCE_DATE_EPOCH (setEpoch): the caller's, or the base's;
	// 0 when neither gives one.
	epoch int64
	// registry is the step cache in container registries (--cache-from,
	// --cache-to); disabled when neither is set.
	registry *rootfs.RegistryCache
	res      *elements.Resolution
	tree     *elements.Tree
	env      map[string]string // after environment.d, on the host
	hookEnv  map[string]string // what hooks get before environment.d
	userVars map[string]bool   // hookEnv names that come from the caller
	secrets  map[string]string // secret-looking caller variables: name -> value
	redact   *redact.Redactor
	warnings []string
	vm       bool // the vm element: a bootable disk
	disk     bool // an output is made from a disk image
	ws       workspace.Workspace
	aptCache string // the shared package cache (Debian family)
	aptRun   string // this build's view of it (see aptcache.go)
	baseKey  string
	breaks   map[string]bool // DIB's break=before-PHASE,after-PHASE
	onStep   func(rootfs.Step, rootfs.Image)
	// layout is the disk layout; bootStep gives it its identifiers.
	layout *assemble.Layout
}

// hookEnvironment is what every hook starts from, as DIB gives it: the
// caller's environment (DIB runs hooks with sudo -E; the caller's session
// and builder's own controls stay out, see UserEnv), a fixed PATH and
// locale, and every variable DIB's runtime exports. It also returns which
// names come from the caller: those are part of a step's key only where
// the step's files mention them.
func hookEnvironment(req Request, res *elements.Resolution, cache, builtinDir, dibDir string) (map[string]string, map[string]bool) {
	env := map[string]string{}
	user := map[string]bool{}
	for k, v := range req.Env {
		env[k] = v
		user[k] = true
	}
	deb, sec := hostAptMirrors("/")
	elementsPath := append(append([]string(nil), req.ElementsPath...), builtinDir)
	if dibDir != "" {
		elementsPath = append(elementsPath, dibDir)
	}
	set := map[string]string{
		"PATH":   hostPath,
		"HOME":   "/root",
		"LC_ALL": "C",
		"ARCH":   req.Arch,
		// The name, not the path: hooks write $IMAGE_NAME.* outputs into
		// their working directory, and builder puts them beside the image.
		"IMAGE_NAME":      filepath.Base(imageName(req)),
		"DIB_IMAGE_CACHE": cache,
		"DIB_DEBUG_TRACE": fmt.Sprint(req.Trace),
		"DIB_OFFLINE":     map[bool]string{true: "1", false: ""}[req.Offline],
		"DIB_NO_TMPFS":    map[bool]string{true: "1", false: "0"}[req.NoTmpfs],
		"DIB_MIN_TMPFS":   "2",
		"DIB_CHECKSUM":    cmp.Or(req.Checksum, "0"),
		"COMPRESS_IMAGE":  map[bool]string{true: "", false: "true"}[req.Uncompressed],
		"IMAGE_TYPE":      firstOr(req.Types, "qcow2"),
		"FS_TYPE":         "ext4",
		// DIB's hooks run with the interpreter that runs DIB.
		"DIB_PYTHON_EXEC": hostPython(),
		"PS4":             "+ ${BASH_SOURCE[0]##*/}:${LINENO}: ",
		// Nothing in a build can answer a question; DIB's install-packages
		// says the same. Set by builder, a caller's value (a CI image's
		// ENV) does not split the cache between runners.
		"DEBIAN_FRONTEND":   "noninteractive",
		"BUILDER_USER_HOME": os.Getenv("HOME"),
		"ELEMENTS_PATH":     strings.Join(elementsPath, ":"),
		"DIB_ARGS":          strings.Join(dibArgs(req), " "),
		"DIB_ENV":           dibEnv(req.Env),
		// DIB exports die (export -f): hooks call it without sourcing.
		"BASH_FUNC_die%%":                     "() {  local rc=$?;\n set +o xtrace;\n echo \"$@\";\n [ \"$rc\" -eq 0 ] && rc=1;\n exit \"$rc\"\n}",
		"BUILDER_HOST_DEBIAN_MIRROR":          deb,
		"BUILDER_HOST_DEBIAN_SECURITY_MIRROR": sec,
	}
	for k, v := range set {
		env[k] = v
		delete(user, k)
	}
	if v := req.Env["FS_TYPE"]; v != "" {
		env["FS_TYPE"] = v
		user["FS_TYPE"] = true
	}
	if _, ok := req.Env["DIB_ELEMENTS"]; !ok {
		env["DIB_ELEMENTS"] = builtinDir
	}
	if req.SkipBase {
		env["SKIP_BASE"] = "1"
	}
	if req.DockerTarget != "" {
		env["DOCKER_TARGET"] = req.DockerTarget
	}
	if req.ImageSizeGiB > 0 {
		env["DIB_IMAGE_SIZE"] = fmt.Sprint(req.ImageSizeGiB)
	}
	for k, v := range res.Env().Vars() {
		env[k] = v
		delete(user, k)
	}
	// Python 3 unless the caller (or dib-python's environment.d, for the
	// distributions that still have 2) says otherwise.
	if env["DIB_PYTHON_VERSION"] == "" {
		env["DIB_PYTHON_VERSION"] = "3"
	}
	if env["DIB_DEFAULT_INSTALLTYPE"] == "" {
		env["DIB_DEFAULT_INSTALLTYPE"] = "source"
	}
	// The host's mirrors are defaults for the caller's: unused (and so not
	// part of any key) when the caller names the mirror.
	if deb == "" || req.Env["DIB_DISTRIBUTION_MIRROR"] != "" || req.Env["DIB_DEBIAN_DISTRIBUTION_MIRROR"] != "" {
		delete(env, "BUILDER_HOST_DEBIAN_MIRROR")
	}
	if sec == "" || req.Env["DIB_DEBIAN_SECURITY_MIRROR"] != "" {
		delete(env, "BUILDER_HOST_DEBIAN_SECURITY_MIRROR")
	}
	return env, user
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}

// hostPython is DIB_PYTHON_EXEC: the host's python3.
func hostPython() string {
	for _, p := range []string{"/usr/bin/python3", "/usr/local/bin/python3"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "python3"
}

// dibArgs is DIB_ARGS: the command line as given, or the elements when
// the build was not started from one.
func dibArgs(req Request) []string {
	if len(req.Args) > 0 {
		return withoutLocalFlags(req.Args)
	}
	return req.Elements
}

// withoutLocalFlags drops the flags of Local settings (and their values)
// from a command line, and keeps only the name of -o (as IMAGE_NAME):
// where this machine writes the image is not part of it.
func withoutLocalFlags(args []string) []string {
	local := map[string]Setting{}
	for _, st := range Settings {
		if st.Local && st.Flag != "" {
			local["--"+st.Flag] = st
			if st.Short != "" {
				local["-"+st.Short] = st
			}
		}
	}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, value, hasValue := strings.Cut(a, "=")
		if name == "-o" || name == "--output" {
			switch {
			case hasValue:
				out = append(out, name+"="+filepath.Base(value))
			case i+1 < len(args):
				out = append(out, name, filepath.Base(args[i+1]))
				i++
			default:
				out = append(out, a)
			}
			continue
		}
		st, ok := local[name]
		if !ok {
			out = append(out, a)
			continue
		}
		if !hasValue && st.Kind != Bool && st.Kind != Int && i+1 < len(args) {
			i++ // the flag's value
		}
	}
	return out
}

// dibEnv is DIB_ENV: the caller's DIB_* variables as `export` prints them,
// with secret-looking values redacted (it ends up in manifests).
func dibEnv(env map[string]string) string {
	local := map[string]bool{}
	for _, st := range Settings {
		if st.Local && st.Env != "" {
			local[st.Env] = true
		}
	}
	var lines []string
	for _, k := range sortedKeys(env) {
		if !strings.HasPrefix(k, "DIB_") || local[k] {
			continue
		}
		v := env[k]
		if secretName(k) {
			v = "[REDACTED]"
		}
		v = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(v)
		lines = append(lines, fmt.Sprintf("declare -x %s=\"%s\"", k, v))
	}
	return strings.Join(lines, "\n")
}

func resolve(ctx context.Context, req Request, ws workspace.Workspace, work string) (*plan, error) {
	cache := ws.Cache
	builtin, err := elements.ExtractBuiltin(ws.Elements())
	if err != nil {
		return nil, err
	}
	dibDir := req.DIBElements
	if dibDir == "" && !req.NoDIBLibrary {
		dibDir = elements.FindDIBLibrary()
	}
	lib, err := elements.LoadLibrary(req.ElementsPath, builtin, dibDir)
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
	if _, err := os.Stat(filepath.Join(tree.Dir, "builder")); err == nil {
		el, src := tree.Source(filepath.Join(tree.Dir, "builder"))
		return nil, fmt.Errorf("element %s has a top-level directory named \"builder\" (%s): builder keeps its own files there in the hooks tree; rename it", el, src)
	}
	if err := installRuntime(tree.Dir); err != nil {
		return nil, err
	}
	p := &plan{res: res, tree: tree, ws: ws, vm: contains(res.Names(), "vm"), breaks: req.Breaks}
	for _, e := range res.Elements {
		if e.Origin == elements.OriginDIB {
			p.warnings = append(p.warnings, fmt.Sprintf("element %s comes from diskimage-builder's library (%s): builder has no own version of it", e.Name, dibDir))
		}
	}
	p.warnings = append(p.warnings, res.Overrides...)
	for _, w := range tree.Skipped {
		p.warnings = append(p.warnings, w.String())
	}
	for _, w := range tree.Warnings {
		p.warnings = append(p.warnings, w.String())
	}

	p.hookEnv, p.userVars = hookEnvironment(req, res, cache, builtin, dibDir)
	p.secrets = secretValues(req.Env)
	p.redact = redact.New()
	for _, v := range p.secrets {
		p.redact.Add(v)
	}
	evalBase := copyEnv(p.hookEnv)
	evalBase["TMP_HOOKS_PATH"] = tree.Dir
	env, err := evalEnvironment(ctx, tree.EnvFiles, evalBase)
	var fe *envFileError
	if errors.As(err, &fe) && fe.File != "" {
		// Name the element's file, not the copy in the hooks tree.
		tmp := fe.File
		fe.Element, fe.File = tree.Source(tmp)
		for i, l := range fe.Output {
			fe.Output[i] = strings.ReplaceAll(l, tmp, fe.File)
		}
	}
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
		p.warnings = append(p.warnings, p.layout.Warnings...)
		if b := p.layout.FilesystemAt("/boot"); b != nil {
			p.hookEnv["DIB_BOOT_LABEL"] = b.Label
			p.env["DIB_BOOT_LABEL"] = b.Label
		}
	}
	if err := tree.EnableInstallTypes(env); err != nil {
		return nil, err
	}
	distro, release := env["DISTRO_NAME"], env["DIB_RELEASE"]
	if distro == "" {
		return nil, fmt.Errorf("operating-system element %s does not export DISTRO_NAME in environment.d: export it there (e.g. DISTRO_NAME=debian)", res.OS.Name)
	}
	// Fail before anything is pulled or run when the base cannot be made.
	if err := checkBaseSource(res.OS.Name, res.OS.Dir, env, req.Arch); err != nil {
		return nil, err
	}
	// Likewise when the image's programs cannot run on this host.
	if note, err := ensureEmulation(req.Arch); err != nil {
		return nil, err
	} else if note != "" {
		p.warnings = append(p.warnings, note)
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
	if req.Env["DIB_LOCKFILES"] == "" {
		if err := os.MkdirAll(ws.Lockfiles(), 0o755); err != nil {
			return nil, err
		}
	}
	if elements.Family(distro) == "debian" {
		p.aptCache = ws.AptCache(distro, release, req.Arch)
		if err := os.MkdirAll(filepath.Join(p.aptCache, "partial"), 0o755); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *plan) ensureBase(ctx context.Context, rep *progress.Reporter, store *rootfs.Store, req Request, ws workspace.Workspace, run *runDir) (rootfs.Image, error) {
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
			path, err = rootfs.Fetch(ctx, local, ws.Downloads(), p.env["DIB_LOCAL_IMAGE_SHA256"], logWriter(req, &log))
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
		StateDir: ws.State(),
		AptCache: p.aptCache,
		TmpDir:   run.bootstrapDir(),
		Offline:  req.Offline,
		Log:      logWriter(req, &log),
		Progress: t,
		Registry: p.registry,
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
	if local := env["DIB_LOCAL_IMAGE"]; local != "" {
		if strings.HasPrefix(local, "http://") || strings.HasPrefix(local, "https://") {
			return nil
		}
		if st, err := os.Stat(local); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("DIB_LOCAL_IMAGE %s is not a file: point it at a cloud image (qcow2 or raw), a rootfs tarball or an OCI archive", local)
		}
		return nil
	}
	src, ok, err := readRootfsSource(osDir, env, arch)
	if err != nil || !ok {
		return err
	}
	if src.Method == "local-image" {
		return localImageError(osName, src)
	}
	if src.Method == "mmdebstrap" && !binfmt.Native(arch) {
		// mmdebstrap refuses a foreign architecture without it, late
		// and in its own words.
		if _, err := exec.LookPath("arch-test"); err != nil {
			return fmt.Errorf("an %s bootstrap on this %s host needs arch-test (mmdebstrap's check of foreign architectures): apt-get install arch-test", arch, runtime.GOARCH)
		}
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
	treeHash, idents, err := phaseTreeInfo(p.tree.Dir, ph.Name)
	if err != nil {
		return rootfs.Step{}, err
	}
	env := copyEnv(p.hookEnv)
	var mounts []rootfs.Mount
	var writable, readOnly []string
	if ph.Inside {
		env["TMP_HOOKS_PATH"] = rootfs.InTargetHooks
		env["_LIB"] = rootfs.InTargetHooks + "/" + runtimeLibDir
		// The image's own tools first; builder's (sudo, dib-run-parts)
		// where the image has none.
		env["PATH"] = hostPath + ":" + rootfs.InTargetHooks + "/" + runtimeBinDir
		// As DIB's chroot: no host TMPDIR or virtualenv inside.
		delete(env, "TMPDIR")
		delete(env, "VIRTUAL_ENV")
		if p.aptRun != "" {
			mounts = append(mounts, rootfs.Mount{Source: p.aptRun, Destination: "/var/cache/apt/archives"})
		}
	} else {
		env["TMP_HOOKS_PATH"] = p.tree.Dir
		env["_LIB"] = filepath.Join(p.tree.Dir, runtimeLibDir)
		// builder's sudo first (a host sudo cannot work rootless or in a
		// container); as DIB, elements' bin/ tools (cache-url, ...) too.
		env["PATH"] = filepath.Join(p.tree.Dir, runtimeBinDir) + ":" + hostPath + ":" + filepath.Join(p.tree.Dir, "bin")
		// The only host paths an outside hook may write: its target, the
		// build's work directory (the hooks tree, a temp dir of its own),
		// and the image cache.
		tmp := filepath.Join(run.Work, "tmp")
		img := filepath.Join(run.Work, "image")
		for _, d := range []string{tmp, img} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return rootfs.Step{}, err
			}
		}
		env["TMPDIR"] = tmp
		writable = []string{run.Work, p.ws.Cache}
		if l := env["DIB_LOCKFILES"]; l != "" {
			writable = append(writable, l)
		}
		// builder's own state in the cache (the container store) is not
		// the hooks' to change.
		readOnly = []string{p.ws.Own()}
	}
	env["TMP_BUILD_DIR"] = run.Work
	env["TMP_IMAGE_DIR"] = filepath.Join(run.Work, "image")
	if env["DIB_LOCKFILES"] == "" {
		env["DIB_LOCKFILES"] = p.ws.Lockfiles()
	}

	keyEnv := envList(p.keyEnv(stable, idents))
	if os.Getenv("BUILDER_DEBUG_KEYS") != "" {
		for _, kv := range keyEnv {
			fmt.Fprintf(os.Stderr, "key %s %s\n", ph.Name, p.redact.String(kv))
		}
	}
	var echo interface{ Write([]byte) (int, error) }
	if req.Verbose || req.Trace > 0 {
		echo = req.Out
	}
	dibName := strings.TrimSuffix(ph.Name, ".d")
	st := rootfs.PhaseStep(rootfs.PhaseRun{
		Phase:    ph.Name,
		Hooks:    hooks,
		Inside:   ph.Inside,
		HooksDir: p.tree.Dir,
		Env:      envList(env),
		Mounts:   mounts,
		Writable: writable,
		ReadOnly: readOnly,
		Identity: "tree=" + treeHash,
		Progress: rep,
		Echo:     echo,
		LogDir:   filepath.Join(run.Work, "logs"),
		Redact:   p.redact.String,
	})
	// After root.d the tree has the host's resolver configuration while
	// hooks run, and outside hooks find /proc, /sys and /dev in it, as DIB
	// sets them up in create_base.
	st.KeyEnv = keyEnv
	st.Volatile = p.volatile(run)
	st.ResolvConf = ph.Name != "root.d"
	st.Pseudo = !ph.Inside && ph.Name != "root.d"
	st.ContentKeyed = ph.Name == "extra-data.d"
	if ph.Inside && p.aptRun != "" {
		begin, end := st.Begin, st.End
		st.Begin = func() {
			if err := p.refreshApt(); err != nil {
				rep.Note("warning: %v", err)
			}
			begin()
		}
		st.End = func(cached bool, err error) {
			if herr := p.harvestApt(); herr != nil {
				rep.Note("warning: %v", herr)
			}
			end(cached, err)
		}
	}
	if !ph.Inside {
		// Outside hooks run where DIB's run: in the directory their
		// $IMAGE_NAME.* outputs land in (builder's, per phase).
		st.Dir = filepath.Join(run.Work, "outputs", ph.Name)
		st.DirIsOutputs = true
		// DIB's hooks find the target at $TMP_BUILD_DIR/mnt; some take
		// that path apart (source-repositories names its manifest after
		// the part behind the last dot).
		st.MountAt = filepath.Join(run.Work, "mnt")
	}
	st.BreakBefore = p.breaks["before-"+dibName]
	st.BreakAfter = p.breaks["after-"+dibName]
	return st, nil
}

// volatile are the paths that name this run or this cache: they are not
// part of step keys (another run or cache directory reuses the steps).
func (p *plan) volatile(run *runDir) map[string]string {
	v := map[string]string{run.Work: "$RUN", p.ws.Cache: "$CACHE"}
	if p.aptRun != "" {
		v[p.aptRun] = "$APT"
	}
	if run.Scratch != "" && run.Scratch != run.Work {
		v[run.Scratch] = "$SCRATCH"
	}
	return v
}

// keyEnv is the part of a step's environment that can change what it
// makes: everything builder sets except paths that differ between runs,
// and of the caller's variables those the step's files mention (a hook
// can only read a variable by its name) or that programs in the image read
// on their own (pip, git, apt: see toolReadPrefixes). Proxies route
// downloads and change nothing.
func (p *plan) keyEnv(stable map[string]string, idents map[string]bool) map[string]string {
	keyEnv := map[string]string{}
	for k, v := range stable {
		switch {
		case contains(proxyVars, k), contains(outputOnlyVars, k), runVolatileVars[k]:
			continue
		case mentionGatedVars[k] || p.userVars[k]:
			if !idents[k] && !hasAnyPrefix(k, toolReadPrefixes) && !namedByPrefix(k, idents) {
				continue
			}
			if k == "IMAGE_ELEMENT" && !idents[k] && !idents["get_image_element_array"] {
				continue
			}
		}
		keyEnv[k] = v
	}
	if idents["get_image_element_array"] {
		keyEnv["IMAGE_ELEMENT"] = stable["IMAGE_ELEMENT"]
	}
	return keyEnv
}

// namedByPrefix: a hook that reads DIB_REPOREF_${name} names the
// variable only by its prefix ("DIB_REPOREF_", a word ending in "_"
// before the "$").
func namedByPrefix(k string, idents map[string]bool) bool {
	for i := len(k) - 1; i >= 4; i-- {
		if k[i-1] == '_' && idents[k[:i]] {
			return true
		}
	}
	return false
}

// runVolatileVars differ between runs (paths of this run, of the cache,
// of the host) without changing what hooks make.
var runVolatileVars = map[string]bool{
	"ELEMENTS_PATH": true, "DIB_ELEMENTS": true, "IMAGE_ELEMENT_YAML": true,
	"BASH_FUNC_get_image_element_array%%": true, "DIB_PYTHON_EXEC": true,
	"TMP_BUILD_DIR": true, "TMP_IMAGE_DIR": true, "TMP_HOOKS_PATH": true, "TMPDIR": true,
	"_LIB": true, "DIB_LOCKFILES": true, "PATH": true, "BUILDER_USER_HOME": true,
	// The caller's temp dir: where this host works, not what is made.
	"TMP_DIR": true,
}

// mentionGatedVars are builder's variables that name this run rather than
// the image (-o, the command line, the element list): part of a step's key
// only where its files mention them, so that another -o or an added
// element does not rebuild everything.
var mentionGatedVars = map[string]bool{
	"IMAGE_NAME": true, "IMAGE_ELEMENT": true, "DIB_ARGS": true, "DIB_ENV": true,
	"DOCKER_TARGET": true, "IMAGE_TYPE": true, "COMPRESS_IMAGE": true, "SKIP_BASE": true,
}

// outputOnlyVars are hook-visible variables that change how a build is
// written or logged, not what is in the tree; they are not part of step keys.
var outputOnlyVars = []string{
	"DIB_IMAGE_CACHE", "DIB_CHECKSUM", "DIB_IMAGE_SIZE", "DIB_IMAGE_EXTRA_SIZE",
	"DIB_DEBUG_TRACE", "DIB_NO_TMPFS", "DIB_MIN_TMPFS", "DIB_QUIET", "DIB_NO_TIMESTAMP",
	"DIB_SHOW_IMAGE_USAGE", "DIB_SHOW_IMAGE_USAGE_FULL", "DIB_JOURNAL_SIZE",
	"BUILDER_USER_HOME",
	// Where downloads come from (the cache or the network), not what is
	// made: an offline rebuild reuses what an online one made.
	"DIB_OFFLINE",
	// How the ramdisk's archive is written, not what is in the tree.
	"DIB_RAMDISK_COMPRESS", "DIB_RAMDISK_EXCLUDE",
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

// setEpoch fixes the build's SOURCE_DATE_EPOCH: the caller's, else the
// base's (rootfs.BaseEpoch); hooks get it, and it is part of every step's
// key (a builder variable, not a caller's one that only counts where
// mentioned).
func (p *plan) setEpoch(ctx context.Context, req Request, store *rootfs.Store, base rootfs.Image) error {
	if v, ok := req.Env["SOURCE_DATE_EPOCH"]; ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: give seconds since 1970 (e.g. $(date +%%s)), or unset it to take the base's date", v)
		}
		p.epoch = n
	} else {
		n, err := store.BaseEpoch(ctx, base)
		if err != nil {
			return fmt.Errorf("the base's date (SOURCE_DATE_EPOCH): %w", err)
		}
		p.epoch = n
	}
	if p.epoch > 0 {
		v := strconv.FormatInt(p.epoch, 10)
		p.hookEnv["SOURCE_DATE_EPOCH"] = v
		p.env["SOURCE_DATE_EPOCH"] = v
		delete(p.userVars, "SOURCE_DATE_EPOCH")
	}
	return nil
}
