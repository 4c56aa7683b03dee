package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Fetch returns a verified local copy of url under cacheDir, downloading it
// when the cache has no good copy. The download goes to a temporary file
// and is renamed into place only when complete and verified. Verification:
// the expected SHA-256 if given, else a SHA256SUMS (or SHA256SUMS.txt / the
// file's .sha256) published next to it, else the hash recorded when it was
// first downloaded. A cached copy that no longer matches (truncated,
// corrupted) is deleted and fetched again, never used.
func Fetch(ctx context.Context, rawURL, dir, expectSHA256 string, log io.Writer) (string, error) {
	path, _, err := FetchVerified(ctx, rawURL, dir, Verification{Checksum: expectSHA256}, log)
	return path, err
}

// Verification says how FetchVerified checks a download. The zero value is
// Fetch's default: a checksum published next to the file, else the hash
// recorded at the first download.
type Verification struct {
	// Checksum is the expected digest: "sha256:HEX", "sha512:HEX", or a
	// bare hex digest (its length says which).
	Checksum string
	// ChecksumsURL is a checksums file that lists the file by its name
	// (SHA256SUMS, SHA512SUMS, CHECKSUM: "HASH  NAME" or the BSD form
	// "SHA512 (NAME) = HASH"), fetched anew each time so that a file
	// replaced upstream under the same URL is noticed.
	ChecksumsURL string
	// SignatureURL is a detached OpenPGP signature of the checksums file.
	// A checksums file that is itself clearsigned needs none; with a
	// Keyring, its signed text is all that is read.
	SignatureURL string
	// Keyring holds the OpenPGP keys the checksums file must be signed
	// with (binary or ASCII-armored), checked with gpgv.
	Keyring string
}

// Digest is a hash of a file: its algorithm (sha256 or sha512) and value.
type Digest struct {
	Algo, Hex string
}

func (d Digest) String() string { return d.Algo + ":" + d.Hex }

