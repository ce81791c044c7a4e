package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/ledgerq/ledgerq/commands"
)

func TestRequestID(t *testing.T) {
	hx := newHarness(t, nil)
	rec := hx.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "abc-123"}})
	if got := rec.Header().Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("echoed id = %q", got)
	}
	for _, bad := range []string{"", "has space", "new\nline", strings.Repeat("x", 129), "<script>"} {
		rec := hx.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": bad}})
		got := rec.Header().Get("X-Request-Id")
		if _, err := ulid.ParseStrict(got); err != nil {
			t.Errorf("for %q the id is %q, want a fresh ULID", bad, got)
		}
	}
	a := hx.do(req{method: "GET", path: "/healthz"}).Header().Get("X-Request-Id")
	b := hx.do(req{method: "GET", path: "/healthz"}).Header().Get("X-Request-Id")
	if a == b {
		t.Errorf("two requests got the same id %q", a)
	}
}

func TestRecoverTurnsPanicsIntoProblems(t *testing.T) {
	hx := newHarness(t, nil)
	hx.cmds.receive = func(context.Context, commands.Receive) (commands.ReceiveResult, error) {
		panic("nil map in the scheduler")
	}
	rec := hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: adminToken(t), header: map[string]string{"X-Request-Id": "panic-1"}})
	expectProblem(t, rec, 500, "internal")
	if strings.Contains(rec.Body.String(), "nil map") {
		t.Errorf("the panic value reached the client: %s", rec.Body)
	}
	logged := false
	for _, e := range hx.logs.AllEntries() {
		if e.Data["request_id"] == "panic-1" && strings.Contains(fmt.Sprint(e.Data["panic"]), "nil map") && e.Data["stack"] != nil {
			logged = true
		}
	}
	if !logged {
		t.Error("the panic was not logged with its stack and request id")
	}
	// The server keeps serving.
	if rec := hx.do(req{method: "GET", path: "/healthz"}); rec.Code != 200 {
		t.Fatalf("after a panic /healthz = %d", rec.Code)
	}
}

func TestAccessLog(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "carol", []string{ScopeQueuesRead}, nil)
	hx.logs.Reset()
	hx.do(req{method: "GET", path: "/v1/queues/orders?secret=1", token: tok, header: map[string]string{"X-Request-Id": "log-1"}})
	hx.do(req{method: "GET", path: "/v1/subscribe?access_token=" + tok, ctx: canceled()})
	hx.do(req{method: "GET", path: "/no/such/thing"})
	entries := hx.logs.AllEntries()
	if len(entries) != 3 {
		t.Fatalf("%d log entries, want one per request", len(entries))
	}
	e := entries[0]
	for k, want := range map[string]any{"request_id": "log-1", "subject": "carol", "method": "GET", "route": "/v1/queues/{queue}", "status": 200} {
		if e.Data[k] != want {
			t.Errorf("%s = %v, want %v", k, e.Data[k], want)
		}
	}
	if _, ok := e.Data["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms = %v", e.Data["duration_ms"])
	}
	if b, ok := e.Data["bytes"].(int64); !ok || b <= 0 {
		t.Errorf("bytes = %v", e.Data["bytes"])
	}
	if entries[1].Data["route"] != "/v1/subscribe" || entries[1].Data["subject"] != "carol" {
		t.Errorf("subscribe entry = %v", entries[1].Data)
	}
	if entries[2].Data["route"] != "unmatched" || entries[2].Data["status"] != 404 {
		t.Errorf("unmatched entry = %v", entries[2].Data)
	}
	for _, e := range entries {
		line, _ := json.Marshal(e.Data)
		if strings.Contains(string(line), tok[:20]) || strings.Contains(string(line), "secret") || strings.Contains(e.Message, tok[:20]) {
			t.Errorf("log entry leaks the token or the query string: %s", line)
		}
	}
}

