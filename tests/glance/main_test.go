// Package glance tests builder publish and builder pipeline against a real
// OpenStack Glance (and Keystone) from Debian's packages, started on
// 127.0.0.1 by hack/ci-services.sh: one Glance without authentication, one
// behind Keystone, which also has Nova (with its fake virt driver; see
// nova_test.go for what that proves), Placement and Neutron. Skipped with
// -short; needs root (and, the first time, the Debian mirror for
// hack/ci-services.sh install).
//
// The crash tests kill and restart a Glance: they hold its services.mu
// exclusively, every other test that uses that Glance holds it shared.
package glance

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	tokens3 "github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"go.podman.io/buildah"

	"builder/cmd/diffcmd"
	"builder/cmd/pipelinecmd"
	"builder/cmd/publishcmd"

	"builder/internal/testreq"
)

// helperEnv makes the test binary act as `builder` (publish and pipeline),
// for the tests that need a separate process to kill or an exit code.
const helperEnv = "BUILDER_GLANCE_TEST_HELPER"

var (
	repo      string
	noauth    *services
	keystone  *services
	startErr  error
	testCache = "/var/tmp/builder-test-cache"
)

// services is one ci-services.sh instance.
type services struct {
	mode               string // noauth or keystone
	dir                string
	glancePort, ksPort int
	glanceURL          string
	// nova: the keystone services also run Nova (and Placement, Neutron,
	// RabbitMQ) on these ports: nova, placement, neutron, rabbitmq and
	// its node-to-node port.
	nova      bool
	novaPorts []int
	upTime    time.Duration
	// mu is held exclusively by a test that kills this Glance.
	mu sync.RWMutex
}

func TestMain(m *testing.M) {
	// The pipeline builds in this process: buildah re-executes the binary
	// for its helpers.
	if buildah.InitReexec() {
		return
	}
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain(os.Args[1:]))
	}
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel)
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Join(filepath.Dir(file), "..", "..")
	if c := os.Getenv("BUILDER_TEST_CACHE"); c != "" {
		testCache = c
	}
	if testing.Short() || os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	code := func() (code int) {
		defer func() {
			for _, s := range []*services{noauth, keystone} {
				if s != nil {
					if code != 0 {
						s.keepLogs()
					}
					s.script("down")
				}
			}
		}()
		startErr = startServices()
		return m.Run()
	}()
	os.Exit(code)
}

// helperMain is `builder publish|pipeline|diff ...` with main's exit codes.
func helperMain(args []string) int {
	logrus.SetLevel(logrus.WarnLevel)
	root := &cobra.Command{Use: "builder", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(publishcmd.NewCmdPublish(nil), pipelinecmd.NewCmdPipeline(nil), diffcmd.NewCmdDiff())
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "builder:", err)
		return 1
	}
	return 0
}

