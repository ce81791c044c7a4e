package relay_test

import (
	"context"
	"errors"
	"github.com/ledgerq/ledgerq/tests/redistest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
)

// Over Redis: order, completeness, consumer groups, ReadRange, health.
func TestRelayThroughRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t)
	bus := newRedisBus(t, srv)
	if err := bus.Healthy(context.Background()); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	appendEvents(t, s, "queue-a", 1000, 10)
	r, err := relay.New(s, bus, relay.Config{MaxPackEvents: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	runRelay(t, r)
	// Two groups each get everything, even though they join after the
	// relay published (a group starts at the oldest entry).
	a, b := collect(t, bus, "proj-a"), collect(t, bus, "proj-b")
	appendEvents(t, s, "queue-b", 300, 3)
	a.waitAll(t, s.Head(), 20*time.Second)
	b.waitAll(t, s.Head(), 20*time.Second)
	for _, c := range []*collector{a, b} {
		if repeats := c.checkOrder(t, s.Head()); repeats != 0 {
			t.Errorf("%d repeated positions without any restart", repeats)
		}
	}

	var want []eventstore.Event
	if err := s.ReadAll(context.Background(), 1100, func(e eventstore.Event) error { want = append(want, e); return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := bus.ReadRange(context.Background(), 1100, 0)
	if err != nil {
		t.Fatalf("ReadRange: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ReadRange(1100) returned %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameEvent(got[i], want[i]) {
			t.Fatalf("ReadRange event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if got, err := bus.ReadRange(context.Background(), 5, 10); err != nil || len(got) != 10 || got[0].Position != 6 || got[9].Position != 15 {
		t.Errorf("ReadRange(5, limit 10): %d events from %v, err %v; want 6..15", len(got), firstPos(got), err)
	}
	if got, err := bus.ReadRange(context.Background(), s.Head(), 0); err != nil || len(got) != 0 {
		t.Errorf("ReadRange(head): %d events, %v; want none", len(got), err)
	}

	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.XTrimMaxLen(context.Background(), relay.Topic, 2).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.ReadRange(context.Background(), 0, 0); !errors.Is(err, relay.ErrTrimmed) {
		t.Errorf("ReadRange over trimmed entries: %v, want ErrTrimmed", err)
	}

	srv.Kill()
	if err := bus.Healthy(context.Background()); err == nil {
		t.Error("healthy with Redis killed")
	}
}

func firstPos(evs []eventstore.Event) int64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[0].Position
}

// (e) Redis killed under load and restarted empty on the same port: appends
// go on, and the subscriber still gets every position.
func TestRelaySurvivesRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t)
	bus := newRedisBus(t, srv)
	c := collect(t, bus, "projection")
	r, err := relay.New(s, bus, relay.Config{MaxPackEvents: 32, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	runRelay(t, r)

	ctx, cancel := context.WithCancel(context.Background())
	var appended, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := "queue-" + string(rune('a'+w))
			for ctx.Err() == nil {
				if _, err := appendOne(context.Background(), s, stream); err != nil {
					failed.Add(1)
				} else {
					appended.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	waitFor(t, 20*time.Second, "300 positions before the kill", func() bool { return c.count() >= 300 })
	srv.Kill()
	before := appended.Load()
	time.Sleep(time.Second)
	if appended.Load()-before < 10 {
		t.Errorf("only %d appends in the second Redis was down", appended.Load()-before)
	}
	waitFor(t, 10*time.Second, "a failed publish while Redis is down", func() bool { return r.Stats().PublishErrors > 0 })
	srv.Restart()
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d appends failed", n)
	}
	c.waitAll(t, s.Head(), 60*time.Second)
	st := r.Stats()
	t.Logf("head %d, appended %d; relay stats %+v", s.Head(), appended.Load(), st)
	if st.Rewinds == 0 {
		t.Error("Redis came back empty but the relay never published again from an earlier position")
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A Redis stream that a write node of an earlier version filled with JSON
// packs, continued in today's format by the relay after the upgrade:
// consumer groups and ReadRange read through both.
func TestRedisStreamOfBothFormats(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t)
	bus := newRedisBus(t, srv)
	appendEvents(t, s, "queue-a", 40, 7)
	var want []eventstore.Event
	if err := s.ReadAll(context.Background(), 0, func(e eventstore.Event) error { want = append(want, e); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		encode   func([]eventstore.Event) (*message.Message, error)
		from, to int
	}{{relay.EncodeJSONPack, 0, 10}, {relay.EncodeJSONPack, 10, 20}, {relay.EncodePack, 15, 30}, {relay.EncodePack, 30, 40}} {
		msg, err := p.encode(want[p.from:p.to])
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.Publisher().Publish(relay.Topic, msg); err != nil {
			t.Fatal(err)
		}
	}
	c := collect(t, bus, "projection")
	c.waitAll(t, s.Head(), 10*time.Second)
	if repeats := c.checkOrder(t, s.Head()); repeats != 5 {
		t.Errorf("%d repeated positions, want the 5 published twice", repeats)
	}
	for _, after := range []int64{0, 12, 25} {
		got, err := bus.ReadRange(context.Background(), after, 0)
		if err != nil {
			t.Fatalf("ReadRange(%d): %v", after, err)
		}
		if len(got) != len(want)-int(after) {
			t.Fatalf("ReadRange(%d) returned %d events, want %d", after, len(got), len(want)-int(after))
		}
		c.mu.Lock()
		for i, w := range want[after:] {
			if !sameEvent(got[i], w) || !sameEvent(c.events[w.Position], w) {
				t.Errorf("position %d:\n ReadRange %+v\n consumer  %+v\n store     %+v", w.Position, got[i], c.events[w.Position], w)
				break
			}
		}
		c.mu.Unlock()
	}
}
