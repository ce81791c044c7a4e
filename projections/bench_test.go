package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
)

// benchWorkload yields a steady broker workload: ten queues; each message is
// published (a quarter of them delayed), leased and acked, one in ten is
// nacked and leased again first. About 3.3 events per message, with ~100-byte
// bodies and a header, and a bounded number of messages in flight.
func benchWorkload(messages int, emit func(domain.Event)) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const queues = 10
	for q := range queues {
		emit(domain.QueueCreated{Queue: fmt.Sprintf("bench-%d", q), Attributes: defaultAttrs(), CreatedAt: t0})
	}
	body := fmt.Sprintf("%0100d", 0)
	const window = 64
	for i := 0; i < messages+window; i++ {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if i < messages {
			q := fmt.Sprintf("bench-%d", i%queues)
			avail := now
			if i%4 == 0 {
				avail = now.Add(time.Hour)
			}
			emit(domain.MessagePublished{Queue: q, MessageID: "m" + strconv.Itoa(i), Body: body, BodyEncoding: "utf8",
				BodySize: int64(len(body)), ContentType: "text/plain", Headers: map[string]string{"n": strconv.Itoa(i)},
				PublishedAt: now, AvailableAt: avail, ExpiresAt: now.Add(96 * time.Hour)})
		}
		if j := i - window; j >= 0 {
			q, id := fmt.Sprintf("bench-%d", j%queues), "m"+strconv.Itoa(j)
			lease := func(n int) {
				emit(domain.MessageLeased{Queue: q, MessageID: id, ReceiptHash: "h", LeasedAt: now,
					LeaseExpiresAt: now.Add(30 * time.Second), ReceiveCount: n})
			}
			lease(1)
			if j%10 == 0 {
				emit(domain.MessageReleased{Queue: q, MessageID: id, ReceiptHash: "h", ReleasedAt: now, AvailableAt: now})
				lease(2)
			}
			emit(domain.MessageAcked{Queue: q, MessageID: id, ReceiptHash: "h", AckedAt: now})
		}
	}
}

// benchStore writes the workload through the real event store, 256 events
// per append (grouped by stream within an append, which keeps every
// message's own order).
func benchStore(b *testing.B, messages int) (*eventstore.Store, int64) {
	b.Helper()
	store, err := eventstore.Open(filepath.Join(b.TempDir(), "events.db"), eventstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	var (
		req   eventstore.AppendRequest
		index = map[string]int{}
		n     int
	)
	flush := func() {
		if n == 0 {
			return
		}
		if _, err := store.Append(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		req, index, n = eventstore.AppendRequest{}, map[string]int{}, 0
	}
	benchWorkload(messages, func(ev domain.Event) {
		data, err := json.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		stream := domain.StreamID(ev.QueueName())
		i, ok := index[stream]
		if !ok {
			i = len(req.Streams)
			index[stream] = i
			req.Streams = append(req.Streams, eventstore.StreamAppend{StreamID: stream, ExpectedVersion: eventstore.AnyVersion})
		}
		req.Streams[i].Events = append(req.Streams[i].Events,
			eventstore.NewEvent{Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Data: data})
		if n++; n == 256 {
			flush()
		}
	})
	flush()
	return store, store.Head()
}

func benchMessages() int {
	if v, err := strconv.Atoi(os.Getenv("LEDGERQ_BENCH_MESSAGES")); err == nil && v > 0 {
		return v
	}
	return 60000 // about 200k events
}

// BenchmarkRebuild measures rebuilding every read model from a log written
// through the real store (LEDGERQ_BENCH_MESSAGES messages, ~3.3 events
// each), reading it back with the store's ReadAll: the catch-up path.
func BenchmarkRebuild(b *testing.B) {
	store, head := benchStore(b, benchMessages())
	e := newEngine(b, Config{Source: store, CatchUpBatch: 2000})
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := e.Rebuild(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	if got := applied(e); got != head {
		b.Fatalf("applied %d, want %d", got, head)
	}
	events := float64(head) * float64(b.N)
	b.ReportMetric(events/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(head), "log-events")
}

// BenchmarkApplyPack measures the live path: packs of 256 events (the
// relay's maximum until it became 1,024; kept so figures stay comparable)
// applied with hub updates built and published.
func BenchmarkApplyPack(b *testing.B) {
	log := newMemLog()
	benchWorkload(60000, func(ev domain.Event) { log.add(b, ev) })
	events := log.all()
	hub := queries.NewHub(queries.HubConfig{})
	ctx := context.Background()
	applied := 0
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		b.StopTimer()
		e := newEngine(b, Config{Source: log, Hub: hub, Now: time.Now})
		b.StartTimer()
		for i := 0; i < len(events); i += 256 {
			if err := e.ApplyPack(ctx, events[i:min(i+256, len(events))]); err != nil {
				b.Fatal(err)
			}
		}
		applied += len(events)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(applied)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(applied), "ns/event")
}

// BenchmarkStateAt measures point-in-time replay to the head: the log read
// back from the store and folded by the stats reducer (GET
// /v1/audit/state, ledgerq replay).
func BenchmarkStateAt(b *testing.B) {
	store, head := benchStore(b, benchMessages())
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		v, err := StateAt(context.Background(), store, 0, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		if v.Position != head {
			b.Fatalf("state at %d, want %d", v.Position, head)
		}
	}
	elapsed := time.Since(start)
	events := float64(head) * float64(b.N)
	b.ReportMetric(events/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(head), "log-events")
}

// BenchmarkApplyFanout measures the live path for publishes spread over many
// queues: each message's row goes into three indexes keyed by its queue, so
// a pack touches about three index pages per queue it names, and a commit
// writes every page it touched. Spread over 250 queues a 256-event pack
// dirties several times more pages per event than over 16, and a larger pack
// shares them again.
func BenchmarkApplyFanout(b *testing.B) {
	for _, c := range []struct{ queues, pack int }{{16, 256}, {250, 256}, {250, 1024}} {
		b.Run(fmt.Sprintf("queues=%d/pack=%d", c.queues, c.pack), func(b *testing.B) {
			benchFanout(b, c.queues, c.pack, 30000)
		})
	}
}

func benchFanout(b *testing.B, queues, pack, messages int) {
	log := newMemLog()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for q := range queues {
		log.add(b, domain.QueueCreated{Queue: fmt.Sprintf("q-%d", q), Attributes: defaultAttrs(), CreatedAt: t0})
	}
	body := fmt.Sprintf("%0200d", 0)
	for i := range messages {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		log.add(b, domain.MessagePublished{Queue: fmt.Sprintf("q-%d", i%queues), MessageID: fmt.Sprintf("m%08d", i),
			Body: body, BodyEncoding: "utf8", BodySize: int64(len(body)), ContentType: "text/plain",
			PublishedAt: now, AvailableAt: now, ExpiresAt: now.Add(96 * time.Hour)})
	}
	events := log.all()
	ctx := context.Background()
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		e := newEngine(b, Config{Source: log, Hub: queries.NewHub(queries.HubConfig{}), Now: time.Now})
		if err := e.ApplyPack(ctx, events[:queues]); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for i := queues; i < len(events); i += pack {
			if err := e.ApplyPack(ctx, events[i:min(i+pack, len(events))]); err != nil {
				b.Fatal(err)
			}
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*messages), "ns/event")
}
