package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/queries"
)

func TestListAndGetQueues(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "reader", []string{ScopeQueuesRead}, nil)
	rec := hx.do(req{method: "GET", path: "/v1/queues?prefix=orders&limit=2&cursor=abc", token: tok})
	if rec.Code != 200 || rec.Header().Get(headerPosition) != "40" {
		t.Fatalf("list = %d %s (position %q)", rec.Code, rec.Body, rec.Header().Get(headerPosition))
	}
	m := jsonOf(t, rec)
	if qs := m["queues"].([]any); len(qs) != 2 {
		t.Fatalf("queues = %v", qs)
	}
	if _, ok := m["next_cursor"]; ok {
		t.Error("next_cursor present at the end of the list")
	}
	if got := hx.qs.lastList; got.Prefix != "orders" || got.Limit != 2 || got.Cursor != "abc" || got.Allowed != nil {
		t.Errorf("query = %+v", got)
	}
	hx.do(req{method: "GET", path: "/v1/queues", token: tok})
	if got := hx.qs.lastList.Limit; got != 100 {
		t.Errorf("default limit = %d, want 100", got)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "limit=1&limit=2", "prefix=" + strings.Repeat("p", 81), "cursor=" + strings.Repeat("c", 2000)} {
		expectProblem(t, hx.do(req{method: "GET", path: "/v1/queues?" + q, token: tok}), 400, "invalid_argument")
	}

	rec = hx.do(req{method: "GET", path: "/v1/queues/orders", token: tok})
	want := `{"name":"orders","attributes":{"visibility_timeout_ms":30000,"delay_ms":0,"retention_ms":345600000,"max_message_bytes":262144,"dead_letter_queue":null,"max_receive_count":0},"created_at":"2025-03-04T04:06:07.891Z","updated_at":"2025-03-04T04:06:07.891Z","stats":{"ready":1,"delayed":0,"in_flight":0,"published_total":0,"acked_total":0,"released_total":0,"expired_total":0,"dead_lettered_total":0,"oldest_ready_age_ms":0}}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("get = %d\n%s\nwant\n%s", rec.Code, rec.Body, want)
	}
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/queues/nope", token: tok}), 404, "queue_not_found")
}

func TestListAndGetMessages(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "reader", []string{ScopeQueuesRead}, nil)
	rec := hx.do(req{method: "GET", path: "/v1/queues/orders/messages?state=ready&limit=5&include_body=true", token: tok})
	want := `{"messages":[{"id":"m-1","queue":"orders","state":"ready","published_at":"2025-03-04T04:06:07.891Z","receive_count":0,"headers":{},"body":"hello","body_encoding":"utf8"}],"next_cursor":"next"}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("messages = %d\n%s\nwant\n%s", rec.Code, rec.Body, want)
	}
	if got := hx.qs.lastMsgs; got != (queries.ListMessages{Queue: "orders", State: "ready", Limit: 5, IncludeBody: true}) {
		t.Errorf("query = %+v", got)
	}
	rec = hx.do(req{method: "GET", path: "/v1/queues/orders/messages", token: tok})
	if strings.Contains(rec.Body.String(), `"body"`) {
		t.Errorf("body listed without include_body: %s", rec.Body)
	}
	for _, q := range []string{"state=done", "include_body=maybe", "limit=-1"} {
		expectProblem(t, hx.do(req{method: "GET", path: "/v1/queues/orders/messages?" + q, token: tok}), 400, "invalid_argument")
	}

	rec = hx.do(req{method: "GET", path: "/v1/messages/m-1", token: tok})
	want = `{"id":"m-1","queue":"orders","state":"acked","body":"hello","body_encoding":"utf8","headers":{},"receive_count":0,"published_at":"2025-03-04T04:06:07.891Z","history":[{"position":5,"type":"MessagePublished","recorded_at":"2025-03-04T04:06:07.891Z","data":{"a":1}}]}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("message = %d\n%s\nwant\n%s", rec.Code, rec.Body, want)
	}
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/messages/missing", token: tok}), 404, "message_not_found")
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/messages/" + strings.Repeat("x", 129), token: tok}), 400, "invalid_argument")
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/messages/a%2Fb", token: tok}), 400, "invalid_argument")
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/messages/a%00b", token: tok}), 400, "invalid_argument")
}

func TestReadYourWrites(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "reader", []string{ScopeQueuesRead}, nil)
	if rec := hx.do(req{method: "GET", path: "/v1/queues/orders", token: tok, header: map[string]string{"X-Ledgerq-Min-Position": "77"}}); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if hx.qs.waited != 77 {
		t.Fatalf("waited for %d, want 77", hx.qs.waited)
	}
	hx.do(req{method: "GET", path: "/v1/queues?min_position=78", token: tok})
	if hx.qs.waited != 78 {
		t.Fatalf("waited for %d, want 78 from the query parameter", hx.qs.waited)
	}
	hx.qs.waitErr = fmt.Errorf("%w: at 40", queries.ErrConsistencyTimeout)
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/queues/orders?min_position=1000", token: tok}), 503, "consistency_timeout")
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/events?min_position=1000", token: adminToken(t)}), 503, "consistency_timeout")
	for _, v := range []string{"-1", "x", "1.5"} {
		expectProblem(t, hx.do(req{method: "GET", path: "/v1/queues", token: tok, header: map[string]string{"X-Ledgerq-Min-Position": v}}), 400, "invalid_argument")
	}
}

func TestEventsPage(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "auditor", []string{ScopeAuditRead}, nil)
	rec := hx.do(req{method: "GET", path: "/v1/events?after=1&limit=2&stream=queue-orders&type=MessagePublished&since=2025-01-01T00:00:00Z&until=2025-12-31T00:00:00.5Z", token: tok})
	if rec.Code != 200 {
		t.Fatalf("events = %d %s", rec.Code, rec.Body)
	}
	var page struct {
		Events []map[string]any `json:"events"`
		Next   int64            `json:"next_after"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 || page.Events[0]["position"] != 2.0 || page.Next != 3 {
		t.Fatalf("page = %+v", page)
	}
	for _, k := range []string{"position", "stream", "version", "type", "schema_version", "data", "metadata", "recorded_at", "hash", "prev_hash"} {
		if _, ok := page.Events[0][k]; !ok {
			t.Errorf("event lacks %q", k)
		}
	}
	f := hx.audit.last
	if f.After != 1 || f.Limit != 2 || f.Stream != "queue-orders" || f.Type != "MessagePublished" || f.Since.Year() != 2025 || f.Until.Nanosecond() != 5e8 {
		t.Errorf("filter = %+v", f)
	}
	for _, q := range []string{"type=Nope", "since=yesterday", "since=2025-02-01T00:00:00Z&until=2025-01-01T00:00:00Z", "after=-1", "limit=5000", "stream=" + strings.Repeat("s", 200)} {
		expectProblem(t, hx.do(req{method: "GET", path: "/v1/events?" + q, token: tok}), 400, "invalid_argument")
	}
}

