package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestQueueAndMessageLifecycle walks the command and query routes of API.md
// against the real binary: the happy paths and the error answers of each.
func TestQueueAndMessageLifecycle(t *testing.T) {
	s := startServer(t)
	tok := s.Token("alice", "admin")

	// Create: 201, same again 200, different 409.
	r := s.Call("POST", "/v1/queues", tok, map[string]any{"name": "orders", "visibility_timeout_ms": 5000})
	harness.MustStatus(t, r, 201, "create queue")
	if q, _ := r.JSON["queue"].(map[string]any); q["name"] != "orders" {
		t.Fatalf("create answer has no queue: %s", r.Body)
	}
	if r.Num("position") <= 0 || r.Header.Get("X-Ledgerq-Position") != strconv.FormatInt(r.Num("position"), 10) {
		t.Fatalf("create: position %d, header %q", r.Num("position"), r.Header.Get("X-Ledgerq-Position"))
	}
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "orders", "visibility_timeout_ms": 5000}), 200, "create same queue again")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "orders", "visibility_timeout_ms": 6000}), 409, "queue_exists", "create with other attributes")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "-bad"}), 400, "invalid_argument", "bad queue name")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "x", "visibility_timeout_ms": 5}), 400, "invalid_argument", "visibility out of range")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "x", "bogus": 1}), 400, "invalid_argument", "unknown field")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "x", "dead_letter_queue": "nope", "max_receive_count": 3}), 400, "invalid_argument", "dead-letter queue that does not exist")
	harness.MustProblem(t, s.Call("PATCH", "/v1/queues/missing", tok, map[string]any{"delay_ms": 10}), 404, "queue_not_found", "configure unknown queue")

	// Publish: 201 with id; dedup: 200 with the first id; base64 body.
	r = s.Call("POST", "/v1/queues/orders/messages", tok, map[string]any{"body": "first", "headers": map[string]string{"k": "v"}, "dedup_id": "d1"})
	harness.MustStatus(t, r, 201, "publish")
	firstID := r.Str("id")
	if firstID == "" || r.Str("queue") != "orders" {
		t.Fatalf("publish answer: %s", r.Body)
	}
	r = s.Call("POST", "/v1/queues/orders/messages", tok, map[string]any{"body": "again", "dedup_id": "d1"})
	harness.MustStatus(t, r, 200, "publish duplicate dedup id")
	if r.Str("id") != firstID {
		t.Fatalf("dedup answered id %q, want the first %q", r.Str("id"), firstID)
	}
	bin := base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})
	harness.MustStatus(t, s.Call("POST", "/v1/queues/orders/messages", tok, map[string]any{"body": bin, "body_encoding": "base64"}), 201, "publish base64")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/messages", tok, map[string]any{"body": "%%%", "body_encoding": "base64"}), 400, "invalid_argument", "invalid base64")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/nope/messages", tok, map[string]any{"body": "x"}), 404, "queue_not_found", "publish to unknown queue")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/messages", tok, `{"body":`), 400, "invalid_argument", "malformed JSON")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/messages", tok, `{"body":"x"}`, "Content-Type", "text/plain"), 415, "unsupported_media_type", "text/plain body")

	// Batch: all or nothing, the bad entry is named.
	r = s.Call("POST", "/v1/queues/orders/messages:batch", tok, map[string]any{"messages": []map[string]any{{"body": "b1"}, {"body": "b2"}}})
	harness.MustStatus(t, r, 201, "batch publish")
	if res, _ := r.JSON["results"].([]any); len(res) != 2 {
		t.Fatalf("batch results: %s", r.Body)
	}
	r = s.Call("POST", "/v1/queues/orders/messages:batch", tok, map[string]any{"messages": []map[string]any{{"body": "ok"}, {"body": "x", "delay_ms": -1}}})
	harness.MustProblem(t, r, 400, "invalid_argument", "batch with a bad entry")
	if !strings.Contains(string(r.Body), "1") {
		t.Fatalf("batch error does not name the index: %s", r.Body)
	}

	// Read-your-writes: the queue shows 4 ready messages once the read side
	// has applied the last command's position.
	last := s.Call("GET", "/v1/queues/orders", tok, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(head(t, s, tok), 10))
	harness.MustStatus(t, last, 200, "get queue")
	stats, _ := last.JSON["stats"].(map[string]any)
	if stats["ready"] != float64(4) || stats["published_total"] != float64(4) {
		t.Fatalf("stats after 4 publishes: %v", stats)
	}
	harness.MustProblem(t, s.Call("GET", "/v1/queues/orders?min_position=999999999", tok, nil), 503, "consistency_timeout", "min_position beyond the head")

	// Receive oldest first, ack, stale and unknown receipts.
	r = s.Call("POST", "/v1/queues/orders/receive", tok, map[string]any{"max_messages": 1, "consumer": "c1"})
	harness.MustStatus(t, r, 200, "receive")
	msgs, _ := r.JSON["messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("receive: %s", r.Body)
	}
	m := msgs[0].(map[string]any)
	if m["id"] != firstID || m["body"] != "first" || m["receive_count"] != float64(1) {
		t.Fatalf("receive gave %v, want the oldest message %s", m, firstID)
	}
	receipt := m["receipt"].(string)
	r = s.Call("POST", "/v1/queues/orders/extend", tok, map[string]any{"receipt": receipt, "visibility_timeout_ms": 10000})
	harness.MustStatus(t, r, 200, "extend")
	if r.Str("lease_expires_at") == "" {
		t.Fatalf("extend: %s", r.Body)
	}
	r = s.Call("POST", "/v1/queues/orders/ack", tok, map[string]any{"receipt": receipt})
	harness.MustStatus(t, r, 200, "ack")
	if r.Str("id") != firstID {
		t.Fatalf("ack answered %s", r.Body)
	}
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/ack", tok, map[string]any{"receipt": receipt}), 404, "receipt_not_found", "ack twice")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/ack", tok, map[string]any{"receipt": "garbage"}), 404, "receipt_not_found", "ack garbage receipt")

	// Nack with delay, then the lease of the old receipt is gone.
	r = s.Call("POST", "/v1/queues/orders/receive", tok, map[string]any{"max_messages": 10, "wait_ms": 0})
	harness.MustStatus(t, r, 200, "receive many")
	msgs, _ = r.JSON["messages"].([]any)
	if len(msgs) != 3 {
		t.Fatalf("receive 10 gave %d messages, want the 3 left: %s", len(msgs), r.Body)
	}
	nackReceipt := msgs[0].(map[string]any)["receipt"].(string)
	harness.MustStatus(t, s.Call("POST", "/v1/queues/orders/nack", tok, map[string]any{"receipt": nackReceipt, "delay_ms": 0}), 200, "nack")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/ack", tok, map[string]any{"receipt": nackReceipt}), 409, "lease_mismatch", "ack after nack")
	var receipts []string
	for _, x := range msgs[1:] {
		receipts = append(receipts, x.(map[string]any)["receipt"].(string))
	}
	receipts = append(receipts, "garbage")
	r = s.Call("POST", "/v1/queues/orders/ack", tok, map[string]any{"receipts": receipts})
	harness.MustStatus(t, r, 200, "batch ack")
	res, _ := r.JSON["results"].([]any)
	if len(res) != 3 || res[0].(map[string]any)["ok"] != true || res[2].(map[string]any)["ok"] != false {
		t.Fatalf("batch ack results: %s", r.Body)
	}

	// The nacked message is ready again at once: take it and ack it, so the
	// queue is empty for the long poll.
	r = s.Call("POST", "/v1/queues/orders/receive", tok, map[string]any{"wait_ms": 2000})
	msgs, _ = r.JSON["messages"].([]any)
	if len(msgs) != 1 || msgs[0].(map[string]any)["receive_count"] != float64(2) {
		t.Fatalf("nacked message not ready again with receive_count 2: %s", r.Body)
	}
	harness.MustStatus(t, s.Call("POST", "/v1/queues/orders/ack", tok, map[string]any{"receipt": msgs[0].(map[string]any)["receipt"]}), 200, "ack redelivered")

	// Long poll wakes when a message arrives.
	done := make(chan harness.Response, 1)
	go func() {
		done <- s.Call("POST", "/v1/queues/orders/receive", tok, map[string]any{"wait_ms": 10000, "max_messages": 5})
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	harness.MustStatus(t, s.Call("POST", "/v1/queues/orders/messages", tok, map[string]any{"body": "wake"}), 201, "publish during long poll")
	select {
	case r = <-done:
		harness.MustStatus(t, r, 200, "long poll")
		if msgs, _ := r.JSON["messages"].([]any); len(msgs) == 0 {
			t.Fatalf("long poll returned empty: %s", r.Body)
		}
		if waited := time.Since(start); waited > 5*time.Second {
			t.Fatalf("long poll answered %v after the publish: it was not woken", waited)
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("long poll did not return within 8s of the publish (started %v ago)", time.Since(start))
	}

	// Message history and browsing.
	r = s.Call("GET", "/v1/messages/"+firstID, tok, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(head(t, s, tok), 10))
	harness.MustStatus(t, r, 200, "get message")
	if r.Str("state") != "acked" {
		t.Fatalf("message state %q, want acked", r.Str("state"))
	}
	hist, _ := r.JSON["history"].([]any)
	var types []string
	for _, h := range hist {
		types = append(types, h.(map[string]any)["type"].(string))
	}
	if got, want := strings.Join(types, ","), "MessagePublished,MessageLeased,MessageLeaseExtended,MessageAcked"; got != want {
		t.Fatalf("history %s, want %s", got, want)
	}
	harness.MustProblem(t, s.Call("GET", "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV", tok, nil), 404, "message_not_found", "unknown message")
	r = s.Call("GET", "/v1/queues/orders/messages?state=acked&include_body=true", tok, nil)
	harness.MustStatus(t, r, 200, "list acked messages")
	if list, _ := r.JSON["messages"].([]any); len(list) < 3 {
		t.Fatalf("acked messages: %s", r.Body)
	}
	harness.MustProblem(t, s.Call("GET", "/v1/queues/orders/messages?state=bogus", tok, nil), 400, "invalid_argument", "bad state")
	harness.MustProblem(t, s.Call("GET", "/v1/queues/orders/messages?limit=5000", tok, nil), 400, "invalid_argument", "limit over 1000")
	harness.MustProblem(t, s.Call("GET", "/v1/queues/orders/messages?cursor=%21%21", tok, nil), 400, "invalid_argument", "garbage cursor")

	// Purge and delete.
	r = s.Call("POST", "/v1/queues/orders/purge", tok, nil)
	harness.MustStatus(t, r, 200, "purge")
	if _, ok := r.JSON["purged"]; !ok {
		t.Fatalf("purge answer: %s", r.Body)
	}
	harness.MustStatus(t, s.Call("DELETE", "/v1/queues/orders", tok, nil), 200, "delete")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/messages", tok, map[string]any{"body": "x"}), 404, "queue_not_found", "publish to deleted queue")
}

// head returns the position of the last event in the log, read from the
// NDJSON stream of GET /v1/events.
func head(t *testing.T, s *harness.Server, tok string) int64 {
	t.Helper()
	r := s.Call("GET", "/v1/events?after=0", tok, nil, "Accept", "application/x-ndjson")
	if r.Status != 200 {
		t.Fatalf("events: %d %s", r.Status, r.Body)
	}
	lines := strings.Split(strings.TrimSpace(string(r.Body)), "\n")
	var last struct {
		Position int64 `json:"position"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("ndjson: %v", err)
	}
	return last.Position
}

// TestDeadLetterAndRedrive: a message received max_receive_count times and
// left to expire moves to the dead-letter queue; redrive brings it back.
func TestDeadLetterAndRedrive(t *testing.T) {
	s := startServer(t)
	tok := s.Token("ops", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "dlq"}), 201, "create dlq")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "work", "visibility_timeout_ms": 200, "dead_letter_queue": "dlq", "max_receive_count": 1}), 201, "create work")
	harness.MustProblem(t, s.Call("DELETE", "/v1/queues/dlq", tok, nil), 409, "conflict", "delete a queue used as dead-letter queue")
	r := s.Call("POST", "/v1/queues/work/messages", tok, map[string]any{"body": "poison"})
	harness.MustStatus(t, r, 201, "publish")
	id := r.Str("id")
	r = s.Call("POST", "/v1/queues/work/receive", tok, map[string]any{"visibility_timeout_ms": 200})
	if msgs, _ := r.JSON["messages"].([]any); len(msgs) != 1 {
		t.Fatalf("receive: %s", r.Body)
	}
	// The lease expires; with max_receive_count 1 the message dead-letters.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = s.Call("POST", "/v1/queues/dlq/receive", tok, map[string]any{"wait_ms": 1000, "visibility_timeout_ms": 100})
		if msgs, _ := r.JSON["messages"].([]any); len(msgs) == 1 {
			m := msgs[0].(map[string]any)
			if m["body"] != "poison" {
				t.Fatalf("dead-lettered body %v", m["body"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message never reached the dead-letter queue: %s", r.Body)
		}
	}
	// Wait for the lease in the DLQ to lapse, then redrive to the origin.
	time.Sleep(300 * time.Millisecond)
	deadline = time.Now().Add(10 * time.Second)
	for {
		r = s.Call("POST", "/v1/queues/dlq/redrive", tok, map[string]any{})
		harness.MustStatus(t, r, 200, "redrive")
		if r.Num("moved") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redrive moved nothing: %s", r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r = s.Call("POST", "/v1/queues/work/receive", tok, map[string]any{"wait_ms": 2000})
	if msgs, _ := r.JSON["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["body"] != "poison" {
		t.Fatalf("redriven message not back in work: %s", r.Body)
	}
	r = s.Call("GET", "/v1/messages/"+id, tok, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(head(t, s, tok), 10))
	harness.MustStatus(t, r, 200, "history of the dead-lettered message")
	if !strings.Contains(string(r.Body), "MessageDeadLettered") {
		t.Fatalf("history does not show the dead-lettering: %s", r.Body)
	}
}

// TestAuthAndScopes: 401 without or with a bad token, 403 outside the
// token's scopes or queue globs, listings filtered by globs.
func TestAuthAndScopes(t *testing.T) {
	s := startServer(t)
	admin := s.Token("root", "admin")
	for _, q := range []string{"orders.eu", "orders", "billing"} {
		harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": q}), 201, "create "+q)
	}
	r := s.Call("GET", "/v1/queues", "", nil)
	harness.MustProblem(t, r, 401, "unauthorized", "no token")
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("401 without WWW-Authenticate: Bearer")
	}
	harness.MustProblem(t, s.Call("GET", "/v1/queues", "not.a.jwt", nil), 401, "unauthorized", "garbage token")
	// alg=none: header {"alg":"none"} and no signature.
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":"x","scope":"admin","exp":%d}`, time.Now().Add(time.Hour).Unix()))) + "."
	harness.MustProblem(t, s.Call("GET", "/v1/queues", none, nil), 401, "unauthorized", "alg=none token")

	pub := s.Token("producer", "messages:publish", "orders.*")
	harness.MustStatus(t, s.Call("POST", "/v1/queues/orders.eu/messages", pub, map[string]any{"body": "x"}), 201, "publish within glob")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders/messages", pub, map[string]any{"body": "x"}), 403, "forbidden", "publish outside glob (orders vs orders.*)")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/billing/messages", pub, map[string]any{"body": "x"}), 403, "forbidden", "publish to another queue")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders.eu/receive", pub, map[string]any{}), 403, "forbidden", "receive without consume scope")
	harness.MustProblem(t, s.Call("GET", "/v1/queues", pub, nil), 403, "forbidden", "list without queues:read")

	reader := s.Token("reader", "queues:read", "orders.*")
	r = s.Call("GET", "/v1/queues", reader, nil)
	harness.MustStatus(t, r, 200, "list with globs")
	qs, _ := r.JSON["queues"].([]any)
	if len(qs) != 1 || qs[0].(map[string]any)["name"] != "orders.eu" {
		t.Fatalf("glob-filtered listing: %s", r.Body)
	}
	harness.MustProblem(t, s.Call("GET", "/v1/events", reader, nil), 403, "forbidden", "events without audit:read")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", reader, map[string]any{"name": "x"}), 403, "forbidden", "create without queues:manage")
}

