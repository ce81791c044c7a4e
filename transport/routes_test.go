package transport

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/ledgerq/ledgerq/queries"
)

// sampleRequests holds, for every /v1 route, a request that succeeds with
// the fakes, and the status it answers.
var sampleRequests = map[string]struct {
	path, body string
	status     int
}{
	"POST /v1/queues":                        {"/v1/queues", `{"name":"orders"}`, http.StatusCreated},
	"PATCH /v1/queues/{queue}":               {"/v1/queues/orders", `{"delay_ms":5}`, http.StatusOK},
	"DELETE /v1/queues/{queue}":              {"/v1/queues/orders", ``, http.StatusOK},
	"POST /v1/queues/{queue}/purge":          {"/v1/queues/orders/purge", ``, http.StatusOK},
	"POST /v1/queues/{queue}/redrive":        {"/v1/queues/orders/redrive", ``, http.StatusOK},
	"POST /v1/queues/{queue}/messages":       {"/v1/queues/orders/messages", `{"body":"hi"}`, http.StatusCreated},
	"POST /v1/queues/{queue}/messages:batch": {"/v1/queues/orders/messages:batch", `{"messages":[{"body":"a"}]}`, http.StatusCreated},
	"POST /v1/queues/{queue}/receive":        {"/v1/queues/orders/receive", `{}`, http.StatusOK},
	"POST /v1/queues/{queue}/ack":            {"/v1/queues/orders/ack", `{"receipt":"r-1"}`, http.StatusOK},
	"POST /v1/queues/{queue}/nack":           {"/v1/queues/orders/nack", `{"receipt":"r-1"}`, http.StatusOK},
	"POST /v1/queues/{queue}/extend":         {"/v1/queues/orders/extend", `{"receipt":"r-1","visibility_timeout_ms":1000}`, http.StatusOK},
	"GET /v1/queues":                         {"/v1/queues", ``, http.StatusOK},
	"GET /v1/queues/{queue}":                 {"/v1/queues/orders", ``, http.StatusOK},
	"GET /v1/queues/{queue}/messages":        {"/v1/queues/orders/messages", ``, http.StatusOK},
	"GET /v1/messages/{id}":                  {"/v1/messages/m-1", ``, http.StatusOK},
	"GET /v1/events":                         {"/v1/events", ``, http.StatusOK},
	"GET /v1/audit/verify":                   {"/v1/audit/verify", ``, http.StatusOK},
	"GET /v1/audit/state":                    {"/v1/audit/state?at_position=3", ``, http.StatusOK},
	"GET /v1/subscribe":                      {"/v1/subscribe", ``, http.StatusOK},
}

// canceled is a context already done: a subscription answers its headers
// and returns at once.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestRoutesMatchTheRouter(t *testing.T) {
	deps := Deps{Commands: &fakeCommands{}, Queries: newFakeQueries(), Audit: &fakeAudit{}, Hub: queries.NewHub(queries.HubConfig{}),
		Auth: AuthConfig{HS256Secret: testSecret}, OpenAPI: []byte("{}"), Web: http.NotFoundHandler()}
	deps.setDefaults()
	s := &server{deps: deps}
	router := s.buildRouter()

	var walked []string
	err := router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return nil // a subrouter without a path of its own
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil // the /v1 prefix itself
		}
		if slices.Contains(methods, "HEAD") {
			methods = slices.DeleteFunc(slices.Clone(methods), func(m string) bool { return m == "HEAD" })
		}
		for _, m := range methods {
			walked = append(walked, m+" "+tpl)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, r := range Routes() {
		listed = append(listed, r.Method+" "+r.Path)
	}
	sort.Strings(walked)
	sort.Strings(listed)
	if !slices.Equal(walked, listed) {
		t.Fatalf("router and Routes() differ:\nrouter: %q\nRoutes: %q", walked, listed)
	}
	// Every /v1 route has a sample request, so the matrix below covers it.
	for _, r := range Routes() {
		if strings.HasPrefix(r.Path, "/v1") {
			if _, ok := sampleRequests[r.Method+" "+r.Path]; !ok {
				t.Errorf("no sample request for %s %s", r.Method, r.Path)
			}
			if r.Scope == "" {
				t.Errorf("%s %s has no scope", r.Method, r.Path)
			}
			wantGroup := GroupQuery
			if r.Method != http.MethodGet {
				wantGroup = GroupCommand
			}
			if r.Group != wantGroup {
				t.Errorf("%s %s is in group %q, want %q", r.Method, r.Path, r.Group, wantGroup)
			}
		} else if r.Scope != "" {
			t.Errorf("%s %s needs a token, want none", r.Method, r.Path)
		}
	}
}

