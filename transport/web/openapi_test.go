package web_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
	"github.com/ledgerq/ledgerq/transport"
	"github.com/ledgerq/ledgerq/transport/web"
)

// loadDoc parses and validates the embedded document the way a client
// generator would: OpenAPI 3.1 rules, JSON Schema 2020-12, with examples,
// patterns and formats checked.
func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(web.OpenAPI())
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableSchemaFormatValidation(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIIsValid31(t *testing.T) {
	doc := loadDoc(t)
	if got, want := doc.OpenAPI, "3.1.0"; got != want {
		t.Errorf("openapi = %q, want %q", got, want)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Error("document is not treated as OpenAPI 3.1")
	}
}

func TestOpenAPIReturnsACopy(t *testing.T) {
	a := web.OpenAPI()
	a[0] = 'X'
	if b := web.OpenAPI(); b[0] == 'X' {
		t.Error("OpenAPI returned the embedded bytes; a caller could change what is served")
	}
}

// apiRoutes are the routes of /work/shared/API.md, the contract.
var apiRoutes = []web.Operation{
	{"POST", "/v1/queues"},
	{"GET", "/v1/queues"},
	{"GET", "/v1/queues/{queue}"},
	{"PATCH", "/v1/queues/{queue}"},
	{"DELETE", "/v1/queues/{queue}"},
	{"POST", "/v1/queues/{queue}/purge"},
	{"POST", "/v1/queues/{queue}/redrive"},
	{"POST", "/v1/queues/{queue}/messages"},
	{"GET", "/v1/queues/{queue}/messages"},
	{"POST", "/v1/queues/{queue}/messages:batch"},
	{"POST", "/v1/queues/{queue}/receive"},
	{"POST", "/v1/queues/{queue}/ack"},
	{"POST", "/v1/queues/{queue}/nack"},
	{"POST", "/v1/queues/{queue}/extend"},
	{"GET", "/v1/messages/{id}"},
	{"GET", "/v1/events"},
	{"GET", "/v1/audit/verify"},
	{"GET", "/v1/audit/state"},
	{"GET", "/v1/subscribe"},
	{"GET", "/healthz"},
	{"GET", "/readyz"},
	{"GET", "/metrics"},
	{"GET", "/openapi.json"},
	{"GET", "/docs"},
	{"GET", "/"},
}

func TestOperationsMatchAPIContract(t *testing.T) {
	got, err := web.Operations()
	if err != nil {
		t.Fatalf("Operations: %v", err)
	}
	want := slices.Clone(apiRoutes)
	slices.SortFunc(want, func(a, b web.Operation) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	if !slices.Equal(got, want) {
		t.Errorf("Operations() =\n%v\nwant (API.md)\n%v", got, want)
	}

	// Operations must agree with what kin-openapi reads from the same bytes.
	doc := loadDoc(t)
	var fromKin []web.Operation
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			fromKin = append(fromKin, web.Operation{Method: method, Path: path})
		}
	}
	if len(fromKin) != len(got) {
		t.Errorf("kin-openapi sees %d operations, Operations() %d", len(fromKin), len(got))
	}
	for _, op := range fromKin {
		if !slices.Contains(got, op) {
			t.Errorf("Operations() misses %v", op)
		}
	}
}

// jsonBodyRoutes take a JSON request body, so they can answer 400, 413, 415.
var jsonBodyRoutes = map[web.Operation]bool{
	{"POST", "/v1/queues"}:                        true,
	{"PATCH", "/v1/queues/{queue}"}:               true,
	{"POST", "/v1/queues/{queue}/redrive"}:        true,
	{"POST", "/v1/queues/{queue}/messages"}:       true,
	{"POST", "/v1/queues/{queue}/messages:batch"}: true,
	{"POST", "/v1/queues/{queue}/receive"}:        true,
	{"POST", "/v1/queues/{queue}/ack"}:            true,
	{"POST", "/v1/queues/{queue}/nack"}:           true,
	{"POST", "/v1/queues/{queue}/extend"}:         true,
}

