package elements

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"builder/internal/testreq"
)

// libBin makes a PATH directory with the library's in-image tools
// (pkg-map, map-packages, repo-set-baseurl, rpm-boot-files) and any extra
// fake commands given as name -> script.
func libBin(t *testing.T, fakes map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"pkg-map/bin/pkg-map", "redhat-common/bin/map-packages",
		"redhat-common/bin/repo-set-baseurl", "rpm-boot/bin/rpm-boot-files"} {
		abs, _ := filepath.Abs(filepath.Join("library", p))
		if err := os.Symlink(abs, filepath.Join(dir, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	for name, script := range fakes {
		os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755)
	}
	return dir
}

// runScript runs a library script with only the given environment (plus
// PATH with bin first); it returns stdout and fails the test on error
// unless wantErr.
func runScript(t *testing.T, bin string, env []string, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command("/bin/bash", append([]string{filepath.Join("library", script)}, args...)...)
	cmd.Env = append([]string{"PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + t.TempDir()}, env...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s%s", script, args, err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// A pkg-map directory as builder writes it: element -> "name<TAB>mapped".
func pkgMapDir(t *testing.T) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "el"), []byte("vim\tvim-enhanced vim-common\nskipme\t\n"), 0o644)
	return dir
}

// yum/dnf install-packages: the exact command lines for each flag.
func TestYumInstallPackagesCommands(t *testing.T) {
	maps := pkgMapDir(t)
	base := []string{"DIB_INSTALL_PACKAGES_DRYRUN=1", "BUILDER_PKG_MAP_DIR=" + maps, "DISTRO_NAME=centos"}
	script := "yum/bin/install-packages"
	cases := []struct {
		yum  string
		args []string
		want string
	}{
		{"dnf", []string{"curl", "libssl-dev"}, "dnf -y -v install curl openssl-devel\ndnf -y -v mark install curl openssl-devel"},
		{"yum", []string{"curl", "libffi-dev", "foo-dev", "snmp-mibs-downloader"}, "yum -y -v install curl libffi-devel foo-devel"},
		{"dnf", []string{"-e", "curl"}, "dnf -y -v remove curl"},
		{"yum", []string{"-u"}, "yum -y -v update"},
		{"dnf", []string{"-m", "el", "vim", "skipme"}, "dnf -y -v install vim-enhanced vim-common\ndnf -y -v mark install vim-enhanced vim-common"},
		{"dnf", []string{"-e", "-m", "el", "vim"}, "dnf -y -v remove vim-enhanced vim-common"},
		{"dnf", []string{"-d", "/tmp/dl", "curl"}, "mkdir -p /tmp/dl\ndnf download --destdir=/tmp/dl curl"},
		{"yum", []string{"-d", "/tmp/dl", "curl"}, "mkdir -p /tmp/dl\nyumdownloader --destdir=/tmp/dl curl"},
		{"dnf", []string{"-m", "el", "skipme"}, "Not running install-packages install with empty packages list"},
	}
	bin := libBin(t, nil)
	for _, c := range cases {
		got := runScript(t, bin, append(base, "YUM="+c.yum), script, c.args...)
		if got != c.want {
			t.Errorf("YUM=%s install-packages %v:\n got %q\nwant %q", c.yum, c.args, got, c.want)
		}
	}
	// dnf5 (Fedora 41+): no -v, "mark user".
	bin5 := libBin(t, map[string]string{"dnf5": "exit 0"})
	if got := runScript(t, bin5, append(base, "YUM=dnf"), script, "curl"); got != "dnf -y install curl\ndnf -y mark user curl" {
		t.Errorf("dnf5: %q", got)
	}
	// YUM_FLAGS carries extra options (an install root) to every command.
	got := runScript(t, bin, append(base, "YUM=dnf", "YUM_FLAGS=-y --installroot=/r"), script, "curl")
	if got != "dnf -y --installroot=/r install curl\ndnf -y --installroot=/r mark install curl" {
		t.Errorf("YUM_FLAGS: %q", got)
	}
}

// zypper install-packages: DIB's command lines.
func TestZypperInstallPackagesCommands(t *testing.T) {
	maps := pkgMapDir(t)
	base := []string{"DIB_INSTALL_PACKAGES_DRYRUN=1", "BUILDER_PKG_MAP_DIR=" + maps, "DISTRO_NAME=opensuse"}
	z := "zypper --non-interactive --gpg-auto-import-keys "
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"curl", "vim"}, z + "install --no-recommends curl vim"},
		{[]string{"-e", "curl"}, z + "remove --clean-deps curl"},
		{[]string{"-u"}, z + "dist-upgrade --no-recommends"},
		{[]string{"-d", "curl"}, z + "install --no-recommends --download-only curl"},
		{[]string{"-m", "el", "vim", "skipme"}, z + "install --no-recommends vim-enhanced vim-common"},
		{[]string{"-m", "el", "skipme"}, "Not running install-packages install with empty packages list"},
	}
	bin := libBin(t, nil)
	for _, c := range cases {
		if got := runScript(t, bin, base, "zypper/bin/install-packages", c.args...); got != c.want {
			t.Errorf("install-packages %v:\n got %q\nwant %q", c.args, got, c.want)
		}
	}
	if got := runScript(t, bin, append(base, "ZYPPER_FLAGS=--root /r"), "zypper/bin/install-packages", "curl"); got != z+"--root /r install --no-recommends curl" {
		t.Errorf("ZYPPER_FLAGS: %q", got)
	}
}

