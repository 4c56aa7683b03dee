package pipelinecmd

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"builder/cmd/imagecmd"
	"builder/imagebuild"
	"builder/pipeline"
)

// sampleValue is a valid, non-default value of each kind of setting.
func sampleValue(s imagebuild.Setting) string {
	switch s.Name {
	case "break":
		return "before-install"
	case "elements_path":
		return "/elements/a:/elements/b"
	case "checksum":
		return "md5"
	case "isolation":
		return "oci"
	case "cache_max_size":
		return "5G"
	case "cache_from":
		return "127.0.0.1:5000/a/cache,127.0.0.1:5000/b/cache"
	case "cache_to":
		return "127.0.0.1:5000/a/cache"
	case "arch":
		return "aarch64"
	}
	switch s.Kind {
	case imagebuild.Bool:
		return "true"
	case imagebuild.Int:
		return "2"
	case imagebuild.Float:
		return "3.5"
	case imagebuild.List:
		return "qcow2,raw"
	}
	return "value-of-" + s.Name
}

// comparable keeps what the settings decide, not what each command sets for
// itself (where output goes, its progress writer, the command line).
func comparable(r imagebuild.Request) imagebuild.Request {
	r.Out, r.DebugShell, r.DebugOut, r.Args, r.Verbose = nil, nil, nil, nil, false
	r.Output, r.ImageCache = "", ""
	r.Env = nil
	return r
}

func imageRequest(t *testing.T, environ []string, args ...string) imagebuild.Request {
	t.Helper()
	var got *imagecmd.Options
	cmd := imagecmd.NewCmdImage(func(_ context.Context, o *imagecmd.Options) error { got = o; return nil })
	cmd.SetArgs(append(args, "debian", "vm"))
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("builder image %v: %v", args, err)
	}
	got.Environ = environ
	req, err := got.Request()
	if err != nil {
		t.Fatalf("builder image %v with %v: %v", args, environ, err)
	}
	return req
}

func pipelineRequest(t *testing.T, environ []string, yamlLines ...string) imagebuild.Request {
	t.Helper()
	doc := "images:\n  - name: a\n    elements: [debian, vm]\n"
	for _, l := range yamlLines {
		doc += "    " + l + "\n"
	}
	f, err := pipeline.Parse([]byte(doc), "/pipeline")
	if err != nil {
		t.Fatalf("pipeline file:\n%s\n%v", doc, err)
	}
	req, err := f.Request(f.Images[0], environ, "/cache", "/out/a")
	if err != nil {
		t.Fatalf("pipeline request with %v: %v", environ, err)
	}
	return req
}

// Every DIB variable builder image reads is read the same way by pipeline
// run (both go through imagebuild.Settings), and every setting given as a
// flag and as a pipeline key gives the same request.
func TestPipelineAndImageReadSettingsAlike(t *testing.T) {
	base := comparable(imageRequest(t, nil))
	checked := 0
	for _, s := range imagebuild.Settings {
		v := sampleValue(s)
		if s.Env != "" {
			env := []string{s.Env + "=" + v}
			img := comparable(imageRequest(t, env))
			pipe := comparable(pipelineRequest(t, env))
			if s.Name == "formats" || s.Name == "image_cache" {
				continue // the pipeline decides them by their own keys
			}
			if reflect.DeepEqual(img, base) && s.Name != "min_tmpfs" {
				t.Errorf("%s=%s changed nothing in builder image's request", s.Env, v)
			}
			if !reflect.DeepEqual(img, pipe) {
				t.Errorf("%s=%s: builder image and pipeline run read it differently:\nimage    %+v\npipeline %+v", s.Env, v, img, pipe)
			}
			checked++
		}
		if s.Flag != "" && s.Name != "output" && s.Name != "image_cache" {
			if s.Kind == imagebuild.Bool {
				v = "true" // a flag is on or off
			}
			line := fmt.Sprintf("%s: %q", s.Name, v)
			switch s.Name {
			case "formats", "packages":
				line = fmt.Sprintf("%s: [%s]", s.Name, strings.ReplaceAll(v, ",", ", "))
			case "size":
				line = "size: " + v
			}
			img := comparable(imageRequest(t, nil, "--"+s.Flag+"="+v))
			pipe := comparable(pipelineRequest(t, nil, line))
			if !reflect.DeepEqual(img, pipe) {
				t.Errorf("--%s=%s and %s: %q differ:\nimage    %+v\npipeline %+v", s.Flag, v, s.Name, v, img, pipe)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d DIB variables checked", checked)
	}
}
