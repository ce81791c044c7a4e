package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/queries"
)

// sseEvent is one block of a text/event-stream.
type sseEvent struct {
	id, event, data, comment string
}

// stream is an open subscription seen from the client.
type stream struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

func (hx *harness) subscribe(t *testing.T, srv *httptest.Server, query string, header map[string]string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/subscribe"+query, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	st := &stream{t: t, resp: resp, events: make(chan sseEvent, 100), cancel: cancel}
	t.Cleanup(st.close)
	if resp.StatusCode == http.StatusOK {
		go st.read()
	}
	return st
}

func (st *stream) close() {
	st.cancel()
	st.resp.Body.Close()
}

func (st *stream) read() {
	defer close(st.events)
	sc := bufio.NewScanner(st.resp.Body)
	var ev sseEvent
	seen := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if seen {
				st.events <- ev
			}
			ev, seen = sseEvent{}, false
		case strings.HasPrefix(line, ":"):
			ev.comment, seen = strings.TrimSpace(line[1:]), true
		case strings.HasPrefix(line, "id: "):
			ev.id, seen = line[4:], true
		case strings.HasPrefix(line, "event: "):
			ev.event, seen = line[7:], true
		case strings.HasPrefix(line, "data: "):
			ev.data, seen = line[6:], true
		}
	}
}

// next returns the next event other than heartbeats; the deadline only
// guards against a hang.
func (st *stream) next() sseEvent {
	st.t.Helper()
	for {
		select {
		case ev, ok := <-st.events:
			if !ok {
				st.t.Fatal("the stream ended")
			}
			if ev.comment == "ping" {
				continue
			}
			return ev
		case <-time.After(10 * time.Second):
			st.t.Fatal("no event within 10s")
		}
	}
}

// ended waits for the stream to end.
func (st *stream) ended() bool {
	for {
		select {
		case _, ok := <-st.events:
			if !ok {
				return true
			}
		case <-time.After(10 * time.Second):
			return false
		}
	}
}

func queueUpdate(pos int64, name string) queries.Update {
	data, _ := json.Marshal(queries.Queue{Name: name, CreatedAt: testTime, UpdatedAt: testTime, Stats: queries.Stats{Ready: pos}})
	return queries.Update{Position: pos, Event: queries.EventQueueUpdated, Queue: name, Data: data}
}

func messageUpdate(pos int64, queue string) queries.Update {
	data, _ := json.Marshal(queries.MessageSummary{ID: "m-" + queue, Queue: queue, State: queries.StateReady, PublishedAt: testTime})
	return queries.Update{Position: pos, Event: queries.EventMessageUpdated, Queue: queue, Data: data}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestSubscribeSnapshotThenLive(t *testing.T) {
	hx := newHarness(t, nil)
	srv := newHTTPServer(t, hx)
	st := hx.subscribe(t, srv, "", bearer(token(t, "viewer", []string{ScopeQueuesRead}, nil)))
	if st.resp.StatusCode != 200 || st.resp.Header.Get("Content-Type") != "text/event-stream" || st.resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("status %d, headers %v", st.resp.StatusCode, st.resp.Header)
	}
	// The read side is at 40: the current state of every queue, id 40.
	for _, name := range []string{"orders", "orders.eu", "payments"} {
		ev := st.next()
		var q map[string]any
		if err := json.Unmarshal([]byte(ev.data), &q); err != nil {
			t.Fatalf("data %q: %v", ev.data, err)
		}
		if ev.id != "40" || ev.event != "queue.updated" || q["name"] != name || q["snapshot"] != true || q["stats"] == nil {
			t.Fatalf("snapshot event = %+v", ev)
		}
	}
	if ev := st.next(); ev.id != "40" || ev.event != "" || ev.data != "" {
		t.Fatalf("after the snapshot = %+v, want a bare id 40", ev)
	}
	if got := gauge(t, hx, "ledgerq_sse_clients"); got != "1" {
		t.Errorf("ledgerq_sse_clients = %s, want 1", got)
	}
	// Updates at or before the snapshot's position are already in it.
	hx.hub.Publish(queueUpdate(39, "orders"), queueUpdate(41, "orders"), messageUpdate(42, "payments"))
	ev := st.next()
	if ev.id != "41" || ev.event != "queue.updated" || !strings.Contains(ev.data, `"created_at":"2025-03-04T04:06:07.891Z"`) || strings.Contains(ev.data, "snapshot") {
		t.Fatalf("live event = %+v", ev)
	}
	if ev := st.next(); ev.id != "42" || ev.event != "message.updated" || !strings.Contains(ev.data, `"id":"m-payments"`) {
		t.Fatalf("live event = %+v", ev)
	}
	hx.hub.Publish(queries.Update{Position: 43, Event: queries.EventQueueDeleted, Queue: "orders", Data: json.RawMessage("{\n  \"name\": \"orders\"\n}")})
	if ev := st.next(); ev.id != "43" || ev.event != "queue.deleted" || ev.data != `{"name":"orders"}` {
		t.Fatalf("deleted event = %+v (data must be one line)", ev)
	}
}

