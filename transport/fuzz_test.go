package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// Fuzz targets of the HTTP edge: every command's and query's decoding and
// validation through the real handler, queue names and patterns, tokens
// and the JSON shape check. The handler runs over recording fakes, so each
// input is fast and needs no database; what the fakes receive is what the
// edge let through, and it must obey API.md's bounds and the token's queue
// patterns whatever the input.

var fzSecret = []byte("fuzz-secret-fuzz-secret-fuzz-sec")

// fzPatterns limit the fuzzing token: it may touch orders.* and dlq only.
var fzPatterns = []string{"orders.*", "dlq"}

func fzAllowed(name string) bool {
	return matchQueuePattern("orders.*", name) || name == "dlq"
}

// fzCommands records the last command it was given.
type fzCommands struct {
	mu   sync.Mutex
	last any
}

func (c *fzCommands) record(cmd any) {
	c.mu.Lock()
	c.last = cmd
	c.mu.Unlock()
}

func (c *fzCommands) take() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.last
	c.last = nil
	return v
}

func fzQueueInfo(name string) commands.QueueInfo {
	return commands.QueueInfo{Name: name, Attributes: domain.DefaultAttributes(), CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)}
}

func (c *fzCommands) CreateQueue(_ context.Context, cmd commands.CreateQueue) (commands.QueueResult, error) {
	c.record(cmd)
	return commands.QueueResult{Queue: fzQueueInfo(cmd.Name), Created: true, Position: 1}, nil
}

func (c *fzCommands) ConfigureQueue(_ context.Context, cmd commands.ConfigureQueue) (commands.QueueResult, error) {
	c.record(cmd)
	return commands.QueueResult{Queue: fzQueueInfo(cmd.Name), Position: 2}, nil
}

func (c *fzCommands) DeleteQueue(_ context.Context, cmd commands.DeleteQueue) (commands.PositionResult, error) {
	c.record(cmd)
	return commands.PositionResult{Position: 3}, nil
}

func (c *fzCommands) PurgeQueue(_ context.Context, cmd commands.PurgeQueue) (commands.PurgeResult, error) {
	c.record(cmd)
	return commands.PurgeResult{Position: 4}, nil
}

func (c *fzCommands) Redrive(_ context.Context, cmd commands.Redrive) (commands.RedriveResult, error) {
	c.record(cmd)
	return commands.RedriveResult{Position: 5}, nil
}

func (c *fzCommands) Publish(_ context.Context, cmd commands.Publish) (commands.PublishResult, error) {
	c.record(cmd)
	return commands.PublishResult{ID: "id", Queue: cmd.Queue, Position: 6}, nil
}

func (c *fzCommands) PublishBatch(_ context.Context, cmd commands.PublishBatch) (commands.BatchResult, error) {
	c.record(cmd)
	res := commands.BatchResult{Position: 7}
	for range cmd.Messages {
		res.Results = append(res.Results, commands.PublishResult{ID: "id", Queue: cmd.Queue, Position: 7})
	}
	return res, nil
}

func (c *fzCommands) Receive(_ context.Context, cmd commands.Receive) (commands.ReceiveResult, error) {
	c.record(cmd)
	return commands.ReceiveResult{Position: 8}, nil
}

func (c *fzCommands) Ack(_ context.Context, cmd commands.Ack) (commands.AckResult, error) {
	c.record(cmd)
	return commands.AckResult{ID: "id", Position: 9}, nil
}

func (c *fzCommands) AckBatch(_ context.Context, cmd commands.AckBatch) (commands.AckBatchResult, error) {
	c.record(cmd)
	return commands.AckBatchResult{Position: 10}, nil
}

func (c *fzCommands) Nack(_ context.Context, cmd commands.Nack) (commands.AckResult, error) {
	c.record(cmd)
	return commands.AckResult{ID: "id", Position: 11}, nil
}

func (c *fzCommands) Extend(_ context.Context, cmd commands.Extend) (commands.ExtendResult, error) {
	c.record(cmd)
	return commands.ExtendResult{ID: "id", Position: 12}, nil
}

