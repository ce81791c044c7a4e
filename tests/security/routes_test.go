package security

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ledgerq/ledgerq/tests/harness"
	"github.com/ledgerq/ledgerq/transport"
)

// routeRow is how the matrix exercises one route: the scope API.md gives
// it (written here from API.md, not read from the code, so that the two are
// compared), a concrete path, a body, and a setup run before each call.
type routeRow struct {
	scope string
	path  string
	body  any
	setup func(s *server, admin string)
}

// apiRows has one row per route of transport.Routes(); a route without a
// row fails TestRouteScopeMatrix, so a new route cannot ship untested.
func apiRows() map[string]routeRow {
	recreate := func(name string) func(*server, string) {
		return func(s *server, admin string) {
			r := s.Call("POST", "/v1/queues", admin, map[string]any{"name": name})
			if r.Status != 200 && r.Status != 201 {
				s.t.Fatalf("create %s: %s", name, r)
			}
		}
	}
	const receipt = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	return map[string]routeRow{
		"GET /healthz":      {path: "/healthz"},
		"GET /readyz":       {path: "/readyz"},
		"GET /metrics":      {path: "/metrics"},
		"GET /openapi.json": {path: "/openapi.json"},
		"GET /":             {path: "/"},
		"GET /docs":         {path: "/docs"},
		"GET /assets/":      {path: "/assets/favicon.svg"},

		"POST /v1/queues":                        {scope: "queues:manage", path: "/v1/queues", body: map[string]any{"name": "m.created"}},
		"PATCH /v1/queues/{queue}":               {scope: "queues:manage", path: "/v1/queues/m.q", body: map[string]any{"delay_ms": 0}},
		"DELETE /v1/queues/{queue}":              {scope: "queues:manage", path: "/v1/queues/m.del", setup: recreate("m.del")},
		"POST /v1/queues/{queue}/purge":          {scope: "queues:manage", path: "/v1/queues/m.q/purge"},
		"POST /v1/queues/{queue}/redrive":        {scope: "queues:manage", path: "/v1/queues/m.q/redrive", body: map[string]any{}},
		"POST /v1/queues/{queue}/messages":       {scope: "messages:publish", path: "/v1/queues/m.q/messages", body: map[string]any{"body": "x"}},
		"POST /v1/queues/{queue}/messages:batch": {scope: "messages:publish", path: "/v1/queues/m.q/messages:batch", body: map[string]any{"messages": []any{map[string]any{"body": "x"}}}},
		"POST /v1/queues/{queue}/receive":        {scope: "messages:consume", path: "/v1/queues/m.q/receive", body: map[string]any{"max_messages": 1}},
		"POST /v1/queues/{queue}/ack":            {scope: "messages:consume", path: "/v1/queues/m.q/ack", body: map[string]any{"receipt": receipt}},
		"POST /v1/queues/{queue}/nack":           {scope: "messages:consume", path: "/v1/queues/m.q/nack", body: map[string]any{"receipt": receipt}},
		"POST /v1/queues/{queue}/extend":         {scope: "messages:consume", path: "/v1/queues/m.q/extend", body: map[string]any{"receipt": receipt, "visibility_timeout_ms": 1000}},
		"GET /v1/queues":                         {scope: "queues:read", path: "/v1/queues"},
		"GET /v1/queues/{queue}":                 {scope: "queues:read", path: "/v1/queues/m.q"},
		"GET /v1/queues/{queue}/messages":        {scope: "queues:read", path: "/v1/queues/m.q/messages"},
		"GET /v1/messages/{id}":                  {scope: "queues:read", path: "/v1/messages/{id}"},
		"GET /v1/events":                         {scope: "audit:read", path: "/v1/events"},
		"GET /v1/audit/verify":                   {scope: "audit:read", path: "/v1/audit/verify"},
		"GET /v1/audit/state":                    {scope: "audit:read", path: "/v1/audit/state?at_position=1"},
		"GET /v1/subscribe":                      {scope: "queues:read", path: "/v1/subscribe"},
	}
}

