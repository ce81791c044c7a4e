package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
)

// Packs built by SQL in the relay and by EncodePack decode to the events the
// store returns, field for field.
func TestPackMatchesStore(t *testing.T) {
	s := openStore(t)
	appendEvents(t, s, "queue-a", 5, 2)
	_, err := s.Append(context.Background(), eventstore.AppendRequest{
		Metadata: eventstore.Metadata{Subject: "alice", RequestID: "req-9", CorrelationID: "c-1", CausationID: "c-0"},
		Streams: []eventstore.StreamAppend{{StreamID: "queue-b", ExpectedVersion: eventstore.NoStream,
			Events: []eventstore.NewEvent{{Type: "Other", SchemaVersion: 2, Data: json.RawMessage(`{"s":"é\"\\u0001","a":[1,2.5,null]}`)}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Metadata the store keeps with escapes, and a stream named in
	// several scripts: the relay's query carries both as they are.
	_, err = s.Append(context.Background(), eventstore.AppendRequest{
		Metadata: eventstore.Metadata{Subject: "bob \"the <admin>\"\n\u2028", RequestID: "Ω-7", CausationID: "c\\0"},
		Streams: []eventstore.StreamAppend{{StreamID: "queue-zürich-東京-🚀", ExpectedVersion: eventstore.NoStream,
			Events: []eventstore.NewEvent{{Type: "Empty", SchemaVersion: 1, Data: json.RawMessage(`{}`)}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []eventstore.Event
	if err := s.ReadAll(context.Background(), 0, func(e eventstore.Event) error { want = append(want, e); return nil }); err != nil {
		t.Fatal(err)
	}

	bus := newInprocBus(t)
	c := collect(t, bus, "test")
	r, err := relay.New(s, bus, relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	runRelay(t, r)
	c.waitAll(t, s.Head(), 10*time.Second)

	encoded, err := relay.EncodePack(want)
	if err != nil {
		t.Fatal(err)
	}
	fromGo, err := relay.DecodePack(encoded)
	if err != nil {
		t.Fatal(err)
	}
	if got := encoded.UUID; got != "pack-1-7" {
		t.Errorf("pack uuid %q, want pack-1-7", got)
	}
	for _, k := range []struct{ key, want string }{
		{relay.MetaPosition, "7"}, {relay.MetaFirstPosition, "1"}, {relay.MetaStream, "queue-zürich-東京-🚀"},
		{relay.MetaVersion, "1"}, {relay.MetaType, "Empty"}, {relay.MetaCount, "7"}, {relay.MetaFormat, relay.PackFormat},
	} {
		if got := encoded.Metadata.Get(k.key); got != k.want {
			t.Errorf("metadata %s = %q, want %q", k.key, got, k.want)
		}
	}
	for i, w := range want {
		fromSQL := c.events[w.Position]
		for name, got := range map[string]eventstore.Event{"relay (SQL)": fromSQL, "EncodePack": fromGo[i]} {
			if !sameEvent(got, w) {
				t.Errorf("%s position %d:\n got %+v\nwant %+v", name, w.Position, got, w)
			}
		}
	}
}

func sameEvent(a, b eventstore.Event) bool {
	var da, db bytes.Buffer
	if json.Compact(&da, a.Data) != nil || json.Compact(&db, b.Data) != nil {
		return false
	}
	return a.Position == b.Position && a.StreamID == b.StreamID && a.Version == b.Version &&
		a.Type == b.Type && a.SchemaVersion == b.SchemaVersion && bytes.Equal(da.Bytes(), db.Bytes()) &&
		a.Metadata == b.Metadata && a.RecordedAt.Equal(b.RecordedAt) && a.Hash == b.Hash && a.PrevHash == b.PrevHash
}

func TestDecodePackRejects(t *testing.T) {
	ev := func(p int64) eventstore.Event {
		return eventstore.Event{Position: p, StreamID: "s", Version: p, Type: "T", SchemaVersion: 1, Data: json.RawMessage(`{}`), RecordedAt: time.UnixMilli(1)}
	}
	if _, err := relay.EncodePack([]eventstore.Event{ev(1), ev(3)}); !errors.Is(err, relay.ErrInvalidPack) {
		t.Errorf("EncodePack with a gap: %v, want ErrInvalidPack", err)
	}
	for _, format := range []struct {
		name   string
		encode func([]eventstore.Event) (*message.Message, error)
		// broken is a payload cut short; shifted holds 4 and 7.
		broken, shifted func([]byte) []byte
	}{
		{"binary", relay.EncodePack,
			func(p []byte) []byte { return p[:len(p)-1] },
			func(p []byte) []byte { return slices.Concat(p[:1], []byte{7}, p[2:]) }},
		{"json", relay.EncodeJSONPack,
			func([]byte) []byte { return []byte(`[{"position":4}`) },
			func(p []byte) []byte { return bytes.Replace(p, []byte(`"position":5`), []byte(`"position":7`), 1) }},
	} {
		msg, err := format.encode([]eventstore.Event{ev(4), ev(5)})
		if err != nil {
			t.Fatal(err)
		}
		lying := msg.Copy()
		lying.Metadata.Set(relay.MetaPosition, "6")
		foreign := msg.Copy()
		foreign.Metadata.Set(relay.MetaFormat, "")
		broken := msg.Copy()
		broken.Payload = format.broken(msg.Payload)
		shifted := msg.Copy()
		shifted.Payload = format.shifted(msg.Payload)
		for name, m := range map[string]*message.Message{"lying": lying, "foreign": foreign, "broken": broken, "shifted": shifted} {
			if _, err := relay.DecodePack(m); !errors.Is(err, relay.ErrInvalidPack) {
				t.Errorf("%s %s pack: %v, want ErrInvalidPack", format.name, name, err)
			}
		}
		if evs, err := relay.DecodePack(msg); err != nil || len(evs) != 2 || evs[1].Position != 5 {
			t.Errorf("good %s pack: %v %v", format.name, evs, err)
		}
	}
}

// (c) A subscriber sees every position once, in order.
func TestRelayDeliversInOrder(t *testing.T) {
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	r, err := relay.New(s, bus, relay.Config{MaxPackEvents: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	appendEvents(t, s, "queue-a", 700, 7) // before the relay starts
	runRelay(t, r)
	for i := range 30 { // while it runs
		appendEvents(t, s, "queue-"+string(rune('b'+i%3)), 10, 3)
	}
	c.waitAll(t, s.Head(), 20*time.Second)
	if repeats := c.checkOrder(t, s.Head()); repeats != 0 {
		t.Errorf("%d positions arrived twice without any restart", repeats)
	}
	// The relay records a pack after the subscriber acked it.
	for deadline := time.Now().Add(5 * time.Second); r.Lag() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	st := r.Stats()
	if st.RelayedPosition != s.Head() || st.Events != uint64(s.Head()) || r.Lag() != 0 {
		t.Errorf("stats %+v lag %d, want everything up to %d relayed once", st, r.Lag(), s.Head())
	}
	if st.Packs >= st.Events {
		t.Errorf("%d packs for %d events: nothing was packed", st.Packs, st.Events)
	}
}

// (d) A relay stopped mid-stream resumes from its offset: nothing missing.
func TestRelayResumesAfterRestart(t *testing.T) {
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	appendEvents(t, s, "queue-a", 3000, 50)

	r1, err := relay.New(s, bus, relay.Config{MaxPackEvents: 16})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, r1)
	deadline := time.Now().Add(20 * time.Second)
	for c.count() < 500 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	stoppedAt := r1.Position()
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if stoppedAt >= s.Head() {
		t.Fatalf("relay finished (%d of %d) before it was stopped; the test proves nothing", stoppedAt, s.Head())
	}
	appendEvents(t, s, "queue-b", 500, 25)

	r2, err := relay.New(s, bus, relay.Config{MaxPackEvents: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	// The stored offset may lag the last publish by the one pack whose
	// ack was in flight at the stop.
	if got := r2.Position(); got > stoppedAt || got < stoppedAt-16 {
		t.Errorf("restarted relay starts at %d, want the stored offset, %d or at most one pack (16) before", got, stoppedAt)
	}
	runRelay(t, r2)
	c.waitAll(t, s.Head(), 20*time.Second)
	repeats := c.checkOrder(t, s.Head())
	if repeats > 16 {
		t.Errorf("%d positions repeated; a restart may repeat at most one pack (16)", repeats)
	}
}

// (b) Under steady concurrent appends the relay keeps up, and appends are
// not slowed much by it.
func TestRelayKeepsUpUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	r := startRelay(t, s, bus, relay.Config{})

	// Eight appenders at full speed while the relay runs: every event must
	// reach the bus once, in order, and the relay must be at the head soon
	// after the appends stop. How much the relay costs the appenders is a
	// speed figure, so it is BenchmarkAppendsWithRelay's, not an assertion
	// here.
	rate := appendFlat(t, s, 8, 2*time.Second)
	stopped := time.Now()
	c.waitAll(t, s.Head(), 30*time.Second)
	t.Logf("%.0f appends/s with the relay running; relay at head %s after the appends stopped",
		rate, time.Since(stopped).Round(time.Millisecond))
	// The relay records a pack after the subscriber acked it.
	for deadline := time.Now().Add(5 * time.Second); r.Lag() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	st := r.Stats()
	if st.RelayedPosition != s.Head() || st.Events != uint64(s.Head()) || st.PublishErrors != 0 || st.ReadErrors != 0 {
		t.Errorf("stats %+v, want every one of the %d events relayed without errors", st, s.Head())
	}
	c.checkOrder(t, s.Head())
}

// appendFlat appends from `writers` goroutines, each to its own stream, for
// d and returns the rate.
func appendFlat(t testing.TB, s *eventstore.Store, writers int, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := "queue-" + string(rune('a'+w))
			for ctx.Err() == nil {
				if _, err := appendOne(context.Background(), s, stream); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// BenchmarkAppendsWithRelay measures what the relay costs the log's
// appenders: eight appenders in 400 ms phases alternately without and with
// the relay running (so a noisy neighbour hits both alike), one pair per
// iteration. It reports both rates and their ratio.
func BenchmarkAppendsWithRelay(b *testing.B) {
	s := openStore(b)
	bus := newInprocBus(b)
	c := collect(b, bus, "projection")
	r, err := relay.New(s, bus, relay.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	const phase = 400 * time.Millisecond
	var without, with float64
	b.ResetTimer()
	for range b.N {
		without += appendFlat(b, s, 8, phase)
		stop := runRelay(b, r)
		with += appendFlat(b, s, 8, phase)
		c.waitAll(b, s.Head(), 30*time.Second)
		stop()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(without/n, "appends/s-without-relay")
	b.ReportMetric(with/n, "appends/s-with-relay")
	b.ReportMetric(with/without, "with/without")
	b.ReportMetric(0, "ns/op")
}

// While the relay catches up it reads pack after pack, so a read snapshot of
// the log is always open and SQLite's own checkpoints can never copy the
// whole WAL: without the checkpoints the relay asks for between packs, the
// WAL file grows by everything appended meanwhile (it reached 320 MB in 20 s
// of the SSE benchmark). Here the consumer is slower than the appenders for
// the whole run, and the WAL must stay a small fraction of what was written.
func TestRelayKeepsTheWALBoundedWhileBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	s := openStore(t)
	bus := newInprocBus(t)
	// While the appenders run, the projection takes 50 ms per pack of at
	// most 100 events: the relay cannot pass 2,000 events/s, well below
	// what eight appenders of 50-event batches write even under -race on a
	// busy machine, so it falls behind by design, not by luck (the test
	// still checks that it did). Once they are done it drains at full speed.
	var writing atomic.Bool
	writing.Store(true)
	c := collectSlowly(t, bus, "projection", func() time.Duration {
		if writing.Load() {
			return 50 * time.Millisecond
		}
		return 0
	})
	r := startRelay(t, s, bus, relay.Config{MaxPackEvents: 100})

	// About 1 KiB per event; 80k events put ~100 MiB through the WAL.
	pad := strings.Repeat("x", 1000)
	const writers, perWriter, batch = 8, 10000, 50
	var maxLag atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("queue-%d", w)
			for i := 0; i < perWriter; i += batch {
				evs := make([]eventstore.NewEvent, batch)
				for j := range evs {
					evs[j] = eventstore.NewEvent{Type: "TestHappened", SchemaVersion: 1,
						Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, i+j, pad))}
				}
				if _, err := s.Append(context.Background(), eventstore.AppendRequest{Streams: []eventstore.StreamAppend{
					{StreamID: stream, ExpectedVersion: eventstore.AnyVersion, Events: evs}}}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				if lag := r.Lag(); lag > maxLag.Load() {
					maxLag.Store(lag)
				}
			}
		})
	}
	wg.Wait()
	writing.Store(false)
	wal, err := os.Stat(s.Path() + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	c.waitAll(t, s.Head(), time.Minute)
	c.checkOrder(t, s.Head())
	st := r.Stats()
	t.Logf("%d events; relay lag up to %d; %d checkpoints asked for; WAL file %.1f MiB, log file %.1f MiB",
		s.Head(), maxLag.Load(), st.Checkpoints, float64(wal.Size())/(1<<20), float64(db.Size())/(1<<20))
	if maxLag.Load() < 10000 {
		t.Fatalf("the relay was never far behind (lag up to %d): the test did not test anything", maxLag.Load())
	}
	if st.Checkpoints == 0 {
		t.Errorf("the relay asked for no checkpoint while it was %d events behind", maxLag.Load())
	}
	// The log file holds what was checkpointed; the WAL high-water mark must
	// stay well below it (SQLite's own limit is 64 MiB, reached only after
	// a checkpoint that could copy everything).
	if wal.Size() > 32<<20 || wal.Size() > db.Size()/2 {
		t.Errorf("WAL file %.1f MiB for a %.1f MiB log: it grew while the relay was behind",
			float64(wal.Size())/(1<<20), float64(db.Size())/(1<<20))
	}
}

// A relay that keeps up asks for a WAL checkpoint after every 1,024 events
// or so, and none for a quieter log.
func TestRelayAsksForCheckpointsWhileKeepingUp(t *testing.T) {
	s := openStore(t)
	bus := newInprocBus(t)
	c := collect(t, bus, "projection")
	r := startRelay(t, s, bus, relay.Config{})
	trickle := func(appends int) {
		for range appends {
			appendEvents(t, s, "queue-a", 10, 10)
			c.waitAll(t, s.Head(), 20*time.Second) // the relay catches up between appends
		}
	}
	trickle(50) // 500 events
	if n := r.Stats().Checkpoints; n != 0 {
		t.Fatalf("%d checkpoints asked for after 500 events", n)
	}
	trickle(300) // 3,000 more
	if n := r.Stats().Checkpoints; n == 0 || n > 3 {
		t.Fatalf("%d checkpoints asked for after 3,500 events relayed while keeping up, want 1 to 3", n)
	}
}
