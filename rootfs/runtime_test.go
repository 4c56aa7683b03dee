package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"builder/internal/cleanup"
)

// A bind mount found in the mount table an outside phase left is carried
// with its host source; the kernel filesystems builder mounted, mounts
// below a carried one and mounts outside the target are not.
func TestCarriedMountsFromMountInfo(t *testing.T) {
	table := parseMountInfo([]byte(`22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 8:1 /var/cache/image-create /var/cache/image-create rw - ext4 /dev/vda rw
40 22 0:50 / /store/overlay/abc/merged rw - overlay overlay rw
41 40 8:1 /var/cache/image-create/pip /store/overlay/abc/merged/tmp/pip rw - ext4 /dev/vda rw
42 41 8:1 /var/cache/image-create/pip/sub /store/overlay/abc/merged/tmp/pip/sub rw - ext4 /dev/vda rw
43 40 0:5 / /store/overlay/abc/merged/proc rw - proc proc rw
44 40 0:60 / /store/overlay/abc/merged/var/scratch rw - tmpfs tmpfs rw
45 40 8:1 /home/user\040data /store/overlay/abc/merged/mnt/data rw - ext4 /dev/vda rw
`))
	got, notes := carriedMounts(table, "/store/overlay/abc/merged", true)
	want := []Mount{
		{Source: "/home/user data", Destination: "/mnt/data"},
		{Source: "/var/cache/image-create/pip", Destination: "/tmp/pip"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("carried %v, want %v", got, want)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "tmpfs mount a hook made at /var/scratch") {
		t.Errorf("notes %q: want one about the tmpfs at /var/scratch", notes)
	}
}

// DIB's resolv.conf rule: .ORIG (which an element may rewrite) comes back,
// unless a hook made resolv.conf a symlink, which then stays.
func TestFinaliseBaseResolvConf(t *testing.T) {
	for _, c := range []struct {
		name      string
		setup     func(root string)
		want      string // content or "-> target"
		wantNoOrg bool
	}{
		{"element chose .ORIG", func(root string) {
			os.WriteFile(filepath.Join(root, "etc/resolv.conf.ORIG"), []byte("nameserver 192.0.2.53\n"), 0o644)
		}, "nameserver 192.0.2.53\n", true},
		{"hook made a symlink", func(root string) {
			os.WriteFile(filepath.Join(root, "etc/resolv.conf.ORIG"), []byte("old\n"), 0o644)
			os.Remove(filepath.Join(root, "etc/resolv.conf"))
			os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf"))
		}, "-> ../run/systemd/resolve/stub-resolv.conf", true},
		{"no .ORIG: none left", func(root string) {}, "", true},
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.WriteFile(filepath.Join(root, "etc/resolv.conf"), []byte("nameserver 10.0.0.1\n"), 0o644)
		if err := SaveResolvConf(context.Background(), root); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(filepath.Join(root, "etc/resolv.conf.ORIG")); string(data) != "nameserver 10.0.0.1\n" {
			t.Fatalf("%s: SaveResolvConf kept %q as .ORIG", c.name, data)
		}
		if c.name == "no .ORIG: none left" {
			os.Remove(filepath.Join(root, "etc/resolv.conf.ORIG"))
		}
		if err := fillResolvConf(root); err != nil {
			t.Fatal(err)
		}
		c.setup(root)
		os.MkdirAll(filepath.Join(root, "tmp/junk"), 0o755)
		os.MkdirAll(filepath.Join(root, "var/log/apt"), 0o755)
		os.WriteFile(filepath.Join(root, "var/log/apt/history.log"), []byte("x"), 0o644)
		os.MkdirAll(filepath.Join(root, "root"), 0o700)
		os.WriteFile(filepath.Join(root, "root/build.log"), []byte("x"), 0o644)
		if err := FinaliseBase(context.Background(), root); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, "etc/resolv.conf")
		got := ""
		if target, err := os.Readlink(p); err == nil {
			got = "-> " + target
		} else if data, err := os.ReadFile(p); err == nil {
			got = string(data)
		}
		if got != c.want {
			t.Errorf("%s: resolv.conf = %q, want %q", c.name, got, c.want)
		}
		if _, err := os.Lstat(p + ".ORIG"); err == nil {
			t.Errorf("%s: resolv.conf.ORIG is left in the image", c.name)
		}
		if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
			t.Errorf("%s: /tmp not emptied", c.name)
		}
		if st, _ := os.Stat(filepath.Join(root, "var/log/apt/history.log")); st == nil || st.Size() != 0 {
			t.Errorf("%s: log not truncated", c.name)
		}
		if _, err := os.Stat(filepath.Join(root, "root/build.log")); err == nil {
			t.Errorf("%s: /root/*.log not removed", c.name)
		}
	}
}

