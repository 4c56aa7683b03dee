package rootfs

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"builder/internal/testreq"
)

// gpgKey makes an OpenPGP signing key in a directory of its own and
// returns a function that signs with it (detached or clearsigned) and its
// public key, ASCII-armored, in a file.
func gpgKey(t *testing.T, name string) (sign func(data []byte, clear bool) []byte, pubkey string) {
	t.Helper()
	testreq.Tool(t, "gpg", "gpg")
	testreq.Tool(t, "gpgv", "gpgv")
	home, err := os.MkdirTemp("", "gpg-") // short: gpg-agent's socket path has a length limit
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
	gpg(nil, "--quick-gen-key", name+" <"+name+"@example.org>", "ed25519", "sign", "never")
	pubkey = filepath.Join(t.TempDir(), name+".asc")
	if err := os.WriteFile(pubkey, gpg(nil, "--armor", "--export"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(data []byte, clear bool) []byte {
		if clear {
			return gpg(data, "--clearsign")
		}
		return gpg(data, "--detach-sign")
	}, pubkey
}

// A download checked against a signed checksums file: the signature must
// verify with the given keyring (detached, or a clearsigned file whose
// unsigned text is ignored), the file must be listed, and its SHA-512 must
// match; otherwise nothing is cached.
func TestFetchVerifiedSignedChecksums(t *testing.T) {
	sign, pub := gpgKey(t, "distro")
	otherSign, _ := gpgKey(t, "mallory")
	body := []byte(strings.Repeat("upstream cloud image\n", 2000))
	s512 := sha512.Sum512(body)
	s256 := sha256.Sum256(body)
	good512, good256 := hex.EncodeToString(s512[:]), hex.EncodeToString(s256[:])
	sums := []byte(fmt.Sprintf("%s  other.qcow2\n%s  debian.qcow2\n", strings.Repeat("1", 128), good512))

	var mu sync.Mutex
	files := map[string][]byte{
		"/img/debian.qcow2":      body,
		"/img/SHA512SUMS":        sums,
		"/img/SHA512SUMS.sign":   sign(sums, false),
		"/img/SHA512SUMS.forged": otherSign(sums, false),
		"/img/CHECKSUM":          sign([]byte("SHA256 (debian.qcow2) = "+good256+"\n"), true),
		"/img/BADCHECKSUM":       sign([]byte("SHA256 (debian.qcow2) = "+strings.Repeat("2", 64)+"\n"), true),
	}
	// A clearsigned file with an unsigned line that lists another hash:
	// only what the signature covers counts.
	files["/img/PADDED"] = append([]byte(strings.Repeat("0", 64)+"  debian.qcow2\n"), files["/img/CHECKSUM"]...)
	gets := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, ".qcow2") {
			gets++
		}
		w.Write(b)
	}))
	defer srv.Close()
	ctx := context.Background()
	img := srv.URL + "/img/debian.qcow2"

	cache := t.TempDir()
	var log strings.Builder
	p, d, err := FetchVerified(ctx, img, cache, Verification{ChecksumsURL: srv.URL + "/img/SHA512SUMS", SignatureURL: srv.URL + "/img/SHA512SUMS.sign", Keyring: pub}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if d.Algo != "sha512" || d.Hex != good512 || !strings.Contains(log.String(), "signed by key ") {
		t.Errorf("digest %v, log %q", d, log.String())
	}
	if got, _ := os.ReadFile(p); string(got) != string(body) {
		t.Fatal("content differs")
	}
	// Cached: the checksums file is read again, the image is not.
	if _, _, err := FetchVerified(ctx, img, cache, Verification{ChecksumsURL: srv.URL + "/img/SHA512SUMS", SignatureURL: srv.URL + "/img/SHA512SUMS.sign", Keyring: pub}, nil); err != nil || gets != 1 {
		t.Errorf("cache not reused: %d downloads, %v", gets, err)
	}
	// Clearsigned, BSD form; the unsigned padding is ignored.
	for _, sums := range []string{"/img/CHECKSUM", "/img/PADDED"} {
		if _, d, err := FetchVerified(ctx, img, cache, Verification{ChecksumsURL: srv.URL + sums, Keyring: pub}, nil); err != nil || d.Hex != good256 {
			t.Errorf("%s: %v %v", sums, d, err)
		}
	}
	// An explicit checksum.
	if _, _, err := FetchVerified(ctx, img, cache, Verification{Checksum: "sha512:" + good512}, nil); err != nil {
		t.Error(err)
	}

	for _, c := range []struct {
		v    Verification
		want string
	}{
		{Verification{ChecksumsURL: srv.URL + "/img/SHA512SUMS", SignatureURL: srv.URL + "/img/SHA512SUMS.forged", Keyring: pub}, "does not verify"},
		{Verification{ChecksumsURL: srv.URL + "/img/SHA512SUMS", Keyring: pub}, "not signed"},
		{Verification{ChecksumsURL: srv.URL + "/img/SHA512SUMS", SignatureURL: srv.URL + "/img/SHA512SUMS.sign"}, "keyring"},
		{Verification{ChecksumsURL: srv.URL + "/img/BADCHECKSUM", Keyring: pub}, "expected 2222"},
		{Verification{Checksum: "sha512:" + strings.Repeat("3", 128)}, "expected 3333"},
		{Verification{Checksum: "md5:abc"}, "give sha256:HEX"},
		{Verification{ChecksumsURL: srv.URL + "/img/nothing"}, "404"},
	} {
		fresh := t.TempDir()
		_, _, err := FetchVerified(ctx, img, fresh, c.v, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.v, err, c.want)
		}
		if ents, _ := os.ReadDir(fresh); len(ents) != 0 {
			t.Errorf("%+v: left %d files in the cache", c.v, len(ents))
		}
	}
	// The checksums file does not list the file.
	files["/img/other.img"] = body
	if _, _, err := FetchVerified(ctx, srv.URL+"/img/other.img", t.TempDir(), Verification{ChecksumsURL: srv.URL + "/img/SHA512SUMS"}, nil); err == nil || !strings.Contains(err.Error(), "does not list other.img") {
		t.Errorf("unlisted file: %v", err)
	}
}
