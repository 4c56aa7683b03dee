//go:build k8se2e

// Package k8s runs builder's pipeline as a Kubernetes Indexed Job on a
// real one-node Kubernetes v1.34 that hack/k8s/cluster.sh starts on
// 127.0.0.1 (binaries built once and cached under the test cache), with a
// local registry as the shared step cache and a real Glance behind
// Keystone (hack/ci-services.sh). The Job is the one `builder pipeline
// plan --format kubernetes` writes; only --host-network is added, as the
// registry and Glance listen on the node's loopback. Needs root; skipped
// with -short.
package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"builder/internal/testregistry"
	"builder/internal/testreq"
)

var repo = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

func testCache() string {
	if c := os.Getenv("BUILDER_TEST_CACHE"); c != "" {
		return c
	}
	return "/var/tmp/builder-test-cache"
}

// run runs a command and fails the test with its output on error.
func run(t *testing.T, ctx context.Context, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 60))
	}
	return string(out)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cluster is a running test cluster.
type cluster struct {
	dir  string
	kube string
}

func (c *cluster) kubectl(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	return run(t, ctx, nil, c.kube, append([]string{"kubectl", "--kubeconfig", filepath.Join(c.dir, "kubeconfig")}, args...)...)
}

func (c *cluster) kubectlErr(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, c.kube, append([]string{"kubectl", "--kubeconfig", filepath.Join(c.dir, "kubeconfig")}, args...)...).CombinedOutput()
	return string(out), err
}

func startCluster(t *testing.T, ctx context.Context) *cluster {
	t.Helper()
	script := filepath.Join(repo, "hack", "k8s", "cluster.sh")
	start := time.Now()
	run(t, ctx, nil, script, "build")
	t.Logf("cluster binaries: %s (cached under %s/k8s)", time.Since(start).Round(time.Second), testCache())
	dir, err := os.MkdirTemp("/var/tmp", "builder-k8s-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: dir, kube: filepath.Join(testCache(), "k8s", "bin", "kube")}
	env := []string{"K8S_DIR=" + dir, "K8S_CACHE=" + filepath.Join(testCache(), "k8s")}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range []string{"kubelet", "controller-manager"} {
				if b, err := os.ReadFile(filepath.Join(dir, "log", l+".log")); err == nil {
					t.Logf("%s log (end):\n%s", l, tail(string(b), 25))
				}
			}
		}
		cmd := exec.Command(script, "down")
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	start = time.Now()
	run(t, ctx, env, script, "up")
	t.Logf("cluster up: %s", time.Since(start).Round(time.Second))
	return c
}

// builderImage is the Containerfile's image with this builder binary: the
// image e2e tests build (or built here the same way), plus the binary.
func builderImage(t *testing.T, ctx context.Context, bin string) string {
	t.Helper()
	const base, image = "localhost/builder-e2e:latest", "localhost/builder-k8s:test"
	if exec.Command("podman", "image", "exists", base).Run() != nil {
		buildContainerfile(t, ctx, base)
	}
	dir := t.TempDir()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "builder"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM "+base+"\nCOPY builder /usr/local/bin/builder\n"), 0o644)
	run(t, ctx, nil, "podman", "build", "-q", "-t", image, dir)
	return image
}