func TestEventsNDJSON(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "auditor", []string{ScopeAuditRead}, nil)
	rec := hx.do(req{method: "GET", path: "/v1/events?after=2", token: tok, header: map[string]string{"Accept": "application/x-ndjson"}})
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("ndjson = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSuffix(rec.Body.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines = %d, want 3: %q", len(lines), rec.Body)
	}
	for i, l := range lines {
		var e struct{ Position int64 }
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Position != int64(3+i) {
			t.Errorf("line %d = %q (%v)", i, l, err)
		}
	}
	if hx.audit.last.Limit != 0 {
		t.Errorf("streaming filter limit = %d, want 0 (the whole range)", hx.audit.last.Limit)
	}

	// An error before the first event is still a problem document.
	hx.audit.streamFn = func(context.Context, queries.EventFilter, func(queries.EventView) error) error {
		return errors.New("read log: I/O error")
	}
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/events", token: tok, header: map[string]string{"Accept": "application/x-ndjson"}}), 500, "internal")
}

// TestEventsNDJSONStreams proves the range is not buffered: the client
// reads the first events while the log is still being read.
func TestEventsNDJSONStreams(t *testing.T) {
	hx := newHarness(t, nil)
	release := make(chan struct{})
	hx.audit.streamFn = func(ctx context.Context, _ queries.EventFilter, fn func(queries.EventView) error) error {
		for p := int64(1); p <= ndjsonFlushEvery; p++ {
			if err := fn(testEvent(p)); err != nil {
				return err
			}
		}
		select { // the rest of the range waits until the client saw the start
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return fn(testEvent(ndjsonFlushEvery + 1))
	}
	srv := httptest.NewServer(hx.h)
	defer srv.Close()
	r, _ := http.NewRequest("GET", srv.URL+"/v1/events", nil)
	r.Header.Set("Authorization", "Bearer "+token(t, "auditor", []string{ScopeAuditRead}, nil))
	r.Header.Set("Accept", "application/x-ndjson")
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for i := 0; i < ndjsonFlushEvery; i++ {
		if !sc.Scan() {
			t.Fatalf("stream ended after %d lines: %v", i, sc.Err())
		}
	}
	close(release)
	if !sc.Scan() || !strings.Contains(sc.Text(), fmt.Sprintf(`"position":%d`, ndjsonFlushEvery+1)) {
		t.Fatalf("last line = %q", sc.Text())
	}

	// A failure midway cuts the body short: the client sees an error, not
	// a clean end it could mistake for the whole range.
	hx.audit.streamFn = func(_ context.Context, _ queries.EventFilter, fn func(queries.EventView) error) error {
		if err := fn(testEvent(1)); err != nil {
			return err
		}
		return errors.New("disk read failed")
	}
	resp2, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	if _, err := io.ReadAll(resp2.Body); err == nil {
		t.Fatal("a stream that failed midway ended cleanly")
	}
}

func TestVerifyAndStateAt(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "auditor", []string{ScopeAuditRead}, nil)
	rec := hx.do(req{method: "GET", path: "/v1/audit/verify?from=1&to=5", token: tok})
	if rec.Code != 200 || rec.Body.String() != `{"ok":true,"checked":4,"head_position":5,"head_hash":"h"}`+"\n" {
		t.Fatalf("verify = %d %s", rec.Code, rec.Body)
	}
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/audit/verify?from=5&to=1", token: tok}), 400, "invalid_argument")

	rec = hx.do(req{method: "GET", path: "/v1/audit/state?at_time=2025-03-04T05:00:00Z", token: tok})
	m := jsonOf(t, rec)
	if m["position"] != 9.0 || len(m["queues"].([]any)) != 2 {
		t.Fatalf("state = %s", rec.Body)
	}
	for _, q := range []string{"", "at_position=0", "at_position=3&at_time=2025-03-04T05:00:00Z", "at_time=noon"} {
		expectProblem(t, hx.do(req{method: "GET", path: "/v1/audit/state?" + q, token: tok}), 400, "invalid_argument")
	}
}

func TestTimesAreUTCMilliseconds(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), `"2025-01-02T03:04:05.000Z"`},
		{time.Date(2025, 1, 2, 3, 4, 5, 999999999, time.FixedZone("", -3600)), `"2025-01-02T04:04:05.999Z"`},
		{time.Time{}, `null`},
	} {
		b, err := json.Marshal(jsonTime(tc.in))
		if err != nil || string(b) != tc.want {
			t.Errorf("%v → %s (%v), want %s", tc.in, b, err, tc.want)
		}
	}
}