func TestMetrics(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	hx.do(req{method: "GET", path: "/v1/queues/orders", token: tok})
	hx.do(req{method: "GET", path: "/v1/queues/payments", token: tok})
	hx.do(req{method: "GET", path: "/v1/queues/nope", token: tok})
	hx.do(req{method: "GET", path: "/x/y/z"})
	hx.metrics.EventsAppended.Add(3)
	hx.metrics.ProjectionLag.WithLabelValues("queues").Set(7)
	body := hx.do(req{method: "GET", path: "/metrics"}).Body.String()
	for _, want := range []string{
		`ledgerq_http_requests_total{method="GET",route="/v1/queues/{queue}",status="200"} 2`,
		`ledgerq_http_requests_total{method="GET",route="/v1/queues/{queue}",status="404"} 1`,
		`ledgerq_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`ledgerq_http_request_duration_seconds_count{method="GET",route="/v1/queues/{queue}",status="200"} 2`,
		`ledgerq_events_appended_total 3`,
		`ledgerq_projection_lag_events{projection="queues"} 7`,
		`ledgerq_sse_clients 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Queue depths are read when /metrics is scraped; when they cannot be read,
// the scrape still serves everything else.
func TestMetricsQueueDepthsAtScrape(t *testing.T) {
	hx := newHarness(t, nil)
	reads := 0
	fail := false
	hx.metrics.CollectQueueDepths(func(ctx context.Context) ([]QueueDepth, error) {
		reads++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the depths are read without a deadline")
		}
		if fail {
			return nil, errors.New("read model unavailable")
		}
		return []QueueDepth{{Queue: "orders", Ready: 5, Delayed: 2, InFlight: 1}}, nil
	})
	if reads != 0 {
		t.Fatalf("depths read %d times before any scrape", reads)
	}
	body := hx.do(req{method: "GET", path: "/metrics"}).Body.String()
	for _, want := range []string{
		`ledgerq_queue_messages{queue="orders",state="ready"} 5`,
		`ledgerq_queue_messages{queue="orders",state="delayed"} 2`,
		`ledgerq_queue_messages{queue="orders",state="in_flight"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if reads != 1 {
		t.Errorf("one scrape read the depths %d times", reads)
	}

	fail = true
	rec := hx.do(req{method: "GET", path: "/metrics"})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "ledgerq_sse_clients 0") {
		t.Errorf("with the depths failing: status %d, body without the other metrics:\n%s", rec.Code, rec.Body.String())
	}
	if strings.Contains(rec.Body.String(), "ledgerq_queue_messages{") {
		t.Errorf("depth series served although reading them failed")
	}
}

func TestRateLimit(t *testing.T) {
	const burst = 20
	// A 20 s window: the test never straddles a refill.
	hx := newHarness(t, func(d *Deps) { d.RateLimit = RateLimitConfig{PerSecond: 1, Burst: burst} })
	tok := token(t, "dave", []string{ScopeQueuesRead}, nil)
	for i := 1; i <= burst; i++ {
		rec := hx.do(req{method: "GET", path: "/v1/queues", token: tok})
		if rec.Code != 200 {
			t.Fatalf("request %d: status %d", i, rec.Code)
		}
		if got := rec.Header().Get("X-RateLimit-Remaining"); got != strconv.Itoa(burst-i) {
			t.Fatalf("request %d: remaining %q, want %d", i, got, burst-i)
		}
	}
	rec := hx.do(req{method: "GET", path: "/v1/queues", token: tok})
	expectProblem(t, rec, http.StatusTooManyRequests, "rate_limited")
	ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || ra < 1 || ra > burst {
		t.Errorf("Retry-After = %q", rec.Header().Get("Retry-After"))
	}
	if rec.Header().Get("X-RateLimit-Limit") != strconv.Itoa(burst) || rec.Header().Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("limit headers = %v", rec.Header())
	}
	reset, err := strconv.ParseInt(rec.Header().Get("X-RateLimit-Reset"), 10, 64)
	if now := time.Now().Unix(); err != nil || reset < now || reset > now+burst+1 {
		t.Errorf("X-RateLimit-Reset = %q, want a Unix time within the window", rec.Header().Get("X-RateLimit-Reset"))
	}
	// Another subject has its own budget.
	if rec := hx.do(req{method: "GET", path: "/v1/queues", token: token(t, "erin", []string{ScopeQueuesRead}, nil)}); rec.Code != 200 {
		t.Fatalf("another subject: status %d", rec.Code)
	}

	// Without a valid token the budget is per client address, and bad
	// tokens spend it too.
	from := func(addr, tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/v1/queues", nil)
		r.RemoteAddr = addr
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		hx.h.ServeHTTP(rec, r)
		return rec
	}
	for i := 0; i < burst; i++ {
		if rec := from("198.51.100.7:1000", "bogus"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("bad token %d: status %d", i, rec.Code)
		}
	}
	expectProblem(t, from("198.51.100.7:2000", ""), http.StatusTooManyRequests, "rate_limited")
	expectProblem(t, from("198.51.100.8:1000", ""), http.StatusUnauthorized, "unauthorized")
}

func TestReadyz(t *testing.T) {
	report := ReadyReport{Checks: []Check{{Name: "event_store", OK: true}, {Name: "projection_lag", OK: false, Detail: "1200 events behind"}}}
	var gotDeadline bool
	hx := newHarness(t, func(d *Deps) {
		d.Ready = func(ctx context.Context) ReadyReport {
			_, gotDeadline = ctx.Deadline()
			return report
		}
	})
	rec := hx.do(req{method: "GET", path: "/readyz"})
	want := `{"ready":false,"checks":[{"name":"event_store","ok":true},{"name":"projection_lag","ok":false,"detail":"1200 events behind"}]}` + "\n"
	if rec.Code != 503 || rec.Body.String() != want {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body)
	}
	if !gotDeadline {
		t.Error("the readiness checks ran without a deadline")
	}
	report.Checks[1].OK = true
	if rec := hx.do(req{method: "GET", path: "/readyz"}); rec.Code != 200 {
		t.Fatalf("ready: status %d", rec.Code)
	}
}
