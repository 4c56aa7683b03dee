package elements

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The configuration the package and repository elements (svc-map,
// dib-python, epel, selinux-permissive, dracut-regenerate,
// openstack-ci-mirrors, apt-preferences, grub2, lvm, growvols) generate,
// from their scripts run against temporary roots (BUILDER_TARGET_ROOT).
// The Debian side is built for real in tests/e2e/pkg_elements_test.go.

// pkgRunLib runs a library script with only env (plus PATH and HOME) and
// returns its combined output and error.
func pkgRunLib(t *testing.T, env []string, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/bash", append([]string{filepath.Join("library", script)}, args...)...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// pkgSourceEnv sources environment.d files (DIB's order: as given) with env
// and returns the values of the named variables, one per line.
func pkgSourceEnv(t *testing.T, env []string, files []string, vars ...string) map[string]string {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -eu\nset -o pipefail\n")
	for _, f := range files {
		abs, _ := filepath.Abs(filepath.Join("library", f))
		script.WriteString("source " + abs + "\n")
	}
	for _, v := range vars {
		script.WriteString("printf '%s=%s\\0' " + v + " \"${" + v + "-<unset>}\"\n")
	}
	cmd := exec.Command("/bin/bash", "-c", script.String())
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sourcing %v: %v", files, err)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			got[k] = v
		}
	}
	return got
}

func pkgWriteFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func pkgReadFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return string(data)
}

// pkgNeedPythonYAML: svc-map's merge and command are python with PyYAML, as
// in DIB (the image gets python3-yaml through package-installs).
func pkgNeedPythonYAML(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("python3", "-c", "import yaml").CombinedOutput(); err != nil {
		t.Fatalf("python3 with PyYAML is needed to run svc-map's scripts (apt-get install python3-yaml): %v %s", err, out)
	}
}

// svc-map: per service the distribution's key, then its family's, then
// default, then the name; one element per service.
func TestSvcMapMergeAndLookup(t *testing.T) {
	pkgNeedPythonYAML(t)
	merge, _ := filepath.Abs("library/svc-map/svc-map/merge-svc-map")
	sources := t.TempDir()
	pkgWriteFile(t, filepath.Join(sources, "nova"), `nova-api:
  default: openstack-nova-api
  debian: nova-api
  fedora: fedora-nova-api
nova-compute:
  default: openstack-nova-compute
  redhat: rh-nova-compute
plain:
  suse: suse-plain
`, 0o644)
	pkgWriteFile(t, filepath.Join(sources, "glance"), "glance-api:\n  default: openstack-glance-api\n  debian: glance-api\n", 0o644)
	cases := []struct {
		distro string
		want   map[string]string
	}{
		{"ubuntu", map[string]string{"nova-api": "nova-api", "nova-compute": "openstack-nova-compute", "glance-api": "glance-api", "plain": "plain"}},
		{"debian", map[string]string{"nova-api": "nova-api", "glance-api": "glance-api"}},
		{"fedora", map[string]string{"nova-api": "fedora-nova-api", "nova-compute": "rh-nova-compute", "glance-api": "openstack-glance-api"}},
		{"centos", map[string]string{"nova-api": "openstack-nova-api", "nova-compute": "rh-nova-compute"}},
		// builder's families: rocky and almalinux are redhat (DIB: default).
		{"rocky", map[string]string{"nova-compute": "rh-nova-compute"}},
		{"opensuse", map[string]string{"plain": "suse-plain", "nova-compute": "openstack-nova-compute"}},
		{"gentoo", map[string]string{"nova-api": "openstack-nova-api", "plain": "plain"}},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), "usr/share/svc-map/services")
		if b, err := exec.Command("python3", merge, sources, c.distro, out).CombinedOutput(); err != nil {
			t.Fatalf("%s: merge: %v %s", c.distro, err, b)
		}
		data := pkgReadFile(t, out)
		for svc, name := range c.want {
			if !strings.Contains(data, svc+": "+name+"\n") {
				t.Errorf("%s: %s should map to %s:\n%s", c.distro, svc, name, data)
			}
		}
	}

	// A service in two elements, and malformed files, stop the build.
	pkgWriteFile(t, filepath.Join(sources, "zz-dup"), "glance-api:\n  default: other\n", 0o644)
	b, err := exec.Command("python3", merge, sources, "debian", filepath.Join(t.TempDir(), "s")).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "glance-api is in the svc-map of both glance and zz-dup") {
		t.Errorf("duplicate service: %v %s", err, b)
	}
	for name, body := range map[string]string{"list": "- a\n- b\n", "scalar-entry": "svc: just-a-name\n", "bad-yaml": "svc: [\n"} {
		src := t.TempDir()
		pkgWriteFile(t, filepath.Join(src, name), body, 0o644)
		b, err := exec.Command("python3", merge, src, "debian", filepath.Join(t.TempDir(), "s")).CombinedOutput()
		if err == nil || !strings.Contains(string(b), "element "+name) {
			t.Errorf("%s: want an error naming the element, got %v %s", name, err, b)
		}
	}

	// The command: the map, a unit or upstart job under the service's own
	// name wins, unmapped names pass through, one line per argument.
	root := t.TempDir()
	pkgWriteFile(t, filepath.Join(root, "usr/share/svc-map/services"), "nova-api: openstack-nova-api\nssh: not-ssh\nupjob: not-upjob\n", 0o644)
	pkgWriteFile(t, filepath.Join(root, "usr/lib/systemd/system/ssh.service"), "[Unit]\n", 0o644)
	pkgWriteFile(t, filepath.Join(root, "etc/init/upjob.conf"), "", 0o644)
	cmd := exec.Command("python3", "library/svc-map/bin/svc-map", "nova-api", "ssh", "upjob", "unknown")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BUILDER_TARGET_ROOT=" + root}
	got, err := cmd.Output()
	if err != nil || string(got) != "openstack-nova-api\nssh\nupjob\nunknown\n" {
		t.Errorf("svc-map lookups: %q %v", got, err)
	}
	// No map at all (no element has a svc-map file): names unchanged.
	cmd = exec.Command("python3", "library/svc-map/bin/svc-map", "nova-api")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BUILDER_TARGET_ROOT=" + t.TempDir()}
	if got, err := cmd.Output(); err != nil || string(got) != "nova-api\n" {
		t.Errorf("svc-map without a map: %q %v", got, err)
	}
}