func TestScopeMatrix(t *testing.T) {
	hx := newHarness(t, nil)
	for _, route := range Routes() {
		if route.Scope == "" {
			continue
		}
		sample := sampleRequests[route.Method+" "+route.Path]
		for _, scope := range Scopes {
			t.Run(route.Method+" "+route.Path+" as "+scope, func(t *testing.T) {
				rec := hx.do(req{method: route.Method, path: sample.path, body: sample.body, ctx: canceled(),
					token: token(t, "u-"+scope, []string{scope}, nil)})
				if scope == route.Scope || scope == ScopeAdmin {
					if rec.Code != sample.status {
						t.Fatalf("status = %d, want %d; body %s", rec.Code, sample.status, rec.Body)
					}
					return
				}
				p := expectProblem(t, rec, http.StatusForbidden, "forbidden")
				if !strings.Contains(p.Detail, route.Scope) {
					t.Errorf("detail %q does not name the missing scope %s", p.Detail, route.Scope)
				}
				if got := rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
					t.Errorf("WWW-Authenticate = %q, want insufficient_scope", got)
				}
			})
		}
		t.Run(route.Method+" "+route.Path+" without token", func(t *testing.T) {
			rec := hx.do(req{method: route.Method, path: sample.path, body: sample.body})
			expectProblem(t, rec, http.StatusUnauthorized, "unauthorized")
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer", got)
			}
		})
	}
	if hx.cmds.lastCmd() == nil {
		t.Fatal("no command reached the write side")
	}
}

func TestOperationsNeedNoToken(t *testing.T) {
	hx := newHarness(t, nil)
	for _, tc := range []struct {
		path, want string
	}{
		{"/healthz", `"status":"ok"`},
		{"/readyz", `"ready":true`},
		{"/metrics", "ledgerq_http_requests_total"},
		{"/openapi.json", `"openapi":"3.1.0"`},
		{"/", "web:/"},
		{"/docs", "web:/docs"},
		{"/assets/app.js", "web:/assets/app.js"},
	} {
		// /metrics lists the request counter once a request was counted.
		hx.do(req{method: "GET", path: "/healthz"})
		rec := hx.do(req{method: "GET", path: tc.path})
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("GET %s = %d %q, want 200 containing %q", tc.path, rec.Code, rec.Body, tc.want)
		}
		if rec.Header().Get("X-RateLimit-Limit") != "" {
			t.Errorf("GET %s carries rate limit headers; operations are not limited", tc.path)
		}
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/nope", token: tok}), http.StatusNotFound, "not_found")
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/queues/", token: tok}), http.StatusNotFound, "not_found")
	rec := hx.do(req{method: "PUT", path: "/v1/queues/orders", token: tok})
	expectProblem(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
	if got := rec.Header().Get("Allow"); got != "PATCH, DELETE, GET" {
		t.Errorf("Allow = %q, want PATCH, DELETE, GET", got)
	}
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/queues/orders/purge", token: tok}), http.StatusMethodNotAllowed, "method_not_allowed")
	expectProblem(t, hx.do(req{method: "POST", path: "/healthz"}), http.StatusMethodNotAllowed, "method_not_allowed")
}

func TestQueryNodeRegistersNoCommandRoute(t *testing.T) {
	hx := newHarness(t, func(d *Deps) { d.Role = RoleQuery; d.Commands = nil })
	tok := adminToken(t)
	rec := hx.do(req{method: "POST", path: "/v1/queues", body: `{"name":"orders"}`, token: tok})
	p := expectProblem(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
	if !strings.Contains(p.Detail, "queries only") {
		t.Errorf("detail %q does not say the node is a query node", p.Detail)
	}
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/messages", body: `{"body":"x"}`, token: tok}), http.StatusMethodNotAllowed, "method_not_allowed")
	if rec := hx.do(req{method: "GET", path: "/v1/queues/orders", token: tok}); rec.Code != http.StatusOK {
		t.Fatalf("GET on a query node = %d, want 200", rec.Code)
	}
}

func TestOptionalPartsAreAbsentWhenNotWired(t *testing.T) {
	hx := newHarness(t, func(d *Deps) { d.Audit, d.Hub, d.Web, d.OpenAPI = nil, nil, nil, nil })
	tok := adminToken(t)
	for _, path := range []string{"/v1/events", "/v1/audit/verify", "/v1/subscribe", "/openapi.json", "/docs", "/"} {
		if rec := hx.do(req{method: "GET", path: path, token: tok}); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404 when not wired", path, rec.Code)
		}
	}
}

func TestNewServerValidatesDeps(t *testing.T) {
	for name, d := range map[string]Deps{
		"no key":         {Commands: &fakeCommands{}, Queries: newFakeQueries()},
		"short secret":   {Commands: &fakeCommands{}, Queries: newFakeQueries(), Auth: AuthConfig{HS256Secret: []byte("short")}},
		"no queries":     {Commands: &fakeCommands{}, Auth: AuthConfig{HS256Secret: testSecret}},
		"no commands":    {Queries: newFakeQueries(), Auth: AuthConfig{HS256Secret: testSecret}},
		"bad role":       {Commands: &fakeCommands{}, Queries: newFakeQueries(), Auth: AuthConfig{HS256Secret: testSecret}, Role: "writer"},
		"tiny rl window": {Commands: &fakeCommands{}, Queries: newFakeQueries(), Auth: AuthConfig{HS256Secret: testSecret}, RateLimit: RateLimitConfig{PerSecond: 1 << 40, Burst: 1}},
	} {
		if _, err := NewServer(d); err == nil {
			t.Errorf("%s: NewServer accepted invalid deps", name)
		}
	}
}
