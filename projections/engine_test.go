package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
)

// feedLive delivers the log as a bus would: packs of random size, some sent
// twice, some lost (the next pack then starts past a gap).
func feedLive(t *testing.T, e *Engine, events []eventstore.Event, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(events); {
		n := min(1+rng.IntN(40), len(events)-i)
		pack := events[i : i+n]
		switch r := rng.IntN(10); {
		case r == 0: // lost on the bus: the next pack finds a gap
		case r == 1: // redelivered
			for range 2 {
				if err := e.ApplyPack(ctx, pack); err != nil {
					t.Fatal(err)
				}
			}
		default:
			if err := e.ApplyPack(ctx, pack); err != nil {
				t.Fatal(err)
			}
		}
		i += n
	}
	if err := e.CatchUp(ctx); err != nil { // a trailing lost pack
		t.Fatal(err)
	}
}

func TestRebuildEqualsLive(t *testing.T) {
	log, events := simulatedLog(t, 7, 3000)
	hub := &recordingHub{}
	e := newEngine(t, Config{Source: log, Hub: hub, CatchUpBatch: 97})
	feedLive(t, e, events, rand.New(rand.NewPCG(1, 2)))
	head := events[len(events)-1].Position
	if got := applied(e); got != head {
		t.Fatalf("applied %d, want %d", got, head)
	}

	live := map[string]map[string][]string{}
	for _, p := range e.projs {
		live[p.name()] = dump(t, e, p)
	}
	if err := e.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := applied(e); got != head {
		t.Fatalf("applied after rebuild %d, want %d", got, head)
	}
	for _, p := range e.projs {
		t.Run(p.name(), func(t *testing.T) {
			rebuilt := dump(t, e, p)
			for _, table := range p.tables() {
				l, r := live[p.name()][table], rebuilt[table]
				if len(l) == 0 {
					t.Fatalf("table %s is empty: the workload does not exercise it", table)
				}
				if len(l) != len(r) {
					t.Fatalf("table %s: %d rows live, %d rebuilt", table, len(l), len(r))
				}
				for i := range l {
					if l[i] != r[i] {
						t.Fatalf("table %s row %d:\n live    %s\n rebuilt %s", table, i, l[i], r[i])
					}
				}
			}
		})
	}
	if got := e.Checkpoints(); got["queues"] != head || got["messages"] != head {
		t.Fatalf("checkpoints %v, want all %d", got, head)
	}
}

// The SQLite read models and the in-memory reducer must tell the same story
// at every point, not only at the end.
func TestReadModelAgreesWithReducer(t *testing.T) {
	log, events := simulatedLog(t, 11, 2500)
	e := newEngine(t, Config{Source: log})
	st := NewQueueState()
	svc := queries.New(e, e, queries.WithClock(func() time.Time { return testNow }))
	ctx := context.Background()
	checked := 0
	for i := 0; i < len(events); i += 250 {
		pack := events[i:min(i+250, len(events))]
		if err := e.ApplyPack(ctx, pack); err != nil {
			t.Fatal(err)
		}
		for _, ev := range pack {
			if err := st.Apply(ev); err != nil {
				t.Fatal(err)
			}
		}
		want := st.Queues(testNow)
		page, err := svc.ListQueues(ctx, queries.ListQueues{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "queues at position "+strconv.FormatInt(st.Position(), 10), page.Queues, want)
		checked += len(want)
	}
	if checked == 0 {
		t.Fatal("no queue was compared")
	}
	// The comparison means something only if the workload went everywhere.
	types := map[string]int{}
	for _, ev := range events {
		types[ev.Type]++
	}
	for _, typ := range domain.EventTypes {
		if types[typ] == 0 {
			t.Errorf("workload has no %s event", typ)
		}
	}
	var ready, delayed, inFlight int64
	for _, q := range st.Queues(testNow) {
		ready += q.Stats.Ready
		delayed += q.Stats.Delayed
		inFlight += q.Stats.InFlight
	}
	if ready == 0 || delayed == 0 || inFlight == 0 {
		t.Fatalf("workload ends thin: ready %d delayed %d in flight %d", ready, delayed, inFlight)
	}
}

// smallLog: a queue, two messages, one leased and acked.
func smallLog(t *testing.T) (*memLog, []eventstore.Event) {
	log := newMemLog()
	t0 := time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)
	evs := log.add(t,
		domain.QueueCreated{Queue: "orders", Attributes: defaultAttrs(), CreatedAt: t0},
		domain.MessagePublished{Queue: "orders", MessageID: "m1", Body: "one", BodyEncoding: "utf8", BodySize: 3,
			PublishedAt: t0, AvailableAt: t0, ExpiresAt: t0.Add(time.Hour)},
		domain.MessagePublished{Queue: "orders", MessageID: "m2", Body: "two", BodyEncoding: "utf8", BodySize: 3,
			PublishedAt: t0, AvailableAt: t0.Add(2 * time.Hour), ExpiresAt: t0.Add(3 * time.Hour)},
		domain.MessageLeased{Queue: "orders", MessageID: "m1", ReceiptHash: "h", LeasedAt: t0.Add(time.Second),
			LeaseExpiresAt: t0.Add(31 * time.Second), ReceiveCount: 1},
		domain.MessageAcked{Queue: "orders", MessageID: "m1", ReceiptHash: "h", AckedAt: t0.Add(2 * time.Second)},
	)
	return log, evs
}

