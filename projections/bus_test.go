package projections

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
	"github.com/ledgerq/ledgerq/queries"
	"github.com/ledgerq/ledgerq/tests/redistest"
)

// appendEvents appends domain events to their queues' streams, one append
// per event, as commands would.
func appendEvents(t testing.TB, store *eventstore.Store, evs ...domain.Event) int64 {
	t.Helper()
	var last int64
	for _, ev := range evs {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		res, err := store.Append(context.Background(), eventstore.AppendRequest{
			Metadata: eventstore.Metadata{Subject: "test"},
			Streams: []eventstore.StreamAppend{{
				StreamID: domain.StreamID(ev.QueueName()), ExpectedVersion: eventstore.AnyVersion,
				Events: []eventstore.NewEvent{{Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Data: data}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		last = res.LastPosition()
	}
	return last
}

func openStore(t testing.TB) *eventstore.Store {
	t.Helper()
	store, err := eventstore.Open(filepath.Join(t.TempDir(), "events.db"), eventstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// runEngine runs e until the test ends and fails the test if Run fails.
func runEngine(t *testing.T, ctx context.Context, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine Run: %v", err)
		}
	})
}

func waitApplied(t *testing.T, e *Engine, pos int64) {
	t.Helper()
	// A generous bound for progress, not a timing assumption: the wait
	// returns as soon as the position is applied.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.WaitForPosition(ctx, pos); err != nil {
		t.Fatalf("position %d not applied (at %d, last error %v): %v", pos, e.AppliedPosition(), e.LastError(), err)
	}
}

func TestEngineOverRelayAndBus(t *testing.T) {
	for _, mode := range []string{"in-process", "redis"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			store := openStore(t)
			t0 := time.Now().UTC().Add(-time.Minute)
			pub := func(id string) domain.MessagePublished {
				return domain.MessagePublished{Queue: "jobs", MessageID: id, Body: id, BodyEncoding: "utf8",
					BodySize: int64(len(id)), PublishedAt: t0, AvailableAt: t0, ExpiresAt: t0.Add(time.Hour)}
			}
			// Written before anything runs: only catch-up can bring these.
			appendEvents(t, store,
				domain.QueueCreated{Queue: "jobs", Attributes: defaultAttrs(), CreatedAt: t0},
				pub("a"), pub("b"))

			cfg := relay.BusConfig{}
			if mode == "redis" {
				cfg.RedisURL = redistest.Start(t).URL()
			}
			// The bus outlives the engines (its cleanup runs after theirs):
			// a bus that ends under a running engine is an error Run reports.
			bus, err := relay.NewBus(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bus.Close() })
			sub, err := bus.Subscriber("projections")
			if err != nil {
				t.Fatal(err)
			}
			hub := queries.NewHub(queries.HubConfig{})
			e := newEngine(t, Config{Source: store, Subscriber: sub, DecodePack: relay.DecodePack,
				Upcast: store.Upcast, Hub: hub, Now: time.Now})
			runEngine(t, ctx, e)
			waitApplied(t, e, 3)
			_, live, _ := hub.Subscribe(hub.Position(), nil)
			defer live.Close()

			rl, err := relay.New(store, bus, relay.Config{})
			if err != nil {
				t.Fatal(err)
			}
			relayDone := make(chan error, 1)
			go func() { relayDone <- rl.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-relayDone; rl.Close() })

			head := appendEvents(t, store,
				domain.MessageLeased{Queue: "jobs", MessageID: "a", ReceiptHash: "h", LeasedAt: t0,
					LeaseExpiresAt: t0.Add(time.Hour), ReceiveCount: 1},
				domain.MessageAcked{Queue: "jobs", MessageID: "a", ReceiptHash: "h", AckedAt: t0},
				pub("c"))
			waitApplied(t, e, head)

			q, err := e.Queue(ctx, "jobs", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "stats", [3]int64{q.Stats.Ready, q.Stats.PublishedTotal, q.Stats.AckedTotal}, [3]int64{2, 3, 1})

			// The hub heard of each new event, through the bus, in order.
			var got []int64
			for len(got) == 0 || got[len(got)-1] < head {
				select {
				case us := <-live.C():
					for _, u := range us {
						if u.Event == queries.EventMessageUpdated {
							got = append(got, u.Position)
						}
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("message updates %v, want up to %d", got, head)
				}
			}
			if got[0] <= 3 {
				t.Fatalf("message updates %v start at or before 3", got)
			}

			if mode != "redis" {
				return
			}
			// A query node: no event store, its own consumer group, gaps and
			// start-up filled from the Redis stream. It must end up with the
			// same rows as the write node.
			qsub, err := bus.Subscriber("query-node")
			if err != nil {
				t.Fatal(err)
			}
			qn := newEngine(t, Config{Source: RangeSource{Read: bus.ReadRange}, Subscriber: qsub,
				DecodePack: relay.DecodePack, Now: time.Now})
			runEngine(t, ctx, qn)
			waitApplied(t, qn, head)
			// And what happens next reaches it through its consumer group.
			head = appendEvents(t, store, domain.MessageLeased{Queue: "jobs", MessageID: "b", ReceiptHash: "h2",
				LeasedAt: t0, LeaseExpiresAt: t0.Add(time.Hour), ReceiveCount: 1})
			waitApplied(t, e, head)
			waitApplied(t, qn, head)
			for _, p := range e.projs {
				mustEqual(t, "query node "+p.name(), dump(t, qn, p), dump(t, e, p))
			}
		})
	}
}
