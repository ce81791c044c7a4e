package reliability

import (
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestCrashUnderLoad kills the server with SIGKILL at random moments while
// publishers and consumers (receive, then ack, nack or keep) run flat out,
// many times in a row. After every kill, offline: the hash chain verifies;
// after every restart: every publish answered 201 is in the log exactly
// once, every ack answered 200 is in it, and the read model converges to
// `ledgerq replay` of the crashed log with nothing appended in between. All
// along, no acked message is leased again and no message is leased twice
// while a lease on it is valid. At the end every lease the consumers still
// hold (taken before some crash) can be acked, and draining the queue
// yields exactly the ready messages of the replay.
//
// LEDGERQ_CRASH_KILLS sets the number of kills (3 by default, 1 with
// -short); LEDGERQ_CRASH_SEED replays a series' kill moments.
func TestCrashUnderLoad(t *testing.T) {
	kills := envInt(t, "LEDGERQ_CRASH_KILLS", 3)
	if testing.Short() && os.Getenv("LEDGERQ_CRASH_KILLS") == "" {
		kills = 1
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LEDGERQ_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("LEDGERQ_CRASH_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("%d kills, LEDGERQ_CRASH_SEED=%d", kills, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// Access logs at warn: the load makes thousands of requests, and the
	// lines would only cost the shared CPU.
	s := startServer(t, "", "--log-level", "warn")
	tok := s.token()
	const q = "crash"
	s.createQueue(tok, q)
	l := newLedger()
	cfg := loadConfig{queue: q, token: tok, publishers: 4, consumers: 2, keepPct: 15, nackPct: 15, bodyBytes: 200}

	var last replayView
	for i := range kills {
		cfg.seed = seed + uint64(i)
		before := l.countPublished()
		ld := startLoad(s, cfg, l)
		// Kill under load: once this round has had some publishes through,
		// after a random further moment.
		harness.WaitFor(t, "publishes under load", 20*time.Second, func() bool { return l.countPublished() >= before+20 })
		time.Sleep(time.Duration(rng.Int64N(int64(700 * time.Millisecond))))
		s.Kill()
		ld.stop()

		// The process is gone and its lock with it: check the files as the
		// crash left them, before the restart's recovery touches them.
		head := verifyOffline(t, s.Data)
		last = replayCopy(t, s.Data)
		if last.Position != head {
			t.Fatalf("kill %d: replay stopped at position %d, the chain's head is %d", i+1, last.Position, head)
		}
		want, ok := last.stats(q)
		if !ok {
			t.Fatalf("kill %d: queue %s missing from the replay: %+v", i+1, q, last)
		}

		s.Restart()
		sum := s.readLog(tok)
		if sum.head != last.Position {
			t.Fatalf("kill %d: after restart the log's head is %d, the crashed log's was %d (nothing should be appended on start-up)", i+1, sum.head, last.Position)
		}
		checkLog(t, sum, l)
		l.checkNoViolations(t)
		if got := int64(sum.perQueue[q]["MessagePublished"]); want.Published != got {
			t.Fatalf("kill %d: replay counts %d publishes, the log holds %d", i+1, want.Published, got)
		}
		s.waitStats(tok, q, last.Position, want, 30*time.Second)
		t.Logf("kill %d at position %d: %+v; answers so far: %s", i+1, last.Position, want, l.summary())
	}

	// Leases taken before the crashes are still the server's: each acks.
	held := l.heldLeases()
	for id, ls := range held {
		s.Must("POST", "/v1/queues/"+q+"/ack", tok, map[string]any{"receipt": ls.receipt}, http.StatusOK)
		l.dropLease(id)
		l.addAcked(id)
	}
	// The command side holds exactly the replay's ready messages, none of
	// them acked before.
	want, _ := last.stats(q)
	drained := map[string]bool{}
	for round := 0; ; round++ {
		if round > int(want.Ready)+1 {
			t.Fatalf("draining never ended: %d messages so far, the replay has %d ready", len(drained), want.Ready)
		}
		var r struct {
			Messages []leasedMessage `json:"messages"`
		}
		if err := s.Must("POST", "/v1/queues/"+q+"/receive", tok, map[string]any{"max_messages": 100}, http.StatusOK).Decode(&r); err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) == 0 {
			break
		}
		l.addLeased(r.Messages)
		for _, m := range r.Messages {
			drained[m.ID] = true
		}
	}
	l.checkNoViolations(t)
	if int64(len(drained)) != want.Ready {
		t.Fatalf("drained %d messages after the last restart, the replay has %d ready", len(drained), want.Ready)
	}
	checkLog(t, s.readLog(tok), l)
	t.Logf("%d kills; %d publishes answered 201, %d acks answered 200, %d held leases acked after the crashes, %d drained; %s",
		kills, len(l.published), len(l.acked), len(held), len(drained), l.summary())
}