// dib-python: python 3 on Debian (DIB 3.13 said 2), 2 where the system
// python is 2; links in both DIB paths, platform-python on EL8+, removed by
// cleanup.d.
func TestDibPython(t *testing.T) {
	env := "dib-python/environment.d/50-dib-python-version"
	for _, c := range []struct{ distro, release, want string }{
		{"debian", "bookworm", "3"}, {"debian", "trixie", "3"}, {"ubuntu", "trusty", "2"}, {"ubuntu", "noble", "3"},
		{"centos", "7", "2"}, {"centos", "9-stream", "3"}, {"centos7", "", "2"}, {"fedora", "22", "2"},
		{"fedora", "41", "3"}, {"fedora", "rawhide", "3"}, {"opensuse", "42.3", "2"}, {"opensuse", "15.6", "3"},
		{"rocky", "9", "3"}, {"scientific", "7", "2"},
	} {
		got := pkgSourceEnv(t, []string{"DISTRO_NAME=" + c.distro, "DIB_RELEASE=" + c.release}, []string{env}, "DIB_PYTHON_VERSION", "DIB_PYTHON")
		if got["DIB_PYTHON_VERSION"] != c.want || got["DIB_PYTHON"] != "python"+c.want {
			t.Errorf("%s %s: %v, want %s", c.distro, c.release, got, c.want)
		}
	}
	if got := pkgSourceEnv(t, []string{"DISTRO_NAME=debian", "DIB_PYTHON_VERSION=2"}, []string{env}, "DIB_PYTHON"); got["DIB_PYTHON"] != "python2" {
		t.Errorf("DIB_PYTHON_VERSION=2 given: %v", got)
	}

	for _, c := range []struct{ distro, release, want string }{
		{"debian", "bookworm", "/usr/bin/python3"},
		{"centos", "9-stream", "/usr/libexec/platform-python"},
		{"centos", "7", "/usr/bin/python2"},
	} {
		root := t.TempDir()
		pkgWriteFile(t, filepath.Join(root, "usr/bin/python3"), "", 0o755)
		pkgWriteFile(t, filepath.Join(root, "usr/bin/python2"), "", 0o755)
		pkgWriteFile(t, filepath.Join(root, "usr/libexec/platform-python"), "", 0o755)
		version := "3"
		if c.release == "7" {
			version = "2"
		}
		out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=" + c.distro, "DIB_RELEASE=" + c.release,
			"DIB_PYTHON_VERSION=" + version, "DIB_PYTHON=python" + version}, "dib-python/pre-install.d/01-dib-python")
		if err != nil {
			t.Fatalf("%s: %v %s", c.distro, err, out)
		}
		for _, l := range []string{"usr/bin/dib-python", "usr/local/bin/dib-python"} {
			if got, _ := os.Readlink(filepath.Join(root, l)); got != c.want {
				t.Errorf("%s %s: /%s -> %q, want %q", c.distro, c.release, l, got, c.want)
			}
		}
		if out, err := pkgRunLib(t, []string{"TARGET_ROOT=" + root}, "dib-python/cleanup.d/50-dib-python"); err != nil {
			t.Fatalf("cleanup: %v %s", err, out)
		}
		for _, l := range []string{"usr/bin/dib-python", "usr/local/bin/dib-python"} {
			if _, err := os.Lstat(filepath.Join(root, l)); err == nil {
				t.Errorf("%s: /%s left after cleanup.d", c.distro, l)
			}
		}
	}
	// No interpreter in a tree: a clear error.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=centos", "DIB_RELEASE=7", "DIB_PYTHON_VERSION=2", "DIB_PYTHON=python2"},
		"dib-python/pre-install.d/01-dib-python"); err == nil || !strings.Contains(out, "no python2") {
		t.Errorf("no python: %v %s", err, out)
	}
}

