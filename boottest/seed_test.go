package boottest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"builder/internal/testreq"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := lookTool(name, name)
	if err != nil {
		testreq.Missing(t, "%s not installed: %v", name, err)
	}
	return p
}

// The test vector from Drepper's specification of SHA-512 crypt.
func TestSHA512CryptSpecVector(t *testing.T) {
	got := sha512Crypt("Hello world!", "saltstring")
	want := "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// Cases openssl cannot check: it refuses an empty password and cuts
// passwords at 256 characters. The expected values come from glibc's
// crypt(3) (python3 -c 'import crypt; crypt.crypt(pw, "$6$" + salt)').
func TestSHA512CryptGlibcVectors(t *testing.T) {
	for _, c := range []struct{ pw, salt, want string }{
		{"", "abc", "$6$abc$mJP3a6FyA8uCnzRtlnNypPwjnvpi5TP9qOrInzrfDmwxUQG38PkpCPdqfTb8JQfAngapMxeim4AZ..hSdRRzD."},
		{strings.Repeat("long password ", 20), "toolongsaltstringhere",
			"$6$toolongsaltstrin$Hid1mRambeZhbrs.wIhyzuTvTZIMP0IGn4JnecmlCgzxNdc4/k.yTFXp2D4E2PkSXOiKXGmEHcCit1XJ54UBA1"},
	} {
		if got := sha512Crypt(c.pw, c.salt); got != c.want {
			t.Errorf("pw %q salt %q:\n got  %s\nwant %s", c.pw, c.salt, got, c.want)
		}
	}
}

// The Go fallback must agree with `openssl passwd -6 -salt` on passwords
// and salts of every length class (the algorithm branches at 64 bytes of
// password and truncates salts to 16).
func TestSHA512CryptMatchesOpenSSL(t *testing.T) {
	openssl := needTool(t, "openssl")
	cases := []struct{ pw, salt string }{
		{"a", "x"},
		{"password", "saltsaltsaltsalt"},
		{"correct horse battery staple", "ABCDEFGH./123456"},
		{strings.Repeat("x", 63), "s1"},
		{strings.Repeat("y", 64), "s2"},
		{strings.Repeat("z", 65), "s3"},
		{strings.Repeat("long password ", 18), "toolongsaltstringhere"}, // 252 characters
		{"ünïcödé", "u"},
	}
	for _, c := range cases {
		cmd := exec.Command(openssl, "passwd", "-6", "-salt", c.salt, "-stdin")
		cmd.Stdin = strings.NewReader(c.pw + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		want := strings.TrimSpace(string(out))
		if got := sha512Crypt(c.pw, c.salt); got != want {
			t.Errorf("pw %q salt %q:\n got  %s\nwant %s", c.pw, c.salt, got, want)
		}
	}
}

func TestHashPasswordVerifies(t *testing.T) {
	needTool(t, "openssl")
	pw := newPassword()
	if len(pw) < 20 {
		t.Fatalf("password %d characters", len(pw))
	}
	if pw == newPassword() {
		t.Fatal("two passwords are equal")
	}
	h, how, err := hashPassword(context.Background(), pw)
	if err != nil {
		t.Fatal(err)
	}
	if how != "openssl" {
		t.Errorf("hashed with %s, want openssl when it is installed", how)
	}
	// $6$SALT$HASH: recomputing with the same salt must give the same hash.
	parts := strings.Split(h, "$")
	if len(parts) != 4 || parts[1] != "6" {
		t.Fatalf("hash %q", h)
	}
	if got := sha512Crypt(pw, parts[2]); got != h {
		t.Errorf("hash does not verify:\n%s\n%s", got, h)
	}
	if strings.Contains(h, pw) {
		t.Error("hash contains the password")
	}
}

func testSeedConfig() seedConfig {
	return seedConfig{
		User:         "builder",
		PasswordHash: "$6$abc$def",
		SSHKeys:      []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@host", `ssh-rsa AAAAB3 "quoted" comment`},
		InstanceID:   "builder-boot-test-0123456789ab",
		Hostname:     "builder-boot-test",
	}
}

// user-data must be valid YAML with the structure cloud-init reads.
func TestUserDataIsValidCloudConfig(t *testing.T) {
	if err := exec.Command("python3", "-c", "import yaml").Run(); err != nil {
		testreq.Missing(t, "python3 with yaml not available to parse the YAML")
	}
	c := testSeedConfig()
	ud := userData(c)
	if !strings.HasPrefix(ud, "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", ud)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "user-data")
	if err := os.WriteFile(f, []byte(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	// Print the fields the test depends on, one per line.
	py := `import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
u = d["users"][0]
print(u["name"]); print(u["hashed_passwd"]); print(u["sudo"]); print(u["lock_passwd"])
for k in u["ssh_authorized_keys"]: print(k)
w = d["write_files"][0]
print(w["path"]); print(w["permissions"])
print(d["runcmd"][0])
sys.stdout.write(w["content"])`
	out, err := exec.Command("python3", "-c", py, f).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s\n%s", err, out, ud)
	}
	want := strings.Join([]string{
		"builder", "$6$abc$def", "ALL=(ALL) NOPASSWD:ALL", "False",
		c.SSHKeys[0], c.SSHKeys[1],
		"/run/builder-boot-probe", "0755",
		"['/bin/sh', '/run/builder-boot-probe', 'builder']",
	}, "\n") + "\n" + probeScript
	if string(out) != want {
		t.Errorf("parsed user-data:\n%s\nwant:\n%s", out, want)
	}
}

// The seed is a FAT image labelled CIDATA holding exactly user-data and
// meta-data, which is what cloud-init's NoCloud datasource looks for.
func TestMakeSeed(t *testing.T) {
	needTool(t, "mkfs.vfat")
	needTool(t, "mcopy")
	minfo := needTool(t, "minfo")
	mdir := needTool(t, "mdir")
	mtype := needTool(t, "mtype")
	dir := t.TempDir()
	c := testSeedConfig()
	img, err := makeSeed(context.Background(), dir, c)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(img); err != nil || st.Size() != 2048*1024 {
		t.Fatalf("seed image: %v, %v", st, err)
	}
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return string(out)
	}
	info := run(minfo, "-i", img, "::")
	if !regexp.MustCompile(`disk label="CIDATA\s*"`).MatchString(info) {
		t.Errorf("minfo shows no CIDATA label:\n%s", info)
	}
	listing := run(mdir, "-b", "-i", img, "::")
	if got, want := strings.Fields(listing), []string{"::/user-data", "::/meta-data"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("mdir -b lists %q, want %q", got, want)
	}
	if got := run(mtype, "-i", img, "::user-data"); got != userData(c) {
		t.Errorf("user-data in the seed differs:\n%s", got)
	}
	if got, want := run(mtype, "-i", img, "::meta-data"), "instance-id: builder-boot-test-0123456789ab\nlocal-hostname: builder-boot-test\n"; got != want {
		t.Errorf("meta-data %q, want %q", got, want)
	}
	// Making it again (a second attempt) must work.
	if _, err := makeSeed(context.Background(), dir, c); err != nil {
		t.Fatalf("second makeSeed: %v", err)
	}
}
