package pipelinecmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"builder/cmd/imagecmd"
	"builder/pipeline"
)

// PlanOptions are the inputs of `pipeline plan`.
type PlanOptions struct {
	Out    io.Writer
	File   string
	Group  string
	Format string // json or kubernetes

	// Kubernetes Job.
	Name           string
	Namespace      string
	Image          string
	Parallelism    int
	Retries        int
	CacheFrom      []string
	CacheTo        string
	CloudSecret    string
	RegistrySecret string
	Env            []string
	HostNetwork    bool
	CPU, Memory    string
}

func newCmdPlan(run func(context.Context, *PlanOptions) error) *cobra.Command {
	o := &PlanOptions{}
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "List the images of FILE for runners, or write them as a Kubernetes Indexed Job",
		Long: `Spread a pipeline over runners. --format json (the default) prints the
images sorted by name with their index, their settings and the command
that builds, tests and publishes each alone: the matrix of a CI system.
The index is the image's position among the sorted names, so
builder pipeline run --shard INDEX/COUNT (COUNT the number of images)
runs exactly that image.

--format kubernetes writes a ConfigMap holding FILE and an Indexed Job
with one completion index per image: each pod runs the builder image
(the Containerfile's) as an unprivileged user and runs
builder pipeline run --shard $(JOB_COMPLETION_INDEX)/COUNT, the registry
cache as --cache-from/--cache-to, OpenStack credentials (OS_* variables)
from the Secret --cloud-secret and registry credentials from the
dockerconfigjson Secret --registry-secret. A failed index is retried
(--retries); each pod's summary is its termination message and its log.
Apply it with kubectl apply -f.`,
		Example: `  builder pipeline plan pipeline.yaml
  builder pipeline plan --format kubernetes --image registry.example.com/builder:1.4 \
      --cache-from registry.example.com/builder/cache --cache-to registry.example.com/builder/cache \
      --parallelism 4 pipeline.yaml > job.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &imagecmd.UsageError{Err: fmt.Errorf("expected one pipeline FILE, got %d arguments: use builder pipeline plan FILE", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.File = args[0]
			o.Out = cmd.OutOrStdout()
			if run != nil {
				return run(cmd.Context(), o)
			}
			return Plan(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Format, "format", "json", "output: json (the images, for a CI matrix) or kubernetes (an Indexed Job)")
	f.StringVar(&o.Group, "group", "", "plan the schedule group `NAME` of the file")
	f.StringVar(&o.Name, "name", "builder-pipeline", "kubernetes: the Job's name (and its ConfigMap's, NAME-pipeline)")
	f.StringVar(&o.Namespace, "namespace", "", "kubernetes: the namespace (default: kubectl's)")
	f.StringVar(&o.Image, "image", "", "kubernetes: the builder container image the pods run (built from the Containerfile)")
	f.IntVar(&o.Parallelism, "parallelism", 2, "kubernetes: how many images build at once")
	f.IntVar(&o.Retries, "retries", 2, "kubernetes: how many times a failed image is tried again (per index)")
	f.StringSliceVar(&o.CacheFrom, "cache-from", nil, "kubernetes: registry repositories the pods take cached steps from")
	f.StringVar(&o.CacheTo, "cache-to", "", "kubernetes: registry repository the pods push their steps to")
	f.StringVar(&o.CloudSecret, "cloud-secret", "builder-openstack", "kubernetes: Secret whose keys become the pods' environment (OS_AUTH_URL, OS_PASSWORD ...: the cloud \"env\")")
	f.StringVar(&o.RegistrySecret, "registry-secret", "builder-registry", "kubernetes: Secret of type kubernetes.io/dockerconfigjson with the cache registry's login")
	f.StringArrayVar(&o.Env, "env", nil, "kubernetes: `KEY=VALUE` set in the pods (build variables such as DIB_DISTRIBUTION_MIRROR; never a secret)")
	f.BoolVar(&o.HostNetwork, "host-network", false, "kubernetes: run the pods on their node's network (a registry or cloud only the nodes reach)")
	f.StringVar(&o.CPU, "cpu", "1", "kubernetes: CPU each pod requests")
	f.StringVar(&o.Memory, "memory", "2Gi", "kubernetes: memory each pod requests")
	return cmd
}

// Plan prints the plan of o.File in o.Format.
func Plan(_ context.Context, o *PlanOptions) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	f, err := pipeline.Load(o.File)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return &imagecmd.UsageError{Err: fmt.Errorf("%w: give the path of a pipeline file you can read", err)}
		}
		return &imagecmd.UsageError{Err: fmt.Errorf("%w (fix the file; builder pipeline run --help shows its format)", err)}
	}
	switch o.Format {
	case "json":
		p, err := f.Plan(o.Group, o.File)
		if err != nil {
			return &imagecmd.UsageError{Err: err}
		}
		b, _ := json.MarshalIndent(p, "", "  ")
		_, err = fmt.Fprintf(o.Out, "%s\n", b)
		return err
	case "kubernetes":
		content, err := os.ReadFile(o.File)
		if err != nil {
			return &imagecmd.UsageError{Err: err}
		}
		// The pods read the file from the ConfigMap under this name.
		p, err := f.Plan(o.Group, podPipelineFile)
		if err != nil {
			return &imagecmd.UsageError{Err: err}
		}
		if err := o.checkKubernetes(p); err != nil {
			return &imagecmd.UsageError{Err: err}
		}
		return writeKubernetes(o.Out, o, p, string(content))
	}
	return &imagecmd.UsageError{Err: fmt.Errorf("--format %q: want json or kubernetes", o.Format)}
}

const (
	podPipelineFile = "/etc/builder/pipeline.yaml"
	podCache        = "/home/builder/.cache/image-create"
	podOutput       = "/work/images"
)

var (
	dnsNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (o *PlanOptions) checkKubernetes(p *pipeline.Plan) error {
	switch {
	case o.Image == "":
		return errors.New("--image: name the builder image the pods run (the Containerfile's, pushed where the cluster pulls from)")
	case len(p.Images) == 0:
		return errors.New("the pipeline has no image to plan")
	case !dnsNameRE.MatchString(o.Name) || len(o.Name) > 52:
		return fmt.Errorf("--name %q: a Job name is lower-case letters, digits and '-', at most 52 characters", o.Name)
	case o.Namespace != "" && !dnsNameRE.MatchString(o.Namespace):
		return fmt.Errorf("--namespace %q: lower-case letters, digits and '-'", o.Namespace)
	case o.Parallelism < 1:
		return fmt.Errorf("--parallelism %d: at least 1", o.Parallelism)
	case o.Retries < 0:
		return fmt.Errorf("--retries %d: 0 or more", o.Retries)
	case o.CloudSecret != "" && !dnsNameRE.MatchString(o.CloudSecret):
		return fmt.Errorf("--cloud-secret %q: a Secret's name", o.CloudSecret)
	case o.RegistrySecret != "" && !dnsNameRE.MatchString(o.RegistrySecret):
		return fmt.Errorf("--registry-secret %q: a Secret's name", o.RegistrySecret)
	}
	for _, kv := range o.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !envNameRE.MatchString(k) {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		if strings.HasPrefix(k, "OS_") || strings.Contains(strings.ToUpper(k), "PASSWORD") || strings.Contains(strings.ToUpper(k), "SECRET") || strings.Contains(strings.ToUpper(k), "TOKEN") {
			return fmt.Errorf("--env %s: credentials go in the Secret --cloud-secret, never in the manifest", k)
		}
		_ = v
	}
	return nil
}

type kubeData struct {
	*PlanOptions
	Plan     *pipeline.Plan
	Count    int
	Args     []string
	EnvPairs [][2]string
	Content  string
}

func writeKubernetes(w io.Writer, o *PlanOptions, p *pipeline.Plan, content string) error {
	args := []string{"pipeline", "run"}
	if o.Group != "" {
		args = append(args, "--group", o.Group)
	}
	args = append(args, "--shard", fmt.Sprintf("$(JOB_COMPLETION_INDEX)/%d", len(p.Images)),
		"--image-cache", podCache, "--output-dir", podOutput, "--report", "/dev/termination-log")
	for _, r := range o.CacheFrom {
		args = append(args, "--cache-from", r)
	}
	if o.CacheTo != "" {
		args = append(args, "--cache-to", o.CacheTo)
	}
	args = append(args, podPipelineFile)
	d := kubeData{PlanOptions: o, Plan: p, Count: len(p.Images), Args: args, Content: content}
	for _, kv := range o.Env {
		k, v, _ := strings.Cut(kv, "=")
		d.EnvPairs = append(d.EnvPairs, [2]string{k, v})
	}
	return kubeTemplate.Execute(w, d)
}

// q quotes a string for YAML: a JSON string is a YAML string.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var kubeTemplate = template.Must(template.New("job").Funcs(template.FuncMap{
	"q": q,
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		for i, l := range lines {
			if strings.TrimSpace(l) != "" {
				lines[i] = pad + l
			} else {
				lines[i] = ""
			}
		}
		return strings.Join(lines, "\n")
	},
}).Parse(`# Written by builder pipeline plan --format kubernetes: the pipeline
# {{.File}}{{if .Group}} (group {{.Group}}){{end}} as an Indexed Job, one completion index per image:
{{- range .Plan.Images}}
#   {{.Index}} {{.Name}}
{{- end}}
#
# Each pod runs the builder image as the unprivileged user "builder" (uid
# 1000): no privileged flag, no host devices, no added capabilities. The
# build makes its own user namespace with newuidmap/newgidmap (file
# capabilities inside the image), so the pod needs:
#   - unprivileged user namespaces on the node (the kernel's default;
#     Ubuntu 24.04 nodes: sysctl kernel.apparmor_restrict_unprivileged_userns=0),
#   - seccomp and AppArmor Unconfined: the runtime's default profiles refuse
#     unshare(CLONE_NEWUSER) and mount, which the build's own namespace uses,
#   - allowPrivilegeEscalation (the default): with no_new_privs the kernel
#     ignores newuidmap's file capabilities.
# The store and the outputs live on emptyDir volumes (the kernel's overlay
# works there, not on the container's overlay root); no /dev/fuse, no
# /dev/kvm (boot tests run under software emulation, slower).
# Credentials come from Secrets, never from this file (both optional):
{{- if .CloudSecret}}
#   {{.CloudSecret}}: the OS_* variables (the cloud "env"), or a key clouds.yaml
#     (named clouds; mounted as /etc/openstack/clouds.yaml),
{{- end}}
{{- if .RegistrySecret}}
#   {{.RegistrySecret}}: type kubernetes.io/dockerconfigjson, the cache registry's login.
{{- end}}
# Each pod's summary is its log and its termination message:
#   kubectl get pods -l job-name={{.Name}} -o jsonpath='{range .items[*]}{.status.containerStatuses[0].state.terminated.message}{end}'
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{.Name}}-pipeline
{{- if .Namespace}}
  namespace: {{.Namespace}}
{{- end}}
  labels:
    app.kubernetes.io/name: builder-pipeline
    app.kubernetes.io/instance: {{.Name}}