// EPEL 9's repository file, as epel-release installs it.
const epelRepo = `[epel]
name=Extra Packages for Enterprise Linux $releasever - $basearch
# It is much more secure to use the metalink, but if you wish to use a local mirror
# place its address here.
#baseurl=https://download.example/pub/epel/$releasever/Everything/$basearch/
metalink=https://mirrors.fedoraproject.org/metalink?repo=epel-$releasever&arch=$basearch&infra=$infra&content=$contentdir
enabled=1
gpgcheck=1
countme=1
gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-EPEL-$releasever

[epel-debuginfo]
name=Extra Packages for Enterprise Linux $releasever - $basearch - Debug
#baseurl=https://download.example/pub/epel/$releasever/Everything/$basearch/debug/
metalink=https://mirrors.fedoraproject.org/metalink?repo=epel-debug-$releasever&arch=$basearch&infra=$infra&content=$contentdir
enabled=0
gpgcheck=1
`

// epel: epel-release installed unless present, DIB_EPEL_MIRROR and
// DIB_EPEL_DISABLED applied to the repository files, nothing elsewhere.
func TestEpel(t *testing.T) {
	hook := "epel/pre-install.d/05-rpm-epel-release"
	root := t.TempDir()
	base := []string{"BUILDER_TARGET_ROOT=" + root, "DIB_INSTALL_PACKAGES_DRYRUN=1", "YUM=dnf"}
	// No epel.repo yet: epel-release is installed.
	out, err := pkgRunLib(t, append(base, "DISTRO_NAME=rocky"), hook)
	if err != nil || out != "dnf -y install epel-release" {
		t.Errorf("install: %v %q", err, out)
	}
	repos := filepath.Join(root, "etc/yum.repos.d")
	pkgWriteFile(t, filepath.Join(repos, "epel.repo"), epelRepo, 0o644)
	pkgWriteFile(t, filepath.Join(repos, "epel-testing.repo"), "[epel-testing]\nname=testing\nmetalink=https://m/t\n", 0o644)
	// Present, no settings: nothing is installed or changed.
	if out, err := pkgRunLib(t, append(base, "DISTRO_NAME=centos"), hook); err != nil || out != "" {
		t.Errorf("present, no settings: %v %q", err, out)
	}
	if got := pkgReadFile(t, filepath.Join(repos, "epel.repo")); got != epelRepo {
		t.Errorf("epel.repo changed without settings:\n%s", got)
	}
	out, err = pkgRunLib(t, append(base, "DISTRO_NAME=almalinux", "DIB_EPEL_MIRROR=http://mirror.local/pub/epel/", "DIB_EPEL_DISABLED=1"), hook)
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	got := pkgReadFile(t, filepath.Join(repos, "epel.repo"))
	for _, want := range []string{
		"[epel]\nname=Extra Packages for Enterprise Linux $releasever - $basearch\n",
		"\nbaseurl=http://mirror.local/pub/epel/$releasever/Everything/$basearch/\n",
		"\nbaseurl=http://mirror.local/pub/epel/$releasever/Everything/$basearch/debug/\n",
		"\nenabled=0\ngpgcheck=1\ncountme=1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("epel.repo lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\nmetalink=") || strings.Contains(got, "enabled=1") || strings.Contains(got, "#baseurl") {
		t.Errorf("epel.repo keeps a metalink, an enabled repository or a commented baseurl:\n%s", got)
	}
	// The testing repository had no enabled line: one is added.
	if got := pkgReadFile(t, filepath.Join(repos, "epel-testing.repo")); got != "[epel-testing]\nname=testing\nmetalink=https://m/t\nenabled=0\n" {
		t.Errorf("epel-testing.repo:\n%s", got)
	}
	// Elsewhere: nothing.
	other := t.TempDir()
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + other, "DISTRO_NAME=debian", "DIB_EPEL_DISABLED=1"}, hook); err != nil || !strings.Contains(out, "nothing to do") {
		t.Errorf("debian: %v %q", err, out)
	}
	if ents, _ := os.ReadDir(other); len(ents) != 0 {
		t.Errorf("epel wrote into a Debian tree: %v", ents)
	}
	// Its packages exist only where EPEL does.
	m := pkgLoadMap(t, "epel")
	if got, _ := m.Lookup("yum-utils", "rocky", "9"); strings.Join(got, " ") != "yum-utils" {
		t.Errorf("yum-utils on rocky: %v", got)
	}
	if got, _ := m.Lookup("wget", "debian", "bookworm"); len(got) != 0 {
		t.Errorf("wget on debian: %v", got)
	}
}