// newHTTPServer serves hx over real HTTP; it closes after the streams the
// test opened (cleanups run last-in first-out).
func newHTTPServer(t *testing.T, hx *harness) *httptest.Server {
	srv := httptest.NewServer(hx.h)
	t.Cleanup(srv.Close)
	return srv
}

func gauge(t *testing.T, hx *harness, name string) string {
	t.Helper()
	for _, line := range strings.Split(hx.do(req{method: "GET", path: "/metrics"}).Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestSubscribeResume(t *testing.T) {
	hx := newHarness(t, nil)
	srv := newHTTPServer(t, hx)
	tok := token(t, "viewer", []string{ScopeQueuesRead}, nil)
	for p := int64(1); p <= 5; p++ {
		hx.hub.Publish(queueUpdate(p, "orders"))
	}
	// Last-Event-ID wins over the ?after= the EventSource first used.
	st := hx.subscribe(t, srv, "?after=1", map[string]string{"Authorization": "Bearer " + tok, "Last-Event-ID": "3"})
	for _, want := range []string{"4", "5"} {
		if ev := st.next(); ev.id != want || ev.event != "queue.updated" || strings.Contains(ev.data, "snapshot") {
			t.Fatalf("replayed event = %+v, want id %s and no snapshot", ev, want)
		}
	}
	hx.hub.Publish(queueUpdate(6, "orders"))
	if ev := st.next(); ev.id != "6" {
		t.Fatalf("live event after the replay = %+v", ev)
	}

	st2 := hx.subscribe(t, srv, "?after=4&access_token="+tok, nil)
	if ev := st2.next(); ev.id != "5" {
		t.Fatalf("resume with ?after= and access_token: %+v", ev)
	}

	// A resume from before what the hub can replay gets the snapshot.
	hx.hub.SetFloor(30)
	st3 := hx.subscribe(t, srv, "", map[string]string{"Authorization": "Bearer " + tok, "Last-Event-ID": "2"})
	if ev := st3.next(); ev.id != "40" || !strings.Contains(ev.data, `"snapshot":true`) {
		t.Fatalf("too-old resume = %+v, want a snapshot at 40", ev)
	}
}

func TestSubscribeFilters(t *testing.T) {
	hx := newHarness(t, nil)
	srv := newHTTPServer(t, hx)
	tok := token(t, "viewer", []string{ScopeQueuesRead}, nil)
	st := hx.subscribe(t, srv, "?queues=orders&kinds=message", bearer(tok))
	// kinds=message: no queue snapshot, just the position marker.
	if ev := st.next(); ev.id != "40" || ev.event != "" {
		t.Fatalf("first event = %+v, want only the position marker", ev)
	}
	hx.hub.Publish(queueUpdate(41, "orders"), messageUpdate(42, "payments"), messageUpdate(43, "orders"))
	if ev := st.next(); ev.id != "43" || ev.event != "message.updated" {
		t.Fatalf("filtered stream delivered %+v, want only message 43 of orders", ev)
	}

	// A token limited to orders.* sees only those queues, snapshot included.
	limited := token(t, "eu", []string{ScopeQueuesRead}, []string{"orders.*"})
	st2 := hx.subscribe(t, srv, "", bearer(limited))
	if ev := st2.next(); !strings.Contains(ev.data, `"name":"orders.eu"`) {
		t.Fatalf("limited snapshot = %+v", ev)
	}
	if ev := st2.next(); ev.event != "" {
		t.Fatalf("limited snapshot has more than orders.eu: %+v", ev)
	}
	hx.hub.Publish(queueUpdate(44, "payments"), queueUpdate(45, "orders"), queueUpdate(46, "orders.eu"))
	if ev := st2.next(); ev.id != "46" {
		t.Fatalf("limited stream delivered %+v, want only orders.eu", ev)
	}

	for _, q := range []string{"?kinds=queue,bogus", "?after=-1", "?queues=a/b", "?queues=a,,b", "?after=x", "?after=1&after=2"} {
		expectProblem(t, hx.do(req{method: "GET", path: "/v1/subscribe" + q, token: tok, ctx: canceled()}), 400, "invalid_argument")
	}
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/subscribe", token: tok, ctx: canceled(), header: map[string]string{"Last-Event-ID": "x"}}), 400, "invalid_argument")
	expectProblem(t, hx.do(req{method: "GET", path: "/v1/subscribe?access_token=bogus", ctx: canceled()}), 401, "unauthorized")
}

func TestSubscribeCapHeartbeatAndShutdown(t *testing.T) {
	hx := newHarness(t, func(d *Deps) {
		d.SSE = SSEConfig{Heartbeat: 20 * time.Millisecond, MaxStreamsPerSubject: 2}
		d.RateLimit = RateLimitConfig{PerSecond: 1, Burst: 100}
	})
	srv := newHTTPServer(t, hx)
	tok := token(t, "viewer", []string{ScopeQueuesRead}, nil)
	a := hx.subscribe(t, srv, "?kinds=message", bearer(tok))
	b := hx.subscribe(t, srv, "?kinds=message", bearer(tok))
	if a.resp.StatusCode != 200 || b.resp.StatusCode != 200 {
		t.Fatalf("statuses %d %d", a.resp.StatusCode, b.resp.StatusCode)
	}
	if got := a.resp.Header.Get("X-RateLimit-Remaining"); got != "99" {
		t.Errorf("first stream: remaining %q, want 99 (a stream costs one request)", got)
	}
	c := hx.subscribe(t, srv, "", bearer(tok))
	if c.resp.StatusCode != http.StatusTooManyRequests || c.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: status %d, want 429 with Retry-After", c.resp.StatusCode)
	}
	other := hx.subscribe(t, srv, "", bearer(token(t, "someone-else", []string{ScopeQueuesRead}, nil)))
	if other.resp.StatusCode != 200 {
		t.Fatalf("another subject: status %d", other.resp.StatusCode)
	}

	// Heartbeats keep the stream alive.
	deadline := time.After(10 * time.Second)
	for pinged := false; !pinged; {
		select {
		case ev := <-a.events:
			pinged = ev.comment == "ping"
		case <-deadline:
			t.Fatal("no heartbeat")
		}
	}

	// Closing one stream frees its slot.
	a.close()
	var d *stream
	for i := 0; i < 100; i++ {
		if d = hx.subscribe(t, srv, "?kinds=message", bearer(tok)); d.resp.StatusCode == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond) // the server notices the close asynchronously
	}
	if d.resp.StatusCode != 200 {
		t.Fatalf("after a close: status %d", d.resp.StatusCode)
	}

	// Shutdown ends every stream.
	close(hx.done)
	if !b.ended() || !d.ended() || !other.ended() {
		t.Fatal("streams did not end at shutdown")
	}
}