func messageRows(t *testing.T, e *Engine) [][]any {
	return queryRows(t, e.r, `SELECT id, state, receive_count, last_position FROM messages ORDER BY position`)
}

func historyRows(t *testing.T, e *Engine) [][]any {
	// Every message's history as stored: its MessagePublished in its row,
	// the events after it in message_history.
	return queryRows(t, e.r, `SELECT id, position, type FROM (
		SELECT id, position, 'MessagePublished' AS type, 0 AS seq FROM messages
		UNION ALL SELECT message_id, position, type, seq FROM message_history) ORDER BY position, seq`)
}

func TestDuplicatePackIsSkipped(t *testing.T) {
	log, evs := smallLog(t)
	e := newEngine(t, Config{Source: log})
	ctx := context.Background()
	for range 2 {
		if err := e.ApplyPack(ctx, evs[:4]); err != nil {
			t.Fatal(err)
		}
	}
	// An overlapping pack: 3 and 4 again, 5 new.
	if err := e.ApplyPack(ctx, evs[2:5]); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "messages", messageRows(t, e), [][]any{
		{"m1", "acked", int64(1), int64(5)},
		{"m2", "available", int64(0), int64(3)},
	})
	mustEqual(t, "history", historyRows(t, e), [][]any{
		{"m1", int64(2), "MessagePublished"},
		{"m2", int64(3), "MessagePublished"},
		{"m1", int64(4), "MessageLeased"},
		{"m1", int64(5), "MessageAcked"},
	})
	mustEqual(t, "queue counters", queryRows(t, e.r,
		`SELECT name, published_total, acked_total, last_position FROM queues`),
		[][]any{{"orders", int64(2), int64(1), int64(5)}})
	mustEqual(t, "counts", queryRows(t, e.r, `SELECT queue, available, in_flight FROM message_counts`),
		[][]any{{"orders", int64(1), int64(0)}})
	mustEqual(t, "checkpoints", e.Checkpoints(), map[string]int64{"queues": 5, "messages": 5})
	if n := log.readCount(); n != 0 {
		t.Fatalf("source read %d times, want 0: no gap was fed", n)
	}
}