// FetchVerified is Fetch with the verification spelled out; it returns the
// digest the file was verified against.
func FetchVerified(ctx context.Context, rawURL, dir string, v Verification, log io.Writer) (string, Digest, error) {
	if log == nil {
		log = io.Discard
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", Digest{}, fmt.Errorf("%q is not an http(s) URL", rawURL)
	}
	key := sha256.Sum256([]byte(rawURL))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", Digest{}, err
	}
	dest := filepath.Join(dir, hex.EncodeToString(key[:8])+"-"+safeFileName(path.Base(u.Path)))
	record := dest + ".sha256"
	client := &http.Client{Timeout: 30 * time.Minute}

	want, how, err := expectedDigest(ctx, client, u, v)
	if err != nil {
		return "", Digest{}, err
	}
	if have, err := os.ReadFile(record); err == nil {
		if want.Hex == "" {
			want = Digest{"sha256", strings.TrimSpace(string(have))}
			how = "the hash recorded at its first download"
		}
		if sum, err := fileDigest(dest, want.Algo); err == nil && sum == want.Hex {
			fmt.Fprintf(log, "using cached %s (%s %.16s, %s)\n", dest, want.Algo, sum, how)
			return dest, want, nil
		}
		fmt.Fprintf(log, "cached %s does not match its checksum: fetching it again\n", dest)
	}
	os.Remove(dest)
	os.Remove(record)

	removeStaleDownloads(dir)
	tmp, err := os.CreateTemp(dir, ".download-*")
	if err != nil {
		return "", Digest{}, err
	}
	defer os.Remove(tmp.Name())
	if lock := lockDownload(tmp.Name()); lock != nil {
		defer lock.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		tmp.Close()
		return "", Digest{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		tmp.Close()
		return "", Digest{}, fmt.Errorf("download %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tmp.Close()
		return "", Digest{}, fmt.Errorf("download %s: %s", rawURL, resp.Status)
	}
	// The record is always the SHA-256; a SHA-512 is computed alongside
	// when that is what the download is checked against.
	h256, h512 := sha256.New(), sha512.New()
	w := io.Writer(h256)
	if want.Algo == "sha512" {
		w = io.MultiWriter(h256, h512)
	}
	n, err := io.Copy(io.MultiWriter(tmp, w), resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", Digest{}, fmt.Errorf("download %s: %w", rawURL, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", Digest{}, fmt.Errorf("download %s: got %d of %d bytes", rawURL, n, resp.ContentLength)
	}
	sum := hex.EncodeToString(h256.Sum(nil))
	got := Digest{"sha256", sum}
	if want.Algo == "sha512" {
		got = Digest{"sha512", hex.EncodeToString(h512.Sum(nil))}
	}
	if want.Hex != "" && got.Hex != want.Hex {
		return "", Digest{}, fmt.Errorf("download %s: %s %s, expected %s (from %s): not cached", rawURL, got.Algo, got.Hex, want.Hex, how)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return "", Digest{}, err
	}
	if err := writeIfDifferent(record, []byte(sum+"\n")); err != nil {
		return "", Digest{}, err
	}
	if how == "" {
		how = "no checksum published: its hash is recorded"
	}
	fmt.Fprintf(log, "fetched %s (%d bytes, %s %.16s, %s)\n", rawURL, n, got.Algo, got.Hex, how)
	return dest, got, nil
}

// expectedDigest is what the download must hash to, and where that came
// from; an empty Digest when nothing says (Fetch's first download).
func expectedDigest(ctx context.Context, c *http.Client, u *url.URL, v Verification) (Digest, string, error) {
	if v.Checksum != "" {
		d, err := ParseDigest(v.Checksum)
		return d, "the given checksum", err
	}
	if v.ChecksumsURL == "" {
		if v.SignatureURL != "" || v.Keyring != "" {
			return Digest{}, "", errors.New("a signature or keyring needs the checksums file it signs (ChecksumsURL)")
		}
		if sum := publishedSHA256(ctx, c, u); sum != "" {
			return Digest{"sha256", sum}, "the checksum published next to it", nil
		}
		return Digest{}, "", nil
	}
	text, err := httpGet(ctx, c, v.ChecksumsURL)
	if err != nil {
		return Digest{}, "", fmt.Errorf("checksums file: %w", err)
	}
	how := "checksums file " + v.ChecksumsURL
	if v.SignatureURL != "" || v.Keyring != "" {
		if v.Keyring == "" {
			return Digest{}, "", fmt.Errorf("signature %s: name the keyring that holds the signing key", v.SignatureURL)
		}
		var sig []byte
		if v.SignatureURL != "" {
			if sig, err = httpGet(ctx, c, v.SignatureURL); err != nil {
				return Digest{}, "", fmt.Errorf("signature of the checksums file: %w", err)
			}
		}
		signed, signer, err := verifyOpenPGP(ctx, v.Keyring, text, sig)
		if err != nil {
			return Digest{}, "", fmt.Errorf("checksums file %s: %w", v.ChecksumsURL, err)
		}
		text = signed
		how += ", signed by " + signer
	}
	name := path.Base(u.Path)
	d := findDigest(string(text), name)
	if d.Hex == "" {
		return Digest{}, "", fmt.Errorf("checksums file %s does not list %s", v.ChecksumsURL, name)
	}
	return d, how, nil
}

// ParseDigest reads "sha256:HEX", "sha512:HEX" or a bare hex digest.
func ParseDigest(s string) (Digest, error) {
	algo, value, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		algo, value = "", algo
	}
	value = strings.ToLower(value)
	if _, err := hex.DecodeString(value); err != nil || value == "" {
		return Digest{}, fmt.Errorf("checksum %q: give sha256:HEX or sha512:HEX", s)
	}
	switch {
	case algo == "" && len(value) == 64, algo == "sha256" && len(value) == 64:
		return Digest{"sha256", value}, nil
	case algo == "" && len(value) == 128, algo == "sha512" && len(value) == 128:
		return Digest{"sha512", value}, nil
	}
	return Digest{}, fmt.Errorf("checksum %q: give sha256:HEX (64 digits) or sha512:HEX (128 digits)", s)
}