func pkgLoadMap(t *testing.T, element string) *PkgMap {
	t.Helper()
	p := filepath.Join("library", element, "pkg-map")
	m, err := ParsePkgMap(element, p, []byte(pkgReadFile(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// selinux-permissive: SELINUX= changed in place, the policy type kept, or
// a new file with the distribution's policy name.
func TestSelinuxPermissive(t *testing.T) {
	hook := "selinux-permissive/pre-install.d/11-selinux-permissive"
	root := t.TempDir()
	conf := filepath.Join(root, "etc/selinux/config")
	pkgWriteFile(t, conf, "# This file controls the state of SELinux\nSELINUX=enforcing\n# type\nSELINUXTYPE=mls\n", 0o644)
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=fedora"}, hook); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if got := pkgReadFile(t, conf); got != "# This file controls the state of SELinux\nSELINUX=permissive\n# type\nSELINUXTYPE=mls\n" {
		t.Errorf("edited config:\n%s", got)
	}
	for distro, want := range map[string]string{"centos": "SELINUX=permissive\nSELINUXTYPE=targeted\n", "debian": "SELINUX=permissive\nSELINUXTYPE=default\n"} {
		root := t.TempDir()
		if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=" + distro}, hook); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if got := pkgReadFile(t, filepath.Join(root, "etc/selinux/config")); got != want {
			t.Errorf("%s, new config:\n%s", distro, got)
		}
	}
}

// dracut-regenerate: packages, configuration and dracut commands on an rpm
// tree; the initramfs-tools counterparts on a Debian tree.
func TestDracutRegenerate(t *testing.T) {
	post, fin := "dracut-regenerate/post-install.d/60-dracut-regenerate", "dracut-regenerate/finalise.d/50-dracut-regenerate"
	defaults := pkgSourceEnv(t, nil, []string{"dracut-regenerate/environment.d/10-dracut-regenerate"}, "DIB_DRACUT_ENABLED_MODULES")["DIB_DRACUT_ENABLED_MODULES"]
	hooks := t.TempDir()
	pkgWriteFile(t, filepath.Join(hooks, "dracut.conf.d/10-site.conf"), "compress=\"xz\"\n", 0o644)

	rpm := t.TempDir()
	pkgWriteFile(t, filepath.Join(rpm, "usr/bin/dracut"), "", 0o755)
	for _, v := range []string{"5.14.0-9.el9.x86_64", "5.14.0-10.el9.x86_64"} {
		pkgWriteFile(t, filepath.Join(rpm, "boot/vmlinuz-"+v), "", 0o644)
		os.MkdirAll(filepath.Join(rpm, "lib/modules", v), 0o755)
	}
	env := []string{"BUILDER_TARGET_ROOT=" + rpm, "TMP_HOOKS_PATH=" + hooks, "DIB_INSTALL_PACKAGES_DRYRUN=1", "DISTRO_NAME=centos", "DIB_DRACUT_ENABLED_MODULES=" + defaults}
	out, err := pkgRunLib(t, env, post)
	if err != nil || !strings.Contains(out, "install-packages cryptsetup lvm2\n") {
		t.Errorf("rpm packages: %v\n%s", err, out)
	}
	if got := pkgReadFile(t, filepath.Join(rpm, "etc/dracut.conf.d/85-dracut-regenerate.conf")); !strings.Contains(got, "\nadd_dracutmodules+=\" crypt lvm \"\n") {
		t.Errorf("modules conf:\n%s", got)
	}
	if got := pkgReadFile(t, filepath.Join(rpm, "etc/dracut.conf.d/10-site.conf")); got != "compress=\"xz\"\n" {
		t.Errorf("element's dracut.conf.d file: %q", got)
	}
	out, err = pkgRunLib(t, env, fin)
	if err != nil || out != "dracut --force /boot/initramfs-5.14.0-9.el9.x86_64.img 5.14.0-9.el9.x86_64\ndracut --force /boot/initramfs-5.14.0-10.el9.x86_64.img 5.14.0-10.el9.x86_64" {
		t.Errorf("dracut commands: %v\n%s", err, out)
	}
	// With rpm-boot in the build, its finalise.d/50-dracut-vm regenerates.
	pkgWriteFile(t, filepath.Join(hooks, "finalise.d/50-dracut-vm"), "", 0o755)
	if out, err := pkgRunLib(t, env, fin); err != nil || strings.Contains(out, "dracut --force") {
		t.Errorf("with rpm-boot: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(hooks, "finalise.d/50-dracut-vm"))

	// Other modules, packages as a flow list, unknown keys ignored.
	custom := "- name: mdraid\n  packages: [mdadm]\n  comment: raid\n- packages:\n    - 'multipath-tools'\n  name: multipath\n"
	out, err = pkgRunLib(t, append(env[:len(env)-1:len(env)-1], "DIB_DRACUT_ENABLED_MODULES="+custom), post)
	if err != nil || !strings.Contains(out, "install-packages mdadm multipath-tools\n") {
		t.Errorf("custom modules: %v\n%s", err, out)
	}
	if got := pkgReadFile(t, filepath.Join(rpm, "etc/dracut.conf.d/85-dracut-regenerate.conf")); !strings.Contains(got, "add_dracutmodules+=\" mdraid multipath \"") {
		t.Errorf("custom modules conf:\n%s", got)
	}
	// [] means none: the modules file goes.
	if out, err := pkgRunLib(t, append(env[:len(env)-1:len(env)-1], "DIB_DRACUT_ENABLED_MODULES=[]"), post); err != nil || strings.Contains(out, "install-packages") {
		t.Errorf("no modules: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(rpm, "etc/dracut.conf.d/85-dracut-regenerate.conf")); err == nil {
		t.Errorf("85-dracut-regenerate.conf left with no modules")
	}
	for _, bad := range []string{"[{name: crypt}]", "name: crypt\n", "- packages: [x]\n"} {
		if out, err := pkgRunLib(t, append(env[:len(env)-1:len(env)-1], "DIB_DRACUT_ENABLED_MODULES="+bad), post); err == nil || !strings.Contains(out, "DIB_DRACUT_ENABLED_MODULES:") {
			t.Errorf("%q: want an error, got %v\n%s", bad, err, out)
		}
	}

	// Debian: initramfs-tools, no dracut.
	deb := t.TempDir()
	os.MkdirAll(filepath.Join(deb, "usr/share/initramfs-tools"), 0o755)
	denv := []string{"BUILDER_TARGET_ROOT=" + deb, "TMP_HOOKS_PATH=" + hooks, "DIB_INSTALL_PACKAGES_DRYRUN=1", "DISTRO_NAME=debian", "DIB_DRACUT_ENABLED_MODULES=" + defaults}
	if out, err := pkgRunLib(t, denv, post); err != nil || !strings.Contains(out, "install-packages cryptsetup lvm2 cryptsetup-initramfs\n") {
		t.Errorf("debian packages: %v\n%s", err, out)
	}
	if out, err := pkgRunLib(t, denv, fin); err != nil || !strings.Contains(out, "no dracut") {
		t.Errorf("debian finalise: %v\n%s", err, out)
	}
}

// openstack-ci-mirrors: the variables per distribution from a node's
// mirror_info.sh, nothing without one, and the rocky URL through builder's
// rocky element.
func TestOpenstackCIMirrors(t *testing.T) {
	envFile := "openstack-ci-mirrors/environment.d/11-dib-distribution-mirror.bash"
	info := filepath.Join(t.TempDir(), "mirror_info.sh")
	pkgWriteFile(t, info, `export NODEPOOL_MIRROR_HOST=mirror.ci.local
export NODEPOOL_DEBIAN_MIRROR=http://mirror.ci.local/debian
export NODEPOOL_UBUNTU_MIRROR=http://mirror.ci.local/ubuntu
export NODEPOOL_UBUNTU_PORTS_MIRROR=http://mirror.ci.local/ubuntu-ports
export NODEPOOL_CENTOS_MIRROR=http://mirror.ci.local/centos-stream
export NODEPOOL_EPEL_MIRROR=http://mirror.ci.local/epel
export NODEPOOL_OPENSUSE_MIRROR=http://mirror.ci.local/opensuse
`, 0o644)
	vars := []string{"DIB_DISTRIBUTION_MIRROR", "DIB_EPEL_MIRROR", "DIB_APT_SOURCES_CONF", "DIB_DEBOOTSTRAP_EXTRA_ARGS", "DIB_DISTRIBUTION_MIRROR_UBUNTU_INSECURE"}
	debSources := "default:deb http://deb.local/debian bookworm main\nsecurity:deb http://deb.local/debian-security bookworm-security main"
	cases := []struct {
		env  []string
		want map[string]string
	}{
		{[]string{"DISTRO_NAME=debian", "DIB_DISTRIBUTION_MIRROR=http://deb.local/debian", "DIB_APT_SOURCES_CONF=" + debSources}, map[string]string{
			"DIB_DISTRIBUTION_MIRROR":    "http://mirror.ci.local/debian",
			"DIB_APT_SOURCES_CONF":       "default:deb http://mirror.ci.local/debian bookworm main\nsecurity:deb http://deb.local/debian-security bookworm-security main",
			"DIB_DEBOOTSTRAP_EXTRA_ARGS": " --no-check-gpg", "DIB_EPEL_MIRROR": "<unset>", "DIB_DISTRIBUTION_MIRROR_UBUNTU_INSECURE": "1"}},
		{[]string{"DISTRO_NAME=ubuntu", "ARCH=arm64"}, map[string]string{"DIB_DISTRIBUTION_MIRROR": "http://mirror.ci.local/ubuntu-ports"}},
		{[]string{"DISTRO_NAME=ubuntu", "ARCH=amd64"}, map[string]string{"DIB_DISTRIBUTION_MIRROR": "http://mirror.ci.local/ubuntu"}},
		{[]string{"DISTRO_NAME=centos", "DIB_RELEASE=9-stream"}, map[string]string{"DIB_DISTRIBUTION_MIRROR": "http://mirror.ci.local/centos-stream", "DIB_EPEL_MIRROR": "http://mirror.ci.local/epel"}},
		{[]string{"DISTRO_NAME=centos", "DIB_RELEASE=10-stream"}, map[string]string{"DIB_DISTRIBUTION_MIRROR": "<unset>", "DIB_EPEL_MIRROR": "<unset>"}},
		{[]string{"DISTRO_NAME=opensuse", "DIB_DISTRIBUTION_MIRROR=https://download.opensuse.org"}, map[string]string{"DIB_DISTRIBUTION_MIRROR": "http://mirror.ci.local/opensuse"}},
		{[]string{"DISTRO_NAME=rocky"}, map[string]string{"DIB_DISTRIBUTION_MIRROR": "http://dl.rockylinux.org/$contentdir"}},
		// A variable the file does not set leaves the mirror alone.
		{[]string{"DISTRO_NAME=fedora", "DIB_DISTRIBUTION_MIRROR=http://fedora.local"}, map[string]string{"DIB_DISTRIBUTION_MIRROR": "http://fedora.local"}},
	}
	for _, c := range cases {
		got := pkgSourceEnv(t, append(c.env, "DIB_OPENSTACK_CI_MIRROR_INFO="+info), []string{envFile}, vars...)
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%v: %s=%q, want %q", c.env, k, got[k], v)
			}
		}
	}
	// Not a CI node: nothing set.
	got := pkgSourceEnv(t, []string{"DISTRO_NAME=debian", "DIB_OPENSTACK_CI_MIRROR_INFO=/nonexistent/mirror_info.sh"}, []string{envFile}, vars...)
	for _, k := range vars {
		if got[k] != "<unset>" {
			t.Errorf("without mirror_info.sh: %s=%q", k, got[k])
		}
	}

	// builder's rocky element turns the CI value into a working baseurl.
	rocky := pkgSourceEnv(t, []string{"DISTRO_NAME=rocky", "DIB_OPENSTACK_CI_MIRROR_INFO=" + info}, []string{envFile}, "DIB_DISTRIBUTION_MIRROR")["DIB_DISTRIBUTION_MIRROR"]
	bin := libBin(t, nil)
	hooks := filepath.Dir(bin)
	os.Symlink(bin, filepath.Join(hooks, "bin"))
	root := t.TempDir()
	pkgWriteFile(t, filepath.Join(root, "etc/yum.repos.d/rocky.repo"), rockyRepo, 0o644)
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks, "DIB_DISTRIBUTION_MIRROR=" + rocky}, "rocky/pre-install.d/00-set-rocky-mirror")
	if got := pkgReadFile(t, filepath.Join(root, "etc/yum.repos.d/rocky.repo")); !strings.Contains(got, "\nbaseurl=http://dl.rockylinux.org/$contentdir/$releasever/BaseOS/$basearch/os/\n") {
		t.Errorf("rocky.repo with the CI mirror:\n%s", got)
	}

	// apt may use the CI's unsigned repositories, on a CI node only.
	for _, ci := range []bool{true, false} {
		target := t.TempDir()
		os.MkdirAll(filepath.Join(target, "etc/apt/apt.conf.d"), 0o755)
		infoPath := info
		if !ci {
			infoPath = "/nonexistent/mirror_info.sh"
		}
		if out, err := pkgRunLib(t, []string{"TARGET_ROOT=" + target, "DIB_OPENSTACK_CI_MIRROR_INFO=" + infoPath}, "openstack-ci-mirrors/root.d/10-apt-disable-gpg"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		data, err := os.ReadFile(filepath.Join(target, "etc/apt/apt.conf.d/99unauthenticated"))
		if ci != (err == nil) || (ci && !strings.Contains(string(data), `Acquire::AllowInsecureRepositories "true";`)) {
			t.Errorf("CI node %v: 99unauthenticated %q, %v", ci, data, err)
		}
	}
}

// apt-preferences: pins from DIB's JSON manifest (any layout of one object
// per package) and from builder's text manifest.
func TestAptPreferencesManifests(t *testing.T) {
	hook := "apt-preferences/extra-data.d/99-set-apt-package-pins"
	want := "Package: tree\nPin: version 2.1.0-1\nPin-Priority: 1001\n\nPackage: libc6:i386\nPin: version 2.36-9+deb12u4\nPin-Priority: 1001\n\n"
	manifests := map[string]string{
		"dib-compact": `{"packages": [{"package": "tree","arch": "amd64","version": "2.1.0-1","status": "ii "},
    {"package": "libc6:i386","arch": "i386","version": "2.36-9+deb12u4","status": "ii "}
]}
`,
		"pretty":  "{\n  \"packages\": [\n    {\n      \"version\": \"2.1.0-1\",\n      \"package\": \"tree\"\n    },\n    {\n      \"package\": \"libc6:i386\",\n      \"version\": \"2.36-9+deb12u4\"\n    }\n  ]\n}\n",
		"builder": "tree amd64 2.1.0-1\nlibc6:i386 i386 2.36-9+deb12u4\n",
	}
	for name, body := range manifests {
		hooks := t.TempDir()
		m := filepath.Join(t.TempDir(), "manifest")
		pkgWriteFile(t, m, body, 0o644)
		if out, err := pkgRunLib(t, []string{"TMP_HOOKS_PATH=" + hooks, "DIB_DPKG_MANIFEST=" + m}, hook); err != nil {
			t.Fatalf("%s: %v %s", name, err, out)
		}
		if got := pkgReadFile(t, filepath.Join(hooks, "apt-preferences/preferences")); got != want {
			t.Errorf("%s: preferences\n%s\nwant\n%s", name, got, want)
		}
		// The in-image hook installs them.
		root := t.TempDir()
		if out, err := pkgRunLib(t, []string{"TMP_HOOKS_PATH=" + hooks, "BUILDER_TARGET_ROOT=" + root}, "apt-preferences/pre-install.d/01-apt-preferences"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if got := pkgReadFile(t, filepath.Join(root, "etc/apt/preferences")); got != want {
			t.Errorf("%s: /etc/apt/preferences\n%s", name, got)
		}
	}
	hooks := t.TempDir()
	if out, err := pkgRunLib(t, []string{"TMP_HOOKS_PATH=" + hooks, "DIB_DPKG_MANIFEST=/nonexistent"}, hook); err == nil {
		t.Errorf("a missing manifest must stop the build: %s", out)
	}
	if out, err := pkgRunLib(t, []string{"TMP_HOOKS_PATH=" + hooks}, hook); err != nil || pkgFileExists(filepath.Join(hooks, "apt-preferences/preferences")) {
		t.Errorf("unset: %v %s", err, out)
	}
}

func pkgFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// grub2: /etc/default/grub follows builder's bootloader variables, so that
// update-grub in the guest keeps the same command line and consoles; the
// package names per family.
func TestGrub2Defaults(t *testing.T) {
	hook := "grub2/finalise.d/45-grub2-defaults"
	cases := []struct {
		env  []string
		want []string
	}{
		{nil, []string{
			`GRUB_CMDLINE_LINUX_DEFAULT="console=tty0 console=ttyS0,115200 no_timer_check nofb nomodeset gfxpayload=text"`,
			`GRUB_TERMINAL="serial console"`, "GRUB_TIMEOUT=5\n",
			`GRUB_SERIAL_COMMAND="serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1"`}},
		{[]string{"DIB_BOOTLOADER_SERIAL_CONSOLE=ttyS1,9600n8", "DIB_BOOTLOADER_VIRTUAL_TERMINAL=", "DIB_NO_TIMER_CHECK=False", "DIB_BOOTLOADER_DEFAULT_CMDLINE=quiet", "DIB_GRUB_TIMEOUT=1"}, []string{
			`GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS1,9600n8 quiet"`, "GRUB_TIMEOUT=1\n",
			`GRUB_SERIAL_COMMAND="serial --speed=9600 --unit=1 --word=8 --parity=no --stop=1"`}},
		{[]string{"DIB_BOOTLOADER_USE_SERIAL_CONSOLE=False"}, []string{
			`GRUB_CMDLINE_LINUX_DEFAULT="console=tty0 no_timer_check nofb nomodeset gfxpayload=text"`, "GRUB_TERMINAL=console\n"}},
	}
	for _, c := range cases {
		root := t.TempDir()
		if out, err := pkgRunLib(t, append(c.env, "BUILDER_TARGET_ROOT="+root), hook); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		got := pkgReadFile(t, filepath.Join(root, "etc/default/grub"))
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: /etc/default/grub lacks %q:\n%s", c.env, w, got)
			}
		}
	}
	m := pkgLoadMap(t, "grub2")
	for _, c := range []struct{ name, distro, want string }{
		{"signed_grub_efi", "debian", "grub-efi-amd64-signed"},
		{"grub_bios", "ubuntu", "grub-pc-bin"},
		{"signed_grub_efi", "rocky", "efibootmgr grub2-efi-x64-modules grub2-efi-x64"},
		{"grub_bios", "centos", "grub2"},
		{"signed_shim_efi", "opensuse", ""},
	} {
		if got, _ := m.Lookup(c.name, c.distro, ""); strings.Join(got, " ") != c.want {
			t.Errorf("grub2 %s on %s: %v, want %q", c.name, c.distro, got, c.want)
		}
	}
}

// lvm: dracut told to activate LVM; on initramfs-tools, lvm2's hook must
// be there.
func TestLvmInitramfs(t *testing.T) {
	hook := "lvm/post-install.d/60-lvm-initramfs"
	rpm := t.TempDir()
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + rpm}, hook); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if got := pkgReadFile(t, filepath.Join(rpm, "etc/dracut.conf.d/80-lvm.conf")); !strings.Contains(got, "\nadd_dracutmodules+=\" lvm \"\n") {
		t.Errorf("80-lvm.conf:\n%s", got)
	}
	deb := t.TempDir()
	os.MkdirAll(filepath.Join(deb, "usr/share/initramfs-tools/hooks"), 0o755)
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + deb}, hook); err == nil || !strings.Contains(out, "no initramfs-tools hook") {
		t.Errorf("without lvm2's hook: %v %s", err, out)
	}
	pkgWriteFile(t, filepath.Join(deb, "usr/share/initramfs-tools/hooks/lvm2"), "", 0o755)
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + deb}, hook); err != nil || pkgFileExists(filepath.Join(deb, "etc/dracut.conf.d")) {
		t.Errorf("with lvm2's hook: %v %s", err, out)
	}
	m := pkgLoadMap(t, "lvm")
	if got, _ := m.Lookup("initramfs-tools", "centos", "9-stream"); strings.Join(got, " ") != "dracut" {
		t.Errorf("initramfs-tools on centos: %v", got)
	}
}

