package relay_test

import (
	"context"
	"fmt"
	"github.com/ledgerq/ledgerq/tests/redistest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
)

// TestRelayFigures measures what the package documentation claims: packing
// makes the Redis path faster than one entry per event, and the lag from
// commit to subscriber. It logs the figures; it asserts only the direction
// of the packing gain.
func TestRelayFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	srv := redistest.Start(t)

	const backlog = 20000
	throughput := func(maxPack int) float64 {
		s := openStore(t)
		appendEvents(t, s, "queue-a", backlog, 200)
		if err := redisFlush(srv); err != nil {
			t.Fatal(err)
		}
		bus := newRedisBus(t, srv)
		// A group of its own: the previous run's subscriber is still
		// alive and would recreate its group after the flush.
		c := collect(t, bus, fmt.Sprintf("figures-%d", maxPack))
		r, err := relay.New(s, bus, relay.Config{MaxPackEvents: maxPack})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		start := time.Now()
		stop := runRelay(t, r)
		c.waitAll(t, s.Head(), 120*time.Second)
		took := time.Since(start)
		stop()
		return float64(backlog) / took.Seconds()
	}
	packed := throughput(relay.DefaultMaxPackEvents)
	single := throughput(1)
	t.Logf("relay -> Redis -> consumer group, %d-event backlog: packed (%d) %.0f events/s, one event per entry %.0f events/s (x%.1f)",
		backlog, relay.DefaultMaxPackEvents, packed, single, packed/single)
	if packed <= single {
		t.Errorf("packing did not help: %.0f <= %.0f events/s", packed, single)
	}

	lag := func(bus *relay.Bus, s *eventstore.Store) (p50, p99 time.Duration) {
		c := collect(t, bus, "lag")
		r, err := relay.New(s, bus, relay.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		runRelay(t, r)
		var mu sync.Mutex
		committed := map[int64]time.Time{}
		tick := time.NewTicker(time.Second / 500) // a steady 500 appends/s
		defer tick.Stop()
		for range 1000 {
			<-tick.C
			pos, err := appendOne(context.Background(), s, "queue-lag")
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			committed[pos] = time.Now()
			mu.Unlock()
		}
		c.waitAll(t, s.Head(), 30*time.Second)
		c.mu.Lock()
		defer c.mu.Unlock()
		var lags []time.Duration
		for pos, at := range committed {
			// The append returns after its commit; the relay may be
			// faster than the caller's wake-up, hence the floor at 0.
			lags = append(lags, max(0, c.received[pos].Sub(at)))
		}
		return percentile(lags, 0.5), percentile(lags, 0.99)
	}
	p50, p99 := lag(newInprocBus(t), openStore(t))
	t.Logf("end-to-end lag at 500 appends/s, in-process bus: p50 %s p99 %s", p50, p99)
	if err := redisFlush(srv); err != nil {
		t.Fatal(err)
	}
	p50, p99 = lag(newRedisBus(t, srv), openStore(t))
	t.Logf("end-to-end lag at 500 appends/s, Redis: p50 %s p99 %s", p50, p99)
}

func redisFlush(srv *redistest.Server) error {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	return c.FlushAll(context.Background()).Err()
}
