package elements

import (
	"os/exec"
	"strings"
	"testing"
)

// The variables and the function behave in bash as DIB's do: a hook can
// `eval declare -A a=($(get_image_element_array))` and look elements up.
func TestImageElementEnvInBash(t *testing.T) {
	res := &Resolution{Elements: []*Element{{Name: "a-el", Dir: "/p/a-el"}, {Name: "b", Dir: "/p/b"}}}
	e := res.Env()
	if e.Element != "a-el b" {
		t.Fatalf("IMAGE_ELEMENT = %q", e.Element)
	}
	if e.ElementYAML != "a-el: /p/a-el\nb: /p/b\n" {
		t.Fatalf("IMAGE_ELEMENT_YAML = %q", e.ElementYAML)
	}
	check := `eval declare -A a=($(get_image_element_array)); echo "${a[a-el]}|$IMAGE_ELEMENT"`
	// As exported variables (how hooks get them) ...
	cmd := exec.Command("/bin/bash", "-c", check)
	for k, v := range e.Vars() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "/p/a-el|a-el b" {
		t.Fatalf("from the environment: %v %q", err, out)
	}
	// ... and as the --env script.
	out, err = exec.Command("/bin/bash", "-c", e.Script()+check).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "/p/a-el|a-el b" {
		t.Fatalf("from the script: %v %q", err, out)
	}
}