// growvols: the settings file and the unit link for the systemd trigger;
// nothing for manual; an unknown trigger stops the build.
func TestGrowvolsSettings(t *testing.T) {
	hook := "growvols/post-install.d/80-growvols"
	defaults := pkgSourceEnv(t, nil, []string{"growvols/environment.d/15-growvols"}, "DIB_GROWVOLS_TRIGGER", "DIB_GROWVOLS_ARGS")
	if defaults["DIB_GROWVOLS_TRIGGER"] != "manual" || defaults["DIB_GROWVOLS_ARGS"] != "" {
		t.Errorf("defaults: %v", defaults)
	}
	root := t.TempDir()
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_GROWVOLS_TRIGGER=manual"}, hook); err != nil || pkgFileExists(filepath.Join(root, "etc/default/growvols")) {
		t.Errorf("manual: %v %s", err, out)
	}
	out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_GROWVOLS_TRIGGER=systemd", "DIB_INIT_SYSTEM=systemd",
		"DIB_GROWVOLS_ARGS=/var=80% /home=20GiB", "DIB_GROWVOLS_GROUP=vg", "DIB_GROWVOLS_DEVICE=sda"}, hook)
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if got := pkgReadFile(t, filepath.Join(root, "etc/default/growvols")); got != "GROWVOLS_ARGS=\"/var=80% /home=20GiB\"\nGROWVOLS_GROUP=\"vg\"\nGROWVOLS_DEVICE=\"sda\"\n" {
		t.Errorf("/etc/default/growvols:\n%s", got)
	}
	if got, _ := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/growvols.service")); got != "/usr/lib/systemd/system/growvols.service" {
		t.Errorf("unit link -> %q", got)
	}
	if out, err := pkgRunLib(t, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_GROWVOLS_TRIGGER=cron"}, hook); err == nil || !strings.Contains(out, "not supported") {
		t.Errorf("unknown trigger: %v %s", err, out)
	}
	// The script's usage, and its refusal of malformed arguments before it
	// looks at any disk.
	if out, err := pkgRunLib(t, nil, "growvols/static/usr/local/sbin/growvols", "--help"); err != nil || !strings.Contains(out, "VOLUME=AMOUNT") {
		t.Errorf("growvols --help: %v %s", err, out)
	}
	if out, err := pkgRunLib(t, nil, "growvols/static/usr/local/sbin/growvols", "--bogus"); err == nil || !strings.Contains(out, "unknown option --bogus") {
		t.Errorf("growvols --bogus: %v %s", err, out)
	}
}

// mellanox: the library packages per family resolve to real package names
// (no wildcards, as DIB's Debian map has).
func TestMellanoxPackageNames(t *testing.T) {
	m := pkgLoadMap(t, "mellanox")
	for _, c := range []struct{ name, distro, want string }{
		{"libmlx5", "debian", "ibverbs-providers"},
		{"libibverbs", "ubuntu", "ibverbs-providers"},
		{"librdmacm", "debian", "rdmacm-utils"},
		{"libibumad", "debian", "infiniband-diags"},
		{"pciutils", "debian", ""},
		{"opensm", "debian", "opensm"},
		{"rdma", "centos", "rdma-core"},
		{"libmlx4", "rocky", "libibverbs"},
		{"dkms", "centos", ""},
	} {
		if got, _ := m.Lookup(c.name, c.distro, ""); strings.Join(got, " ") != c.want {
			t.Errorf("%s on %s: %v, want %q", c.name, c.distro, got, c.want)
		}
	}
	data := pkgReadFile(t, filepath.Join("library", "mellanox", "pkg-map"))
	if strings.Contains(data, "*") {
		t.Errorf("mellanox's pkg-map has a wildcard:\n%s", data)
	}
}
