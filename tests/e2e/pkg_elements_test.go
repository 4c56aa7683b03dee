package e2e

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pkgLVMLayout puts / and /srv on XFS logical volumes of one volume group
// that fills the disk: the lvm element must make it boot, and growvols has
// two volumes to share the space of a larger disk.
const pkgLVMLayout = `- local_loop:
    name: image0
- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: root
        type: '8E00'
        size: 100%
- lvm:
    name: lvm
    pvs:
      - name: pv
        base: root
    vgs:
      - name: vg
        base: ["pv"]
    lvs:
      - name: lv_root
        base: vg
        size: 3GiB
      - name: lv_srv
        base: vg
        size: 320MiB
- mkfs:
    name: fs_root
    base: lv_root
    type: xfs
    label: img-rootfs
    mount:
      mount_point: /
      fstab:
        options: "defaults"
        fsck-passno: 1
- mkfs:
    name: fs_srv
    base: lv_srv
    type: xfs
    label: fs_srv
    mount:
      mount_point: /srv
      fstab:
        options: "defaults"
        fsck-passno: 2
`

// pkgHostMirrors reads the Debian and debian-security mirrors of the
// build host's apt (deb822 debian.sources, else sources.list).
func pkgHostMirrors(t *testing.T) (debian, security string) {
	t.Helper()
	var uris []string
	if data, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "URIs:" {
				uris = append(uris, f[1:]...)
			}
		}
	}
	if data, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "deb" && !strings.HasPrefix(f[1], "[") {
				uris = append(uris, f[1])
			}
		}
	}
	for _, u := range uris {
		u = strings.TrimSuffix(u, "/")
		switch {
		case strings.HasSuffix(u, "/debian-security") && security == "":
			security = u
		case strings.HasSuffix(u, "/debian") && debian == "":
			debian = u
		}
	}
	if debian == "" || security == "" {
		t.Fatalf("no Debian and debian-security mirror in the host's /etc/apt/sources.list.d/debian.sources or sources.list (found %v): the test points DIB_APT_SOURCES at the host's mirror", uris)
	}
	return debian, security
}

// pkgTarTree is what the test reads of an image's tar output: the content of
// the files it asked for, and every entry's type and link target.
type pkgTarTree struct {
	files map[string]string
	kind  map[string]byte
	link  map[string]string
	mode  map[string]int64
}

func pkgReadTar(t *testing.T, path string, want ...string) *pkgTarTree {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	tt := &pkgTarTree{files: map[string]string{}, kind: map[string]byte{}, link: map[string]string{}, mode: map[string]int64{}}
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		name := "/" + strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		name = strings.TrimSuffix(name, "/")
		tt.kind[name] = h.Typeflag
		tt.link[name] = h.Linkname
		tt.mode[name] = h.Mode
		if wanted[name] && h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			tt.files[name] = string(data)
		}
	}
	return tt
}

// pkgInstalled tells whether dpkg's status lists pkg as installed.
func pkgInstalled(status, pkg string) bool {
	for _, para := range strings.Split(status, "\n\n") {
		if strings.HasPrefix(para, "Package: "+pkg+"\n") && strings.Contains(para, "\nStatus: install ok installed\n") {
			return true
		}
	}
	return false
}

