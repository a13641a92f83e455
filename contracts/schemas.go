package contracts

import (
	"embed"
	"fmt"
	"io/fs"
)

// SchemaBaseURI is the base of the $id of every published schema: a kind's
// schema is SchemaBaseURI + kind + ".json"; shared definitions are in
// SchemaBaseURI + "defs.json".
const SchemaBaseURI = "https://schemas.zhianhub.invalid/mps-bus/v1/"

//go:embed schemas/*.json
var schemaFiles embed.FS

// Schemas returns the JSON Schemas (draft 2020-12) of the payloads:
// <kind>.json for every kind and defs.json, which they reference.
func Schemas() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schemas")
	if err != nil { // "schemas" is a valid path; fs.Sub cannot fail here
		return schemaFiles
	}
	return sub
}

// Schema returns the JSON Schema of kind's payload.
func Schema(kind string) ([]byte, error) {
	if !Known(kind) {
		return nil, fmt.Errorf("%w: %.64q", ErrUnknownKind, kind)
	}
	return schemaFiles.ReadFile("schemas/" + kind + ".json")
}
