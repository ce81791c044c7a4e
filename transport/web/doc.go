// Package web holds what the broker serves to people rather than programs:
// the OpenAPI 3.1 document of the HTTP API (OpenAPI, Operations), the /docs
// page that renders it, and the live dashboard at / (Handler).
//
// Everything is embedded in the binary with go:embed, including the
// vendored Swagger UI bundle (see assets/vendor/README.md), so the pages
// work on machines with no internet access. The dashboard is plain
// JavaScript talking to the public API (GET /v1/queues and the SSE stream of
// GET /v1/subscribe) with a token the operator pastes; it needs no server
// state of its own.
package web