// hostBuilder is hack/test.sh's builder (BUILDER_BIN), or this tree's.
func hostBuilder(t *testing.T, ctx context.Context) string {
	t.Helper()
	if bin := os.Getenv("BUILDER_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "builder")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/builder")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// buildContainerfile builds the Containerfile on a Debian base made with
// mmdebstrap, as tests/e2e does (no registry here).
func buildContainerfile(t *testing.T, ctx context.Context, image string) {
	t.Helper()
	const base = "localhost/builder-e2e-base:bookworm"
	if exec.Command("podman", "image", "exists", base).Run() != nil {
		tar := filepath.Join(testCache(), "e2e-minbase-bookworm.tar")
		if _, err := os.Stat(tar); err != nil {
			run(t, ctx, nil, "mmdebstrap", "--variant=minbase", "--format=tar", "bookworm", tar)
		}
		run(t, ctx, nil, "podman", "import", tar, base)
	}
	args := []string{"build", "--network=host", "--build-arg", "BASE=" + base, "-t", image}
	if ca := "/etc/ssl/certs/ca-certificates.crt"; fileExists(ca) {
		args = append(args, "-v", ca+":/run/host-ca.crt:ro", "--build-arg", "CURL_CA_BUNDLE=/run/host-ca.crt", "--build-arg", "SSL_CERT_FILE=/run/host-ca.crt")
	}
	for _, v := range []string{"GOMODCACHE:/root/go/pkg/mod", "GOCACHE:/root/.cache/go-build"} {
		name, dst, _ := strings.Cut(v, ":")
		if out, err := exec.Command("go", "env", name).Output(); err == nil && strings.TrimSpace(string(out)) != "" {
			args = append(args, "-v", strings.TrimSpace(string(out))+":"+dst)
		}
	}
	if proxy, err := exec.Command("go", "env", "GOPROXY").Output(); err == nil {
		args = append(args, "--build-arg", "GOPROXY="+strings.TrimSpace(string(proxy)))
	}
	run(t, ctx, nil, "podman", append(args, repo)...)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func freePorts(t *testing.T, n int) []int {
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startGlance starts Glance behind Keystone and returns the OS_*
// variables of its openrc.
func startGlance(t *testing.T, ctx context.Context) []string {
	t.Helper()
	script := filepath.Join(repo, "hack", "ci-services.sh")
	run(t, ctx, nil, script, "install")
	dir, err := os.MkdirTemp("", "builder-k8s-glance-")
	if err != nil {
		t.Fatal(err)
	}
	p := freePorts(t, 2)
	env := []string{"SVC_DIR=" + dir, "GLANCE_AUTH=keystone", fmt.Sprintf("GL_PORT=%d", p[0]), fmt.Sprintf("KS_PORT=%d", p[1])}
	t.Cleanup(func() {
		cmd := exec.Command(script, "down")
		cmd.Env = append(os.Environ(), env...)
		cmd.Run()
	})
	run(t, ctx, env, script, "up")
	b, err := os.ReadFile(filepath.Join(dir, "builder-openrc"))
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, f := range strings.Fields(strings.TrimPrefix(line, "export ")) {
			if strings.HasPrefix(f, "OS_") && strings.Contains(f, "=") {
				k, v, _ := strings.Cut(f, "=")
				vars = append(vars, k+"="+strings.Trim(v, `"'`))
			}
		}
	}
	return vars
}

// glanceImages lists every image the project sees (Keystone login as the
// pods' credentials).
func glanceImages(t *testing.T, ctx context.Context, osEnv []string) []images.Image {
	t.Helper()
	m := map[string]string{}
	for _, kv := range osEnv {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint: m["OS_AUTH_URL"], Username: m["OS_USERNAME"], Password: m["OS_PASSWORD"], DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectName: m["OS_PROJECT_NAME"], DomainName: "Default"},
	}
	p, err := openstack.AuthenticatedClient(ctx, ao)
	if err != nil {
		t.Fatalf("keystone login: %v", err)
	}
	c, err := openstack.NewImageV2(p, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := images.List(c, images.ListOpts{Visibility: images.ImageVisibility("all")}).AllPages(ctx)
	if err != nil {
		t.Fatalf("list images: %v", err)
	}
	imgs, err := images.ExtractImages(pages)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

// ranPhases are the hook phases a build's progress shows as run.
func ranPhases(log string) []string {
	var ran []string
	re := regexp.MustCompile(`(?m)^\[[a-z0-9-]+\]     ([a-z-]+\.d)\s+[0-9.]+s(.*)$`)
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		if !strings.Contains(m[2], "cached") {
			ran = append(ran, m[1])
		}
	}
	return ran
}

type podReport struct {
	Images []struct {
		Name      string `json:"name"`
		Result    string `json:"result"`
		Publish   string `json:"publish"`
		Published []struct {
			Name    string `json:"name"`
			ImageID string `json:"image_id"`
		} `json:"published"`
	} `json:"images"`
}

// The pipeline as an Indexed Job: two images, one pod each, sharing their
// steps through the registry; a pod killed in the middle of its build is
// replaced and nothing half-published remains; a second run of the Job
// takes every step from the registry.
func TestPipelineAsIndexedJob(t *testing.T) {
	testreq.Short(t, "starts a Kubernetes cluster, a registry and Glance, and builds two images: skipped with -short")
	testreq.Root(t, "runs containerd, the kubelet and Glance")
	for _, tool := range []string{"podman", "openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			testreq.Missing(t, "%s is not installed (hack/test.sh installs podman)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	testStart := time.Now()

	bin := hostBuilder(t, ctx)
	image := builderImage(t, ctx, bin)
	reg := testregistry.Start(t)
	cache := reg.Addr + "/builder/k8s-cache"
	osEnv := startGlance(t, ctx)
	c := startCluster(t, ctx)
	run(t, ctx, []string{"K8S_DIR=" + c.dir, "K8S_CACHE=" + filepath.Join(testCache(), "k8s")},
		filepath.Join(repo, "hack", "k8s", "cluster.sh"), "load", image)

	// Credentials go to a Secret, never into the manifest.
	envFile := filepath.Join(c.dir, "openstack.env")
	if err := os.WriteFile(envFile, []byte(strings.Join(osEnv, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.kubectl(t, ctx, "create", "secret", "generic", "builder-openstack", "--from-env-file", envFile)
	os.Remove(envFile)
	password := ""
	for _, kv := range osEnv {
		if v, ok := strings.CutPrefix(kv, "OS_PASSWORD="); ok {
			password = v
		}
	}

	suffix := fmt.Sprint(time.Now().Unix())
	names := map[string]string{"alpha": "k8s-alpha-" + suffix, "beta": "k8s-beta-" + suffix}
	pipelineFile := filepath.Join(c.dir, "farm.yaml")
	os.WriteFile(pipelineFile, []byte(fmt.Sprintf(`# Two images sharing their base; boot tests are the boot-test suite's
# (under software emulation they would add minutes per pod here).
defaults:
  formats: [qcow2]
  boot_test: false
  cache_tls_verify: false        # the test registry speaks plain HTTP
  publish: {clouds: [env], visibility: community, keep: 2}   # public is Glance's admins'
images:
  - name: beta
    elements: [debian-minimal, vm]
    packages: [less]
    publish: {name: %s}
  - name: alpha
    elements: [debian-minimal, vm]
    publish: {name: %s}
`, names["beta"], names["alpha"])), 0o644)

	writeJob := func(job string) string {
		manifest := run(t, ctx, nil, bin, "pipeline", "plan", "--format", "kubernetes", "--name", job, "--image", image,
			"--parallelism", "2", "--retries", "2", "--cache-from", cache, "--cache-to", cache, "--host-network",
			"--cpu", "500m", "--memory", "1Gi", pipelineFile)
		if password != "" && strings.Contains(manifest, password) {
			t.Fatalf("the manifest holds the cloud's password")
		}
		p := filepath.Join(c.dir, job+".yaml")
		os.WriteFile(p, []byte(manifest), 0o644)
		return p
	}

	// Run 1: cold (empty registry, empty pods). Index 0 is alpha, 1 is beta.
	start := time.Now()
	c.kubectl(t, ctx, "apply", "-f", writeJob("farm-1"))
	killed := killMidBuild(t, ctx, c, "farm-1", 1)
	waitJob(t, ctx, c, "farm-1", 40*time.Minute)
	t.Logf("run 1 (cold, one pod killed and retried): %s", time.Since(start).Round(time.Second))
	checkJob(t, ctx, c, "farm-1", killed)
	reports := podReports(t, ctx, c, "farm-1")
	checkGlance(t, ctx, osEnv, names, reports)

	// Run 2: new pods, empty stores, warm registry: no hook runs but
	// extra-data.d (which copies host data and so always runs).
	start = time.Now()
	c.kubectl(t, ctx, "apply", "-f", writeJob("farm-2"))
	waitJob(t, ctx, c, "farm-2", 20*time.Minute)
	t.Logf("run 2 (warm registry): %s", time.Since(start).Round(time.Second))
	checkJob(t, ctx, c, "farm-2", false)
	for _, pod := range podNames(t, ctx, c, "farm-2", "Succeeded") {
		log := c.kubectl(t, ctx, "logs", pod)
		if !strings.Contains(log, "taken from the registry cache "+cache) {
			t.Errorf("run 2, pod %s does not say it took steps from the registry:\n%s", pod, tail(log, 40))
		}
		for _, phase := range ranPhases(log) {
			if phase != "extra-data.d" {
				t.Errorf("run 2, pod %s ran %s; every step but extra-data.d should come from the registry", pod, phase)
			}
		}
	}
	checkGlance(t, ctx, osEnv, names, podReports(t, ctx, c, "farm-2"))
	t.Logf("whole test: %s", time.Since(testStart).Round(time.Second))
}

// killMidBuild SIGKILLs the builder of the job's pod for index once its
// build has started: a crash, not a polite stop. It reports whether it
// killed one.
func killMidBuild(t *testing.T, ctx context.Context, c *cluster, job string, index int) bool {
	t.Helper()
	sel := fmt.Sprintf("job-name=%s,batch.kubernetes.io/job-completion-index=%d", job, index)
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		pod, _ := c.kubectlErr(ctx, "get", "pods", "-l", sel, "-o", "jsonpath={.items[0].metadata.name}")
		if pod != "" && !strings.Contains(pod, "error") {
			log, _ := c.kubectlErr(ctx, "logs", pod)
			// The build has begun (a cold one takes minutes): in 10 s it is
			// in the middle of it, and has published nothing.
			if strings.Contains(log, "] build: ") && !strings.Contains(log, "publish to") {
				time.Sleep(10 * time.Second)
				log, _ = c.kubectlErr(ctx, "logs", pod)
				id, err := c.kubectlErr(ctx, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}")
				if err != nil || !strings.HasPrefix(id, "containerd://") {
					t.Fatalf("container of %s: %q %v", pod, id, err)
				}
				run(t, ctx, nil, "ctr", "-a", filepath.Join(c.dir, "containerd", "containerd.sock"), "-n", "k8s.io",
					"tasks", "kill", "-a", "-s", "SIGKILL", strings.TrimPrefix(id, "containerd://"))
				t.Logf("killed pod %s mid-build; its log ended:\n%s", pod, tail(log, 5))
				return true
			}
			if strings.Contains(log, "publish to") {
				t.Errorf("pod %s reached publishing before the test could kill it mid-build", pod)
				return false
			}
		}
		time.Sleep(2 * time.Second)
	}
	t.Errorf("index %d of %s never started building", index, job)
	return false
}

func waitJob(t *testing.T, ctx context.Context, c *cluster, job string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		out, _ := c.kubectlErr(ctx, "get", "job", job, "-o", `jsonpath={range .status.conditions[*]}{.type}={.status} {end}`)
		if strings.Contains(out, "Complete=True") {
			return
		}
		if strings.Contains(out, "Failed=True") {
			break
		}
		time.Sleep(3 * time.Second)
	}
	status, _ := c.kubectlErr(ctx, "get", "job", job, "-o", "jsonpath={.status}")
	pods, _ := c.kubectlErr(ctx, "get", "pods", "-l", "job-name="+job, "-o", "wide")
	for _, pod := range podNames(t, ctx, c, job, "") {
		log, _ := c.kubectlErr(ctx, "logs", pod)
		t.Logf("pod %s log (end):\n%s", pod, tail(log, 30))
	}
	t.Fatalf("job %s did not complete: %s\n%s", job, status, pods)
}

func podNames(t *testing.T, ctx context.Context, c *cluster, job, phase string) []string {
	t.Helper()
	args := []string{"get", "pods", "-l", "job-name=" + job, "-o", "jsonpath={range .items[*]}{.metadata.name} {end}"}
	if phase != "" {
		args = append(args, "--field-selector", "status.phase="+phase)
	}
	out, _ := c.kubectlErr(ctx, args...)
	return strings.Fields(out)
}

// checkJob: both indexes succeeded, and when a pod was killed, its index
// failed once and was retried.
func checkJob(t *testing.T, ctx context.Context, c *cluster, job string, killed bool) {
	t.Helper()
	out := c.kubectl(t, ctx, "get", "job", job, "-o", "jsonpath={.status.succeeded} {.status.failed} {.status.completedIndexes}")
	f := strings.Fields(out)
	if len(f) < 2 || f[0] != "2" || f[len(f)-1] != "0,1" && f[len(f)-1] != "0-1" {
		t.Errorf("job %s: succeeded/failed/completedIndexes = %q, want 2 and 0-1", job, out)
	}
	if killed && (len(f) != 3 || f[1] != "1") {
		t.Errorf("job %s: want one failed pod (the killed one), got %q", job, out)
	}
}

// podReports are the summaries the pods left as termination messages.
func podReports(t *testing.T, ctx context.Context, c *cluster, job string) []podReport {
	t.Helper()
	var reps []podReport
	for _, pod := range podNames(t, ctx, c, job, "Succeeded") {
		msg := c.kubectl(t, ctx, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].state.terminated.message}")
		var r podReport
		if err := json.Unmarshal([]byte(msg), &r); err != nil {
			t.Errorf("pod %s: termination message is not the report: %v\n%s", pod, err, msg)
			continue
		}
		reps = append(reps, r)
	}
	if len(reps) != 2 {
		t.Errorf("job %s: %d reports, want 2", job, len(reps))
	}
	return reps
}

// checkGlance: each name has exactly one community (the file's visibility) active image, the one its
// pod's report names, with its hash; nothing half-published (queued,
// saving, importing) is left.
func checkGlance(t *testing.T, ctx context.Context, osEnv []string, names map[string]string, reps []podReport) {
	t.Helper()
	reported := map[string]string{}
	for _, r := range reps {
		for _, img := range r.Images {
			if img.Result != "ok" || img.Publish != "ok" || len(img.Published) != 1 {
				t.Errorf("report of %s: %+v", img.Name, img)
				continue
			}
			reported[img.Published[0].Name] = img.Published[0].ImageID
		}
	}
	imgs := glanceImages(t, ctx, osEnv)
	for _, name := range names {
		var public []images.Image
		for _, img := range imgs {
			if !strings.HasPrefix(img.Name, name) {
				continue
			}
			switch img.Status {
			case images.ImageStatusActive, images.ImageStatusDeactivated:
			default:
				t.Errorf("half-published image %s (%s) status %s", img.Name, img.ID, img.Status)
			}
			if img.Name == name && img.Visibility == images.ImageVisibilityCommunity {
				public = append(public, img)
			}
		}
		if len(public) != 1 {
			t.Errorf("%s: %d community images, want 1: %+v", name, len(public), public)
			continue
		}
		p := public[0]
		if p.Status != images.ImageStatusActive || p.SizeBytes == 0 || p.Properties["os_hash_algo"] != "sha512" || len(fmt.Sprint(p.Properties["os_hash_value"])) != 128 {
			t.Errorf("%s: %+v", name, p)
		}
		if reported[name] != p.ID {
			t.Errorf("%s: Glance's image of that name is %s, the pod's report says %s", name, p.ID, reported[name])
		}
	}
}
