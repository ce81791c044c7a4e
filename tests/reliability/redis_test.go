package reliability

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
	"github.com/ledgerq/ledgerq/tests/redistest"
)

// TestRedisOutageUnderLoad runs the server over a Redis the test owns,
// kills Redis (SIGKILL) under publish, receive and ack load and starts it
// again, empty, on the same port. Commands must keep answering throughout
// (the log is the truth), /readyz must report the bus down and then up, and
// once the load stops the read model must converge to `ledgerq replay` of
// the log: every 201 counted once in published_total, nothing lost, nothing
// applied twice.
func TestRedisOutageUnderLoad(t *testing.T) {
	rs := redistest.Start(t)
	s := startServer(t, "", "--redis", rs.URL(), "--log-level", "warn")
	tok := s.token()
	const q = "outage"
	s.createQueue(tok, q)
	l := newLedger()
	ld := startLoad(s, loadConfig{queue: q, token: tok, publishers: 2, consumers: 1, every: 5 * time.Millisecond,
		keepPct: 10, nackPct: 10, bodyBytes: 200, seed: uint64(time.Now().UnixNano())}, l)
	stopped := false
	defer func() {
		if !stopped {
			ld.stop()
		}
	}()
	harness.WaitFor(t, "publishes before the outage", 20*time.Second, func() bool { return l.countPublished() >= 50 })

	rs.Kill()
	t.Log("redis killed")
	r := s.waitReady("the bus down (503)", 30*time.Second, func(code int, r harness.ReadyReport) bool {
		ok, found, _ := r.Check("bus")
		return code == http.StatusServiceUnavailable && found && !ok
	})
	_, _, detail := r.Check("bus")
	t.Logf("/readyz during the outage: bus check %q", detail)
	during := l.countPublished()
	harness.WaitFor(t, "publishes during the outage", 20*time.Second, func() bool { return l.countPublished() >= during+50 })

	rs.Restart()
	t.Log("redis restarted, empty")
	s.waitReady("ready again (200)", 60*time.Second, func(code int, r harness.ReadyReport) bool {
		ok, found, _ := r.Check("bus")
		return code == http.StatusOK && found && ok && r.Ready
	})
	after := l.countPublished()
	harness.WaitFor(t, "publishes after the outage", 20*time.Second, func() bool { return l.countPublished() >= after+50 })
	ld.stop()
	stopped = true

	// Commands never noticed the outage: every request was answered, and
	// only with success.
	allowed := map[string][]int{"publish": {201}, "receive": {200}, "ack": {200}, "nack": {200}}
	if bad := l.unexpected(allowed, false); len(bad) > 0 {
		t.Fatalf("commands did not keep answering through the outage: %s", strings.Join(bad, "; "))
	}
	l.checkNoViolations(t)

	head := s.head(tok)
	sum := s.readLog(tok)
	checkLog(t, sum, l)
	// The read model at the head, once the relay and the projections have
	// caught up over the new Redis.
	var live queueStats
	harness.WaitFor(t, "the read model at the head", 60*time.Second, func() bool {
		st, pos, err := s.queueStatsAt(tok, q, head)
		live = st
		return err == nil && pos == head
	})
	s.Stop()
	rep := replayCopy(t, s.Data)
	if rep.Position != head {
		t.Fatalf("replay stopped at %d, the server's head was %d", rep.Position, head)
	}
	want, _ := rep.stats(q)
	if live != want {
		t.Fatalf("read model after the outage differs from the replay:\n live   %+v\n replay %+v", live, want)
	}
	if got := int64(l.countPublished()); live.Published != got {
		t.Fatalf("published_total %d, but %d publishes were answered 201 (and every publish was answered)", live.Published, got)
	}
	verifyOffline(t, s.Data)
	t.Logf("head %d, %+v; answers: %s", head, live, l.summary())
}