// The redhat and suse families are known to pkg-map, scientific included.
func TestDistroFamilies(t *testing.T) {
	for distro, fam := range map[string]string{"centos": "redhat", "fedora": "redhat", "rocky": "redhat",
		"almalinux": "redhat", "scientific": "redhat", "opensuse": "suse", "ubuntu": "debian"} {
		if got := Family(distro); got != fam {
			t.Errorf("Family(%s) = %q, want %q", distro, got, fam)
		}
	}
	// growroot's map gives each family its growpart package.
	data, err := os.ReadFile(filepath.Join("library", "growroot", "pkg-map"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParsePkgMap("growroot", "pkg-map", data)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Lookup("growpart", "scientific", "7"); strings.Join(got, " ") != "cloud-utils-growpart" {
		t.Errorf("growpart on scientific: %v", got)
	}
	// centos's own map: CentOS 6 names.
	data, _ = os.ReadFile(filepath.Join("library", "centos", "pkg-map"))
	cm, err := ParsePkgMap("centos", "pkg-map", data)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := cm.Lookup("systemd", "centos", "6"); strings.Join(got, " ") != "upstart" {
		t.Errorf("systemd on centos 6: %v", got)
	}
	if got, ok := cm.Lookup("systemd", "centos", "9-stream"); ok {
		t.Errorf("systemd on centos 9-stream mapped to %v", got)
	}
}

const centosStreamRepo = `[baseos]
name=CentOS Stream $releasever - BaseOS
metalink=https://mirrors.centos.org/metalink?repo=centos-baseos-$stream&arch=$basearch&protocol=https,http
gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-centosofficial
gpgcheck=1
enabled=1

[baseos-debug]
name=CentOS Stream $releasever - BaseOS - Debug
metalink=https://mirrors.centos.org/metalink?repo=centos-baseos-debug-$stream&arch=$basearch&protocol=https,http
enabled=0

[appstream]
name=CentOS Stream $releasever - AppStream
metalink=https://mirrors.centos.org/metalink?repo=centos-appstream-$stream&arch=$basearch&protocol=https,http
enabled=1
`

const centos7Repo = `[base]
name=CentOS-$releasever - Base
mirrorlist=http://mirrorlist.centos.org/?release=$releasever&arch=$basearch&repo=os&infra=$infra
#baseurl=http://mirror.centos.org/centos/$releasever/os/$basearch/
gpgcheck=1

[centosplus]
name=CentOS-$releasever - Plus
mirrorlist=http://mirrorlist.centos.org/?release=$releasever&arch=$basearch&repo=centosplus&infra=$infra
#baseurl=http://mirror.centos.org/centos/$releasever/centosplus/$basearch/
enabled=0
`

const rockyRepo = `[baseos]
name=Rocky Linux $releasever - BaseOS
mirrorlist=https://mirrors.rockylinux.org/mirrorlist?arch=$basearch&repo=BaseOS-$releasever$rltype
#baseurl=http://dl.rockylinux.org/$contentdir/$releasever/BaseOS/$basearch/os/
enabled=1
`

const fedoraRepo = `[fedora]
name=Fedora $releasever - $basearch
#baseurl=http://download.example/pub/fedora/linux/releases/$releasever/Everything/$basearch/os/
metalink=https://mirrors.fedoraproject.org/metalink?repo=fedora-$releasever&arch=$basearch
enabled=1
`

// DIB_DISTRIBUTION_MIRROR rewrites the repository files of each rpm
// distribution (sample files shaped like the distributions' own).
func TestRepoMirrorRewrite(t *testing.T) {
	bin := libBin(t, nil)
	hooks := filepath.Dir(bin) // TMP_HOOKS_PATH with bin/ in it
	os.Symlink(bin, filepath.Join(hooks, "bin"))
	cases := []struct {
		hook, release, file, sample string
		want                        []string
		unchanged                   []string
	}{
		{"centos/pre-install.d/00-02-set-centos-mirror", "9-stream", "centos.repo", centosStreamRepo,
			[]string{"[baseos]\nbaseurl=http://m.local/c/9-stream/BaseOS/$basearch/os/\nname=", "[appstream]\nbaseurl=http://m.local/c/9-stream/AppStream/$basearch/os/\nname="},
			[]string{"metalink=https://mirrors.centos.org/metalink?repo=centos-baseos-debug-$stream"}},
		{"centos/pre-install.d/00-02-set-centos-mirror", "7", "CentOS-Base.repo", centos7Repo,
			[]string{"[base]\nbaseurl=http://m.local/c/$releasever/os/$basearch/\nname=CentOS-$releasever - Base\ngpgcheck=1"},
			[]string{"mirrorlist=http://mirrorlist.centos.org/?release=$releasever&arch=$basearch&repo=centosplus"}},
		{"rocky/pre-install.d/00-set-rocky-mirror", "9", "rocky.repo", rockyRepo,
			[]string{"[baseos]\nbaseurl=http://m.local/c/$releasever/BaseOS/$basearch/os/\nname=Rocky Linux $releasever - BaseOS\nenabled=1"}, nil},
		{"almalinux/pre-install.d/00-set-almalinux-mirror", "9", "almalinux-baseos.repo",
			"[baseos]\nname=AlmaLinux $releasever - BaseOS\nmirrorlist=https://mirrors.almalinux.org/mirrorlist/$releasever/baseos\n# baseurl=https://repo.almalinux.org/almalinux/$releasever/BaseOS/$basearch/os/\nenabled=1\n",
			[]string{"[baseos]\nbaseurl=http://m.local/c/$releasever/BaseOS/$basearch/os/\nname=AlmaLinux $releasever - BaseOS\nenabled=1"}, nil},
		{"fedora/pre-install.d/00-02-set-fedora-mirror", "41", "fedora.repo", fedoraRepo,
			[]string{"[fedora]\nbaseurl=http://m.local/c/releases/$releasever/Everything/$basearch/os/\nname=Fedora $releasever - $basearch\nenabled=1"}, nil},
	}
	for _, c := range cases {
		root := t.TempDir()
		repos := filepath.Join(root, "etc/yum.repos.d")
		os.MkdirAll(repos, 0o755)
		os.WriteFile(filepath.Join(repos, c.file), []byte(c.sample), 0o644)
		env := []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks, "DIB_RELEASE=" + c.release}
		// Without a mirror: untouched.
		runScript(t, bin, env, c.hook)
		if data, _ := os.ReadFile(filepath.Join(repos, c.file)); string(data) != c.sample {
			t.Errorf("%s: changed without DIB_DISTRIBUTION_MIRROR:\n%s", c.hook, data)
		}
		runScript(t, bin, append(env, "DIB_DISTRIBUTION_MIRROR=http://m.local/c/"), c.hook)
		data, _ := os.ReadFile(filepath.Join(repos, c.file))
		got := string(data)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s %s: missing %q in\n%s", c.hook, c.release, w, got)
			}
		}
		for _, u := range c.unchanged {
			if !strings.Contains(got, u) {
				t.Errorf("%s %s: %q should be left alone in\n%s", c.hook, c.release, u, got)
			}
		}
		// Running it again changes nothing (one baseurl per repository).
		runScript(t, bin, append(env, "DIB_DISTRIBUTION_MIRROR=http://m.local/c/"), c.hook)
		if again, _ := os.ReadFile(filepath.Join(repos, c.file)); string(again) != got {
			t.Errorf("%s: second run changed the file:\n%s", c.hook, again)
		}
	}

	// openSUSE: the download.opensuse.org prefix is replaced.
	root := t.TempDir()
	zrepos := filepath.Join(root, "etc/zypp/repos.d")
	os.MkdirAll(zrepos, 0o755)
	os.WriteFile(filepath.Join(zrepos, "repo-oss.repo"), []byte("[repo-oss]\nname=Main Repository\nenabled=1\nbaseurl=http://download.opensuse.org/distribution/leap/$releasever/repo/oss/\ntype=rpm-md\n"), 0o644)
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_DISTRIBUTION_MIRROR=https://m.local/opensuse"}, "opensuse/pre-install.d/00-set-opensuse-mirror")
	if data, _ := os.ReadFile(filepath.Join(zrepos, "repo-oss.repo")); !strings.Contains(string(data), "\nbaseurl=https://m.local/opensuse/distribution/leap/$releasever/repo/oss/\n") {
		t.Errorf("opensuse repo:\n%s", data)
	}

	// Ubuntu container base: deb822 sources pointed at the mirror.
	root = t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/apt/sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/apt/sources.list.d/ubuntu.sources"), []byte("Types: deb\nURIs: http://archive.ubuntu.com/ubuntu/\nSuites: noble noble-updates\n\nTypes: deb\nURIs: http://security.ubuntu.com/ubuntu/\nSuites: noble-security\n"), 0o644)
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_DISTRIBUTION_MIRROR=http://m.local/ubuntu"}, "ubuntu-minimal/pre-install.d/01-set-ubuntu-mirror")
	if data, _ := os.ReadFile(filepath.Join(root, "etc/apt/sources.list.d/ubuntu.sources")); strings.Count(string(data), "URIs: http://m.local/ubuntu/\n") != 2 {
		t.Errorf("ubuntu sources:\n%s", data)
	}
}

