package publish

import (
	"fmt"
	"strings"
	"text/template"
	"time"
)

// DescriptionData is what a description template (Request.Description)
// can use, e.g. "Debian 12 ({{.OSVersion}}), built {{.Date}}" or
// {{.BuildDate.Format "2 January 2006"}}.
type DescriptionData struct {
	Name      string    // the public name
	Date      string    // the build date, 2006-01-02 (UTC)
	BuildDate time.Time // the build date (UTC)
	OSDistro  string    // os_distro, e.g. debian
	OSVersion string    // os_version, e.g. 12
	Elements  string    // the elements, space separated
	Source    string    // the URL a downloaded image came from
	Version   string    // builder's version
}

// ParseDescription checks a description template by filling it in with
// sample data, so that a mistyped field is found when a pipeline file is
// read, not at publish time.
func ParseDescription(text string) error {
	_, err := RenderDescription(text, DescriptionData{BuildDate: time.Now()})
	return err
}

// RenderDescription fills in a description template.
func RenderDescription(text string, d DescriptionData) (string, error) {
	if text == "" {
		return "", nil
	}
	t, err := template.New("description").Parse(text)
	if err != nil {
		return "", fmt.Errorf("description template %q: %v (fields: .Name .Date .BuildDate .OSDistro .OSVersion .Elements .Source .Version)", text, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("description template %q: %v (fields: .Name .Date .BuildDate .OSDistro .OSVersion .Elements .Source .Version)", text, err)
	}
	return strings.TrimSpace(b.String()), nil
}

// descriptionData is the data of this publish.
func (p *publisher) descriptionData() DescriptionData {
	date := p.req.Meta.BuildDate
	if date.IsZero() {
		date = p.li.ModTime
	}
	date = date.UTC()
	return DescriptionData{
		Name:      p.req.Name,
		Date:      date.Format("2006-01-02"),
		BuildDate: date,
		OSDistro:  firstOf(p.req.Meta.OSDistro, p.li.OSDistro),
		OSVersion: firstOf(p.req.Meta.OSVersion, p.li.OSVersion),
		Elements:  strings.Join(p.req.Meta.Elements, " "),
		Source:    p.req.Meta.Source,
		Version:   p.req.Meta.BuilderVersion,
	}
}