// scopes per route, from API.md.
var routeScope = map[web.Operation]string{
	{"POST", "/v1/queues"}:                        "queues:manage",
	{"PATCH", "/v1/queues/{queue}"}:               "queues:manage",
	{"DELETE", "/v1/queues/{queue}"}:              "queues:manage",
	{"POST", "/v1/queues/{queue}/purge"}:          "queues:manage",
	{"POST", "/v1/queues/{queue}/redrive"}:        "queues:manage",
	{"POST", "/v1/queues/{queue}/messages"}:       "messages:publish",
	{"POST", "/v1/queues/{queue}/messages:batch"}: "messages:publish",
	{"POST", "/v1/queues/{queue}/receive"}:        "messages:consume",
	{"POST", "/v1/queues/{queue}/ack"}:            "messages:consume",
	{"POST", "/v1/queues/{queue}/nack"}:           "messages:consume",
	{"POST", "/v1/queues/{queue}/extend"}:         "messages:consume",
	{"GET", "/v1/queues"}:                         "queues:read",
	{"GET", "/v1/queues/{queue}"}:                 "queues:read",
	{"GET", "/v1/queues/{queue}/messages"}:        "queues:read",
	{"GET", "/v1/messages/{id}"}:                  "queues:read",
	{"GET", "/v1/subscribe"}:                      "queues:read",
	{"GET", "/v1/events"}:                         "audit:read",
	{"GET", "/v1/audit/verify"}:                   "audit:read",
	{"GET", "/v1/audit/state"}:                    "audit:read",
}

func TestOperationsDocumentAuthErrorsAndHeaders(t *testing.T) {
	doc := loadDoc(t)
	ids := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := web.Operation{Method: method, Path: path}
			t.Run(method+" "+path, func(t *testing.T) {
				if op.OperationID == "" || op.Summary == "" || op.Description == "" || len(op.Tags) != 1 {
					t.Errorf("operationId %q, summary %q, tags %v: each operation needs all three and a description", op.OperationID, op.Summary, op.Tags)
				}
				if ids[op.OperationID] {
					t.Errorf("operationId %q used twice", op.OperationID)
				}
				ids[op.OperationID] = true

				if !strings.HasPrefix(path, "/v1/") {
					if op.Security == nil || len(*op.Security) != 0 {
						t.Errorf("operations route must have security: [] (no token), got %v", op.Security)
					}
					return
				}
				checkV1Operation(t, key, op, jsonBodyRoutes[key], routeScope[key])
			})
		}
	}
}

func checkV1Operation(t *testing.T, key web.Operation, op *openapi3.Operation, jsonBody bool, scope string) {
	t.Helper()
	if scope == "" {
		t.Fatalf("test table has no scope for %v", key)
	}
	var scopes []string
	if raw, ok := op.Extensions["x-required-scopes"]; ok {
		b, _ := json.Marshal(raw)
		_ = json.Unmarshal(b, &scopes)
	}
	if !slices.Equal(scopes, []string{scope}) {
		t.Errorf("x-required-scopes = %v, want [%s]", scopes, scope)
	}
	if !strings.Contains(op.Description, "`"+scope+"`") {
		t.Errorf("description does not name scope %s", scope)
	}
	if op.Security == nil || len(*op.Security) == 0 {
		t.Fatal("a /v1 operation must require a token")
	}
	for _, req := range *op.Security {
		for name, s := range req {
			if !slices.Equal(s, []string{scope}) {
				t.Errorf("security %s lists %v, want [%s]", name, s, scope)
			}
		}
	}

	want := []string{"401", "403", "429", "500"}
	if jsonBody {
		want = append(want, "400", "413", "415")
		if op.RequestBody == nil || op.RequestBody.Value.Content.Get("application/json") == nil {
			t.Error("JSON route without an application/json request body")
		}
	} else if op.RequestBody != nil {
		t.Error("request body on a route that takes none")
	}
	if strings.Contains(key.Path, "{queue}") {
		want = append(want, "404")
	}
	for _, code := range want {
		r := op.Responses.Value(code)
		if r == nil {
			t.Errorf("response %s missing", code)
			continue
		}
		if r.Value.Content.Get("application/problem+json") == nil {
			t.Errorf("response %s is not application/problem+json", code)
		}
	}
	if r := op.Responses.Value("401"); r != nil && r.Value.Headers["WWW-Authenticate"] == nil {
		t.Error("401 without WWW-Authenticate")
	}
	if r := op.Responses.Value("429"); r != nil && r.Value.Headers["Retry-After"] == nil {
		t.Error("429 without Retry-After")
	}

	command := key.Method != "GET"
	success := 0
	for code, r := range op.Responses.Map() {
		if !strings.HasPrefix(code, "2") {
			continue
		}
		success++
		for _, h := range []string{"X-Request-Id", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
			if r.Value.Headers[h] == nil {
				t.Errorf("%s response lacks header %s", code, h)
			}
		}
		if key.Path == "/v1/subscribe" {
			if r.Value.Content.Get("text/event-stream") == nil {
				t.Error("subscribe does not answer text/event-stream")
			}
			continue
		}
		if r.Value.Headers["X-Ledgerq-Position"] == nil {
			t.Errorf("%s response lacks X-Ledgerq-Position", code)
		}
		if command {
			mt := r.Value.Content.Get("application/json")
			if mt == nil {
				t.Fatalf("%s response has no JSON body", code)
			}
			for _, s := range alternatives(mt.Schema) {
				if s.Value.Properties["position"] == nil || !slices.Contains(s.Value.Required, "position") {
					t.Errorf("%s command response schema lacks a required position", code)
				}
			}
		}
	}
	if success == 0 {
		t.Error("no 2xx response")
	}
}