// startServices installs what is missing, then brings both Glances up at
// the same time and logs how long each took.
func startServices() error {
	out, err := exec.Command(filepath.Join(repo, "hack", "ci-services.sh"), "install").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ci-services.sh install: %v\n%s", err, out)
	}
	ports := freePorts(8)
	noauth = &services{mode: "noauth", glancePort: ports[0]}
	keystone = &services{mode: "keystone", glancePort: ports[1], ksPort: ports[2], nova: true, novaPorts: ports[3:8]}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*services{noauth, keystone} {
		dir, err := os.MkdirTemp("", "builder-glance-"+s.mode+"-")
		if err != nil {
			return err
		}
		s.dir = dir
		s.glanceURL = fmt.Sprintf("http://127.0.0.1:%d", s.glancePort)
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if out, err := s.script("up"); err != nil {
				errs[i] = fmt.Errorf("ci-services.sh up (%s): %v\n%s", s.mode, err, out)
			}
			s.upTime = time.Since(start)
			fmt.Fprintf(os.Stderr, "glance test: %s services up in %.1f s\n", s.mode, s.upTime.Seconds())
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (s *services) script(cmd string) ([]byte, error) {
	c := exec.Command(filepath.Join(repo, "hack", "ci-services.sh"), cmd)
	c.Env = append(os.Environ(), "SVC_DIR="+s.dir, "GLANCE_AUTH="+s.mode,
		fmt.Sprintf("GL_PORT=%d", s.glancePort), fmt.Sprintf("KS_PORT=%d", s.ksPort))
	if s.nova {
		p := s.novaPorts
		c.Env = append(c.Env, "NOVA=1", fmt.Sprintf("NOVA_PORT=%d", p[0]), fmt.Sprintf("PL_PORT=%d", p[1]),
			fmt.Sprintf("NET_PORT=%d", p[2]), fmt.Sprintf("MQ_PORT=%d", p[3]), fmt.Sprintf("MQ_DIST_PORT=%d", p[4]))
	}
	return c.CombinedOutput()
}

// keepLogs saves the services' logs before down removes them, when a test
// failed: what Glance, Keystone, Nova or RabbitMQ said is the cause of
// many a failure here (a stalled RPC, a full disk), and it is printed too,
// briefly, for CI.
func (s *services) keepLogs() {
	if s.dir == "" {
		return
	}
	keep, err := os.MkdirTemp("", "builder-glance-logs-"+s.mode+"-")
	if err != nil {
		return
	}
	// cp of each service's log directory, as SVC_DIR/SERVICE/log.
	logs, _ := filepath.Glob(filepath.Join(s.dir, "*", "log"))
	for _, d := range logs {
		dst := filepath.Join(keep, filepath.Base(filepath.Dir(d)))
		exec.Command("cp", "-r", d, dst).Run()
	}
	out, _ := exec.Command("sh", "-c", `grep -h -E " (ERROR|CRITICAL) |\[(warning|error)\].*alarm" "$1"/*/* 2>/dev/null | tail -n 30`, "sh", keep).Output()
	fmt.Fprintf(os.Stderr, "glance test: a test failed; the %s services' logs are kept in %s; their last errors:\n%s", s.mode, keep, out)
}

func freePorts(n int) []int {
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func needServices(t *testing.T) {
	t.Helper()
	testreq.Short(t, "starts real Glance and Keystone: skipped with -short")
	if os.Geteuid() != 0 {
		testreq.Missing(t, "needs root to install and run Glance from Debian's packages")
	}
	if startErr != nil {
		t.Fatalf("services did not start: %v", startErr)
	}
}

// cloud is how a test reaches one Glance: the environment publish gets,
// and a client of the test's own to look at the images.
type cloud struct {
	name   string
	svc    *services
	env    []string
	client *gophercloud.ServiceClient
	owner  string // project of env's credentials; "" without Keystone
}

// noauthCloud is the Glance without authentication; url overrides its
// endpoint (a fault-injecting proxy).
func noauthCloud(t *testing.T, url string) *cloud {
	t.Helper()
	if url == "" {
		url = noauth.glanceURL
	}
	p := &gophercloud.ProviderClient{}
	p.SetToken("noauth")
	base := noauth.glanceURL + "/"
	return &cloud{
		name:   "noauth",
		svc:    noauth,
		env:    baseEnv("OS_AUTH_TYPE=none", "OS_IMAGE_URL="+url),
		client: &gophercloud.ServiceClient{ProviderClient: p, Endpoint: base, ResourceBase: base + "v2/", Type: "image"},
	}
}

// keystoneCloud is the Glance behind Keystone, with the credentials of
// openrc ("admin-openrc" or "builder-openrc"); the test's client is admin.
func keystoneCloud(t *testing.T, openrc string) *cloud {
	t.Helper()
	env := readOpenrc(t, filepath.Join(keystone.dir, openrc))
	admin := readOpenrc(t, filepath.Join(keystone.dir, "admin-openrc"))
	client, _ := keystoneClient(t, admin)
	_, project := keystoneClient(t, env)
	return &cloud{name: "keystone/" + strings.TrimSuffix(openrc, "-openrc"), svc: keystone, env: baseEnv(env...), client: client, owner: project}
}

func keystoneClient(t *testing.T, env []string) (*gophercloud.ServiceClient, string) {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint: m["OS_AUTH_URL"], Username: m["OS_USERNAME"], Password: m["OS_PASSWORD"], DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectName: m["OS_PROJECT_NAME"], DomainName: "Default"},
	}
	p, err := openstack.AuthenticatedClient(context.Background(), ao)
	if err != nil {
		t.Fatalf("keystone login as %s: %v", m["OS_USERNAME"], err)
	}
	c, err := openstack.NewImageV2(p, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	var project string
	if r, ok := p.GetAuthResult().(tokens3.CreateResult); ok {
		if pr, err := r.ExtractProject(); err == nil && pr != nil {
			project = pr.ID
		}
	}
	if project == "" {
		t.Fatalf("no project in the token of %s", m["OS_USERNAME"])
	}
	return c, project
}

// readOpenrc reads "export K=V K=V" lines.
func readOpenrc(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, f := range strings.Fields(strings.TrimPrefix(line, "export ")) {
			if strings.Contains(f, "=") {
				env = append(env, f)
			}
		}
	}
	return env
}