func TestGapIsFilledFromSource(t *testing.T) {
	log, evs := smallLog(t)
	hub := &recordingHub{}
	e := newEngine(t, Config{Source: log, Hub: hub})
	ctx := context.Background()
	if err := e.ApplyPack(ctx, evs[:2]); err != nil {
		t.Fatal(err)
	}
	// 3 and 4 were lost; the pack with 5 arrives.
	if err := e.ApplyPack(ctx, evs[4:5]); err != nil {
		t.Fatal(err)
	}
	if n := log.readCount(); n != 1 {
		t.Fatalf("source read %d times, want 1", n)
	}
	mustEqual(t, "messages", messageRows(t, e), [][]any{
		{"m1", "acked", int64(1), int64(5)},
		{"m2", "available", int64(0), int64(3)},
	})
	mustEqual(t, "history", historyRows(t, e), [][]any{
		{"m1", int64(2), "MessagePublished"},
		{"m2", int64(3), "MessagePublished"},
		{"m1", int64(4), "MessageLeased"},
		{"m1", int64(5), "MessageAcked"},
	})
	mustEqual(t, "checkpoints", e.Checkpoints(), map[string]int64{"queues": 5, "messages": 5})

	// One update per queue and per message per transaction, in position
	// order: the pack [1 2], the catch-up [3 4], the pack [5].
	type key struct {
		pos          int64
		event, about string
	}
	var got []key
	var lastQueue queries.Queue
	e.flushNotices() // the hub hears of commits on the notifier's goroutine
	for _, u := range hub.all() {
		var v struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(u.Data, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, key{u.Position, u.Event, v.ID + v.Name})
		if u.Event == queries.EventQueueUpdated {
			if err := json.Unmarshal(u.Data, &lastQueue); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustEqual(t, "updates", got, []key{
		{2, queries.EventMessageUpdated, "m1"}, {2, queries.EventQueueUpdated, "orders"},
		{3, queries.EventMessageUpdated, "m2"},
		{4, queries.EventMessageUpdated, "m1"}, {4, queries.EventQueueUpdated, "orders"},
		{5, queries.EventMessageUpdated, "m1"}, {5, queries.EventQueueUpdated, "orders"},
	})
	mustEqual(t, "last queue stats", lastQueue.Stats, queries.Stats{
		Delayed: 1, PublishedTotal: 2, AckedTotal: 1, // m2 is due at 05:00, the clock says 04:00
	})
}

func TestGapSourceCannotFillIsAnError(t *testing.T) {
	log, evs := smallLog(t)
	e := newEngine(t, Config{Source: truncatedSource{log: log, n: 3}})
	ctx := context.Background()
	if err := e.ApplyPack(ctx, evs[:2]); err != nil {
		t.Fatal(err)
	}
	err := e.ApplyPack(ctx, evs[4:5])
	if !errors.Is(err, ErrGap) {
		t.Fatalf("got %v, want ErrGap", err)
	}
	// What the source had (3) is applied; nothing past the hole (5) is.
	mustEqual(t, "checkpoints", e.Checkpoints(), map[string]int64{"queues": 3, "messages": 3})
	mustEqual(t, "messages", messageRows(t, e), [][]any{
		{"m1", "available", int64(0), int64(2)},
		{"m2", "available", int64(0), int64(3)},
	})
	// Once the bus redelivers from 4, all is well.
	if err := e.ApplyPack(ctx, evs[3:5]); err != nil {
		t.Fatal(err)
	}
	if got := applied(e); got != 5 {
		t.Fatalf("applied %d, want 5", got)
	}
}

func TestUnknownEventTypeIsAnError(t *testing.T) {
	log, evs := smallLog(t)
	e := newEngine(t, Config{Source: log})
	ctx := context.Background()
	if err := e.ApplyPack(ctx, evs[:2]); err != nil {
		t.Fatal(err)
	}
	bogus := evs[2]
	bogus.Type = "MessageTeleported"
	err := e.ApplyPack(ctx, []eventstore.Event{bogus})
	if !errors.Is(err, domain.ErrUnknownEventType) {
		t.Fatalf("got %v, want ErrUnknownEventType", err)
	}
	if got := applied(e); got != 2 {
		t.Fatalf("applied %d after a refused event, want 2", got)
	}
	if err := NewQueueState().Apply(bogus); !errors.Is(err, domain.ErrUnknownEventType) {
		t.Fatalf("reducer: got %v, want ErrUnknownEventType", err)
	}

	wrongVersion := evs[2]
	wrongVersion.SchemaVersion = 2
	if err := e.ApplyPack(ctx, []eventstore.Event{wrongVersion}); !errors.Is(err, ErrUnsupportedEvent) {
		t.Fatalf("schema version 2: got %v, want ErrUnsupportedEvent", err)
	}
}

func TestInconsistentEventStopsApplying(t *testing.T) {
	log := newMemLog()
	t0 := time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)
	evs := log.add(t,
		domain.QueueCreated{Queue: "orders", Attributes: defaultAttrs(), CreatedAt: t0},
		domain.MessageAcked{Queue: "orders", MessageID: "ghost", AckedAt: t0},
	)
	e := newEngine(t, Config{Source: log})
	err := e.ApplyPack(context.Background(), evs)
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("got %v, want ErrInconsistent", err)
	}
	// The whole pack is one transaction: nothing of it stays.
	if got := applied(e); got != 0 {
		t.Fatalf("applied %d, want 0", got)
	}
	if rows := queryRows(t, e.r, "SELECT name FROM queues"); len(rows) != 0 {
		t.Fatalf("queues %v after a failed pack", rows)
	}
}

