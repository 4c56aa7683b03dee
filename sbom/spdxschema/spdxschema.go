// Package spdxschema checks documents against the official SPDX 2.3 JSON
// schema (spdx-schema.json beside this file; its origin in README.md).
// Tests use it; builder itself does not.
package spdxschema

import (
	"bytes"
	_ "embed"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed spdx-schema.json
var schema []byte

// Validate returns why data is not a valid SPDX 2.3 JSON document, or nil.
func Validate(data []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return fmt.Errorf("the SPDX schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("file:///spdx-schema.json", doc); err != nil {
		return fmt.Errorf("the SPDX schema: %w", err)
	}
	sch, err := c.Compile("file:///spdx-schema.json")
	if err != nil {
		return fmt.Errorf("the SPDX schema: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}
