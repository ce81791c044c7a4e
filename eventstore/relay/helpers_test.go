package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/ledgerq/ledgerq/tests/redistest"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
)

func openStore(t testing.TB) *eventstore.Store {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	s, err := eventstore.Open(filepath.Join(t.TempDir(), "events.db"), eventstore.Options{Logger: log})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// appendEvents appends n events to stream, perAppend events per request.
func appendEvents(t testing.TB, s *eventstore.Store, stream string, n, perAppend int) {
	t.Helper()
	for n > 0 {
		k := min(n, perAppend)
		evs := make([]eventstore.NewEvent, k)
		for i := range evs {
			evs[i] = eventstore.NewEvent{Type: "TestHappened", SchemaVersion: 1, Data: json.RawMessage(`{"n":` + fmt.Sprint(i) + `,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)}
		}
		_, err := s.Append(context.Background(), eventstore.AppendRequest{
			Metadata: eventstore.Metadata{Subject: "tester", RequestID: "r1"},
			Streams:  []eventstore.StreamAppend{{StreamID: stream, ExpectedVersion: eventstore.AnyVersion, Events: evs}},
		})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		n -= k
	}
}

func appendOne(ctx context.Context, s *eventstore.Store, stream string) (int64, error) {
	res, err := s.Append(ctx, eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{{StreamID: stream, ExpectedVersion: eventstore.AnyVersion,
			Events: []eventstore.NewEvent{{Type: "TestHappened", SchemaVersion: 1, Data: json.RawMessage(`{"x":1}`)}}}},
	})
	return res.LastPosition(), err
}

func newInprocBus(t testing.TB) *relay.Bus {
	t.Helper()
	bus, err := relay.NewBus(context.Background(), relay.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

// collector consumes packs from a bus subscription and records every
// position in arrival order.
type collector struct {
	mu       sync.Mutex
	order    []int64
	received map[int64]time.Time // first arrival
	events   map[int64]eventstore.Event
	badPack  error
	changed  chan struct{}
}

func collect(t testing.TB, bus *relay.Bus, group string) *collector {
	t.Helper()
	return collectSlowly(t, bus, group, nil)
}

// collectSlowly is collect with a consumer that takes perPack() to handle
// each pack before it acks it, as a busy projection would. perPack may be
// nil, and may change its answer while the test runs.
func collectSlowly(t testing.TB, bus *relay.Bus, group string, perPack func() time.Duration) *collector {
	t.Helper()
	sub, err := bus.Subscriber(group)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), relay.Topic)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{received: map[int64]time.Time{}, events: map[int64]eventstore.Event{}, changed: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range msgs {
			evs, err := relay.DecodePack(msg)
			now := time.Now()
			c.mu.Lock()
			if err != nil && c.badPack == nil {
				c.badPack = err
			}
			for _, e := range evs {
				c.order = append(c.order, e.Position)
				if _, ok := c.received[e.Position]; !ok {
					c.received[e.Position] = now
					c.events[e.Position] = e
				}
			}
			c.mu.Unlock()
			if perPack != nil {
				if d := perPack(); d > 0 {
					time.Sleep(d)
				}
			}
			msg.Ack()
			select {
			case c.changed <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = sub.Close()
		<-done
	})
	return c
}

// waitAll waits until every position 1..head has arrived.
func (c *collector) waitAll(t testing.TB, head int64, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		n, bad := int64(len(c.received)), c.badPack
		c.mu.Unlock()
		if bad != nil {
			t.Fatalf("undecodable pack: %v", bad)
		}
		if n >= head {
			return
		}
		select {
		case <-c.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("after %s the subscriber has %d of %d positions; missing e.g. %v", timeout, n, head, c.missing(head, 5))
		}
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.received)
}

func (c *collector) missing(head int64, max int) []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int64
	for p := int64(1); p <= head && len(out) < max; p++ {
		if _, ok := c.received[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

// checkOrder asserts that positions arrived in order: every arrival is the
// next new position or a repeat of one already seen (at-least-once). It
// returns the number of repeats.
func (c *collector) checkOrder(t testing.TB, head int64) int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var next int64 = 1
	repeats := 0
	for i, p := range c.order {
		switch {
		case p == next:
			next++
		case p < next:
			repeats++
		default:
			t.Fatalf("arrival %d is position %d, but %d had not arrived yet", i, p, next)
		}
	}
	if next != head+1 {
		t.Fatalf("positions 1..%d arrived, want 1..%d", next-1, head)
	}
	return repeats
}

// startRelay creates a relay of s onto bus and runs it until the test ends.
func startRelay(t testing.TB, s *eventstore.Store, bus *relay.Bus, cfg relay.Config) *relay.Relay {
	t.Helper()
	r, err := relay.New(s, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	runRelay(t, r) // its cleanup, registered later, stops it before Close
	return r
}

func runRelay(t testing.TB, r *relay.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("relay run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newRedisBus(t testing.TB, srv *redistest.Server) *relay.Bus {
	t.Helper()
	bus, err := relay.NewBus(context.Background(), relay.BusConfig{RedisURL: srv.URL(), ConsumerName: "test-node"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}