// TestRateLimit: over the configured rate the server answers 429 with
// Retry-After, and every answer carries the X-RateLimit headers.
func TestRateLimit(t *testing.T) {
	s := startServer(t, "--rate-limit", "5/s")
	tok := s.Token("greedy", "admin")
	var limited harness.Response
	for i := 0; i < 50; i++ {
		r := s.Call("GET", "/v1/queues", tok, nil)
		if r.Header.Get("X-RateLimit-Limit") == "" || r.Header.Get("X-RateLimit-Remaining") == "" || r.Header.Get("X-RateLimit-Reset") == "" {
			t.Fatalf("answer %d without X-RateLimit headers: %v", i, r.Header)
		}
		if r.Status == http.StatusTooManyRequests {
			limited = r
			break
		}
	}
	if limited.Status != 429 {
		t.Fatalf("50 requests at 5/s were never limited")
	}
	harness.MustProblem(t, limited, 429, "rate_limited", "over the limit")
	if limited.Header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After")
	}
	// Another subject has its own budget.
	harness.MustStatus(t, s.Call("GET", "/v1/queues", s.Token("other", "admin"), nil), 200, "another subject")
}

// TestOperationsRoutes: health, readiness, metrics, OpenAPI and pages need
// no token.
func TestOperationsRoutes(t *testing.T) {
	s := startServer(t)
	for path, ct := range map[string]string{
		"/healthz":      "",
		"/readyz":       "application/json",
		"/metrics":      "text/plain",
		"/openapi.json": "application/json",
		"/docs":         "text/html",
		"/":             "text/html",
	} {
		r := s.Call("GET", path, "", nil)
		harness.MustStatus(t, r, 200, path)
		if ct != "" && !strings.HasPrefix(r.Header.Get("Content-Type"), ct) {
			t.Fatalf("%s: Content-Type %q, want %s", path, r.Header.Get("Content-Type"), ct)
		}
		if r.Header.Get("X-Request-Id") == "" {
			t.Fatalf("%s: no X-Request-Id", path)
		}
	}
	r := s.Call("GET", "/healthz", "", nil, "X-Request-Id", "trace-me-123")
	if r.Header.Get("X-Request-Id") != "trace-me-123" {
		t.Fatalf("request id not echoed: %q", r.Header.Get("X-Request-Id"))
	}
}