// baseEnv is a clean environment plus env: nothing of the test runner's
// OS_* leaks in.
func baseEnv(env ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
}

// result of one builder command.
type result struct {
	err            error
	code           int
	stdout, stderr string
}

// publish runs `builder publish` in this process.
func (c *cloud) publish(t *testing.T, args ...string) result {
	t.Helper()
	// Locks in the test's directory, not in /run/builder.
	return runInProcess(t, c.env, append([]string{"publish", "--lock-dir", t.TempDir()}, args...)...)
}

func runInProcess(t *testing.T, env []string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	root := &cobra.Command{Use: "builder", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(
		publishcmd.NewCmdPublish(func(ctx context.Context, o *publishcmd.Options) error {
			o.Environ = env
			return publishcmd.Run(ctx, o)
		}),
		pipelinecmd.NewCmdPipeline(func(ctx context.Context, o *pipelinecmd.Options) error {
			o.Environ = env
			return pipelinecmd.Run(ctx, o)
		}))
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&errb, "builder:", err)
	}
	r := result{err: err, stdout: out.String(), stderr: errb.String()}
	if err != nil {
		r.code = 1
	}
	t.Logf("builder %s -> %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, r.stdout, r.stderr)
	return r
}

// runHelper runs the test binary as `builder ARGS` in its own process.
func runHelper(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(env, helperEnv+"=1")
	return cmd
}