func TestSubscribeEndsWhenHubCloses(t *testing.T) {
	hx := newHarness(t, nil)
	srv := newHTTPServer(t, hx)
	st := hx.subscribe(t, srv, "?kinds=message", bearer(token(t, "viewer", []string{ScopeQueuesRead}, nil)))
	if ev := st.next(); ev.id != "40" {
		t.Fatalf("first event = %+v", ev)
	}
	hx.hub.Publish(messageUpdate(41, "orders"))
	hx.hub.Close()
	// What was buffered is delivered, then the stream ends.
	if ev := st.next(); ev.id != "41" {
		t.Fatalf("buffered event = %+v", ev)
	}
	if !st.ended() {
		t.Fatal("the stream did not end when the hub closed")
	}
	_, _ = io.Copy(io.Discard, st.resp.Body)
}

// A client that stops reading holds its handler no longer than the write
// timeout, even while updates keep coming for it: the broker never waits
// on it.
func TestSubscribeCutsOffAClientThatStopsReading(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hx := newHarness(t, func(d *Deps) { d.SSE = SSEConfig{WriteTimeout: timeout} })
	srv := newHTTPServer(t, hx)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10) // so the server's writes block soon
	tok := token(t, "viewer", []string{ScopeQueuesRead}, nil)
	fmt.Fprintf(conn, "GET /v1/subscribe?kinds=message HTTP/1.1\r\nHost: ledgerq\r\nAuthorization: Bearer %s\r\n\r\n", tok)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: %v, %v", resp, err)
	}
	waitFor(t, "the stream to open", func() bool { return gauge(t, hx, "ledgerq_sse_clients") == "1" })

	// The client reads nothing more. 32 MiB of updates cannot all fit in
	// the connection's buffers, so a write blocks.
	big := queries.MessageSummary{ID: strings.Repeat("x", 64<<10), Queue: "orders", State: queries.StateReady, PublishedAt: testTime}
	data, _ := json.Marshal(big)
	for p := int64(41); p < 41+512; p++ {
		hx.hub.Publish(queries.Update{Position: p, Event: queries.EventMessageUpdated, Queue: "orders", Data: data})
	}
	start := time.Now()
	waitFor(t, "the stream to be cut off", func() bool { return gauge(t, hx, "ledgerq_sse_clients") == "0" })
	// A write blocks for at most the timeout; allow for a slow machine.
	if took := time.Since(start); took > timeout+5*time.Second {
		t.Fatalf("the handler held a client that reads nothing for %s (write timeout %s)", took, timeout)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}