// caller is one column of the matrix.
type caller struct {
	name   string
	token  string
	scopes []string
}

// TestRouteScopeMatrix calls every route with no token, a token without
// scopes and a token of each scope: /v1 routes answer 401 without a token
// and 403 insufficient_scope unless the scope (or admin) is the one API.md
// names; then they let the request through (neither 401 nor 403, nor a
// routing 404/405, nor a 5xx). Operations and pages need no token at all.
func TestRouteScopeMatrix(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	admin := s.token("matrix-admin", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "m.q"}), 201, "create m.q")
	pub := s.Call("POST", "/v1/queues/m.q/messages", admin, map[string]any{"body": "seed"})
	harness.MustStatus(t, pub, 201, "publish seed")
	msgID := pub.Str("id")

	// A valid token with no scope claim at all.
	noScope := s.sign(jwt.SigningMethodHS256, s.secret(), jwt.MapClaims{"sub": "nobody", "exp": time.Now().Add(time.Hour).Unix()})
	callers := []caller{{name: "no token"}, {name: "no scope", token: noScope}}
	for _, sc := range transport.Scopes {
		callers = append(callers, caller{name: sc, token: s.token("matrix-"+strings.ReplaceAll(sc, ":", "-"), sc), scopes: []string{sc}})
	}
	if len(transport.Scopes) != 6 {
		t.Fatalf("transport.Scopes = %v; API.md lists six scopes: update this test and API.md together", transport.Scopes)
	}

	rows := apiRows()
	seen := map[string]bool{}
	for _, rt := range transport.Routes() {
		key := rt.Method + " " + rt.Path
		seen[key] = true
		row, ok := rows[key]
		if !ok {
			t.Errorf("route %s has no row in apiRows: add it with the scope API.md gives it", key)
			continue
		}
		if rt.Scope != row.scope {
			t.Errorf("route %s: the code requires scope %q, API.md says %q", key, rt.Scope, row.scope)
		}
		path := strings.ReplaceAll(row.path, "{id}", msgID)
		for _, c := range callers {
			t.Run(key+"/"+c.name, func(t *testing.T) {
				if row.setup != nil {
					row.setup(s, admin)
				}
				r := s.matrixCall(t, rt.Method, path, c.token, row.body)
				allowed := row.scope == "" || slices.Contains(c.scopes, row.scope) || slices.Contains(c.scopes, "admin")
				switch {
				case row.scope != "" && c.token == "":
					mustUnauthorized(t, r, "", "no token")
				case !allowed:
					harness.MustProblem(t, r, http.StatusForbidden, "forbidden", "scope "+c.name)
					if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, "insufficient_scope") || !strings.Contains(h, row.scope) {
						t.Fatalf("403 without an insufficient_scope challenge naming %s: %q", row.scope, h)
					}
				default:
					if r.Status == 401 || r.Status == 403 || r.Status == 405 || r.Status >= 500 ||
						(r.Status == 404 && r.Str("code") == "not_found") {
						t.Fatalf("%s with %s: %s, want it let through", key, c.name, r)
					}
				}
			})
		}
	}
	for key := range rows {
		if !seen[key] {
			t.Errorf("apiRows has %s, which transport.Routes() does not list", key)
		}
	}
}

// matrixCall is call, except that a subscription is cut once its answer
// has begun (a stream never ends by itself).
func (s *server) matrixCall(t *testing.T, method, path, token string, body any) harness.Response {
	t.Helper()
	if path != "/v1/subscribe" {
		return s.Call(method, path, token, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, s.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer resp.Body.Close()
	r := harness.Response{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("subscribe answered 200 with Content-Type %q", ct)
		}
		return r
	}
	r.Body, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(r.Body, &r.JSON)
	return r
}
