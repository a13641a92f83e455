package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.0 document of the API (openapi.json); a test
// keeps it equal to the routes Mount registers and valid against the
// OpenAPI 3.0 schema.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document of the API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// openAPIDoc answers GET /openapi.json.
func (s *server) openAPIDoc(w http.ResponseWriter, r *http.Request) error {
	return serveDoc(w, r, openAPI)
}

// asyncAPIDoc answers GET /asyncapi.json: the AsyncAPI 3.0 document of the
// internal events.
func (s *server) asyncAPIDoc(w http.ResponseWriter, r *http.Request) error {
	return serveDoc(w, r, s.asyncAPI)
}

func serveDoc(w http.ResponseWriter, r *http.Request, doc []byte) error {
	if _, err := query(r); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
	return nil
}
