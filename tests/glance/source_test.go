package glance

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"

	"builder/internal/testreq"
)

// upstream is a distribution's download site on 127.0.0.1: an image under
// a fixed URL (as "latest" is), the SHA512SUMS that lists it and that
// file's detached OpenPGP signature, made with a key of the test's own.
type upstream struct {
	mu      sync.Mutex
	files   map[string][]byte
	srv     *httptest.Server
	keyring string
	sign    func([]byte) []byte
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{files: map[string][]byte{}}
	u.sign, u.keyring = signingKey(t)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		b, ok := u.files[r.URL.Path]
		u.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// release puts image (a file) under /cloud/NAME with a signed checksums
// file, as a distribution publishes a new build under the same URL.
func (u *upstream) release(t *testing.T, name, image string) string {
	t.Helper()
	b, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	s := sha512.Sum512(b)
	sums := []byte(fmt.Sprintf("%s  %s\n", hex.EncodeToString(s[:]), name))
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files["/cloud/"+name] = b
	u.files["/cloud/SHA512SUMS"] = sums
	u.files["/cloud/SHA512SUMS.sign"] = u.sign(sums)
	return hex.EncodeToString(s[:])
}

// signingKey makes an OpenPGP key with gpg in a home of its own and
// returns a detached signer and the public keyring file.
func signingKey(t *testing.T) (func([]byte) []byte, string) {
	t.Helper()
	testreq.Tool(t, "gpg", "gpg")
	testreq.Tool(t, "gpgv", "gpgv")
	home, err := os.MkdirTemp("", "gpg-") // short: gpg-agent's socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	gpg := func(stdin []byte, args ...string) []byte {
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		if stdin != nil {
			cmd.Stdin = strings.NewReader(string(stdin))
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	gpg(nil, "--quick-gen-key", "Cloud Images <cloud@example.org>", "ed25519", "sign", "never")
	keyring := filepath.Join(t.TempDir(), "cloud-images.gpg")
	if err := os.WriteFile(keyring, gpg(nil, "--export"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(b []byte) []byte { return gpg(b, "--detach-sign") }, keyring
}

// A downloaded image entry, verified by the distribution's signed
// SHA512SUMS, goes through the pipeline's rotation like a built one: the
// first release is published with its source, digest and a dated
// description; a new release under the same URL replaces it (the old one
// made private, keep 2 pruning the oldest); an unchanged upstream uploads
// nothing; a release whose checksums file is not signed by the keyring's
// key is refused before anything is uploaded.
func TestPipelineDownloadedImage(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	c := noauthCloud(t, "")
	dir := t.TempDir()
	up := newUpstream(t)
	name := unique("upstream")
	file := filepath.Join(dir, "pipeline.yaml")
	yaml := fmt.Sprintf(`defaults:
  image_cache: %s
  output_dir: out
  publish: {clouds: [env], keep: 2, visibility: community}
images:
  - name: %s
    source:
      url: %s/cloud/debian-12-genericcloud-amd64.qcow2
      checksums: %s/cloud/SHA512SUMS
      signature: %s/cloud/SHA512SUMS.sign
      keyring: %s
    boot_test: false     # the test's image is a partitioned disk without an OS
    publish:
      description: "Debian 12 from upstream, built {{.Date}}"
`, filepath.Join(dir, "cache"), name, up.srv.URL, up.srv.URL, up.srv.URL, up.keyring)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	output := filepath.Join(dir, "out", name+".qcow2")
	run := func(what string) result {
		t.Helper()
		start := time.Now()
		r := runInProcess(t, c.env, "pipeline", "run", file)
		t.Logf("%s: %.1f s", what, time.Since(start).Seconds())
		return r
	}

	var hashes []string
	for i, seed := range []string{"release-1", "release-2", "release-3"} {
		img, h := makeImage(t, dir, seed, seed, 0.5, false)
		digest := up.release(t, "debian-12-genericcloud-amd64.qcow2", img)
		hashes = append(hashes, h)
		r := run(seed)
		if r.err != nil {
			t.Fatalf("%s: %v", seed, r.err)
		}
		if fileSHA512(t, output) != h {
			t.Fatalf("%s: %s is not the upstream file as published", seed, output)
		}
		if !strings.Contains(r.stdout, "cleanup of env: removed 0 leftovers") || !strings.Contains(r.stdout, "signed by key ") {
			t.Errorf("%s: output lacks the cleanup or the signature's check", seed)
		}
		cur := one(t, seed, c.resolve(t, name, "community", hashes...))
		if propOf(cur, "os_hash_value") != h || propOf(cur, "builder_state") != "current" {
			t.Errorf("%s: current is %s, state %s", seed, cur.ID, propOf(cur, "builder_state"))
		}
		today := time.Now().UTC().Format("2006-01-02")
		for k, v := range map[string]string{
			"builder_source":        up.srv.URL + "/cloud/debian-12-genericcloud-amd64.qcow2",
			"builder_source_digest": "sha512:" + digest,
			"description":           "Debian 12 from upstream, built " + today,
		} {
			if got := propOf(cur, k); got != v {
				t.Errorf("%s: %s = %q, want %q", seed, k, got, v)
			}
		}
		if _, ok := cur.Properties["builder_elements"]; ok {
			t.Errorf("%s: a downloaded image has no elements, yet builder_elements is set", seed)
		}
		// Rotation: the previous release private, at most 2 versions.
		all := c.series(t, name)
		if want := min(i+1, 2); len(all) != want {
			t.Errorf("%s: %d versions, want %d (keep 2)", seed, len(all), want)
		}
		if i > 0 {
			prev := one(t, seed+": previous", c.resolve(t, name, "private", hashes...))
			if propOf(prev, "os_hash_value") != hashes[i-1] || propOf(prev, "builder_state") != "previous" {
				t.Errorf("%s: the previous release %s: %v", seed, prev.ID, prev.Properties)
			}
		}
	}

	// Unchanged upstream: the cached download is used, nothing uploaded.
	before := c.snapshot(t, name)
	r := run("unchanged")
	if r.err != nil || !strings.Contains(r.stdout, "using cached") || !strings.Contains(r.stdout, "published already") {
		t.Errorf("unchanged upstream: %v", r.err)
	}
	if after := c.snapshot(t, name); after != before {
		t.Errorf("an unchanged upstream changed Glance:\n%s\n->\n%s", before, after)
	}

	// A checksums file signed by another key: refused, nothing uploaded.
	img, _ := makeImage(t, dir, "forged", "forged", 0.5, false)
	up.release(t, "debian-12-genericcloud-amd64.qcow2", img)
	other, _ := signingKey(t)
	up.mu.Lock()
	up.files["/cloud/SHA512SUMS.sign"] = other(up.files["/cloud/SHA512SUMS"])
	up.mu.Unlock()
	r = run("forged")
	if r.err == nil || !strings.Contains(r.stdout, "does not verify against") || !strings.Contains(r.stdout, "FAILED at download") {
		t.Errorf("a forged signature: %v", r.err)
	}
	if after := c.snapshot(t, name); after != before {
		t.Errorf("a refused download changed Glance:\n%s\n->\n%s", before, after)
	}
}

// convert: [compat=0.10] for a cloud whose QEMU is old: the upload is a
// qcow2 of version 2 (compat 0.10) with zlib-compressed clusters, as
// Glance's own copy of the data shows; without convert the upstream file
// (version 3) is uploaded as it is.
func TestPipelineConvertCompat(t *testing.T) {
	needServices(t)
	t.Parallel()
	noauth.mu.RLock()
	defer noauth.mu.RUnlock()
	c := noauthCloud(t, "")
	dir := t.TempDir()
	up := newUpstream(t)
	img, _ := makeImage(t, dir, "upstream", "compat", 0.5, false)
	digest := up.release(t, "img.qcow2", img)
	old, cur := unique("oldqemu"), unique("newqemu")
	file := filepath.Join(dir, "pipeline.yaml")
	yaml := fmt.Sprintf(`defaults:
  image_cache: %s
  output_dir: out
  boot_test: false
  publish: {clouds: [env], visibility: private}
images:
  - name: %s
    source: {url: %s/cloud/img.qcow2, checksum: "sha512:%s"}
    convert: [compat=0.10]
  - name: %s
    source: {url: %s/cloud/img.qcow2, checksum: "sha512:%s"}
`, filepath.Join(dir, "cache"), old, up.srv.URL, digest, cur, up.srv.URL, digest)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runInProcess(t, c.env, "pipeline", "run", file); r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []struct {
		name    string
		version int
		compat  string
		zlib    bool
	}{{old, 2, "0.10", true}, {cur, 3, "1.1", false}} {
		local := filepath.Join(dir, "out", want.name+".qcow2")
		im := one(t, want.name, c.resolve(t, want.name, "private", fileSHA512(t, local)))
		// Glance's copy of the data, not the local file.
		data := filepath.Join(dir, want.name+".from-glance.qcow2")
		rd, err := imagedata.Download(context.Background(), c.client, im.ID).Extract()
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(data)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(f, rd)
		rd.Close()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(data)
		if len(b) < 8 || string(b[:4]) != "QFI\xfb" {
			t.Fatalf("%s: Glance's data is not qcow2", want.name)
		}
		if v := int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7]); v != want.version {
			t.Errorf("%s: qcow2 version %d in Glance, want %d", want.name, v, want.version)
		}
		out, err := exec.Command("qemu-img", "info", "--output=json", data).Output()
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Specific struct {
				Data struct {
					Compat          string `json:"compat"`
					CompressionType string `json:"compression-type"`
				} `json:"data"`
			} `json:"format-specific"`
		}
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatal(err)
		}
		if info.Specific.Data.Compat != want.compat || (want.zlib && info.Specific.Data.CompressionType != "zlib") {
			t.Errorf("%s: qemu-img reads Glance's data as compat %q, compression %q", want.name, info.Specific.Data.Compat, info.Specific.Data.CompressionType)
		}
		if want.zlib {
			if out, err := exec.Command("qemu-img", "check", data).CombinedOutput(); err != nil {
				t.Errorf("qemu-img check of Glance's compat=0.10 data: %v\n%s", err, out)
			}
		} else if fileSHA512(t, data) != fileSHA512(t, img) {
			t.Errorf("%s: without convert the upstream file is not what Glance has", want.name)
		}
	}
}