// makeImage writes a small qcow2 disk (virtual size gib) with a GPT like
// builder's: BIOS boot, ESP and root, or without the BIOS boot partition
// for a UEFI-only disk. seed makes its content, and so its hash, unique.
func makeImage(t *testing.T, dir, name string, seed string, gib float64, uefiOnly bool) (path, sha string) {
	t.Helper()
	raw := filepath.Join(dir, name+".raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(gib * (1 << 30))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	layout := "label: gpt\n"
	if !uefiOnly {
		layout += "size=1M, type=21686148-6449-6E6F-744E-656564454649\n"
	}
	layout += "size=8M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\n"
	cmd := exec.Command("sfdisk", "-q", raw)
	cmd.Stdin = strings.NewReader(layout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	if !uefiOnly {
		// GRUB's boot.img would be here: the BIOS boot code.
		writeAt(t, raw, 0, []byte{0xeb, 0x63, 0x90})
	}
	// Content that differs per seed, in the root partition.
	data := bytes.Repeat([]byte(seed+" "), 4096)
	writeAt(t, raw, 20<<20, data)
	path = filepath.Join(dir, name+".qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	os.Remove(raw)
	return path, fileSHA512(t, path)
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func fileSHA512(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// all lists every image of the cloud the test's client sees.
func (c *cloud) all(t *testing.T) []images.Image {
	t.Helper()
	pages, err := images.List(c.client, images.ListOpts{Visibility: images.ImageVisibility("all"), SortKey: "created_at", SortDir: "asc"}).AllPages(context.Background())
	if err != nil {
		t.Fatalf("%s: list images: %v", c.name, err)
	}
	imgs, err := images.ExtractImages(pages)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

// series lists the images that are, or were, NAME for the publisher's
// owner: carrying builder_series=NAME or named NAME.
func (c *cloud) series(t *testing.T, name string) []images.Image {
	t.Helper()
	var out []images.Image
	for _, img := range c.all(t) {
		if img.Owner != c.owner {
			continue
		}
		if img.Name == name || propOf(img, "builder_series") == name {
			out = append(out, img)
		}
	}
	return out
}

func propOf(img images.Image, k string) string {
	if v, ok := img.Properties[k].(string); ok {
		return v
	}
	return ""
}

// resolve checks the invariant: the images a user finds under NAME (with
// the given visibility) exist, are all active and carry the hash of a file
// that was published, and returns them.
func (c *cloud) resolve(t *testing.T, name, visibility string, published ...string) []images.Image {
	t.Helper()
	var found []images.Image
	for _, img := range c.series(t, name) {
		if img.Name != name || string(img.Visibility) != visibility {
			continue
		}
		found = append(found, img)
		ok := false
		for _, h := range published {
			ok = ok || propOf(img, "os_hash_value") == h
		}
		if img.Status != images.ImageStatusActive || !ok {
			t.Errorf("%s: %q resolves to %s, status %s, hash %.16s: not an active image of a published file", c.name, name, img.ID, img.Status, propOf(img, "os_hash_value"))
		}
	}
	if len(found) == 0 {
		t.Errorf("%s: nothing resolves under %q (%s)", c.name, name, visibility)
	}
	return found
}

// snapshot describes every image that is or was about name (any owner),
// to prove that a step changed nothing. Tests run in parallel on the same
// Glance, so it does not look at other names.
func (c *cloud) snapshot(t *testing.T, name string) string {
	t.Helper()
	var b strings.Builder
	for _, img := range c.all(t) {
		if !strings.HasPrefix(img.Name, name) && propOf(img, "builder_series") != name {
			continue
		}
		fmt.Fprintf(&b, "%s %q %s %s prot=%v upd=%s state=%s\n", img.ID, img.Name, img.Visibility, img.Status, img.Protected,
			img.UpdatedAt.Format(time.RFC3339Nano), propOf(img, "builder_state"))
	}
	return b.String()
}

func (c *cloud) get(t *testing.T, id string) *images.Image {
	t.Helper()
	img, err := images.Get(context.Background(), c.client, id).Extract()
	if err != nil {
		t.Fatalf("%s: show %s: %v", c.name, id, err)
	}
	return img
}

func (c *cloud) setProtected(t *testing.T, id string, p bool) {
	t.Helper()
	if _, err := images.Update(context.Background(), c.client, id, images.UpdateOpts{images.ReplaceImageProtected{NewProtected: p}}).Extract(); err != nil {
		t.Fatalf("%s: protect %s: %v", c.name, id, err)
	}
}

// one returns the only image of imgs, or fails.
func one(t *testing.T, what string, imgs []images.Image) images.Image {
	t.Helper()
	if len(imgs) != 1 {
		var ids []string
		for _, i := range imgs {
			ids = append(ids, fmt.Sprintf("%s %q %s %s", i.ID, i.Name, i.Visibility, propOf(i, "builder_state")))
		}
		t.Fatalf("%s: want one image, got %d: %v", what, len(imgs), ids)
	}
	return imgs[0]
}

func byState(imgs []images.Image, state string) []images.Image {
	var out []images.Image
	for _, i := range imgs {
		if propOf(i, "builder_state") == state {
			out = append(out, i)
		}
	}
	return out
}

// unique makes names that do not collide between tests and runs.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
}
