package transport

import (
	"net/http"
	"strings"

	"github.com/gorilla/mux"
)

// Route is one route of the HTTP surface, as Routes lists it.
type Route struct {
	// Method is the HTTP method.
	Method string
	// Path is the gorilla/mux path template, the same string as the path
	// in the OpenAPI document ("/v1/queues/{queue}"); a trailing "/" marks
	// a prefix ("/assets/").
	Path string
	// Scope is the token scope the route needs; "" for routes without token.
	Scope string
	// Group is GroupCommand, GroupQuery, GroupOperations or GroupWeb.
	Group string
}

// Route groups.
const (
	GroupCommand    = "command"    // POST, PATCH, DELETE under /v1
	GroupQuery      = "query"      // GET under /v1
	GroupOperations = "operations" // health, readiness, metrics, OpenAPI; no token
	GroupWeb        = "web"        // docs page and dashboard; no token
)

// features says which optional parts of the surface a server serves.
type features struct {
	commands, audit, subscribe, openapi, web bool
}

// routes is the whole HTTP surface in one place.
func (s *server) routes(t *routeTable, f features) {
	// Operations, without token and without rate limit: probes and
	// scrapers must always get through.
	t.operation("GET", "/healthz", s.handleHealthz())
	t.operation("GET", "/readyz", s.handleReadyz())
	t.operation("GET", "/metrics", s.handleMetrics())
	if f.openapi {
		t.operation("GET", "/openapi.json", s.handleOpenAPI())
	}
	if f.web {
		t.web("/", false, s.handleWeb())
		t.web("/docs", false, s.handleWeb())
		t.web("/assets/", true, s.handleWeb())
	}

	// Commands: the write side. A query node registers none of them.
	// gorilla/mux tries routes in this order, a regexp each, so the
	// message routes, which carry nearly all the traffic, come first (no
	// two routes match the same method and path, so order changes nothing
	// else).
	if f.commands {
		t.command("POST", "/v1/queues/{queue}/messages", ScopeMessagesPublish, s.handlePublish())
		t.command("POST", "/v1/queues/{queue}/receive", ScopeMessagesConsume, s.handleReceive())
		t.command("POST", "/v1/queues/{queue}/ack", ScopeMessagesConsume, s.handleAck())
		t.command("POST", "/v1/queues/{queue}/messages:batch", ScopeMessagesPublish, s.handlePublishBatch())
		t.command("POST", "/v1/queues/{queue}/nack", ScopeMessagesConsume, s.handleNack())
		t.command("POST", "/v1/queues/{queue}/extend", ScopeMessagesConsume, s.handleExtend())
		t.command("POST", "/v1/queues", ScopeQueuesManage, s.handleCreateQueue())
		t.command("PATCH", "/v1/queues/{queue}", ScopeQueuesManage, s.handleConfigureQueue())
		t.command("DELETE", "/v1/queues/{queue}", ScopeQueuesManage, s.handleDeleteQueue())
		t.command("POST", "/v1/queues/{queue}/purge", ScopeQueuesManage, s.handlePurgeQueue())
		t.command("POST", "/v1/queues/{queue}/redrive", ScopeQueuesManage, s.handleRedrive())
	}

	// Queries: the read side.
	t.query("GET", "/v1/queues", ScopeQueuesRead, s.handleListQueues())
	t.query("GET", "/v1/queues/{queue}", ScopeQueuesRead, s.handleGetQueue())
	t.query("GET", "/v1/queues/{queue}/messages", ScopeQueuesRead, s.handleListMessages())
	t.query("GET", "/v1/messages/{id}", ScopeQueuesRead, s.handleGetMessage())
	if f.audit {
		t.query("GET", "/v1/events", ScopeAuditRead, s.handleEvents())
		t.query("GET", "/v1/audit/verify", ScopeAuditRead, s.handleVerify())
		t.query("GET", "/v1/audit/state", ScopeAuditRead, s.handleStateAt())
	}
	if f.subscribe {
		t.stream("GET", "/v1/subscribe", ScopeQueuesRead, s.handleSubscribe())
	}
}

// Routes lists every route a fully wired writer node serves (role all,
// with audit, hub, OpenAPI document and web assets), in declaration order.
// The OpenAPI document's tests compare their paths with it.
func Routes() []Route {
	s := &server{}
	t := newRouteTable(s)
	s.routes(t, features{commands: true, audit: true, subscribe: true, openapi: true, web: true})
	return t.list
}