func fileDigest(path, algo string) (string, error) {
	if algo != "sha512" {
		return fileSHA256(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verifyOpenPGP checks text with gpgv against keyring: with a detached
// signature sig, or as a clearsigned message. It returns the signed text
// (for a clearsigned file, only what the signature covers) and the signing
// key's fingerprint.
func verifyOpenPGP(ctx context.Context, keyring string, text, sig []byte) ([]byte, string, error) {
	if _, err := exec.LookPath("gpgv"); err != nil {
		return nil, "", errors.New("gpgv is not installed (apt-get install gpgv): it checks the signature")
	}
	tmp, err := os.MkdirTemp("", "builder-gpgv-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(tmp)
	keys, err := os.ReadFile(keyring)
	if err != nil {
		return nil, "", fmt.Errorf("keyring: %w", err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(keys), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		if keys, err = dearmor(keys); err != nil {
			return nil, "", fmt.Errorf("keyring %s: %w", keyring, err)
		}
	}
	kr := filepath.Join(tmp, "keyring.gpg")
	data := filepath.Join(tmp, "data")
	if err := errors.Join(os.WriteFile(kr, keys, 0o600), os.WriteFile(data, text, 0o600)); err != nil {
		return nil, "", err
	}
	args := []string{"--homedir", tmp, "--status-fd", "1", "--keyring", kr}
	signed := text
	if sig != nil {
		sf := filepath.Join(tmp, "data.sig")
		if err := os.WriteFile(sf, sig, 0o600); err != nil {
			return nil, "", err
		}
		args = append(args, sf, data)
	} else {
		if !bytes.Contains(text, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
			return nil, "", errors.New("it is not signed: give the URL of its signature, or leave the keyring out")
		}
		args = append(args, "--output", filepath.Join(tmp, "signed"), data)
	}
	cmd := exec.CommandContext(ctx, "gpgv", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	status, err := cmd.Output()
	fpr := ""
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "[GNUPG:]" && f[1] == "VALIDSIG" {
			fpr = f[2]
		}
	}
	if err != nil || fpr == "" {
		return nil, "", fmt.Errorf("its OpenPGP signature does not verify against %s: %s", keyring, strings.TrimSpace(stderr.String()))
	}
	if sig == nil {
		if signed, err = os.ReadFile(filepath.Join(tmp, "signed")); err != nil {
			return nil, "", err
		}
	}
	return signed, "key " + fpr, nil
}

// dearmor decodes an ASCII-armored OpenPGP block (RFC 4880, 6.2), which
// gpgv reads only in binary form.
func dearmor(b []byte) ([]byte, error) {
	var body strings.Builder
	inHeaders, started := false, false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "-----BEGIN "):
			started, inHeaders = true, true
		case strings.HasPrefix(line, "-----END "):
			out, err := base64.StdEncoding.DecodeString(body.String())
			if err != nil {
				return nil, fmt.Errorf("ASCII armor: %w", err)
			}
			return out, nil
		case !started:
		case inHeaders:
			if line == "" {
				inHeaders = false
			} else if !strings.Contains(line, ":") {
				inHeaders = false
				body.WriteString(line)
			}
		case strings.HasPrefix(line, "="):
			// the CRC-24 line
		default:
			body.WriteString(line)
		}
	}
	return nil, errors.New("ASCII armor without an END line")
}

// publishedSHA256 looks for a checksum published next to the file.
func publishedSHA256(ctx context.Context, c *http.Client, u *url.URL) string {
	name := path.Base(u.Path)
	for _, sums := range []string{name + ".sha256", "SHA256SUMS", "SHA256SUMS.txt", "CHECKSUM"} {
		v := *u
		v.Path = path.Join(path.Dir(u.Path), sums)
		data, err := httpGet(ctx, c, v.String())
		if err != nil {
			continue
		}
		if sum := findSum(string(data), name); sum != "" {
			return sum
		}
	}
	return ""
}

// findDigest reads the lines findSum reads, for SHA-256 and SHA-512: a
// digest's length says its algorithm.
func findDigest(text, name string) Digest {
	algo := func(h string) string {
		if _, err := hex.DecodeString(h); err != nil {
			return ""
		}
		switch len(h) {
		case 64:
			return "sha256"
		case 128:
			return "sha512"
		}
		return ""
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && algo(f[0]) != "" && strings.TrimPrefix(f[1], "*") == name:
			return Digest{algo(f[0]), strings.ToLower(f[0])}
		case len(f) == 4 && (f[0] == "SHA256" || f[0] == "SHA512") && f[1] == "("+name+")" && f[2] == "=" &&
			algo(f[3]) == strings.ToLower(f[0]):
			return Digest{strings.ToLower(f[0]), strings.ToLower(f[3])}
		}
	}
	return Digest{}
}

// findSum reads "HASH  NAME", "HASH *NAME", a bare "HASH" and the BSD form
// "SHA256 (NAME) = HASH".
func findSum(text, name string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && len(f[0]) == 64:
			return strings.ToLower(f[0])
		case len(f) >= 2 && len(f[0]) == 64 && strings.TrimPrefix(f[1], "*") == name:
			return strings.ToLower(f[0])
		case len(f) == 4 && f[0] == "SHA256" && f[1] == "("+name+")" && len(f[3]) == 64:
			return strings.ToLower(f[3])
		}
	}
	return ""
}

// safeFileName keeps a downloaded file's name readable in the cache.
func safeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "download" + string(b)
	}
	return string(b)
}

// VerifyDownloads re-hashes every download in dir against the hash
// recorded with it; a damaged one is removed (with its record) and named.
func VerifyDownloads(dir string) (checked int, damaged []string, err error) {
	removeStaleDownloads(dir)
	records, err := filepath.Glob(filepath.Join(dir, "*.sha256"))
	if err != nil {
		return 0, nil, err
	}
	for _, record := range records {
		dest := strings.TrimSuffix(record, ".sha256")
		want, rerr := os.ReadFile(record)
		if rerr != nil {
			continue
		}
		checked++
		sum, herr := fileSHA256(dest)
		if herr == nil && sum == strings.TrimSpace(string(want)) {
			continue
		}
		os.Remove(dest)
		os.Remove(record)
		damaged = append(damaged, fmt.Sprintf("download %s: does not match its recorded sha256", filepath.Base(dest)))
	}
	return checked, damaged, nil
}