func (c *fzCommands) Head() int64 { return 12 }

// fzQueries records the last query. Its data include the queue "billing",
// which the fuzzing token may not see: no answer may show it.
type fzQueries struct {
	mu   sync.Mutex
	last any
}

func (q *fzQueries) record(v any) {
	q.mu.Lock()
	q.last = v
	q.mu.Unlock()
}

func (q *fzQueries) take() any {
	q.mu.Lock()
	defer q.mu.Unlock()
	v := q.last
	q.last = nil
	return v
}

var fzAllQueues = []string{"billing", "dlq", "orders", "orders.eu"}

func fzQueryQueue(name string) queries.Queue {
	return queries.Queue{Name: name, CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)}
}

func (q *fzQueries) ListQueues(_ context.Context, lq queries.ListQueues) (queries.QueuePage, error) {
	q.record(lq)
	var page queries.QueuePage
	for _, n := range fzAllQueues {
		if strings.HasPrefix(n, lq.Prefix) && (lq.Allowed == nil || lq.Allowed(n)) {
			page.Queues = append(page.Queues, fzQueryQueue(n))
		}
	}
	return page, nil
}

func (q *fzQueries) GetQueue(_ context.Context, name string) (queries.Queue, error) {
	q.record(name)
	if !slices.Contains(fzAllQueues, name) {
		return queries.Queue{}, domain.ErrQueueNotFound
	}
	return fzQueryQueue(name), nil
}

func (q *fzQueries) ListMessages(_ context.Context, lm queries.ListMessages) (queries.MessagePage, error) {
	q.record(lm)
	return queries.MessagePage{Messages: []queries.MessageSummary{{ID: "m", Queue: lm.Queue, State: queries.StateReady}}}, nil
}

// GetMessage finds any id; ids starting with "B" live in billing.
func (q *fzQueries) GetMessage(_ context.Context, id string) (queries.MessageDetail, error) {
	q.record(id)
	queue := "orders.eu"
	if strings.HasPrefix(id, "B") {
		queue = "billing"
	}
	return queries.MessageDetail{ID: id, Queue: queue, State: queries.StateReady, Body: "secret of " + queue}, nil
}

func (q *fzQueries) WaitFor(_ context.Context, position int64, _ time.Duration) error {
	if position > 100 {
		return queries.ErrConsistencyTimeout
	}
	return nil
}

func (q *fzQueries) Position() int64 { return 100 }

func (q *fzQueries) Events(_ context.Context, f queries.EventFilter) (queries.EventPage, error) {
	q.record(f)
	return queries.EventPage{Events: fzEvents(f)}, nil
}

