package rootfs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
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
	if log == nil {
		log = io.Discard
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%q is not an http(s) URL", rawURL)
	}
	key := sha256.Sum256([]byte(rawURL))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dest := filepath.Join(dir, hex.EncodeToString(key[:8])+"-"+safeFileName(path.Base(u.Path)))
	record := dest + ".sha256"
	client := &http.Client{Timeout: 30 * time.Minute}

	want := strings.ToLower(expectSHA256)
	if want == "" {
		want = publishedSHA256(ctx, client, u)
	}
	if have, err := os.ReadFile(record); err == nil {
		if want == "" {
			want = strings.TrimSpace(string(have))
		}
		if sum, err := fileSHA256(dest); err == nil && sum == want {
			fmt.Fprintf(log, "using cached %s (sha256 %s)\n", dest, sum[:16])
			return dest, nil
		}
		fmt.Fprintf(log, "cached %s does not match its checksum: fetching it again\n", dest)
	}
	os.Remove(dest)
	os.Remove(record)

	tmp, err := os.CreateTemp(dir, ".download-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		tmp.Close()
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		tmp.Close()
		return "", fmt.Errorf("download %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tmp.Close()
		return "", fmt.Errorf("download %s: %s", rawURL, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("download %s: %w", rawURL, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("download %s: got %d of %d bytes", rawURL, n, resp.ContentLength)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return "", fmt.Errorf("download %s: sha256 %s, expected %s: not cached", rawURL, sum, want)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return "", err
	}
	if err := writeIfDifferent(record, []byte(sum+"\n")); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "fetched %s (%d bytes, sha256 %s)\n", rawURL, n, sum[:16])
	return dest, nil
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