// One Debian image with every package element of builder's library that
// applies to Debian (epel resolves and does nothing there), its root on
// LVM: each element's documented effect in the image, then one boot on a
// larger disk where the LVM root must come up and growvols must share the
// new space between /srv (half) and / (the rest).
func TestPackageElementsDebian(t *testing.T) {
	needE2EOwnLane(t)
	work, out, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	ownLaneDirs(work, out, tmp)
	debian, security := pkgHostMirrors(t)
	write := func(name, data string) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aptConf := `PkgTest::Marker "from-dib-apt-conf";` + "\n"
	// contrib is not in the image's own sources: a contrib package installs
	// only if these sources are the ones apt reads.
	sources := fmt.Sprintf("deb %s bookworm main contrib\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n", debian, debian, security)
	// The CI mirror is the host's, spelled with a trailing slash, so the
	// test can tell it reached the bootstrap.
	ciMirror := debian + "/"
	env := []string{
		"TMP_DIR=" + tmp,
		"ELEMENTS_PATH=" + testElements(t),
		"DIB_RELEASE=bookworm",
		"DIB_BLOCK_DEVICE_CONFIG=file://" + write("lvm.yaml", pkgLVMLayout),
		"DIB_APT_CONF=" + write("apt.conf", aptConf),
		"DIB_DPKG_MANIFEST=" + write("manifest.json", `{"packages": [{"package": "tree","arch": "amd64","version": "*","status": "ii "}]}`+"\n"),
		"DIB_APT_SOURCES=" + write("sources.list", sources),
		"DIB_OPENSTACK_CI_MIRROR_INFO=" + write("mirror_info.sh", "export NODEPOOL_MIRROR_HOST=mirror.ci.local\nexport NODEPOOL_DEBIAN_MIRROR="+ciMirror+"\n"),
		"DIB_GROWVOLS_TRIGGER=systemd",
		"DIB_GROWVOLS_ARGS=/srv=50%",
	}
	start := time.Now()
	r := runBuilder(t, withTimeout(t, 45*time.Minute), env, "image", "debian", "vm",
		"svc-map", "dib-python", "epel", "selinux-permissive", "dracut-regenerate", "openstack-ci-mirrors",
		"apt-conf", "apt-preferences", "apt-sources", "grub2", "lvm", "mellanox", "growvols", "pkg-test",
		"-t", "qcow2,tar", "--image-size", "4", "-o", filepath.Join(out, "img"), "--image-cache", ownLaneCache())
	if r.code != 0 {
		t.Fatalf("build failed (exit %d)", r.code)
	}
	t.Logf("build: %s", time.Since(start).Round(time.Second))

	files := []string{
		"/var/lib/dpkg/status", "/etc/pkg-test/svc-map", "/etc/pkg-test/dib-python", "/etc/pkg-test/apt-config",
		"/etc/pkg-test/apt-policy-tree", "/etc/pkg-test/base-sources.list", "/etc/pkg-test/ci-mirror",
		"/usr/share/svc-map/services", "/etc/apt/apt.conf", "/etc/apt/preferences", "/etc/apt/sources.list",
		"/etc/apt/apt.conf.d/99unauthenticated", "/etc/selinux/config", "/etc/dracut.conf.d/85-dracut-regenerate.conf",
		"/etc/dracut.conf.d/pkg-test.conf", "/boot/grub/grub.cfg", "/etc/default/grub", "/etc/modules-load.d/mellanox.conf",
		"/etc/udev/rules.d/81-mellanox.rules", "/etc/default/growvols", "/usr/local/sbin/growvols",
	}
	tree := pkgReadTar(t, filepath.Join(out, "img.tar"), files...)
	file := func(p string) string {
		t.Helper()
		s, ok := tree.files[p]
		if !ok {
			t.Errorf("%s is not in the image", p)
		}
		return s
	}
	contains := func(p string, wants ...string) {
		t.Helper()
		s := file(p)
		for _, w := range wants {
			if !strings.Contains(s, w) {
				t.Errorf("%s lacks %q:\n%s", p, w, s)
			}
		}
	}
	equals := func(p, want string) {
		t.Helper()
		if s := file(p); s != want {
			t.Errorf("%s = %q, want %q", p, s, want)
		}
	}
	status := file("/var/lib/dpkg/status")
	needPkgs := func(what string, pkgs ...string) {
		t.Helper()
		for _, p := range pkgs {
			if !pkgInstalled(status, p) {
				t.Errorf("%s: package %s is not installed", what, p)
			}
		}
	}

	// svc-map: the image's key, default, the name itself, and a unit of
	// the service's own name beating the map.
	equals("/etc/pkg-test/svc-map", "apache2\nmemcached-default\npkgtest-plain\nssh\n")
	contains("/usr/share/svc-map/services", "pkgtest-web: apache2\n", "ssh: not-ssh-either\n")
	if tree.kind["/usr/local/bin/svc-map"] != tar.TypeReg {
		t.Errorf("/usr/local/bin/svc-map is missing")
	}

	// dib-python: python 3 during the build, gone from the image.
	contains("/etc/pkg-test/dib-python", "link=/usr/bin/python3\n", "local-link=/usr/bin/python3\n", "version=3\n", "python=python3\n", "major=3\n")
	for _, p := range []string{"/usr/bin/dib-python", "/usr/local/bin/dib-python"} {
		if _, ok := tree.kind[p]; ok {
			t.Errorf("%s is still in the image (cleanup.d removes it)", p)
		}
	}

	// apt-conf: installed, and read by apt while the image was built.
	equals("/etc/apt/apt.conf", aptConf)
	contains("/etc/pkg-test/apt-config", `PkgTest::Marker "from-dib-apt-conf";`)

	// apt-preferences: the pin, and apt applying it during the build.
	equals("/etc/apt/preferences", "Package: tree\nPin: version *\nPin-Priority: 1001\n\n")
	if p := file("/etc/pkg-test/apt-policy-tree"); !strings.Contains(p, " 1001\n") {
		t.Errorf("apt did not apply the pin to tree during the build:\n%s", p)
	}
	needPkgs("apt-preferences", "tree")

	// apt-sources: the file, and a contrib package installed from it.
	equals("/etc/apt/sources.list", sources)
	needPkgs("apt-sources (contrib)", "crafty-bitmaps")

	// openstack-ci-mirrors: the CI mirror in the bootstrap's sources, its
	// mirror_info.sh read inside the image, unsigned repositories allowed.
	contains("/etc/pkg-test/base-sources.list", "deb "+ciMirror+" bookworm main")
	contains("/etc/pkg-test/ci-mirror", "DIB_DISTRIBUTION_MIRROR="+ciMirror+"\n", "NODEPOOL_DEBIAN_MIRROR="+ciMirror+"\n")
	contains("/etc/apt/apt.conf.d/99unauthenticated", `Acquire::AllowInsecureRepositories "true";`)

	// selinux-permissive, with Debian's policy name.
	equals("/etc/selinux/config", "SELINUX=permissive\nSELINUXTYPE=default\n")

	// dracut-regenerate on initramfs-tools: the modules' packages and their
	// initramfs-tools counterparts, the configuration for dracut.
	needPkgs("dracut-regenerate", "cryptsetup", "cryptsetup-initramfs", "lvm2")
	contains("/etc/dracut.conf.d/85-dracut-regenerate.conf", `add_dracutmodules+=" crypt lvm "`)
	contains("/etc/dracut.conf.d/pkg-test.conf", "from the pkg-test element")

	// grub2: the packages, builder's grub.cfg untouched, /etc/default/grub
	// for update-grub in the guest.
	needPkgs("grub2", "grub-efi-amd64-signed", "shim-signed", "grub-pc-bin")
	contains("/boot/grub/grub.cfg", "menuentry", "linux /vmlinuz root=UUID=", "console=ttyS0,115200")
	contains("/etc/default/grub", `GRUB_CMDLINE_LINUX_DEFAULT="console=tty0 console=ttyS0,115200 no_timer_check nofb nomodeset gfxpayload=text"`,
		`GRUB_TERMINAL="serial console"`)

	// lvm: lvm2 with its initramfs-tools hook (the boot below proves it).
	needPkgs("lvm", "lvm2", "initramfs-tools")
	if _, ok := tree.kind["/usr/share/initramfs-tools/hooks/lvm2"]; !ok {
		t.Errorf("lvm2's initramfs-tools hook is missing")
	}

	// mellanox: drivers at boot, the udev rule, the user-space stack, and a
	// kernel that has the InfiniBand drivers.
	contains("/etc/modules-load.d/mellanox.conf", "mlx4_en\nmlx4_ib\nib_ipoib\nmlx5_ib\nib_umad\nib_uverbs\n")
	contains("/etc/udev/rules.d/81-mellanox.rules", `RUN+="/sbin/modprobe -a mlx4_en mlx4_ib ib_ipoib mlx5_ib ib_umad ib_uverbs"`)
	needPkgs("mellanox", "linux-image-amd64", "dkms", "ibacm", "ibverbs-utils", "ibverbs-providers", "infiniband-diags",
		"rdmacm-utils", "librdmacm-dev", "mstflint", "opensm", "perftest", "qperf", "srptools", "vlan")
	ipoib := false
	for name := range tree.kind {
		if strings.HasSuffix(name, "/kernel/drivers/infiniband/ulp/ipoib/ib_ipoib.ko") {
			ipoib = true
		}
	}
	if !ipoib {
		t.Errorf("the image's kernel has no ib_ipoib module")
	}

	// growvols: script, settings, unit enabled, tools.
	equals("/etc/default/growvols", "GROWVOLS_ARGS=\"/srv=50%\"\nGROWVOLS_GROUP=\"\"\nGROWVOLS_DEVICE=\"\"\n")
	if tree.mode["/usr/local/sbin/growvols"]&0o111 == 0 {
		t.Errorf("/usr/local/sbin/growvols is not executable")
	}
	if l := tree.link["/etc/systemd/system/multi-user.target.wants/growvols.service"]; !strings.HasSuffix(l, "/systemd/system/growvols.service") {
		t.Errorf("growvols.service is not enabled (link %q)", l)
	}
	needPkgs("growvols", "gdisk", "parted", "xfsprogs")

	// epel: nothing on Debian.
	if _, ok := tree.kind["/etc/yum.repos.d"]; ok {
		t.Errorf("epel made /etc/yum.repos.d on Debian")
	}

	// The boot: the LVM root comes up (lvm), no unit fails (mellanox's
	// modules and services included), and growvols gave / the half of the
	// 2 GiB boot-test adds that /srv did not take.
	rep := bootTest(t, filepath.Join(out, "img.qcow2"), "--expect-grow=false", "--require-cloud-init")
	bootedWithCloudInit(t, rep)
	if rep.Probe == nil {
		t.Fatalf("the guest never reported its probe line")
	}
	if rep.Probe.FailedUnits != 0 {
		t.Errorf("%d failed units: %v", rep.Probe.FailedUnits, rep.Probe.FailedUnitNames)
	}
	const gib = 1 << 30
	if lo, hi := int64(3*gib+gib*6/10), int64(3*gib+gib*14/10); rep.Probe.RootBytes < lo || rep.Probe.RootBytes > hi {
		t.Errorf("/ is %d bytes after growvols, want about 3 GiB + 1 GiB (half of the 2 GiB added; between %d and %d)", rep.Probe.RootBytes, lo, hi)
	}
	t.Logf("root filesystem after growvols: %.2f GiB; build and boot: %s", float64(rep.Probe.RootBytes)/gib, time.Since(start).Round(time.Second))
}