func TestCheckpointSurvivesReopen(t *testing.T) {
	log, evs := smallLog(t)
	path := t.TempDir() + "/read.db"
	e := newEngine(t, Config{Path: path, Source: log})
	if err := e.ApplyPack(context.Background(), evs[:3]); err != nil {
		t.Fatal(err)
	}
	e.Close()
	hub := &recordingHub{}
	e2 := newEngine(t, Config{Path: path, Source: log, Hub: hub})
	if got := applied(e2); got != 3 {
		t.Fatalf("applied after reopen %d, want 3", got)
	}
	if hub.floor != 3 {
		t.Fatalf("hub floor %d, want 3", hub.floor)
	}
	if err := e2.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "messages", messageRows(t, e2), [][]any{
		{"m1", "acked", int64(1), int64(5)},
		{"m2", "available", int64(0), int64(3)},
	})
}

func TestUpcastIsAppliedToPacks(t *testing.T) {
	log, evs := smallLog(t)
	old := evs[1]
	old.SchemaVersion = 0 // as if stored by an older release
	upcasts := 0
	e := newEngine(t, Config{Source: log, Upcast: func(ev eventstore.Event) (eventstore.Event, error) {
		upcasts++
		if ev.SchemaVersion == 0 {
			ev.SchemaVersion = 1
		}
		return ev, nil
	}})
	if err := e.ApplyPack(context.Background(), []eventstore.Event{evs[0], old}); err != nil {
		t.Fatal(err)
	}
	if upcasts != 2 || applied(e) != 2 {
		t.Fatalf("upcasts %d, applied %d; want 2 and 2", upcasts, applied(e))
	}
}

func TestRangeSourcePages(t *testing.T) {
	log, _ := smallLog(t)
	var calls []int64
	src := RangeSource{PageSize: 2, Read: func(ctx context.Context, after int64, limit int) ([]eventstore.Event, error) {
		calls = append(calls, after)
		var out []eventstore.Event
		err := log.ReadAll(ctx, after, func(e eventstore.Event) error {
			if len(out) == limit {
				return errStop
			}
			out = append(out, e)
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, err
		}
		return out, nil
	}}
	var got []int64
	if err := src.ReadAll(context.Background(), 0, func(e eventstore.Event) error {
		got = append(got, e.Position)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "positions", got, []int64{1, 2, 3, 4, 5})
	mustEqual(t, "reads after", calls, []int64{0, 2, 4})
}

// Without a bus the engine follows the Source by itself.
func TestRunWithoutBusFollowsSource(t *testing.T) {
	log, _ := smallLog(t)
	e := newEngine(t, Config{Source: log, PollInterval: 5 * time.Millisecond})
	runEngine(t, context.Background(), e)
	waitApplied(t, e, 5)
	t0 := time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)
	log.add(t, domain.MessageExpired{Queue: "orders", MessageID: "m2", ExpiredAt: t0})
	waitApplied(t, e, 6)
	mustEqual(t, "messages", messageRows(t, e), [][]any{
		{"m1", "acked", int64(1), int64(5)},
		{"m2", "expired", int64(0), int64(6)},
	})
}

// A pack that cannot be applied is refused (nacked) and reported by
// LastError until a later attempt succeeds.
func TestFailingPackIsReportedThenRecovers(t *testing.T) {
	log, evs := smallLog(t)
	bad := evs[0]
	bad.Type = "QueueTeleported"
	packs := map[string][]eventstore.Event{"bad": {bad}, "good": evs}
	e := newEngine(t, Config{Source: log, Subscriber: nopSubscriber{}, DecodePack: func(m *message.Message) ([]eventstore.Event, error) {
		return packs[string(m.Payload)], nil
	}})
	if err := e.handleMessage(message.NewMessage("1", []byte("bad"))); !errors.Is(err, domain.ErrUnknownEventType) {
		t.Fatalf("bad pack: %v", err)
	}
	if !errors.Is(e.LastError(), domain.ErrUnknownEventType) {
		t.Fatalf("LastError %v", e.LastError())
	}
	if err := e.handleMessage(message.NewMessage("2", []byte("good"))); err != nil {
		t.Fatal(err)
	}
	if e.LastError() != nil || applied(e) != 5 {
		t.Fatalf("after a good pack: LastError %v, applied %d", e.LastError(), applied(e))
	}
}

type nopSubscriber struct{}

func (nopSubscriber) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return make(chan *message.Message), nil
}
func (nopSubscriber) Close() error { return nil }