data:
  pipeline.yaml: |2
{{indent 4 .Content}}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{.Name}}
{{- if .Namespace}}
  namespace: {{.Namespace}}
{{- end}}
  labels:
    app.kubernetes.io/name: builder-pipeline
    app.kubernetes.io/instance: {{.Name}}
spec:
  completionMode: Indexed
  completions: {{.Count}}
  parallelism: {{.Parallelism}}
  # A failed image is built again in a new pod, up to this many times, without
  # counting against the other images; an index that keeps failing fails
  # alone. Publishing is safe across pods: an interrupted upload is never
  # promoted and two runners never promote one name at once.
  backoffLimitPerIndex: {{.Retries}}
  podFailurePolicy:
    rules:
    # Exit code 2 is bad input (the pipeline file, a flag): retrying cannot help.
    - action: FailIndex
      onExitCodes: {containerName: build, operator: In, values: [2]}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: builder-pipeline
        app.kubernetes.io/instance: {{.Name}}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      enableServiceLinks: false
{{- if .HostNetwork}}
      hostNetwork: true
{{- end}}
      securityContext:
        runAsUser: 1000
        runAsGroup: 1000
        runAsNonRoot: true
        fsGroup: 1000
        seccompProfile: {type: Unconfined}
        appArmorProfile: {type: Unconfined}
      containers:
      - name: build
        image: {{q .Image}}
        args:
{{- range .Args}}
        - {{q .}}
{{- end}}
        env:
{{- if .RegistrySecret}}
        - {name: DOCKER_CONFIG, value: /run/secrets/builder-registry}
{{- end}}
{{- range .EnvPairs}}
        - {name: {{index . 0}}, value: {{q (index . 1)}}}
{{- end}}
        - {name: HOME, value: /home/builder}
{{- if .CloudSecret}}
        envFrom:
        - secretRef: {name: {{.CloudSecret}}, optional: true}
{{- end}}
        securityContext:
          privileged: false
          allowPrivilegeEscalation: true
        terminationMessagePolicy: FallbackToLogsOnError
        resources:
          requests: {cpu: {{q .CPU}}, memory: {{q .Memory}}}
        volumeMounts:
        - {name: cache, mountPath: /home/builder/.cache}
        - {name: work, mountPath: /work}
        - {name: pipeline, mountPath: /etc/builder, readOnly: true}
{{- if .RegistrySecret}}
        - {name: registry-login, mountPath: /run/secrets/builder-registry, readOnly: true}
{{- end}}
{{- if .CloudSecret}}
        - {name: clouds, mountPath: /etc/openstack, readOnly: true}
{{- end}}
      volumes:
      - {name: cache, emptyDir: {}}
      - {name: work, emptyDir: {}}
      - {name: pipeline, configMap: {name: {{.Name}}-pipeline}}
{{- if .RegistrySecret}}
      - name: registry-login
        secret:
          secretName: {{.RegistrySecret}}
          optional: true
          items: [{key: .dockerconfigjson, path: config.json}]
{{- end}}
{{- if .CloudSecret}}
      - name: clouds
        secret:
          secretName: {{.CloudSecret}}
          optional: true
          items: [{key: clouds.yaml, path: clouds.yaml}]
{{- end}}
`))
