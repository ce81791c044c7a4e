package web

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

//go:embed openapi.json
var openapiJSON []byte

// OpenAPI returns the OpenAPI 3.1 document of the HTTP API, as served at
// GET /openapi.json. The caller owns the returned slice.
func OpenAPI() []byte { return bytes.Clone(openapiJSON) }

// Operation is one method and path template of the OpenAPI document, e.g.
// {"POST", "/v1/queues/{queue}/messages:batch"}.
type Operation struct {
	Method string // upper case: GET, POST, PATCH, DELETE …
	Path   string // as in the document, with {queue} and {id} placeholders
}

// httpMethods are the Path Item fields that hold operations; the others
// (parameters, summary, servers …) do not.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Operations lists every operation of the document, sorted by path then
// method, so that the router's tests can compare it with the routes they
// register.
func Operations() ([]Operation, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiJSON, &doc); err != nil {
		return nil, fmt.Errorf("web: decode openapi.json: %w", err)
	}
	var ops []Operation
	for path, item := range doc.Paths {
		for field := range item {
			if slices.Contains(httpMethods, field) {
				ops = append(ops, Operation{Method: strings.ToUpper(field), Path: path})
			}
		}
	}
	slices.SortFunc(ops, func(a, b Operation) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return ops, nil
}