func (q *fzQueries) StreamEvents(_ context.Context, f queries.EventFilter, fn func(queries.EventView) error) error {
	q.record(f)
	for _, e := range fzEvents(f) {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// fzEvents is one event per queue, filtered as the audit reader does.
func fzEvents(f queries.EventFilter) []queries.EventView {
	var out []queries.EventView
	for i, n := range fzAllQueues {
		if f.Allowed != nil && !f.Allowed(n) {
			continue
		}
		out = append(out, queries.EventView{Position: int64(i + 1), Stream: domain.StreamID(n), Version: 1,
			Type: domain.TypeQueueCreated, SchemaVersion: 1, Data: json.RawMessage(`{}`), Metadata: json.RawMessage(`{}`)})
	}
	return out
}

func (q *fzQueries) Verify(_ context.Context, from, to int64) (queries.VerifyResult, error) {
	q.record([2]int64{from, to})
	return queries.VerifyResult{OK: true}, nil
}

func (q *fzQueries) StateAt(_ context.Context, s queries.StateAt) (queries.StateView, error) {
	q.record(s)
	v := queries.StateView{Position: 5}
	for _, n := range fzAllQueues {
		v.Queues = append(v.Queues, fzQueryQueue(n))
	}
	return v, nil
}

// fzServer is the real handler over the recording fakes.
type fzServer struct {
	h     http.Handler
	cmds  *fzCommands
	qs    *fzQueries
	token string
}

func newFzServer(tb testing.TB) *fzServer {
	tb.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := &fzServer{cmds: &fzCommands{}, qs: &fzQueries{}}
	h, err := NewServer(Deps{Commands: s.cmds, Queries: s.qs, Audit: s.qs, Auth: AuthConfig{HS256Secret: fzSecret}, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	s.h = h
	s.token, err = MintToken(fzSecret, "fuzzer", []string{ScopeAdmin}, fzPatterns, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// serve runs one request; ok is false when the input cannot even be an
// HTTP request (the server would never see it).
func (s *fzServer) serve(method, target string, body []byte, header map[string]string) (*httptest.ResponseRecorder, bool) {
	r, err := http.NewRequest(method, "http://ledgerq.test"+target, bytes.NewReader(body))
	if err != nil {
		return nil, false
	}
	r.Header.Set("Authorization", "Bearer "+s.token)
	for k, v := range header {
		if v != "" {
			r.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, r)
	return rec, true
}

// fzCheckAnswer fails t unless rec is a success or a well-formed problem
// with one of the statuses bad input may cause: never a 5xx other than a
// consistency timeout, never 401 (the token is good).
func fzCheckAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 400 {
		return
	}
	switch rec.Code {
	case 400, 403, 404, 405, 409, 413, 415:
	case 503:
		if !strings.Contains(rec.Body.String(), codeConsistencyTimeout) {
			t.Fatalf("503 that is not a consistency timeout: %s", rec.Body)
		}
	default:
		t.Fatalf("status %d for client input: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q", rec.Code, ct)
	}
	var p struct {
		Status int    `json:"status"`
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Code == "" || p.Detail == "" {
		t.Fatalf("malformed problem (%v): %s", err, rec.Body)
	}
}

// fzCheckName fails t unless name is a valid queue name the token may use.
func fzCheckName(t *testing.T, field, name string) {
	t.Helper()
	if checkQueueName(field, name) != nil || !fzAllowed(name) {
		t.Fatalf("%s %q reached the command side (name rule or token patterns bypassed)", field, name)
	}
}

func fzCheckMessage(t *testing.T, m commands.Message) {
	t.Helper()
	if len(m.Headers) > maxHeaders || len(m.DedupID) > maxDedupIDLen || len(m.ContentType) > maxContentTypeLen {
		t.Fatalf("message past the edge bounds reached the command side: %d headers, dedup %d bytes, content type %d bytes",
			len(m.Headers), len(m.DedupID), len(m.ContentType))
	}
	if m.BodyEncoding != "" && m.BodyEncoding != domain.EncodingUTF8 && m.BodyEncoding != domain.EncodingBase64 {
		t.Fatalf("body_encoding %q reached the command side", m.BodyEncoding)
	}
}

// fzCheckCommand checks what reached the command side after a 2xx.
func fzCheckCommand(t *testing.T, cmd any) {
	t.Helper()
	switch c := cmd.(type) {
	case commands.CreateQueue:
		fzCheckName(t, "name", c.Name)
		if d := c.Attributes.DeadLetterQueue; d != nil && *d != "" {
			fzCheckName(t, "dead_letter_queue", *d)
		}
	case commands.ConfigureQueue:
		fzCheckName(t, "queue", c.Name)
		if d := c.Attributes.DeadLetterQueue; d != nil && *d != "" {
			fzCheckName(t, "dead_letter_queue", *d)
		}
	case commands.DeleteQueue:
		fzCheckName(t, "queue", c.Name)
	case commands.PurgeQueue:
		fzCheckName(t, "queue", c.Name)
	case commands.Redrive:
		fzCheckName(t, "queue", c.Queue)
		if c.To != "" {
			fzCheckName(t, "to", c.To)
		}
		if c.MaxMessages < 0 {
			t.Fatalf("redrive max_messages %d", c.MaxMessages)
		}
	case commands.Publish:
		fzCheckName(t, "queue", c.Queue)
		fzCheckMessage(t, c.Message)
	case commands.PublishBatch:
		fzCheckName(t, "queue", c.Queue)
		if len(c.Messages) < 1 || len(c.Messages) > maxBatchMessages {
			t.Fatalf("batch of %d messages", len(c.Messages))
		}
		for _, m := range c.Messages {
			fzCheckMessage(t, m)
		}
	case commands.Receive:
		fzCheckName(t, "queue", c.Queue)
		if c.MaxMessages < 1 || c.MaxMessages > maxReceiveMessages || c.WaitMS < 0 || c.WaitMS > maxWaitMS {
			t.Fatalf("receive max_messages %d wait_ms %d", c.MaxMessages, c.WaitMS)
		}
		if checkPrintable("consumer", c.Consumer, maxConsumerLen) != nil {
			t.Fatalf("consumer %q reached the command side", c.Consumer)
		}
	case commands.Ack:
		fzCheckName(t, "queue", c.Queue)
		fzCheckReceipt(t, c.Receipt)
	case commands.AckBatch:
		fzCheckName(t, "queue", c.Queue)
		if len(c.Receipts) < 1 || len(c.Receipts) > maxAckReceipts {
			t.Fatalf("ack batch of %d receipts", len(c.Receipts))
		}
		for _, r := range c.Receipts {
			fzCheckReceipt(t, r)
		}
	case commands.Nack:
		fzCheckName(t, "queue", c.Queue)
		fzCheckReceipt(t, c.Receipt)
		if c.DelayMS < 0 {
			t.Fatalf("nack delay_ms %d", c.DelayMS)
		}
	case commands.Extend:
		fzCheckName(t, "queue", c.Queue)
		fzCheckReceipt(t, c.Receipt)
	case nil:
		t.Fatalf("a 2xx answer without any command reaching the command side")
	default:
		t.Fatalf("unexpected command %T", cmd)
	}
}

func fzCheckReceipt(t *testing.T, r string) {
	t.Helper()
	if r == "" || len(r) > maxReceiptLen {
		t.Fatalf("receipt of %d bytes reached the command side", len(r))
	}
}

func fzRoutes(group string) []Route {
	var out []Route
	for _, r := range Routes() {
		if r.Group == group && r.Path != "/v1/subscribe" {
			out = append(out, r)
		}
	}
	return out
}

// FuzzCommandRoutes sends arbitrary bodies, content types and {queue}
// path segments to every command route.
func FuzzCommandRoutes(f *testing.F) {
	s := newFzServer(f)
	routes := fzRoutes(GroupCommand)
	if len(routes) == 0 {
		f.Fatal("no command routes")
	}
	seeds := []string{
		`{"name":"orders.eu","visibility_timeout_ms":1000,"dead_letter_queue":"dlq","max_receive_count":3}`,
		`{"name":"billing"}`, `{"name":"orders.eu","dead_letter_queue":"billing","max_receive_count":1}`,
		`{"dead_letter_queue":null}`, `{"to":"billing"}`, `{"to":"orders.x","max_messages":-1}`,
		`{"body":"'; DROP TABLE events; --","headers":{"k":"v"},"dedup_id":"' OR '1'='1","delay_ms":5}`,
		`{"body":"aGk=","body_encoding":"base64","content_type":"text/plain"}`,
		`{"messages":[{"body":"a"},{"body":"b","body_encoding":"rot13"}]}`,
		`{"max_messages":100,"wait_ms":20000,"consumer":"c\u0000"}`, `{"max_messages":0}`,
		`{"receipt":"r"}`, `{"receipts":["a","b"]}`, `{"receipt":"r","receipts":[]}`,
		`{"receipt":"r","delay_ms":-1}`, `{"receipt":"r","visibility_timeout_ms":100}`,
		`{"a":{"b":{"c":{"d":{}}}}}`, `{"body":"x","body":"y"}`, `[]`, `{} {}`, ``,
	}
	for i, b := range seeds {
		f.Add(uint8(i), "orders.eu", []byte(b), "application/json")
	}
	for i, q := range []string{"orders", "billing", "orders.eu%2F..%2Fbilling", "%6Frders.eu", "%D0%BErders.eu", "orders.eu%00", "..", "orders.*", "%252e"} {
		f.Add(uint8(i), q, []byte(`{"body":"x","receipt":"r"}`), "application/json; charset=utf-8")
	}
	f.Add(uint8(0), "orders.eu", []byte(`{"name":"orders.x"}`), "text/plain")

	f.Fuzz(func(t *testing.T, route uint8, queue string, body []byte, ctype string) {
		rt := routes[int(route)%len(routes)]
		target := strings.Replace(rt.Path, "{queue}", queue, 1)
		s.cmds.take()
		rec, ok := s.serve(rt.Method, target, body, map[string]string{"Content-Type": ctype})
		if !ok {
			return
		}
		fzCheckAnswer(t, rec)
		cmd := s.cmds.take()
		if rec.Code >= 300 {
			if cmd != nil {
				t.Fatalf("%s %s answered %d but the command side was called: %#v", rt.Method, target, rec.Code, cmd)
			}
			return
		}
		fzCheckCommand(t, cmd)
	})
}

// FuzzQueryRoutes sends arbitrary path segments, query strings, Accept and
// X-Ledgerq-Min-Position headers to every query route.
func FuzzQueryRoutes(f *testing.F) {
	s := newFzServer(f)
	routes := fzRoutes(GroupQuery)
	if len(routes) == 0 {
		f.Fatal("no query routes")
	}
	qs := []string{"", "limit=0", "limit=1001", "limit=5&cursor=abc", "prefix=%25", "prefix=b", "state=ready&include_body=true",
		"state=bogus", "after=-1", "after=3&type=QueueCreated", "type=Nope", "stream=queue-billing",
		"since=2025-01-01T00:00:00Z&until=2024-01-01T00:00:00Z", "from=5&to=2", "at_position=3", "at_time=2025-01-01T00:00:00Z",
		"at_position=1&at_time=2025-01-01T00:00:00Z", "limit=1&limit=2", "cursor=" + strings.Repeat("A", 1100), "%zz"}
	for i, q := range qs {
		f.Add(uint8(i), "orders.eu", q, "", "")
	}
	f.Add(uint8(1), "billing", "", "application/x-ndjson", "")
	f.Add(uint8(3), "B123", "", "", "")
	f.Add(uint8(3), "x%2Fy", "", "", "5")
	f.Add(uint8(0), "orders.eu", "", "application/x-ndjson", "101")
	f.Add(uint8(0), "orders.eu", "", "", "-1")

	f.Fuzz(func(t *testing.T, route uint8, segment, rawQuery, accept, minPos string) {
		rt := routes[int(route)%len(routes)]
		target := strings.NewReplacer("{queue}", segment, "{id}", segment).Replace(rt.Path)
		if rawQuery != "" {
			target += "?" + rawQuery
		}
		s.qs.take()
		rec, ok := s.serve(rt.Method, target, nil, map[string]string{"Accept": accept, "X-Ledgerq-Min-Position": minPos})
		if !ok {
			return
		}
		fzCheckAnswer(t, rec)
		q := s.qs.take()
		if rec.Code >= 300 {
			return
		}
		for _, leak := range []string{`"name":"billing"`, `"queue":"billing"`, `"stream":"queue-billing"`, "secret of billing"} {
			if strings.Contains(rec.Body.String(), leak) {
				t.Fatalf("%s %s showed the hidden queue billing: %s", rt.Method, target, rec.Body)
			}
		}
		switch q := q.(type) {
		case queries.ListQueues:
			if q.Limit < 1 || q.Limit > maxPageLimit || len(q.Cursor) > maxCursorLen || len(q.Prefix) > maxQueueNameLen || q.Allowed == nil {
				t.Fatalf("list queues query past the bounds: %+v", q)
			}
		case queries.ListMessages:
			fzCheckName(t, "queue", q.Queue)
			if q.Limit < 1 || q.Limit > maxPageLimit || len(q.Cursor) > maxCursorLen || (q.State != "" && !slices.Contains(messageStates, q.State)) {
				t.Fatalf("list messages query past the bounds: %+v", q)
			}
		case string:
			if rt.Path == "/v1/queues/{queue}" {
				fzCheckName(t, "queue", q)
			} else if checkMessageID(q) != nil {
				t.Fatalf("message id %q reached the read side", q)
			}
		case queries.EventFilter:
			if q.After < 0 || q.Allowed == nil || (q.Type != "" && !slices.Contains(domain.EventTypes, q.Type)) || len(q.Stream) > maxStreamLen {
				t.Fatalf("event filter past the bounds: %+v", q)
			}
		case [2]int64:
			if q[0] < 0 || q[1] < 0 || (q[1] != 0 && q[0] > q[1]) {
				t.Fatalf("verify range %v", q)
			}
		case queries.StateAt:
			if (q.Position == 0) == q.Time.IsZero() || q.Position < 0 {
				t.Fatalf("state query %+v", q)
			}
		case nil:
			t.Fatalf("%s %s answered %d without asking the read side", rt.Method, target, rec.Code)
		default:
			t.Fatalf("unexpected query %T", q)
		}
	})
}

// FuzzSubscribeRequest: whatever the query string and Last-Event-ID, a
// subscription only ever names valid queues the token may see.
func FuzzSubscribeRequest(f *testing.F) {
	caller := &principal{subject: "s", scopes: []string{ScopeQueuesRead}, patterns: fzPatterns}
	for _, q := range []string{"", "queues=orders.eu,dlq", "queues=billing", "queues=orders.eu,,", "queues=%20orders.eu%20",
		"kinds=queue", "kinds=message,bogus", "after=5", "after=-1", "queues=" + strings.Repeat("orders.a,", 120)} {
		f.Add(q, "")
	}
	f.Add("after=1", "7")
	f.Add("", "-3")
	f.Add("", "1e3")
	f.Fuzz(func(t *testing.T, rawQuery, lastEventID string) {
		r, err := http.NewRequest("GET", "http://ledgerq.test/v1/subscribe?"+rawQuery, nil)
		if err != nil {
			return
		}
		if lastEventID != "" {
			r.Header.Set("Last-Event-ID", lastEventID)
		}
		req, err := parseSubscribe(r, caller)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || (ae.code != codeInvalidArgument && ae.code != codeForbidden) {
				t.Fatalf("parseSubscribe error %v, want invalid_argument or forbidden", err)
			}
			return
		}
		for name := range req.queues {
			fzCheckName(t, "queues", name)
		}
		if len(req.queues) > maxSubscribeQueues || req.after < 0 {
			t.Fatalf("subscription past the bounds: %d queues, after %d", len(req.queues), req.after)
		}
		for k := range req.kinds {
			if k != kindQueue && k != kindMessage {
				t.Fatalf("kind %q accepted", k)
			}
		}
		accept := req.accepts(caller)
		if accept(queries.Update{Event: queries.EventQueueUpdated, Queue: "billing"}) {
			t.Fatalf("subscription %q would deliver updates of billing", rawQuery)
		}
	})
}

// FuzzQueuePattern: matchQueuePattern is the glob documented in auth.go,
// where '*' is the only special character; a pattern without '*' matches
// only itself.
func FuzzQueuePattern(f *testing.F) {
	for _, s := range [][2]string{{"orders.*", "orders.eu"}, {"orders.*", "orders"}, {"orders.*", "orders.a.b"},
		{"orders.*", "ordersx"}, {"*", ""}, {"a*b*c", "aXbYc"}, {"a*b*c", "abcb"}, {"orders.*", "оrders.a"},
		{"o?ders", "orders"}, {"[a-z]*", "abc"}, {"***", "x"}, {"a.b", "aXb"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := matchQueuePattern(pattern, name)
		if !strings.Contains(pattern, "*") && got != (pattern == name) {
			t.Fatalf("literal pattern %q vs %q: match %v", pattern, name, got)
		}
		if !utf8.ValidString(pattern) || !utf8.ValidString(name) {
			return
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re := regexp.MustCompile(`(?s)^` + strings.Join(parts, `.*`) + `$`)
		if want := re.MatchString(name); got != want {
			t.Fatalf("pattern %q vs %q: match %v, reference %v", pattern, name, got, want)
		}
	})
}

// FuzzQueueNameRule: a {queue} path segment is decoded once and must then
// pass exactly the rule the domain applies.
func FuzzQueueNameRule(f *testing.F) {
	for _, s := range []string{"orders", "%6Frders", "orders%2F..%2Fbilling", "%2e%2e", "%252e", "%D0%BErders", "orders%00",
		"%", "%zz", "a%20b", "ORDERS", "orders.eu-1_x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, err := pathParam(raw, "queue")
		if err != nil {
			return
		}
		edge := checkQueueName("queue", name) == nil
		dom := domain.ValidateQueueName("queue", name) == nil
		if edge != dom {
			t.Fatalf("segment %q → %q: edge says %v, domain says %v", raw, name, edge, dom)
		}
	})
}

// FuzzAuthenticate: any bearer value is refused with 401 unless it was
// signed with the key; nothing panics. Seeds include good tokens, so the
// fuzzer mutates real signatures and claims.
func FuzzAuthenticate(f *testing.F) {
	auth, err := newAuthenticator(AuthConfig{HS256Secret: fzSecret})
	if err != nil {
		f.Fatal(err)
	}
	sign := func(claims jwt.MapClaims, m jwt.SigningMethod, key any) string {
		tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	exp := time.Now().Add(24 * time.Hour).Unix()
	good := sign(jwt.MapClaims{"sub": "fuzz-sub", "scope": "admin", "exp": exp, "queues": []string{"orders.*"}}, jwt.SigningMethodHS256, fzSecret)
	f.Add(good)
	f.Add(sign(jwt.MapClaims{"sub": "fuzz-sub", "scope": "admin", "exp": exp}, jwt.SigningMethodHS256, fzSecret))
	f.Add(sign(jwt.MapClaims{"sub": "x", "exp": exp}, jwt.SigningMethodHS512, fzSecret))
	f.Add(sign(jwt.MapClaims{"sub": "x", "exp": exp}, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType))
	f.Add(sign(jwt.MapClaims{"sub": "x", "exp": exp}, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx")))
	f.Add(sign(jwt.MapClaims{"sub": "x", "exp": 1}, jwt.SigningMethodHS256, fzSecret))
	f.Add(sign(jwt.MapClaims{"sub": "x"}, jwt.SigningMethodHS256, fzSecret))
	f.Add(good[:len(good)-2])
	f.Add("")
	f.Add("a.b.c")
	f.Add(strings.Repeat("A", DefaultMaxTokenBytes+1))

	f.Fuzz(func(t *testing.T, raw string) {
		p, err := auth.authenticate(raw)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != codeUnauthorized || p != nil {
				t.Fatalf("authenticate error %v (principal %v), want 401 unauthorized", err, p)
			}
			return
		}
		// Only tokens signed with fzSecret by the seeds carry this
		// subject; the fuzzer cannot forge an HMAC.
		if p.subject != "fuzz-sub" || len(raw) > DefaultMaxTokenBytes {
			t.Fatalf("accepted a token the key never signed: %q → %+v", raw, p)
		}
		if p.patterns != nil && validatePatterns(p.patterns) != nil {
			t.Fatalf("accepted invalid queue patterns %q", p.patterns)
		}
	})
}

// shapeRef is an independent, recursive statement of checkShape's rule:
// the body starts with one JSON object, nested at most maxJSONDepth deep,
// without a key twice in one object.
func shapeRef(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return false
	}
	return shapeObject(dec, 1)
}

func shapeObject(dec *json.Decoder, depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey || seen[key] {
			return false
		}
		seen[key] = true
		if !shapeValue(dec, depth) {
			return false
		}
	}
	tok, err := dec.Token()
	return err == nil && tok == json.Delim('}')
}

func shapeValue(dec *json.Decoder, depth int) bool {
	tok, err := dec.Token()
	if err != nil {
		return false
	}
	switch tok {
	case json.Delim('{'):
		return shapeObject(dec, depth+1)
	case json.Delim('['):
		if depth+1 > maxJSONDepth {
			return false
		}
		for dec.More() {
			if !shapeValue(dec, depth+1) {
				return false
			}
		}
		tok, err := dec.Token()
		return err == nil && tok == json.Delim(']')
	}
	return true
}

// FuzzCheckShape: unmarshalStrict, the one way request bodies are decoded,
// accepts exactly one JSON object, nested at most maxJSONDepth deep,
// without a key twice in one object and with nothing after it (shapeRef
// plus json.Valid), and refuses everything else as invalid_argument.
// (testdata/fuzz/FuzzCheckShape/bb17fa3899f9e1ba: checkShape alone lets a
// truncated object such as "{" through, since it stops at the end of input
// without an error; the decoder after it refuses it, so bodies are safe.)
func FuzzCheckShape(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"a":1},"b":{"a":1}}`, `[]`, `"x"`, `{"a":[{"b":[]}]}`,
		strings.Repeat(`{"a":`, 32) + `1` + strings.Repeat(`}`, 32), strings.Repeat(`{"a":`, 33) + `1` + strings.Repeat(`}`, 33),
		strings.Repeat(`[`, 10000), `{"a":1} trailing`, `{"\u0061":1,"a":2}`, "{\"\xff\":1,\"\xfe\":2}", `{"a":1,}`, ` `,
		`{"n":1e400}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			// readJSON refuses such a body before it is decoded; the
			// reference (encoding/json's Token) would read it with U+FFFD
			// in place of the bad bytes.
			return
		}
		if err := checkShape(data); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != codeInvalidArgument {
				t.Fatalf("checkShape error %v is not invalid_argument", err)
			}
		}
		var m map[string]json.RawMessage
		err := unmarshalStrict(data, &m)
		if want := shapeRef(data) && json.Valid(data); (err == nil) != want {
			t.Fatalf("unmarshalStrict(%q) = %v, reference says ok=%v", data, err, want)
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.code != codeInvalidArgument {
				t.Fatalf("unmarshalStrict error %v is not invalid_argument", err)
			}
		}
	})
}

// FuzzBatchMessages: the one-pass decoding of a batch body accepts exactly
// what the entry-by-entry decoding accepts, with the same messages, and
// refuses with the same error (naming the same entry).
func FuzzBatchMessages(f *testing.F) {
	for _, seed := range []string{
		`{"messages":[{"body":"a"},{"body":"b","headers":{"k":"v"},"delay_ms":5}]}`,
		`{"messages":[{"body":"aGk=","body_encoding":"base64","content_type":"text/plain","dedup_id":"d"}]}`,
		`{"messages":[{"body":"a"},null]}`,
		`{"messages":[{"body":"a"},{"body":"b","body":"c"}]}`,
		`{"messages":[{"body":"a"},{"bodyy":"b"}]}`,
		`{"messages":[{"body":"a"},{"body":1}]}`,
		`{"messages":[{"body":"a"},"x"]}`,
		`{"messages":[]}`,
		`{"messages":null}`,
		`{"Messages":[{"Body":"a"}]}`,
		`{"messages":[{"body":"a","headers":{"k":{"x":1}}}]}`,
		`{"messages":[{"body":"a"}]} x`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) { // readJSON refuses it before either decoding
			return
		}
		fast, ferr := batchMessages(data)
		slow, serr := batchMessagesOneByOne(data)
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("%q: one pass: %v; one by one: %v", data, ferr, serr)
		}
		if ferr != nil {
			if ferr.Error() != serr.Error() {
				t.Fatalf("%q: one pass refused with %q, one by one with %q", data, ferr, serr)
			}
			return
		}
		fj, _ := json.Marshal(fast)
		sj, _ := json.Marshal(slow)
		if !bytes.Equal(fj, sj) {
			t.Fatalf("%q: one pass gave %s, one by one %s", data, fj, sj)
		}
	})
}