// rpm-boot: the dracut configuration, one dracut command per kernel, the
// /vmlinuz and /initrd.img links to the newest kernel and the grub2 path.
func TestRPMBootFiles(t *testing.T) {
	bin := libBin(t, nil)
	for _, c := range []struct {
		name, osRelease, initrdFmt string
	}{
		{"el9", "ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n", "initramfs-%s.img"},
		{"suse", "ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n", "initrd-%s"},
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.WriteFile(filepath.Join(root, "etc/os-release"), []byte(c.osRelease), 0o644)
		os.MkdirAll(filepath.Join(root, "boot/grub"), 0o755)
		os.WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), []byte("menuentry"), 0o644)
		vers := []string{"5.14.0-9.el9.x86_64", "5.14.0-10.el9.x86_64"}
		for _, v := range vers {
			os.MkdirAll(filepath.Join(root, "lib/modules", v), 0o755)
			os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+v), nil, 0o644)
		}
		// A rescue image and modules without a kernel are not kernels.
		os.WriteFile(filepath.Join(root, "boot", "vmlinuz-0-rescue-0123abcd"), nil, 0o644)
		os.MkdirAll(filepath.Join(root, "lib/modules", "5.14.0-1.el9.x86_64"), 0o755)
		env := []string{"BUILDER_TARGET_ROOT=" + root, "DIB_INSTALL_PACKAGES_DRYRUN=1", "DIB_ROOT_FSTYPE=ext4", "DIB_DRACUT_ADD_DRIVERS=nvme"}

		out := runScript(t, bin, env, "rpm-boot/bin/rpm-boot-files", "initramfs")
		want := ""
		for _, v := range vers {
			want += "dracut --force /boot/" + strings.Replace(c.initrdFmt, "%s", v, 1) + " " + v + "\n"
		}
		if out != strings.TrimSpace(want) {
			t.Errorf("%s: dracut commands\n%s\nwant\n%s", c.name, out, want)
		}
		conf, err := os.ReadFile(filepath.Join(root, "etc/dracut.conf.d/90-builder-vm.conf"))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"\nhostonly=\"no\"\n", "\nhostonly_cmdline=\"no\"\n", "\nadd_drivers+=\" virtio_blk virtio_scsi virtio_pci ext4 xfs nvme \"\n"} {
			if !strings.Contains(string(conf), w) {
				t.Errorf("%s: dracut conf lacks %q:\n%s", c.name, w, conf)
			}
		}

		runScript(t, bin, append(env, "DIB_GRUB_CFG=/boot/grub2/grub.cfg"), "rpm-boot/bin/rpm-boot-files", "links")
		newest := vers[1]
		for link, target := range map[string]string{
			"vmlinuz":             "boot/vmlinuz-" + newest,
			"initrd.img":          "boot/" + strings.Replace(c.initrdFmt, "%s", newest, 1),
			"boot/grub2/grub.cfg": "../grub/grub.cfg",
		} {
			if got, _ := os.Readlink(filepath.Join(root, link)); got != target {
				t.Errorf("%s: /%s -> %q, want %q", c.name, link, got, target)
			}
		}
		if data, err := os.ReadFile(filepath.Join(root, "boot/grub2/grub.cfg")); err != nil || string(data) != "menuentry" {
			t.Errorf("%s: /boot/grub2/grub.cfg does not lead to builder's grub.cfg: %q %v", c.name, data, err)
		}
	}
	// No kernel: a clear failure.
	root := t.TempDir()
	cmd := exec.Command("/bin/bash", "library/rpm-boot/bin/rpm-boot-files", "links")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "BUILDER_TARGET_ROOT=" + root}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no kernel") {
		t.Errorf("links without a kernel: %v %s", err, out)
	}
}

