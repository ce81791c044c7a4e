// Package transport is ledgerq's HTTP edge. NewServer turns the command
// handlers, the query side, the audit reader and the SSE hub into one
// http.Handler that speaks the contract of API.md: command routes (POST,
// PATCH, DELETE) and query routes (GET) on separate gorilla/mux subrouters,
// strict JSON decoding, problem+json errors from one table, JWT bearer
// authentication with scopes and queue patterns, per-subject rate limits,
// request ids, structured access logs, Prometheus metrics, read-your-writes
// waits, server-sent events and the operations routes (health, readiness,
// metrics, OpenAPI document, docs and dashboard).
//
// The package never opens a database: everything it serves comes in through
// Deps, as the small interfaces declared here.
package transport
