package pipelinecmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"builder/cmd/imagecmd"
	"builder/pipeline"
)

// A file whose content must reach the pods unchanged: comments, blank
// lines, a first line indented deeper than the rest would be in YAML.
const planFile = `# farm
defaults:
  publish: {clouds: [env]}
  boot_test: false

images:
  - name: web
    elements: [debian, vm]
  - name: db
    elements: [debian-minimal, vm]
    variables: {DIB_RELEASE: "trixie"}
`

func writePlanFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "farm.yaml")
	if err := os.WriteFile(p, []byte(planFile), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCmdPipeline(nil)
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestPlanJSON(t *testing.T) {
	file := writePlanFile(t)
	out, err := runCmd(t, "plan", file)
	if err != nil {
		t.Fatal(err)
	}
	var p pipeline.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan output is not JSON: %v\n%s", err, out)
	}
	if len(p.Images) != 2 || p.Images[0].Name != "db" || p.Images[0].Index != 0 || p.Images[1].Name != "web" || p.Images[1].Index != 1 {
		t.Fatalf("plan images: %+v", p.Images)
	}
	if !reflect.DeepEqual(p.Images[0].Command, []string{"builder", "pipeline", "run", "--only", "db", file}) {
		t.Errorf("command: %v", p.Images[0].Command)
	}
}

func isUsage(err error) bool {
	var ue *imagecmd.UsageError
	return errors.As(err, &ue)
}

// The Job: one index per image, each pod running its shard unprivileged,
// the cache and credentials as asked, the file itself in a ConfigMap.
func TestPlanKubernetes(t *testing.T) {
	file := writePlanFile(t)
	out, err := runCmd(t, "plan", "--format", "kubernetes", "--image", "reg.example.com/builder:1", "--parallelism", "1", "--retries", "3",
		"--cache-from", "reg.example.com/builder/cache", "--cache-to", "reg.example.com/builder/cache",
		"--env", "DIB_DISTRIBUTION_MIRROR=http://deb.example.org/debian", "--name", "farm", file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "privileged: true") {
		t.Errorf("the Job asks for a privileged pod")
	}
	dec := yaml.NewDecoder(strings.NewReader(out))
	var cm, job map[string]any
	if err := dec.Decode(&cm); err != nil {
		t.Fatalf("ConfigMap: %v\n%s", err, out)
	}
	if err := dec.Decode(&job); err != nil {
		t.Fatalf("Job: %v\n%s", err, out)
	}
	if cm["kind"] != "ConfigMap" || job["kind"] != "Job" {
		t.Fatalf("kinds %v, %v", cm["kind"], job["kind"])
	}
	if got := cm["data"].(map[string]any)["pipeline.yaml"]; got != planFile {
		t.Errorf("the ConfigMap changes the file:\n%q\nwant\n%q", got, planFile)
	}
	spec := job["spec"].(map[string]any)
	if spec["completionMode"] != "Indexed" || spec["completions"] != 2 || spec["parallelism"] != 1 || spec["backoffLimitPerIndex"] != 3 {
		t.Errorf("job spec: %v", spec)
	}
	pod := spec["template"].(map[string]any)["spec"].(map[string]any)
	if pod["restartPolicy"] != "Never" || pod["hostNetwork"] != nil {
		t.Errorf("pod spec: %v", pod)
	}
	psc := pod["securityContext"].(map[string]any)
	if psc["runAsUser"] != 1000 || psc["runAsNonRoot"] != true {
		t.Errorf("pod security context: %v", psc)
	}
	c := pod["containers"].([]any)[0].(map[string]any)
	if c["image"] != "reg.example.com/builder:1" {
		t.Errorf("image %v", c["image"])
	}
	var args []string
	for _, a := range c["args"].([]any) {
		args = append(args, a.(string))
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{"pipeline run", "--shard $(JOB_COMPLETION_INDEX)/2", "--cache-from reg.example.com/builder/cache",
		"--cache-to reg.example.com/builder/cache", "--report /dev/termination-log", "/etc/builder/pipeline.yaml"} {
		if !strings.Contains(joined, want) {
			t.Errorf("pod args lack %q: %s", want, joined)
		}
	}
	// The pods' command line must be one builder accepts.
	parsed := strings.ReplaceAll(joined, "$(JOB_COMPLETION_INDEX)", "1")
	var got *Options
	cmd := NewCmdPipeline(func(_ context.Context, o *Options) error { got = o; return nil })
	cmd.SetArgs(strings.Fields(parsed)[1:]) // after "pipeline"
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.ExecuteContext(context.Background()); err != nil || got.Shard != "1/2" || got.CacheTo != "reg.example.com/builder/cache" {
		t.Errorf("builder does not take the pods' arguments %q: %v %+v", parsed, err, got)
	}
	if sc := c["securityContext"].(map[string]any); sc["privileged"] != false {
		t.Errorf("container security context: %v", sc)
	}
	env := map[string]any{}
	for _, e := range c["env"].([]any) {
		m := e.(map[string]any)
		env[m["name"].(string)] = m["value"]
	}
	if env["DIB_DISTRIBUTION_MIRROR"] != "http://deb.example.org/debian" || env["DOCKER_CONFIG"] == nil {
		t.Errorf("env: %v", env)
	}
	from := c["envFrom"].([]any)[0].(map[string]any)["secretRef"].(map[string]any)
	if from["name"] != "builder-openstack" {
		t.Errorf("envFrom: %v", from)
	}
}

func TestPlanKubernetesRefusesBadInput(t *testing.T) {
	file := writePlanFile(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "kubernetes"}, "--image"},
		{[]string{"--format", "kubernetes", "--image", "b", "--env", "OS_PASSWORD=hunter2"}, "Secret"},
		{[]string{"--format", "kubernetes", "--image", "b", "--name", "Farm_1"}, "--name"},
		{[]string{"--format", "kubernetes", "--image", "b", "--parallelism", "0"}, "--parallelism"},
		{[]string{"--format", "yaml"}, "json or kubernetes"},
		{[]string{"--group", "nope"}, "nope"},
	} {
		out, err := runCmd(t, append(append([]string{"plan"}, c.args...), file)...)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("plan %v: %v, want a usage error naming %q", c.args, err, c.want)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("plan %v printed the secret", c.args)
		}
	}
}

func TestRunRefusesBadShard(t *testing.T) {
	file := writePlanFile(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--shard", "2/2"}, "0 <= I < N"},
		{[]string{"--shard", "0/2", "--only", "web"}, "give one"},
		{[]string{"--cache-to", "https://reg/x"}, "without a scheme"},
	} {
		_, err := runCmd(t, append(append([]string{"run", "--dry-run"}, c.args...), file)...)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run %v: %v, want a usage error naming %q", c.args, err, c.want)
		}
	}
	out, err := runCmd(t, "run", "--dry-run", "--only", "web", "--only", "db", file)
	if err != nil || !strings.Contains(out, "[web] would build") || !strings.Contains(out, "[db] would build") {
		t.Errorf("--only repeated: %v\n%s", err, out)
	}
}