// rpm-distro's sudoers hook, against a Fedora-style sudoers.
func TestRPMDistroSudoers(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/sudoers"), []byte("Defaults    requiretty\nDefaults    secure_path = /sbin:/bin:/usr/sbin:/usr/bin\nroot ALL=(ALL) ALL\n"), 0o440)
	runScript(t, libBin(t, nil), []string{"BUILDER_TARGET_ROOT=" + root}, "rpm-distro/post-install.d/05-sudoers")
	data, _ := os.ReadFile(filepath.Join(root, "etc/sudoers"))
	if strings.Contains(string(data), "requiretty") || !strings.Contains(string(data), "secure_path = /sbin:/bin:/usr/sbin:/usr/bin:/usr/local/bin/\n") {
		t.Errorf("sudoers:\n%s", data)
	}
}

// localRPMRepo builds a noarch rpm with rpmbuild and makes a repository of
// it with createrepo_c; it skips when the tools are missing. home has an
// .rpmmacros that puts the rpm database where rpm distributions keep it
// (Debian's rpm keeps it in ~/.rpmdb).
func localRPMRepo(t *testing.T, tools ...string) (repo, home string) {
	t.Helper()
	for _, tool := range append([]string{"rpmbuild", "createrepo_c"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			testreq.Missing(t, "%s is not installed (apt-get install rpm dnf zypper createrepo-c; hack/test.sh installs them)", tool)
		}
	}
	dir := t.TempDir()
	home = filepath.Join(dir, "home")
	repo = filepath.Join(dir, "repo")
	os.MkdirAll(home, 0o755)
	os.WriteFile(filepath.Join(home, ".rpmmacros"), []byte("%_dbpath /var/lib/rpm\n"), 0o644)
	spec := filepath.Join(dir, "hello.spec")
	os.WriteFile(spec, []byte(`Name: builder-hello
Version: 1.0
Release: 1
Summary: builder test package
License: MIT
BuildArch: noarch
%description
builder test package
%install
mkdir -p %{buildroot}/usr/share/builder-hello
echo hello > %{buildroot}/usr/share/builder-hello/hello.txt
%files
/usr/share/builder-hello/hello.txt
`), 0o644)
	cmd := exec.Command("rpmbuild", "--define", "_topdir "+filepath.Join(dir, "build"), "--define", "_rpmdir "+repo, "-bb", spec)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild: %v\n%s", err, out)
	}
	if out, err := exec.Command("createrepo_c", "-q", repo).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	return repo, home
}

