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

// CitySchemaBaseURI is the base of the $id of the city-bus schemas
// (feedback-bus.md): CitySchemaBaseURI + kind + ".json", shared definitions
// in CitySchemaBaseURI + "defs.json". They reference the Ministry-bus
// definitions (seq, unit, officer, dateTime, receipt) by absolute $id.
const CitySchemaBaseURI = "https://schemas.zhianhub.invalid/city-bus/v1/"

//go:embed schemas/city/*.json
var citySchemaFiles embed.FS

// CitySchemas returns the JSON Schemas (draft 2020-12) of the city-bus
// payloads: <kind>.json for every city kind and defs.json. Compile them
// together with Schemas(), which they reference.
func CitySchemas() fs.FS {
	sub, err := fs.Sub(citySchemaFiles, "schemas/city")
	if err != nil { // a valid path; cannot fail
		return citySchemaFiles
	}
	return sub
}

// CitySchema returns the JSON Schema of a city-bus kind's payload.
func CitySchema(kind string) ([]byte, error) {
	if !CityKnown(kind) {
		return nil, fmt.Errorf("%w: %.64q", ErrUnknownKind, kind)
	}
	return citySchemaFiles.ReadFile("schemas/city/" + kind + ".json")
}