// Rows remembered between transactions must be those that committed: a
// pack that fails after changing queue counters and message counts (a
// poisoned copy of the next pack, ending with an ack of an unknown
// message) must leave no trace once the real pack is applied.
func TestFailedPacksLeaveNoRememberedRows(t *testing.T) {
	log, events := simulatedLog(t, 5, 2000)
	e := newEngine(t, Config{Source: log})
	ctx := context.Background()
	failed := 0
	for i := 0; i < len(events); i += 40 {
		pack := events[i:min(i+40, len(events))]
		last := pack[len(pack)-1]
		if queue, ok := strings.CutPrefix(last.StreamID, "queue-"); ok && i%80 == 0 {
			ghost := newMemLog().add(t, domain.MessageAcked{Queue: queue, MessageID: "ghost", AckedAt: last.RecordedAt})[0]
			ghost.Position, ghost.StreamID, ghost.Version = last.Position+1, last.StreamID, last.Version+1
			poisoned := append(slices.Clone(pack), ghost)
			if err := e.ApplyPack(ctx, poisoned); !errors.Is(err, ErrInconsistent) {
				t.Fatalf("poisoned pack at %d: got %v, want ErrInconsistent", i, err)
			}
			failed++
		}
		if err := e.ApplyPack(ctx, pack); err != nil {
			t.Fatalf("pack at %d: %v", i, err)
		}
	}
	if failed < 10 {
		t.Fatalf("only %d poisoned packs: the workload does not exercise the rollback", failed)
	}
	live := map[string]map[string][]string{}
	for _, p := range e.projs {
		live[p.name()] = dump(t, e, p)
	}
	if err := e.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range e.projs {
		rebuilt := dump(t, e, p)
		for _, table := range p.tables() {
			if !slices.Equal(live[p.name()][table], rebuilt[table]) {
				t.Fatalf("table %s differs from a rebuild after failed packs", table)
			}
		}
	}
}

// failingSource serves a log until it has handed out n events after the
// requested position, then fails.
type failingSource struct {
	log *memLog
	n   int
	err error
}

func (s failingSource) ReadAll(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	served := 0
	return s.log.ReadAll(ctx, after, func(e eventstore.Event) error {
		if served == s.n {
			return s.err
		}
		served++
		return fn(e)
	})
}

// TestCatchUpStopsAtAFailedRead: the catch-up reads ahead of what it
// applies, yet a read that fails half-way leaves exactly the whole batches
// read before it applied, returns the failure, and a later catch-up goes
// on from there to the same read model as one that never failed.
func TestCatchUpStopsAtAFailedRead(t *testing.T) {
	log, events := simulatedLog(t, 11, 400)
	head := events[len(events)-1].Position
	if head < 100 {
		t.Fatalf("the workload wrote only %d events", head)
	}
	boom := errors.New("disk on fire")
	e := newEngine(t, Config{Source: failingSource{log: log, n: 55, err: boom}, CatchUpBatch: 10})
	if err := e.CatchUp(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("catch-up over a failing source: %v, want %v", err, boom)
	}
	if got := applied(e); got != 50 {
		t.Fatalf("applied %d after a read failing at the 56th event, want the 5 whole batches of 10", got)
	}

	e.cfg.Source = log
	if err := e.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := applied(e); got != head {
		t.Fatalf("applied %d after the second catch-up, want %d", got, head)
	}
	ref := newEngine(t, Config{Source: log})
	if err := ref.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range e.projs {
		got, want := dump(t, e, p), dump(t, ref, p)
		for table, rows := range want {
			if !slices.Equal(got[table], rows) {
				t.Errorf("%s.%s differs from a catch-up that never failed", p.name(), table)
			}
		}
	}
}