// A content-keyed step runs every time and is named by what it changed:
// the same result reuses the stored image (so later steps stay cached),
// another result makes another image, and no change adds no layer. Bind
// mounts an outside step makes into the tree reach the steps after it,
// also when it comes from the cache, and never end up in a layer.
func TestContentKeyedStepsAndCarriedMounts(t *testing.T) {
	s, base := testStore(t)
	ctx := context.Background()
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "blob"), []byte("from the host cache\n"), 0o644)
	var stack cleanup.Stack
	defer stack.Run()
	opts := ChainOptions{RunID: "ck", Cleanup: &stack}
	extra := func(content string) Step {
		return Step{Name: "extra-data.d", Kind: Outside, ContentKeyed: true, Identity: "same-script",
			Command: []string{"/bin/sh", "-c", `printf '%s' "$C" > "$TARGET_ROOT/etc/extra"
mkdir -p "$TARGET_ROOT/var/cache/acme" && mount --bind "$HOST" "$TARGET_ROOT/var/cache/acme"`},
			Env: []string{"C=" + content, "HOST=" + host, "PATH=/usr/bin:/bin:/usr/sbin:/sbin"}}
	}
	ran := 0
	inside := Step{Name: "install.d", Kind: Inside, Identity: "1", ResolvConf: true,
		Command: []string{"/bin/sh", "-c", "cat /var/cache/acme/blob > /etc/copied; echo inside > /var/cache/acme/written; cat /etc/resolv.conf > /etc/resolv-seen"},
		End:     func(cached bool, err error) { ran += map[bool]int{false: 1}[cached] }}

	a, err := s.RunChain(ctx, base, []Step{extra("A"), inside}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := readInImage(t, s, a, "etc/copied"); got != "from the host cache\n" {
		t.Errorf("the inside step did not see the mount an outside step made: %q", got)
	}
	if got := readInImage(t, s, a, "var/cache/acme/blob"); !strings.HasPrefix(got, "<missing") {
		t.Errorf("the mounted host data ended up in a layer: %q", got)
	}
	if data, _ := os.ReadFile(filepath.Join(host, "written")); string(data) != "inside\n" {
		t.Errorf("writes through the mount did not reach the host: %q", data)
	}
	if got := readInImage(t, s, a, "etc/resolv-seen"); len(strings.TrimSpace(got)) == 0 || strings.HasPrefix(got, "<missing") {
		t.Errorf("the inside step had no resolver configuration: %q", got)
	}
	if got := readInImage(t, s, a, "etc/resolv.conf"); got != "" && !strings.HasPrefix(got, "<missing") {
		t.Errorf("the host's resolv.conf was committed: %q", got)
	}

	a2, err := s.RunChain(ctx, base, []Step{extra("A"), inside}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Key != a.Key || ran != 1 {
		t.Errorf("same extra-data result: key %s vs %s, install.d ran %d times (want 1)", a2.Key, a.Key, ran)
	}
	if len(a2.Mounts) != 1 || a2.Mounts[0].Destination != "/var/cache/acme" {
		t.Errorf("a cached step lost the carried mount: %v", a2.Mounts)
	}
	b, err := s.RunChain(ctx, base, []Step{extra("B")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := readInImage(t, s, b, "etc/extra"); got != "B" {
		t.Errorf("another result: %q", got)
	}
	noop := Step{Name: "extra-data.d", Kind: Outside, ContentKeyed: true, Identity: "noop",
		Command: []string{"/bin/sh", "-c", "ls \"$TARGET_ROOT\" > /dev/null"}, Env: []string{"PATH=/usr/bin:/bin"}}
	none, err := s.RunChain(ctx, base, []Step{noop}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if none.Name != base.Name || none.Key == base.Key {
		t.Errorf("a step that changed nothing: image %s (want the base's), key %s", none.Name, none.Key)
	}
}
