package relay_test

import (
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore/relay"
)

func TestLingerAfterPacks(t *testing.T) {
	s := openStore(t)
	def := relay.WithDefaults(relay.Config{}, s)
	if def.Linger != 2*time.Millisecond || def.LingerPerEvent != 100*time.Microsecond || def.MaxLinger != 20*time.Millisecond {
		t.Fatalf("defaults Linger %s, LingerPerEvent %s, MaxLinger %s; want 2ms, 100µs, 20ms", def.Linger, def.LingerPerEvent, def.MaxLinger)
	}
	fixed := relay.WithDefaults(relay.Config{LingerPerEvent: -1}, s)
	none := relay.WithDefaults(relay.Config{Linger: -1}, s)
	low := relay.WithDefaults(relay.Config{MaxLinger: time.Millisecond}, s) // below Linger
	for _, tc := range []struct {
		name string
		cfg  relay.Config
		n    int64
		want time.Duration
	}{
		{"nothing relayed yet", def, 0, 2 * time.Millisecond},
		{"a small pack", def, 5, 2 * time.Millisecond},
		{"a pack of 50", def, 50, 5 * time.Millisecond},
		{"a pack of 150", def, 150, 15 * time.Millisecond},
		{"a large pack", def, 1000, 20 * time.Millisecond},
		{"an absurd pack", def, 1 << 62, 20 * time.Millisecond},
		{"fixed linger", fixed, 1000, 2 * time.Millisecond},
		{"no linger", none, 1000, 0},
		{"MaxLinger below Linger", low, 1000, 2 * time.Millisecond},
	} {
		if got := relay.LingerAfter(tc.cfg, tc.n); got != tc.want {
			t.Errorf("%s: linger after %d events %s, want %s", tc.name, tc.n, got, tc.want)
		}
	}
	if err := (relay.Config{MaxLinger: -time.Second}).Validate(); err == nil {
		t.Error("a negative MaxLinger was accepted")
	}
}

// After a large pack the relay waits longer before it reads again, so the
// events of a busy log leave in fewer, larger packs; once a small pack or
// a quiet log shows the load has passed, an event leaves after Linger.
func TestRelayLingersLongerAfterLargerPacks(t *testing.T) {
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	appendEvents(t, s, "queue-a", 100, 100) // one pack once the relay runs
	startRelay(t, s, bus, relay.Config{
		Linger: time.Millisecond, LingerPerEvent: 2 * time.Millisecond, MaxLinger: 300 * time.Millisecond,
		MaxIdleWait: time.Hour, // no polls but those after a commit
	})
	c.waitAll(t, 100, 20*time.Second)

	// The next event waits 100 × 2 ms = 200 ms.
	delay := func(head int64) time.Duration {
		t.Helper()
		start := time.Now()
		appendEvents(t, s, "queue-a", 1, 1)
		c.waitAll(t, head, 20*time.Second)
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.received[head].Sub(start)
	}
	if d := delay(101); d < 200*time.Millisecond {
		t.Errorf("the event after a pack of 100 left after %s, want at least the 200 ms linger", d)
	}
	// That pack held one event: the next one leaves after Linger (and
	// scheduling).
	if d := delay(102); d >= 150*time.Millisecond {
		t.Errorf("the event after a pack of 1 left after %s, want about the 1 ms Linger", d)
	}
}

// A log that went quiet after a large pack does not keep the long linger:
// the first event after the quiet leaves after Linger.
func TestRelayForgetsTheLoadWhenTheLogGoesQuiet(t *testing.T) {
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	appendEvents(t, s, "queue-a", 100, 100)
	startRelay(t, s, bus, relay.Config{
		Linger: time.Millisecond, LingerPerEvent: 2 * time.Millisecond, MaxLinger: 300 * time.Millisecond,
		MaxIdleWait: 20 * time.Millisecond, // an empty poll 20 ms after the pack
	})
	c.waitAll(t, 100, 20*time.Second)
	time.Sleep(200 * time.Millisecond) // empty polls
	start := time.Now()
	appendEvents(t, s, "queue-a", 1, 1)
	c.waitAll(t, 101, 20*time.Second)
	c.mu.Lock()
	d := c.received[101].Sub(start)
	c.mu.Unlock()
	if d >= 150*time.Millisecond {
		t.Errorf("the first event after a quiet log left after %s, want about the 1 ms Linger, not the 200 ms of the last pack", d)
	}
}
