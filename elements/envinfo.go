package elements

import (
	"fmt"
	"strings"
)

// ImageElementEnv is what DIB's element-info --env gives hooks:
// IMAGE_ELEMENT (space separated names), IMAGE_ELEMENT_YAML (one
// "name: path" line per element) and the bash function
// get_image_element_array, whose output fits `declare -A a=(...)`.
type ImageElementEnv struct {
	Element     string
	ElementYAML string
	ArrayBody   string // what get_image_element_array echoes
}

// Env returns the IMAGE_ELEMENT variables for the resolved set.
func (r *Resolution) Env() ImageElementEnv {
	var names []string
	var yaml, arr strings.Builder
	for _, e := range r.Elements {
		names = append(names, e.Name)
		fmt.Fprintf(&yaml, "%s: %s\n", e.Name, e.Dir)
		fmt.Fprintf(&arr, "[%s]=%s ", e.Name, e.Dir)
	}
	return ImageElementEnv{Element: strings.Join(names, " "), ElementYAML: yaml.String(), ArrayBody: arr.String()}
}

// Vars returns the environment variables for hooks, including the exported
// bash function (bash imports BASH_FUNC_<name>%% variables as functions).
func (e ImageElementEnv) Vars() map[string]string {
	return map[string]string{
		"IMAGE_ELEMENT":                       e.Element,
		"IMAGE_ELEMENT_YAML":                  e.ElementYAML,
		"BASH_FUNC_get_image_element_array%%": "() {  echo " + shellSingleQuote(e.ArrayBody) + "\n}",
	}
}

// Script is the text `element-info --env` prints, for `eval`.
func (e ImageElementEnv) Script() string {
	return fmt.Sprintf("export IMAGE_ELEMENT=%s\nexport IMAGE_ELEMENT_YAML=%s\nfunction get_image_element_array {\n  echo %s\n};\nexport -f get_image_element_array;\n",
		shellSingleQuote(e.Element), shellSingleQuote(e.ElementYAML), shellSingleQuote(e.ArrayBody))
}

func shellSingleQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