// buildRouter assembles the router for the configured features.
func (s *server) buildRouter() *mux.Router {
	t := newRouteTable(s)
	s.routes(t, features{
		commands:  s.deps.Role == RoleAll,
		audit:     s.deps.Audit != nil,
		subscribe: s.deps.Hub != nil,
		openapi:   s.deps.OpenAPI != nil,
		web:       s.deps.Web != nil,
	})
	s.routeList = t.list
	if s.deps.Role == RoleQuery {
		// A command sent to a query node gets 405 with a reason, on
		// command-only paths too, rather than a bare 404.
		for _, r := range Routes() {
			if r.Group != GroupCommand {
				continue
			}
			if _, seen := t.methods[r.Path]; !seen {
				t.probe.Path(r.Path).Name(r.Path)
				t.methods[r.Path] = []string{}
			}
		}
	}
	s.probe, s.allowed = t.probe, t.methods
	return t.root
}

// routeTable registers routes on the right subrouter with the right guards
// and records them for Routes.
type routeTable struct {
	s        *server
	root     *mux.Router
	commands *mux.Router
	queries  *mux.Router
	list     []Route
	// probe matches paths regardless of method. gorilla/mux forgets a
	// method mismatch when a later route shares the /v1 prefix matcher
	// (subrouters copy it), so 404 and 405 are told apart here.
	probe   *mux.Router
	methods map[string][]string
}

func newRouteTable(s *server) *routeTable {
	// The router matches the escaped path and never cleans it: "%2F" stays
	// inside its segment and ".." is a (refused) queue name, never a
	// redirect to another route. Path variables are decoded exactly once,
	// by pathParam.
	root := mux.NewRouter().UseEncodedPath().SkipClean(true)
	root.NotFoundHandler = http.HandlerFunc(s.handleNotFound)
	root.MethodNotAllowedHandler = http.HandlerFunc(s.handleMethodNotAllowed)
	root.Use(recordRoute)
	api := root.PathPrefix("/v1").Subrouter()
	api.Use(s.authenticate)
	return &routeTable{
		s:        s,
		root:     root,
		commands: api.NewRoute().Subrouter(),
		queries:  api.NewRoute().Subrouter(),
		probe:    mux.NewRouter().UseEncodedPath().SkipClean(true),
		methods:  make(map[string][]string),
	}
}

func (t *routeTable) add(r Route) {
	t.list = append(t.list, r)
	if _, seen := t.methods[r.Path]; !seen {
		if strings.HasSuffix(r.Path, "/") && r.Path != "/" {
			t.probe.PathPrefix(r.Path).Name(r.Path)
		} else {
			t.probe.Path(r.Path).Name(r.Path)
		}
	}
	t.methods[r.Path] = append(t.methods[r.Path], r.Method)
}

func (t *routeTable) operation(method, path string, h http.Handler) {
	t.root.Handle(path, h).Methods(method)
	t.add(Route{Method: method, Path: path, Group: GroupOperations})
}

func (t *routeTable) web(path string, prefix bool, h http.Handler) {
	if prefix {
		t.root.PathPrefix(path).Handler(h).Methods("GET", "HEAD")
	} else {
		t.root.Handle(path, h).Methods("GET", "HEAD")
	}
	t.add(Route{Method: "GET", Path: path, Group: GroupWeb})
}

func (t *routeTable) command(method, path, scope string, h http.Handler) {
	t.commands.Handle(strings.TrimPrefix(path, "/v1"), t.s.guard(scope, t.s.asCaller(h))).Methods(method)
	t.add(Route{Method: method, Path: path, Scope: scope, Group: GroupCommand})
}

func (t *routeTable) query(method, path, scope string, h http.Handler) {
	t.queries.Handle(strings.TrimPrefix(path, "/v1"), t.s.guard(scope, t.s.readAfter(h))).Methods(method)
	t.add(Route{Method: method, Path: path, Scope: scope, Group: GroupQuery})
}

// stream is a query route without the read-your-writes wait: a
// subscription resumes from its own position.
func (t *routeTable) stream(method, path, scope string, h http.Handler) {
	t.queries.Handle(strings.TrimPrefix(path, "/v1"), t.s.guard(scope, h)).Methods(method)
	t.add(Route{Method: method, Path: path, Scope: scope, Group: GroupQuery})
}

// allowedMethods lists the methods of the route whose path r matches,
// whatever its method; nil when no route has that path.
func (s *server) allowedMethods(r *http.Request) []string {
	var m mux.RouteMatch
	if s.probe == nil || !s.probe.Match(r, &m) || m.Route == nil {
		return nil
	}
	return s.allowed[m.Route.GetName()]
}

func (s *server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	if s.allowedMethods(r) != nil {
		s.handleMethodNotAllowed(w, r)
		return
	}
	s.writeProblem(w, r, &apiError{code: codeNotFound, detail: "no route matches this path"})
}

func (s *server) handleMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	if allow := s.allowedMethods(r); allow != nil {
		w.Header().Set("Allow", strings.Join(allow, ", "))
	}
	detail := "this route does not take " + r.Method
	if s.deps.Role == RoleQuery && r.Method != http.MethodGet {
		detail = "this node serves queries only (role query); send commands to a writer node"
	}
	s.writeProblem(w, r, &apiError{code: codeMethodNotAllowed, detail: detail})
}