// TestMetricsFollowTheBroker: /metrics shows what an operator alerts on —
// requests by route, events appended, queue depths by state.
func TestMetricsFollowTheBroker(t *testing.T) {
	s := startServer(t)
	tok := s.Token("ops", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "metered"}), 201, "create")
	for i := 0; i < 3; i++ {
		harness.MustStatus(t, s.Call("POST", "/v1/queues/metered/messages", tok, map[string]any{"body": "x"}), 201, "publish")
	}
	r := s.Call("POST", "/v1/queues/metered/receive", tok, map[string]any{"max_messages": 1})
	harness.MustStatus(t, r, 200, "receive")
	ready := `ledgerq_queue_messages{queue="metered",state="ready"}`
	inFlight := `ledgerq_queue_messages{queue="metered",state="in_flight"}`
	appended := "ledgerq_events_appended_total"
	requests := `ledgerq_http_requests_total{method="POST",route="/v1/queues/{queue}/messages",status="201"}`
	const commits, commitSum = "ledgerq_append_commit_seconds_count", "ledgerq_append_commit_seconds_sum"
	const txns, delays, delaySum = "ledgerq_projection_transaction_seconds_count", "ledgerq_read_delay_seconds_count", "ledgerq_read_delay_seconds_sum"
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := s.Metrics(ready, inFlight, appended, requests, commits, commitSum, txns, delays, delaySum)
		if err == nil && m[ready] == 2 && m[inFlight] == 1 && m[appended] >= 5 && m[requests] == 3 {
			// Five sequential requests, five group commits; the five events
			// reached the read model through the bus, in at least one
			// transaction, each well within the 10 s this loop allows.
			if m[commits] != 5 || m[commitSum] <= 0 {
				t.Errorf("commit histogram: %v commits taking %vs, want 5 taking some time", m[commits], m[commitSum])
			}
			if m[txns] < 1 || m[delays] < 1 || m[delays] > 5 || m[delaySum] > 10*m[delays] {
				t.Errorf("read side: %v transactions, %v event delays summing to %vs", m[txns], m[delays], m[delaySum])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed 2 ready, 1 in flight, ≥ 5 events and 3 publishes: %v %v", m, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCommitDelayWaitsOnlyWhereItPays: the real binary's group commits, as
// /metrics counts them. A lone sequential publisher never finds company,
// so with the default --commit-delay the log's writer waits only for its
// trial waits (one per 64 small commits) and every publish is still a
// commit of its own; with --commit-delay 0 it never waits.
func TestCommitDelayWaitsOnlyWhereItPays(t *testing.T) {
	const publishes = 200
	for _, tc := range []struct {
		name     string
		args     []string
		min, max float64
	}{
		{"default", nil, 1, 1 + publishes/64 + 1},
		{"off", []string{"--commit-delay", "0"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.args...)
			tok := s.Token("ops", "admin")
			harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "paced"}), 201, "create")
			for range publishes {
				harness.MustStatus(t, s.Call("POST", "/v1/queues/paced/messages", tok, map[string]any{"body": "x"}), 201, "publish")
			}
			const commits, waits = "ledgerq_append_commits_total", "ledgerq_append_commit_waits_total"
			deadline := time.Now().Add(10 * time.Second)
			for {
				m, err := s.Metrics(commits, waits)
				// The counters are copied from the store once a second.
				if err == nil && m[commits] >= publishes+1 {
					if m[commits] != publishes+1 {
						t.Errorf("%d sequential requests took %v commits, want one each", publishes+1, m[commits])
					}
					if m[waits] < tc.min || m[waits] > tc.max {
						t.Errorf("the writer waited %v times, want %v to %v", m[waits], tc.min, tc.max)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("metrics never counted %d commits: %v %v", publishes+1, m, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}