// TestObserveLivePacks: the transactions that apply packs from the bus are
// reported with each event's delay since its recording; a duplicate pack
// that applies nothing and the catch-up that fills a gap are not.
func TestObserveLivePacks(t *testing.T) {
	log, evs := smallLog(t)
	recorded := time.Now().Add(-2 * time.Second)
	for i := range evs {
		evs[i].RecordedAt = recorded
	}
	var txns []int
	var delays []time.Duration
	e := newEngine(t, Config{Source: log,
		ObserveTransaction: func(n int, took time.Duration) {
			if took <= 0 {
				t.Errorf("a transaction of %d events took %v", n, took)
			}
			txns = append(txns, n)
		},
		ObserveDelay: func(d time.Duration) { delays = append(delays, d) },
	})
	ctx := context.Background()
	for _, pack := range [][]eventstore.Event{evs[:2], evs[:2], evs[3:5]} {
		if err := e.ApplyPack(ctx, pack); err != nil {
			t.Fatal(err)
		}
	}
	// Position 3 came by catch-up from the source: applied, not reported.
	mustEqual(t, "checkpoints", e.Checkpoints(), map[string]int64{"queues": 5, "messages": 5})
	mustEqual(t, "transactions", txns, []int{2, 2})
	if len(delays) != 4 {
		t.Fatalf("%d delays reported, want 4: %v", len(delays), delays)
	}
	for _, d := range delays {
		if d < 2*time.Second || d > 12*time.Second {
			t.Errorf("delay %v for events recorded 2s before the pack", d)
		}
	}
}

// TestOlderLayoutIsRebuilt opens a read model that the previous layout
// (version 1: the body in messages, the MessagePublished in message_history)
// wrote up to position 3: it is dropped and rebuilt from the log, so a
// message published before the upgrade still shows its body and history.
func TestOlderLayoutIsRebuilt(t *testing.T) {
	log, _ := smallLog(t)
	path := filepath.Join(t.TempDir(), "read.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE checkpoints (projection TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID`,
		`INSERT INTO checkpoints VALUES ('messages', 3), ('queues', 3)`,
		`CREATE TABLE messages (position INTEGER PRIMARY KEY, id TEXT NOT NULL, queue TEXT NOT NULL,
			state TEXT NOT NULL, body TEXT NOT NULL)`,
		`INSERT INTO messages VALUES (2, 'm1', 'orders', 'available', 'one'), (3, 'm2', 'orders', 'available', 'two')`,
		`CREATE TABLE message_history (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL,
			position INTEGER NOT NULL, type TEXT NOT NULL, recorded_at INTEGER NOT NULL, data TEXT NOT NULL)`,
		`INSERT INTO message_history (message_id, position, type, recorded_at, data)
			VALUES ('m1', 2, 'MessagePublished', 0, '{}'), ('m2', 3, 'MessagePublished', 0, '{}')`,
		`PRAGMA user_version = 1`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	logs := watermill.NewCaptureLogger()
	e := newEngine(t, Config{Path: path, Source: log, Logger: logs})
	if got := applied(e); got != 0 {
		t.Fatalf("applied after opening the older layout %d, want 0 (rebuilt from the log)", got)
	}
	var said bool
	for _, m := range logs.Captured()[watermill.InfoLogLevel] {
		said = said || (strings.Contains(m.Msg, "another layout") && m.Fields["layout"] == 1)
	}
	if !said {
		t.Fatalf("no log line says the older read model was dropped: %v", logs.Captured())
	}
	if err := e.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "messages", messageRows(t, e), [][]any{
		{"m1", "acked", int64(1), int64(5)},
		{"m2", "available", int64(0), int64(3)},
	})
	mustEqual(t, "history", historyRows(t, e), [][]any{
		{"m1", int64(2), "MessagePublished"}, {"m2", int64(3), "MessagePublished"},
		{"m1", int64(4), "MessageLeased"}, {"m1", int64(5), "MessageAcked"},
	})
	m, err := e.Message(context.Background(), "m1", testNow)
	if err != nil || m.Body != "one" || len(m.History) != 3 || m.History[0].Type != "MessagePublished" {
		t.Fatalf("m1 after the rebuild: %+v, %v", m, err)
	}
}

// A read model whose path holds characters that end a file name in a SQLite
// URI ('#', '?') is opened at that very path, not at the part before them.
func TestReadModelPathWithURICharacters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a#b?c", "read.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{Source: newMemLog(), Path: path})
	if err := e.ApplyPack(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the read model is not at %s: %v", path, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		if de.Name() != "a#b?c" {
			t.Errorf("%s: a file beside the read model's directory, opened at a cut path", de.Name())
		}
	}
}