// alternatives are the schemas a body may match: the oneOf branches, or the
// schema itself.
func alternatives(s *openapi3.SchemaRef) []*openapi3.SchemaRef {
	if len(s.Value.OneOf) > 0 {
		return s.Value.OneOf
	}
	return []*openapi3.SchemaRef{s}
}

// TestQueriesOfferReadYourWrites: every query route waits for
// X-Ledgerq-Min-Position / ?min_position= and may answer 503
// consistency_timeout; every command may answer 503 unavailable.
func TestQueriesOfferReadYourWrites(t *testing.T) {
	doc := loadDoc(t)
	for _, op := range apiRoutes {
		if !strings.HasPrefix(op.Path, "/v1/") || op.Path == "/v1/subscribe" {
			continue
		}
		o := doc.Paths.Find(op.Path).GetOperation(op.Method)
		r := o.Responses.Value("503")
		if r == nil {
			t.Errorf("%v lacks a 503", op)
			continue
		}
		wantCode := "unavailable"
		if op.Method == "GET" {
			wantCode = "consistency_timeout"
			if o.Parameters.GetByInAndName("query", "min_position") == nil || o.Parameters.GetByInAndName("header", "X-Ledgerq-Min-Position") == nil {
				t.Errorf("%v lacks min_position or X-Ledgerq-Min-Position", op)
			}
		}
		if ex := r.Value.Content.Get("application/problem+json").Examples[wantCode]; ex == nil {
			t.Errorf("%v: 503 is not documented as %s", op, wantCode)
		}
	}
}

func TestEventsAndSubscribeMediaTypes(t *testing.T) {
	doc := loadDoc(t)
	events := doc.Paths.Find("/v1/events").Get
	if events.Responses.Value("200").Value.Content.Get("application/x-ndjson") == nil {
		t.Error("GET /v1/events does not offer application/x-ndjson")
	}
	sub := doc.Paths.Find("/v1/subscribe").Get
	for _, p := range []struct{ in, name string }{
		{"query", "queues"}, {"query", "kinds"}, {"query", "after"}, {"query", "access_token"}, {"header", "Last-Event-ID"},
	} {
		if sub.Parameters.GetByInAndName(p.in, p.name) == nil {
			t.Errorf("subscribe lacks %s parameter %s", p.in, p.name)
		}
	}
	raw, _ := json.Marshal(sub.Extensions["x-sse-events"])
	var sse map[string]string
	if err := json.Unmarshal(raw, &sse); err != nil {
		t.Fatalf("x-sse-events: %v", err)
	}
	for _, name := range []string{queries.EventQueueUpdated, queries.EventQueueDeleted, queries.EventMessageUpdated} {
		ref, ok := sse[name]
		if !ok {
			t.Errorf("x-sse-events lacks %s", name)
			continue
		}
		if doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")] == nil {
			t.Errorf("x-sse-events %s points at %s, which does not exist", name, ref)
		}
	}
}

func enumStrings(t *testing.T, s *openapi3.Schema) []string {
	t.Helper()
	var out []string
	for _, v := range s.Enum {
		str, ok := v.(string)
		if !ok {
			t.Fatalf("enum value %v is not a string", v)
		}
		out = append(out, str)
	}
	return out
}

func TestEventTypeEnumIsTheCatalogue(t *testing.T) {
	doc := loadDoc(t)
	got := enumStrings(t, doc.Components.Schemas["EventType"].Value)
	if !slices.Equal(got, domain.EventTypes) {
		t.Errorf("EventType enum = %v, want domain.EventTypes %v", got, domain.EventTypes)
	}
	param := doc.Paths.Find("/v1/events").Get.Parameters.GetByInAndName("query", "type")
	if param == nil || param.Schema.Value != doc.Components.Schemas["EventType"].Value {
		t.Error("GET /v1/events ?type= does not use the EventType enum")
	}
}