// A real dnf run of yum's install-packages (YUM=dnf) into an install root,
// from a local repository: the package's file lands, and -e removes it.
func TestDnfInstallPackagesLocalRepo(t *testing.T) {
	repo, home := localRPMRepo(t, "dnf")
	root, reposd := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(reposd, "local.repo"), []byte("[local]\nname=local\nbaseurl=file://"+repo+"\ngpgcheck=0\nenabled=1\n"), 0o644)
	env := []string{"HOME=" + home, "YUM=dnf", "YUM_FLAGS=-y -q --installroot=" + root + " --releasever=1 --noplugins" +
		" --setopt=reposdir=" + reposd + " --setopt=cachedir=" + filepath.Join(t.TempDir(), "cache") + " --setopt=install_weak_deps=False"}
	bin := libBin(t, nil)
	runScript(t, bin, env, "yum/bin/install-packages", "builder-hello")
	if data, err := os.ReadFile(filepath.Join(root, "usr/share/builder-hello/hello.txt")); err != nil || string(data) != "hello\n" {
		t.Fatalf("installed file: %q %v", data, err)
	}
	runScript(t, bin, env, "yum/bin/install-packages", "-e", "builder-hello")
	if _, err := os.Stat(filepath.Join(root, "usr/share/builder-hello/hello.txt")); err == nil {
		t.Errorf("install-packages -e left the package's file")
	}
}

// A real zypper run of zypper's install-packages into a root, from a local
// repository.
func TestZypperInstallPackagesLocalRepo(t *testing.T) {
	repo, home := localRPMRepo(t, "zypper")
	root := t.TempDir()
	add := exec.Command("zypper", "--non-interactive", "--root", root, "addrepo", "--no-gpgcheck", "file://"+repo, "local")
	add.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("zypper addrepo: %v\n%s", err, out)
	}
	env := []string{"HOME=" + home, "ZYPPER_FLAGS=--root " + root + " --no-gpg-checks"}
	runScript(t, libBin(t, nil), env, "zypper/bin/install-packages", "builder-hello")
	if data, err := os.ReadFile(filepath.Join(root, "usr/share/builder-hello/hello.txt")); err != nil || string(data) != "hello\n" {
		t.Fatalf("installed file: %q %v", data, err)
	}
}
