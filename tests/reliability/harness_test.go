package reliability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// server is a `ledgerq serve` process with the checks these tests make of
// it. Its address stays the same across restarts so that load workers can
// keep their URL.
type server struct {
	*harness.Server
	t testing.TB
}

// startServer runs `ledgerq serve` on a free port over data (a fresh
// directory when empty) with extra flags, waits for /readyz 200, and kills
// the process at cleanup.
func startServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	s := harness.Start(t, harness.Options{
		Data: data,
		Args: extra,
		// A load's requests wait behind fsyncs on a shared machine.
		RequestTimeout: 45 * time.Second,
		// Enough to explain a failure, bounded for a soak's access log.
		MaxLogBytes: 512 << 10,
	})
	return &server{Server: s, t: t}
}

// token mints an admin token for the server's generated secret.
func (s *server) token() string {
	return s.Token("reliability", "admin")
}

// createQueue creates a queue whose leases outlive any test, so that no
// lease expires (and no scheduler event appears) while a test compares
// states.
func (s *server) createQueue(token, name string) {
	s.t.Helper()
	s.Must("POST", "/v1/queues", token, map[string]any{"name": name, "visibility_timeout_ms": 3_600_000}, http.StatusCreated)
}

// waitReady polls /readyz until cond holds for status and report.
func (s *server) waitReady(what string, timeout time.Duration, cond func(int, harness.ReadyReport) bool) harness.ReadyReport {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		code, r, err := s.Ready()
		if err == nil && cond(code, r) {
			return r
		}
		last = fmt.Sprintf("%d %+v %v", code, r, err)
		if time.Now().After(deadline) {
			s.t.Fatalf("/readyz never showed %s within %v; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// head is the log's last position, from the server's own chain check.
func (s *server) head(token string) int64 {
	s.t.Helper()
	var v struct {
		OK   bool  `json:"ok"`
		Head int64 `json:"head_position"`
	}
	if err := s.Must("GET", "/v1/audit/verify", token, nil, http.StatusOK).Decode(&v); err != nil {
		s.t.Fatal(err)
	}
	if !v.OK {
		s.t.Fatalf("GET /v1/audit/verify: chain not ok")
	}
	return v.Head
}

// queueStats are the counters of a queue that do not depend on the clock
// (oldest_ready_age_ms does, and is left out of every comparison).
type queueStats struct {
	Ready        int64 `json:"ready"`
	Delayed      int64 `json:"delayed"`
	InFlight     int64 `json:"in_flight"`
	Published    int64 `json:"published_total"`
	Acked        int64 `json:"acked_total"`
	Released     int64 `json:"released_total"`
	Expired      int64 `json:"expired_total"`
	DeadLettered int64 `json:"dead_lettered_total"`
}

// queueStatsAt reads GET /v1/queues/{queue} once the read side has applied
// minPos, and the position it had applied.
func (s *server) queueStatsAt(token, queue string, minPos int64) (queueStats, int64, error) {
	var v struct {
		Stats queueStats `json:"stats"`
	}
	a, err := s.Do("GET", "/v1/queues/"+queue, token, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(minPos, 10))
	if err != nil {
		return v.Stats, 0, err
	}
	if a.Status != http.StatusOK {
		return v.Stats, 0, fmt.Errorf("GET /v1/queues/%s: %d %s", queue, a.Status, a.Body)
	}
	pos, _ := strconv.ParseInt(a.Header.Get("X-Ledgerq-Position"), 10, 64)
	err = a.Decode(&v)
	return v.Stats, pos, err
}

// waitStats polls the read model until it shows want at position minPos.
// The read side catches up asynchronously (after a restart, a Redis
// outage, a full disk), so equality is awaited, bounded by timeout.
func (s *server) waitStats(token, queue string, minPos int64, want queueStats, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, pos, err := s.queueStatsAt(token, queue, minPos)
		if err == nil && got == want && pos == minPos {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("read model of %s never converged within %v:\n got  %+v at position %d (err %v)\n want %+v at position %d (the replay)",
				queue, timeout, got, pos, err, want, minPos)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replayView is what `ledgerq replay` prints.
type replayView struct {
	Position int64 `json:"position"`
	Queues   []struct {
		Name  string     `json:"name"`
		Stats queueStats `json:"stats"`
	} `json:"queues"`
}

func (r replayView) stats(queue string) (queueStats, bool) {
	for _, q := range r.Queues {
		if q.Name == queue {
			return q.Stats, true
		}
	}
	return queueStats{}, false
}

// replayCopy runs `ledgerq replay` on a copy of the log of a stopped (or
// crashed) server, leaving the original as the crash left it for the
// server's own recovery.
func replayCopy(t testing.TB, dir string) replayView {
	t.Helper()
	out := harness.ReplayCopy(t, dir)
	var v replayView
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("ledgerq replay printed no state: %v\n%s", err, out)
	}
	return v
}

// verifyOffline runs `ledgerq audit verify` on a data directory and fails
// unless the chain is intact; it returns the head position.
func verifyOffline(t testing.TB, dir string) int64 {
	t.Helper()
	return harness.VerifyOffline(t, dir).HeadPosition
}

// logEvent is the part of an event the checks read.
type logEvent struct {
	Position int64  `json:"position"`
	Type     string `json:"type"`
	Data     struct {
		Queue     string `json:"queue"`
		MessageID string `json:"message_id"`
	} `json:"data"`
}

// logSummary counts what the log says happened to each message.
type logSummary struct {
	head      int64
	published map[string]int // message id → MessagePublished events
	acked     map[string]int // message id → MessageAcked events
	perQueue  map[string]map[string]int
}

// readLog streams the whole log as NDJSON and summarises it. It fails the
// test on a gap or a repeat in the positions.
func (s *server) readLog(token string) logSummary {
	s.t.Helper()
	a := s.Must("GET", "/v1/events", token, nil, http.StatusOK, "Accept", "application/x-ndjson")
	sum := logSummary{published: map[string]int{}, acked: map[string]int{}, perQueue: map[string]map[string]int{}}
	sc := bufio.NewScanner(bytes.NewReader(a.Body))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e logEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			s.t.Fatalf("event log line %q: %v", sc.Bytes(), err)
		}
		if e.Position != sum.head+1 {
			s.t.Fatalf("event log: position %d follows %d (positions must be gap-free)", e.Position, sum.head)
		}
		sum.head = e.Position
		switch e.Type {
		case "MessagePublished":
			sum.published[e.Data.MessageID]++
		case "MessageAcked":
			sum.acked[e.Data.MessageID]++
		}
		if sum.perQueue[e.Data.Queue] == nil {
			sum.perQueue[e.Data.Queue] = map[string]int{}
		}
		sum.perQueue[e.Data.Queue][e.Type]++
	}
	if err := sc.Err(); err != nil {
		s.t.Fatalf("event log: %v", err)
	}
	return sum
}

// checkLog fails the test unless every publish answered 201 is in the log
// exactly once, no message was published twice, and every ack answered 200
// is in the log (once).
func checkLog(t testing.TB, sum logSummary, l *ledger) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var problems []string
	for id := range l.published {
		if n := sum.published[id]; n != 1 {
			problems = append(problems, fmt.Sprintf("message %s answered 201 is in the log %d times", id, n))
		}
	}
	for id, n := range sum.published {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("message %s published %d times in the log", id, n))
		}
	}
	for id := range l.acked {
		if sum.acked[id] != 1 {
			problems = append(problems, fmt.Sprintf("ack of %s answered 200 is in the log %d times", id, sum.acked[id]))
		}
	}
	for id, n := range sum.acked {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("message %s acked %d times in the log", id, n))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("… and %d more", len(problems)-20))
		}
		t.Fatalf("event log disagrees with the answers given:\n%s", strings.Join(problems, "\n"))
	}
}