func TestErrorCodeEnum(t *testing.T) {
	doc := loadDoc(t)
	got := enumStrings(t, doc.Components.Schemas["ErrorCode"].Value)
	// API.md's list, in its order, then the codes the HTTP edge adds for
	// unknown routes, wrong methods and a write side that cannot write.
	want := []string{"invalid_argument", "unauthorized", "forbidden", "queue_not_found", "message_not_found",
		"queue_exists", "lease_mismatch", "receipt_not_found", "payload_too_large", "unsupported_media_type",
		"rate_limited", "consistency_timeout", "conflict", "internal",
		"not_found", "method_not_allowed", "unavailable"}
	if !slices.Equal(got, want) {
		t.Errorf("ErrorCode enum = %v, want %v", got, want)
	}
	for _, e := range []*domain.Error{domain.ErrQueueNotFound, domain.ErrMessageNotFound, domain.ErrReceiptNotFound,
		domain.ErrQueueExists, domain.ErrLeaseMismatch, domain.ErrConflict, domain.ErrPayloadTooLarge, domain.ErrInvalidArgument} {
		if !slices.Contains(got, e.Code) {
			t.Errorf("domain error code %q is not in the ErrorCode enum", e.Code)
		}
	}
	// Every problem example must use a code of the enum (kin-openapi checks
	// examples against schemas, but name the failure plainly here).
	for name, r := range doc.Components.Responses {
		mt := r.Value.Content.Get("application/problem+json")
		if mt == nil {
			t.Errorf("response %s is not a problem", name)
			continue
		}
		for exName, ex := range mt.Examples {
			code, _ := ex.Value.Value.(map[string]any)["code"].(string)
			if !slices.Contains(want, code) {
				t.Errorf("response %s example %s has code %q", name, exName, code)
			}
		}
	}
}

// jsonFields returns a struct type's JSON member names and which of them are
// always present (no omitempty).
func jsonFields(t reflect.Type) (names, always []string) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	sort.Strings(names)
	sort.Strings(always)
	return names, always
}

// TestSchemasMatchGoTypes holds the document to the JSON names of the Go
// types the server encodes: a renamed field on either side fails here.
func TestSchemasMatchGoTypes(t *testing.T) {
	doc := loadDoc(t)
	pairs := map[string]any{
		"Attributes":     queries.Attributes{},
		"Stats":          queries.Stats{},
		"QueueWithStats": queries.Queue{},
		"QueuePage":      queries.QueuePage{},
		"MessageSummary": queries.MessageSummary{},
		"MessagePage":    queries.MessagePage{},
		"HistoryEntry":   queries.HistoryEntry{},
		"MessageDetail":  queries.MessageDetail{},
		"EventView":      queries.EventView{},
		"EventPage":      queries.EventPage{},
		"VerifyResult":   queries.VerifyResult{},
		"StateView":      queries.StateView{},
		"EventMetadata":  eventstore.Metadata{},
		"MessageLink":    queries.MessageLink{},
	}
	for name, v := range pairs {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("schema %s missing", name)
			continue
		}
		var props []string
		for p := range s.Value.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		required := slices.Sorted(slices.Values(s.Value.Required))
		names, always := jsonFields(reflect.TypeOf(v))
		if !slices.Equal(props, names) {
			t.Errorf("schema %s properties %v, Go %T JSON names %v", name, props, v, names)
		}
		if !slices.Equal(required, always) {
			t.Errorf("schema %s required %v, Go %T always encodes %v", name, required, v, always)
		}
	}
}

