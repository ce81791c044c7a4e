package relay_test

import (
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore/relay"
)

func TestPacerLingersOnlyWhenBusy(t *testing.T) {
	s := openStore(t)
	def := relay.WithDefaults(relay.Config{}, s)
	if def.Linger != 2*time.Millisecond || def.BusyRate != 5000 || def.BusyInterval != 20*time.Millisecond {
		t.Fatalf("defaults Linger %s, BusyRate %g, BusyInterval %s; want 2ms, 5000/s, 20ms", def.Linger, def.BusyRate, def.BusyInterval)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

	var p relay.Pacer
	if got := p.Linger(def, ms(0)); got != 2*time.Millisecond {
		t.Errorf("before any pack: linger %s, want Linger", got)
	}
	p.Packed(500, ms(0)) // the head when the first pack came
	p.Packed(510, ms(5)) // a short window: no rate yet
	if got := p.Linger(def, ms(6)); got != 2*time.Millisecond {
		t.Errorf("before 100 ms were measured: linger %s, want Linger", got)
	}
	p.Packed(700, ms(100)) // 200 events in 100 ms: 2,000/s
	if got := p.Linger(def, ms(101)); got != 2*time.Millisecond {
		t.Errorf("at 2,000 events/s: linger %s, want Linger", got)
	}
	p.Packed(1100, ms(150)) // a burst within a window: still 2,000/s
	if got := p.Linger(def, ms(151)); got != 2*time.Millisecond {
		t.Errorf("at 2,000 events/s, a burst: linger %s, want Linger", got)
	}
	p.Packed(1300, ms(200)) // 600 events in 100 ms: 6,000/s
	if got := p.Linger(def, ms(204)); got != 16*time.Millisecond {
		t.Errorf("at 6,000 events/s, 4 ms after the pack: linger %s, want the 16 ms left of BusyInterval", got)
	}
	if got := p.Linger(def, ms(218)); got != 2*time.Millisecond {
		t.Errorf("at 6,000 events/s, 18 ms after the pack: linger %s, want at least Linger", got)
	}
	if got := p.Linger(def, ms(245)); got != 2*time.Millisecond {
		t.Errorf("at 6,000 events/s, a pack that took 45 ms to handle: linger %s, want Linger", got)
	}
	if got := p.Linger(relay.WithDefaults(relay.Config{BusyRate: -1}, s), ms(204)); got != 2*time.Millisecond {
		t.Errorf("pacing off: linger %s, want Linger", got)
	}
	if got := p.Linger(relay.WithDefaults(relay.Config{Linger: -1}, s), ms(204)); got != 0 {
		t.Errorf("no linger: linger %s, want 0", got)
	}
	p.Reset()
	if got := p.Linger(def, ms(204)); got != 2*time.Millisecond {
		t.Errorf("after the log went quiet: linger %s, want Linger", got)
	}
	if err := (relay.Config{BusyInterval: -time.Second}).Validate(); err == nil {
		t.Error("a negative BusyInterval was accepted")
	}
}

// Under a load above BusyRate the relay reads at most every BusyInterval,
// so the events leave in fewer, larger packs; once the log goes quiet, the
// next event leaves after Linger.
func TestRelayPacesItsReadsUnderLoad(t *testing.T) {
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	r := startRelay(t, s, bus, relay.Config{
		Linger: time.Millisecond, BusyRate: 100, BusyInterval: 250 * time.Millisecond,
		MaxIdleWait: 50 * time.Millisecond, // an empty poll soon after the load stops
	})
	// Up to 400 events/s for 1.5 s, one append at a time.
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); {
		appendEvents(t, s, "queue-a", 1, 1)
		time.Sleep(2500 * time.Microsecond)
	}
	c.waitAll(t, s.Head(), 20*time.Second)
	st := r.Stats()
	// Unpaced, a pack leaves a Linger (1 ms) after each commit: one pack
	// per append. Paced, one per 250 ms once the first 100 ms have
	// measured the rate.
	if st.Packs > st.Events/5 {
		t.Errorf("%d events left in %d packs, want at most a fifth as many packs (one read per 250 ms)", st.Events, st.Packs)
	}

	time.Sleep(300 * time.Millisecond) // empty polls: the log is quiet
	start := time.Now()
	appendEvents(t, s, "queue-a", 1, 1)
	head := s.Head()
	c.waitAll(t, head, 20*time.Second)
	c.mu.Lock()
	d := c.received[head].Sub(start)
	c.mu.Unlock()
	if d >= 150*time.Millisecond {
		t.Errorf("the first event after a quiet log left after %s, want about the 1 ms Linger, not the 250 ms interval", d)
	}
}

// Catching up a backlog is not load: the relay hands packs over fast while
// the log itself is still, so it does not pace the next event.
func TestRelayDoesNotPaceWhileCatchingUp(t *testing.T) {
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	appendEvents(t, s, "queue-a", 10010, 500) // a backlog before the relay starts; its last pack is not full
	startRelay(t, s, bus, relay.Config{
		MaxPackEvents: 50, // 200 packs to catch up: well over the 100 ms the rate is measured over
		Linger:        time.Millisecond, BusyRate: 1000, BusyInterval: 300 * time.Millisecond,
		MaxIdleWait: time.Hour,
	})
	c.waitAll(t, 10010, 30*time.Second)
	start := time.Now()
	appendEvents(t, s, "queue-a", 1, 1)
	c.waitAll(t, 10011, 20*time.Second)
	c.mu.Lock()
	d := c.received[10011].Sub(start)
	c.mu.Unlock()
	if d >= 150*time.Millisecond {
		t.Errorf("the first event after a caught-up backlog left after %s, want about the 1 ms Linger: the log grew by 1 event, not 1,000/s", d)
	}
}
