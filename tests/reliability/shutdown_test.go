package reliability

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestGracefulShutdown sends SIGTERM while publishers and a consumer run,
// a long poll waits on an empty queue and an SSE stream is open. The long
// poll must come back with 200 long before its wait is over, the SSE
// stream must end cleanly, every publish must get 201 or a clean 503 (or
// find the port closed), and the process must exit with 0. A restart then
// continues without loss: every 201 is in the log once, the chain verifies,
// and the read model equals the replay, new publishes included.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, "", "--log-level", "warn")
	tok := s.token()
	const q, idle = "term", "idle"
	s.createQueue(tok, q)
	s.createQueue(tok, idle)

	sse := s.Subscribe(harness.Subscription{Query: "queues=" + q + "&kinds=queue,message", Token: tok, CountOnly: true})
	l := newLedger()
	ld := startLoad(s, loadConfig{queue: q, token: tok, publishers: 2, consumers: 1, every: 2 * time.Millisecond,
		keepPct: 10, nackPct: 10, bodyBytes: 100, seed: uint64(time.Now().UnixNano())}, l)
	stopped := false
	defer func() {
		if !stopped {
			ld.stop()
		}
	}()
	harness.WaitFor(t, "publishes and SSE events before SIGTERM", 20*time.Second, func() bool {
		return l.countPublished() >= 50 && sse.Count() > 0
	})

	const waitMS = 20000
	poll := startLongPoll(t, s, tok, idle, waitMS)

	sent := time.Now()
	code, err := s.Term()
	exitAfter := time.Since(sent)
	ld.stop()
	stopped = true
	if err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit code %d, %v; logs:\n%s", code, err, s.Logs())
	}
	t.Logf("exited with 0 %v after SIGTERM", exitAfter.Round(time.Millisecond))

	res := <-poll
	if res.err != nil {
		t.Fatalf("long poll in flight at SIGTERM got no answer: %v", res.err)
	}
	if res.a.Status != http.StatusOK {
		t.Fatalf("long poll in flight at SIGTERM: %d %s, want 200", res.a.Status, res.a.Body)
	}
	var msgs struct {
		Messages []leasedMessage `json:"messages"`
	}
	if err := res.a.Decode(&msgs); err != nil || len(msgs.Messages) != 0 {
		t.Fatalf("long poll on an empty queue: %s (%v), want no messages", res.a.Body, err)
	}
	if res.took >= waitMS*time.Millisecond {
		t.Fatalf("long poll took %v: it waited its full %dms instead of ending at SIGTERM", res.took, waitMS)
	}

	if sseEnd := sse.Err(); sseEnd != nil {
		t.Fatalf("SSE stream did not end cleanly at SIGTERM: %v", sseEnd)
	}

	// Publishes: 201, a clean refusal while draining, or the port closed.
	allowed := map[string][]int{"publish": {201, 503}, "receive": {200, 503}, "ack": {200, 503}, "nack": {200, 503}}
	if bad := l.unexpected(allowed, true); len(bad) > 0 {
		t.Fatalf("answers around SIGTERM: %s", strings.Join(bad, "; "))
	}
	l.checkNoViolations(t)
	t.Logf("long poll back after %v; %d SSE events; answers: %s", res.took.Round(time.Millisecond), sse.Count(), l.summary())

	s.Restart()
	sum := s.readLog(tok)
	checkLog(t, sum, l)
	// In-flight requests finished: everything the log holds was answered.
	// A request that got no answer was never taken, or the log would hold
	// more than the answers say.
	l.mu.Lock()
	answeredEvents := map[string]int{
		"MessagePublished": len(l.published), "MessageAcked": len(l.acked),
		"MessageReleased": l.statuses["nack"][http.StatusOK],
	}
	delivered := l.delivered
	l.mu.Unlock()
	for typ, n := range answeredEvents {
		if got := sum.perQueue[q][typ]; got != n {
			t.Fatalf("the log holds %d %s events in %s, the clients were answered for %d: a request in flight at SIGTERM was cut after it took effect; requests without answer: %s",
				got, typ, q, n, strings.Join(l.firstErrs, "; "))
		}
	}
	checkLeasesAnswered(t, sum.perQueue[q]["MessageLeased"], delivered)
	for range 10 {
		a := s.Must("POST", "/v1/queues/"+q+"/messages", tok, map[string]any{"body": "after restart"}, http.StatusCreated)
		var r struct {
			ID string `json:"id"`
		}
		if err := a.Decode(&r); err != nil {
			t.Fatal(err)
		}
		l.addPublished(r.ID)
	}
	head := s.head(tok)
	var live queueStats
	harness.WaitFor(t, "the read model at the head after restart", 30*time.Second, func() bool {
		st, pos, err := s.queueStatsAt(tok, q, head)
		live = st
		return err == nil && pos == head
	})
	checkLog(t, s.readLog(tok), l)
	s.Stop()
	verifyOffline(t, s.Data)
	rep := replayCopy(t, s.Data)
	want, _ := rep.stats(q)
	if rep.Position != head || live != want {
		t.Fatalf("after restart the read model differs from the replay:\n live   %+v at %d\n replay %+v at %d", live, head, want, rep.Position)
	}
}

// checkLeasesAnswered compares the leases in the log with the messages the
// consumers were handed. A receive in flight at SIGTERM can commit its
// leases and still answer 200 with no messages: the transport cancels the
// receive's context at shutdown (untilShutdown in transport/commands.go),
// commands.(*App).receiveOnce then fails reading the leased bodies with
// that context after the leases are durable, and the handler turns the
// context.Canceled into an empty 200. The messages stay in flight until
// their visibility timeout and the wasted receive counts toward
// max_receive_count. Reported rather than asserted until fixed; flip
// strictLeasesAtShutdown then.
func checkLeasesAnswered(t *testing.T, inLog, delivered int) {
	t.Helper()
	if inLog == delivered {
		return
	}
	msg := fmt.Sprintf("the log holds %d MessageLeased events, the consumers were handed %d messages: a receive in flight at SIGTERM leased messages it did not return", inLog, delivered)
	if strictLeasesAtShutdown {
		t.Fatal(msg)
	}
	t.Log("KNOWN ISSUE: " + msg)
}

// strictLeasesAtShutdown makes checkLeasesAnswered fail the test.
const strictLeasesAtShutdown = true

type pollResult struct {
	a    harness.Response
	err  error
	took time.Duration
}

// startLongPoll sends a receive that waits up to waitMS on its own fresh
// connection and returns once the request is on the wire and the server
// has had a moment to take it. A fresh connection matters: at shutdown the
// server closes idle keep-alive connections (a request not yet read from
// one would be lost), while a new connection is always served.
func startLongPoll(t *testing.T, s *server, tok, queue string, waitMS int) <-chan pollResult {
	t.Helper()
	out := make(chan pollResult, 1)
	wrote := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }}
	go func() {
		ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(context.Background(), trace), 2*time.Minute)
		defer cancel()
		body := `{"max_messages":1,"wait_ms":` + strconv.Itoa(waitMS) + `}`
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		started := time.Now()
		a, err := harness.Send(ctx, client, "POST", s.URL+"/v1/queues/"+queue+"/receive", tok, body)
		out <- pollResult{a: a, err: err, took: time.Since(started)}
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll was not sent within 10s")
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-out:
		t.Fatalf("the long poll ended before SIGTERM: %d %s %v", r.a.Status, r.a.Body, r.err)
	default:
	}
	return out
}
