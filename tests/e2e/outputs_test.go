package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.podman.io/storage"
	stypes "go.podman.io/storage/types"
)

// Every output type from one build, each checked with the tool its
// consumers use.
func TestEveryOutputType(t *testing.T) {
	needE2EOwnLane(t)
	out, tmp := t.TempDir(), t.TempDir()
	ownLaneDirs(out, tmp)
	target := "localhost/builder-e2e:outputs"
	r := runBuilder(t, withTimeout(t, 30*time.Minute), []string{"TMP_DIR=" + tmp},
		"image", "-t", "qcow2,raw,vhd,vhdx,vmdk,vdi,tar,tgz,squashfs,docker", "--docker-target", target,
		"-o", filepath.Join(out, "all"), "--image-cache", ownLaneCache(), "debian-minimal", "vm")
	if r.code != 0 {
		t.Fatalf("build failed")
	}
	raw := imageInfo(t, filepath.Join(out, "all.raw"))
	for typ, format := range map[string]string{"qcow2": "qcow2", "raw": "raw", "vhd": "vpc", "vhdx": "vhdx", "vmdk": "vmdk", "vdi": "vdi"} {
		qi := imageInfo(t, filepath.Join(out, "all."+typ))
		if qi.Format != format {
			t.Errorf("all.%s: format %s, want %s", typ, qi.Format, format)
		}
		if qi.VirtualSize != raw.VirtualSize {
			t.Errorf("all.%s: virtual size %d, raw has %d", typ, qi.VirtualSize, raw.VirtualSize)
		}
	}
	for _, c := range []struct{ file, tool string }{
		{"all.tar", "tar -tf"}, {"all.tgz", "tar -tzf"}, {"all.squashfs", "unsquashfs -l"},
	} {
		f := strings.Fields(c.tool)
		listing, err := exec.Command(f[0], append(f[1:], filepath.Join(out, c.file))...).Output()
		if err != nil {
			t.Fatalf("%s %s: %v", c.tool, c.file, err)
		}
		for _, want := range []string{"etc/os-release", "usr/bin/bash", "boot/grub/grub.cfg"} {
			if !strings.Contains(string(listing), want) {
				t.Errorf("%s does not list %s", c.file, want)
			}
		}
	}
	// The container image is in the local container storage with the tree.
	opts, err := stypes.DefaultStoreOptions()
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.GetStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Shutdown(false)
	img, err := st.Image(target)
	if err != nil {
		t.Fatalf("image %s not in container storage: %v", target, err)
	}
	defer st.DeleteImage(img.ID, true)
	mnt, err := st.MountImage(img.ID, []string{"ro"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.UnmountImage(img.ID, true)
	if _, err := os.Stat(filepath.Join(mnt, "etc", "os-release")); err != nil {
		t.Errorf("the container image lacks the root filesystem: %v", err)
	}
	if l := leftovers(t, tmp, ownLaneCache()); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}