// TestGoValuesValidate encodes values of the Go types and validates them
// against the document's schemas, as a client would see them on the wire.
func TestGoValuesValidate(t *testing.T) {
	doc := loadDoc(t)
	at := time.Date(2025, 11, 29, 23, 6, 10, 120_000_000, time.UTC)
	dlq := "orders.dlq"
	body := "hello"
	queue := queries.Queue{
		Name: "orders",
		Attributes: queries.Attributes{VisibilityTimeoutMS: 30000, RetentionMS: 345600000, MaxMessageBytes: 262144,
			DeadLetterQueue: &dlq, MaxReceiveCount: 5},
		CreatedAt: at, UpdatedAt: at,
		Stats: queries.Stats{Ready: 3, InFlight: 1, PublishedTotal: 4},
	}
	noDLQ := queue
	noDLQ.Name = "orders.dlq"
	noDLQ.Attributes.DeadLetterQueue = nil
	noDLQ.Attributes.MaxReceiveCount = 0
	summary := queries.MessageSummary{ID: "01JDQ7S0Q8V8K4M3Z6XW2Y9T1B", Queue: "orders", State: queries.StateInFlight,
		PublishedAt: at, ReceiveCount: 1, Headers: map[string]string{"k": "v"}}
	withBody := summary
	withBody.Body, withBody.BodyEncoding = &body, domain.EncodingUTF8
	event := queries.EventView{Position: 7, Stream: domain.StreamID("orders"), Version: 2, Type: domain.TypeMessagePublished,
		SchemaVersion: 1, Data: json.RawMessage(`{"queue":"orders"}`), Metadata: json.RawMessage(`{"subject":"svc"}`),
		RecordedAt: at, Hash: strings.Repeat("ab", 32), PrevHash: strings.Repeat("0", 64)}

	cases := []struct {
		schema string
		value  any
	}{
		{"QueueWithStats", queue},
		{"QueueWithStats", noDLQ},
		{"QueuePage", queries.QueuePage{Queues: []queries.Queue{queue, noDLQ}, NextCursor: "abc"}},
		{"MessagePage", queries.MessagePage{Messages: []queries.MessageSummary{summary, withBody}}},
		{"MessageDetail", queries.MessageDetail{ID: summary.ID, Queue: "orders", State: queries.StateAcked, Body: body,
			BodyEncoding: domain.EncodingUTF8, Headers: map[string]string{}, ReceiveCount: 1, PublishedAt: at, AvailableAt: at,
			History: []queries.HistoryEntry{{Position: 7, Type: domain.TypeMessageAcked, RecordedAt: at, Data: json.RawMessage(`{}`)}}}},
		{"MessageDetail", queries.MessageDetail{ID: summary.ID, Queue: "orders.dlq", State: queries.StateInFlight, Body: "AAE=",
			BodyEncoding: domain.EncodingBase64, Headers: map[string]string{"k": "v"}, ReceiveCount: 2, PublishedAt: at, AvailableAt: at,
			LeaseExpiresAt: &at, Origin: &queries.MessageLink{Queue: "orders", MessageID: "01JDQ7S0Q8V8K4M3Z6XW2Y9T1A", Reason: domain.OriginDeadLetter},
			MovedTo: &queries.MessageLink{Queue: "orders", MessageID: "01JDQ7S0Q8V8K4M3Z6XW2Y9T1C", Reason: domain.OriginRedrive},
			History: []queries.HistoryEntry{}}},
		{"EventPage", queries.EventPage{Events: []queries.EventView{event}, NextAfter: 8}},
		{"VerifyResult", queries.VerifyResult{OK: false, Checked: 9, HeadPosition: 9, HeadHash: "x", FirstBadPosition: 4}},
		{"StateView", queries.StateView{Position: 9, Queues: []queries.Queue{queue}}},
		{"QueueDeletedData", map[string]string{"name": "orders"}},
	}
	for _, c := range cases {
		raw, err := json.Marshal(c.value)
		if err != nil {
			t.Fatalf("marshal %T: %v", c.value, err)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		s := doc.Components.Schemas[c.schema]
		if s == nil {
			t.Errorf("schema %s missing", c.schema)
			continue
		}
		if err := s.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.EnableFormatValidation()); err != nil {
			t.Errorf("%T does not validate against %s: %v\n%s", c.value, c.schema, err, raw)
		}
	}

	// And the document must refuse what the server never sends.
	bad := map[string]any{"name": "orders", "attributes": map[string]any{}, "created_at": "yesterday", "updated_at": at}
	if err := doc.Components.Schemas["QueueWithStats"].Value.VisitJSON(bad, openapi3.EnableJSONSchema2020()); err == nil {
		t.Error("QueueWithStats accepted a queue without stats or attributes")
	}
}

func TestMessageStateEnum(t *testing.T) {
	doc := loadDoc(t)
	got := enumStrings(t, doc.Components.Schemas["MessageState"].Value)
	if !slices.Equal(got, queries.MessageStates) {
		t.Errorf("MessageState enum = %v, want queries.MessageStates %v", got, queries.MessageStates)
	}
}

// TestOperationsMatchRouter compares the document with the routes the HTTP
// server registers (transport.Routes): a route without documentation, or
// documentation without a route, fails here. The /assets/ prefix serves
// files, not an API operation, and is not in the document.
func TestOperationsMatchRouter(t *testing.T) {
	ops, err := web.Operations()
	if err != nil {
		t.Fatalf("Operations: %v", err)
	}
	routes := map[web.Operation]bool{}
	for _, r := range transport.Routes() {
		if strings.HasSuffix(r.Path, "/") && r.Path != "/" {
			continue
		}
		routes[web.Operation{Method: r.Method, Path: r.Path}] = true
	}
	for _, op := range ops {
		if !routes[op] {
			t.Errorf("documented but not routed: %s %s", op.Method, op.Path)
		}
		delete(routes, op)
	}
	for op := range routes {
		t.Errorf("routed but not documented: %s %s", op.Method, op.Path)
	}
}
