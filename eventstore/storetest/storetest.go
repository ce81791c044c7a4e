package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore"
)

// Opener opens (creating if needed) a store on the file at path. The suite
// closes every store it opens; an opener may also register its own cleanup.
type Opener func(t *testing.T, path string) *eventstore.Store

// Run runs the contract suite against stores made by open.
func Run(t *testing.T, open func(t *testing.T, path string) *eventstore.Store) {
	o := Opener(open)
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"RoundTrip", testRoundTrip},
		{"Conflict", testConflict},
		{"AnyVersionAndNoStream", testAnyVersionAndNoStream},
		{"AtomicMultiStream", testAtomicMultiStream},
		{"LargeRequest", testLargeRequest},
		{"PipelinedSubmits", testPipelinedSubmits},
		{"ConcurrentAppendersGapFree", testConcurrentAppenders},
		{"Reads", testReads},
		{"Paging", testPaging},
		{"ReadPositions", testReadPositions},
		{"ReadPayloads", testReadPayloads},
		{"ReadStopsOnCallbackError", testReadStops},
		{"ReopenKeepsHeads", testReopen},
		{"VerifyIntact", testVerifyIntact},
		{"InvalidRequests", testInvalid},
		{"Watch", testWatch},
		{"CloseDrains", testCloseDrains},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, o) })
	}
}

func (o Opener) fresh(t *testing.T) (*eventstore.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	return o.at(t, path), path
}

func (o Opener) at(t *testing.T, path string) *eventstore.Store {
	t.Helper()
	s := o(t, path)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func ev(typ string, data string) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, SchemaVersion: 1, Data: json.RawMessage(data)}
}

func one(stream string, expected int64, events ...eventstore.NewEvent) eventstore.AppendRequest {
	return eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamID: stream, ExpectedVersion: expected, Events: events}}}
}

func mustAppend(t *testing.T, s *eventstore.Store, req eventstore.AppendRequest) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctx(t), req)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

func readAll(t *testing.T, s *eventstore.Store, after int64) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	if err := s.ReadAll(ctx(t), after, func(e eventstore.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	return out
}

func scan(t *testing.T, s *eventstore.Store, f eventstore.Filter) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	if err := s.Scan(ctx(t), f, func(e eventstore.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Scan(%+v): %v", f, err)
	}
	return out
}

func readStream(t *testing.T, s *eventstore.Store, stream string, after int64) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	if err := s.ReadStream(ctx(t), stream, after, func(e eventstore.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("ReadStream(%s): %v", stream, err)
	}
	return out
}

// diffEvent names the first field in which got differs from want.
func diffEvent(got, want eventstore.Event) string {
	switch {
	case got.Position != want.Position:
		return fmt.Sprintf("position %d, want %d", got.Position, want.Position)
	case got.StreamID != want.StreamID:
		return fmt.Sprintf("stream %q, want %q", got.StreamID, want.StreamID)
	case got.Version != want.Version:
		return fmt.Sprintf("version %d, want %d", got.Version, want.Version)
	case got.Type != want.Type:
		return fmt.Sprintf("type %q, want %q", got.Type, want.Type)
	case got.SchemaVersion != want.SchemaVersion:
		return fmt.Sprintf("schema version %d, want %d", got.SchemaVersion, want.SchemaVersion)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("data %s, want %s", got.Data, want.Data)
	case got.Metadata != want.Metadata:
		return fmt.Sprintf("metadata %+v, want %+v", got.Metadata, want.Metadata)
	case !got.RecordedAt.Equal(want.RecordedAt):
		return fmt.Sprintf("recorded at %s, want %s", got.RecordedAt, want.RecordedAt)
	case got.Hash != want.Hash:
		return fmt.Sprintf("hash %s, want %s", got.Hash, want.Hash)
	case got.PrevHash != want.PrevHash:
		return fmt.Sprintf("prev hash %s, want %s", got.PrevHash, want.PrevHash)
	}
	return ""
}

func sameEvents(t *testing.T, what string, got, want []eventstore.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events %v, want %d %v", what, len(got), positions(got), len(want), positions(want))
	}
	for i := range got {
		if d := diffEvent(got[i], want[i]); d != "" {
			t.Fatalf("%s: event %d: %s", what, i, d)
		}
	}
}

func positions(es []eventstore.Event) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Position
	}
	return out
}

func testRoundTrip(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	meta := eventstore.Metadata{Subject: "alice", RequestID: "req-1", CorrelationID: "corr-1", CausationID: "cause-1"}
	// Whitespace and key order must survive: the hash covers the bytes.
	data1 := `{"b": 2,  "a":1}`
	data2 := `{"s":"héllo \u00e9","n":[1,2,3]}`
	res := mustAppend(t, s, eventstore.AppendRequest{Metadata: meta, Streams: []eventstore.StreamAppend{{
		StreamID: "queue-a", ExpectedVersion: eventstore.NoStream,
		Events: []eventstore.NewEvent{ev("Created", data1), {Type: "Published", SchemaVersion: 3, Data: json.RawMessage(data2)}},
	}}})

	if got := len(res.Events); got != 2 {
		t.Fatalf("result has %d events, want 2", got)
	}
	e1, e2 := res.Events[0], res.Events[1]
	if e1.Position != 1 || e2.Position != 2 || e1.Version != 1 || e2.Version != 2 {
		t.Fatalf("positions/versions %d/%d, %d/%d, want 1/1, 2/2", e1.Position, e1.Version, e2.Position, e2.Version)
	}
	if got, want := res.LastPosition(), int64(2); got != want {
		t.Errorf("LastPosition = %d, want %d", got, want)
	}
	if string(e1.Data) != data1 || string(e2.Data) != data2 || e2.SchemaVersion != 3 || e2.Type != "Published" {
		t.Errorf("result events do not carry what was appended: %+v %+v", e1, e2)
	}
	if e1.Metadata != meta {
		t.Errorf("metadata %+v, want %+v", e1.Metadata, meta)
	}
	if e1.PrevHash != eventstore.GenesisHash || e2.PrevHash != e1.Hash || len(e1.Hash) != 64 || e1.Hash == e2.Hash {
		t.Errorf("hash chain: prev1=%s hash1=%s prev2=%s hash2=%s", e1.PrevHash, e1.Hash, e2.PrevHash, e2.Hash)
	}
	if e1.RecordedAt.Location() != time.UTC || !e1.RecordedAt.Equal(e1.RecordedAt.Truncate(time.Millisecond)) {
		t.Errorf("recorded at %v: want UTC with millisecond precision", e1.RecordedAt)
	}
	if d := time.Since(e1.RecordedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("recorded at %v is not the store's current time", e1.RecordedAt)
	}
	if got, want := s.Head(), int64(2); got != want {
		t.Errorf("Head = %d, want %d", got, want)
	}
	if got, want := s.HeadHash(), e2.Hash; got != want {
		t.Errorf("HeadHash = %s, want %s", got, want)
	}
	if got, want := s.StreamVersion("queue-a"), int64(2); got != want {
		t.Errorf("StreamVersion = %d, want %d", got, want)
	}
	if got := s.StreamVersion("queue-none"); got != 0 {
		t.Errorf("StreamVersion of an unknown stream = %d, want 0", got)
	}
	sameEvents(t, "ReadStream", readStream(t, s, "queue-a", 0), res.Events)
	sameEvents(t, "ReadStream after 1", readStream(t, s, "queue-a", 1), res.Events[1:])
	sameEvents(t, "ReadAll", readAll(t, s, 0), res.Events)
	stored := scan(t, s, eventstore.Filter{})
	sameEvents(t, "Scan", stored, res.Events)
	for _, e := range stored {
		if got := eventstore.HashEvent(e); got != e.Hash {
			t.Errorf("HashEvent(event %d) = %s, stored %s", e.Position, got, e.Hash)
		}
	}
}

func conflictOf(t *testing.T, err error) *eventstore.ConflictError {
	t.Helper()
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v: want a *ConflictError", err)
	}
	if !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("error %v does not match ErrConcurrency", err)
	}
	return ce
}

func testConflict(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	mustAppend(t, s, one("s", eventstore.NoStream, ev("A", `{}`)))
	head, hash := s.Head(), s.HeadHash()

	_, err := s.Append(ctx(t), one("s", eventstore.NoStream, ev("A", `{}`)))
	ce := conflictOf(t, err)
	if ce.StreamID != "s" || ce.ExpectedVersion != 0 || ce.ActualVersion != 1 {
		t.Errorf("conflict %+v, want stream s expected 0 actual 1", *ce)
	}
	if s.Head() != head || s.HeadHash() != hash || s.StreamVersion("s") != 1 {
		t.Errorf("a refused append changed the head: %d %s v%d", s.Head(), s.HeadHash(), s.StreamVersion("s"))
	}
	if res := mustAppend(t, s, one("s", 1, ev("B", `{}`))); res.Events[0].Version != 2 || res.Events[0].Position != 2 {
		t.Errorf("append after the conflict got v%d at %d, want v2 at 2", res.Events[0].Version, res.Events[0].Position)
	}
	_, err = s.Append(ctx(t), one("s", 5, ev("C", `{}`)))
	if ce := conflictOf(t, err); ce.ExpectedVersion != 5 || ce.ActualVersion != 2 {
		t.Errorf("conflict %+v, want expected 5 actual 2", *ce)
	}
	if got := len(readAll(t, s, 0)); got != 2 {
		t.Errorf("log holds %d events, want 2", got)
	}
}

func testAnyVersionAndNoStream(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	for want := int64(1); want <= 3; want++ {
		res := mustAppend(t, s, one("any", eventstore.AnyVersion, ev("A", `{}`)))
		if got := res.Events[0].Version; got != want {
			t.Fatalf("AnyVersion append %d got version %d", want, got)
		}
	}
	_, err := s.Append(ctx(t), one("any", eventstore.NoStream, ev("A", `{}`)))
	if ce := conflictOf(t, err); ce.ActualVersion != 3 {
		t.Errorf("NoStream on a stream at 3: actual %d", ce.ActualVersion)
	}
	if res := mustAppend(t, s, one("new", eventstore.NoStream, ev("A", `{}`))); res.Events[0].Version != 1 {
		t.Errorf("NoStream on a new stream got version %d", res.Events[0].Version)
	}
}

func testAtomicMultiStream(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	mustAppend(t, s, one("a", eventstore.NoStream, ev("A", `{"n":1}`)))
	head := s.Head()

	_, err := s.Append(ctx(t), eventstore.AppendRequest{Streams: []eventstore.StreamAppend{
		{StreamID: "a", ExpectedVersion: 1, Events: []eventstore.NewEvent{ev("A", `{"n":2}`), ev("A", `{"n":3}`)}},
		{StreamID: "b", ExpectedVersion: 3, Events: []eventstore.NewEvent{ev("B", `{}`)}},
	}})
	if ce := conflictOf(t, err); ce.StreamID != "b" || ce.ActualVersion != 0 {
		t.Errorf("conflict %+v, want stream b actual 0", *ce)
	}
	if s.Head() != head || s.StreamVersion("a") != 1 || s.StreamVersion("b") != 0 {
		t.Fatalf("part of a refused request was applied: head %d a=v%d b=v%d", s.Head(), s.StreamVersion("a"), s.StreamVersion("b"))
	}
	if got := len(readStream(t, s, "a", 0)); got != 1 {
		t.Fatalf("stream a has %d events after a refused request, want 1", got)
	}

	res := mustAppend(t, s, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{
		{StreamID: "a", ExpectedVersion: 1, Events: []eventstore.NewEvent{ev("A", `{"n":2}`)}},
		{StreamID: "b", ExpectedVersion: eventstore.NoStream, Events: []eventstore.NewEvent{ev("B", `{}`), ev("B", `{}`)}},
	}})
	want := []struct {
		stream  string
		version int64
	}{{"a", 2}, {"b", 1}, {"b", 2}}
	for i, w := range want {
		e := res.Events[i]
		if e.StreamID != w.stream || e.Version != w.version || e.Position != head+int64(i)+1 {
			t.Errorf("event %d: %s v%d at %d, want %s v%d at %d", i, e.StreamID, e.Version, e.Position, w.stream, w.version, head+int64(i)+1)
		}
		if !e.RecordedAt.Equal(res.Events[0].RecordedAt) {
			t.Errorf("events of one request have different times: %v vs %v", e.RecordedAt, res.Events[0].RecordedAt)
		}
	}
}

func testLargeRequest(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	mustAppend(t, s, one("big", eventstore.NoStream, ev("A", `{}`)))
	var bigEvents, smallEvents []eventstore.NewEvent
	for i := range 37 {
		bigEvents = append(bigEvents, ev("A", fmt.Sprintf(`{"i":%d}`, i)))
	}
	for i := range 3 {
		smallEvents = append(smallEvents, ev("B", fmt.Sprintf(`{"j":%d}`, i)))
	}
	res := mustAppend(t, s, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{
		{StreamID: "big", ExpectedVersion: 1, Events: bigEvents},
		{StreamID: "small", ExpectedVersion: eventstore.NoStream, Events: smallEvents},
	}})
	if got := len(res.Events); got != 40 {
		t.Fatalf("result has %d events, want 40", got)
	}
	for i, e := range res.Events {
		wantStream, wantVersion := "big", int64(i)+2
		if i >= 37 {
			wantStream, wantVersion = "small", int64(i-37)+1
		}
		if e.Position != int64(i)+2 || e.StreamID != wantStream || e.Version != wantVersion {
			t.Fatalf("event %d: %s v%d at %d, want %s v%d at %d", i, e.StreamID, e.Version, e.Position, wantStream, wantVersion, i+2)
		}
	}
	sameEvents(t, "ReadAll after a 40-event request", readAll(t, s, 1), res.Events)
	if rep, err := s.Verify(ctx(t), 0, 0); err != nil || !rep.OK || rep.Checked != 41 {
		t.Errorf("Verify: %+v, %v", rep, err)
	}
}

func testPipelinedSubmits(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	const n = 20
	var pending []*eventstore.Pending
	var stale *eventstore.Pending
	for i := range n {
		pending = append(pending, s.Submit(one("p", int64(i), ev("P", fmt.Sprintf(`{"i":%d}`, i)))))
		if i == 9 {
			// Expected 3 is stale once the ten requests before it apply.
			stale = s.Submit(one("p", 3, ev("P", `{"stale":true}`)))
		}
	}
	var last int64
	for i, p := range pending {
		res, err := p.Wait(ctx(t))
		if err != nil {
			t.Fatalf("pipelined request %d: %v", i, err)
		}
		e := res.Events[0]
		if e.Version != int64(i)+1 || e.Position <= last {
			t.Fatalf("request %d got v%d at %d (previous position %d)", i, e.Version, e.Position, last)
		}
		last = e.Position
	}
	_, err := stale.Wait(ctx(t))
	if ce := conflictOf(t, err); ce.ExpectedVersion != 3 || ce.ActualVersion != 10 {
		t.Errorf("stale pipelined request: %+v, want expected 3 actual 10", *ce)
	}
	if got := s.StreamVersion("p"); got != n {
		t.Errorf("StreamVersion = %d, want %d", got, n)
	}
	for i, e := range readStream(t, s, "p", 0) {
		if want := fmt.Sprintf(`{"i":%d}`, i); string(e.Data) != want {
			t.Errorf("version %d holds %s, want %s", e.Version, e.Data, want)
		}
	}
}

func testConcurrentAppenders(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	goroutines, each := 64, 50
	if testing.Short() {
		goroutines, each = 16, 10
	}
	type got struct {
		pos     int64
		stream  string
		version int64
		hash    string
	}
	results := make([][]got, goroutines)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			own := fmt.Sprintf("c-%d", g)
			for i := range each {
				req := one(own, int64(i), ev("C", fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)))
				if i%5 == 0 {
					req.Streams = append(req.Streams, eventstore.StreamAppend{
						StreamID: "c-shared", ExpectedVersion: eventstore.AnyVersion,
						Events: []eventstore.NewEvent{ev("S", `{}`)},
					})
				}
				res, err := s.Append(ctx(t), req)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d append %d: %w", g, i, err)
					return
				}
				for _, e := range res.Events {
					results[g] = append(results[g], got{e.Position, e.StreamID, e.Version, e.Hash})
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	log := readAll(t, s, 0)
	total := 0
	for g := range results {
		total += len(results[g])
	}
	if len(log) != total || s.Head() != int64(total) {
		t.Fatalf("log has %d events and head %d; appenders got %d", len(log), s.Head(), total)
	}
	for i, e := range log {
		if e.Position != int64(i)+1 {
			t.Fatalf("log position %d at index %d: not gap-free", e.Position, i)
		}
	}
	for g, rs := range results {
		for i, r := range rs {
			e := log[r.pos-1]
			if e.StreamID != r.stream || e.Version != r.version || e.Hash != r.hash {
				t.Fatalf("goroutine %d result %d: got %s v%d at %d, log has %s v%d", g, i, r.stream, r.version, r.pos, e.StreamID, e.Version)
			}
		}
	}
	// Versions of every stream are 1..n in position order.
	next := map[string]int64{}
	for _, e := range log {
		next[e.StreamID]++
		if e.Version != next[e.StreamID] {
			t.Fatalf("stream %s: version %d at position %d, want %d", e.StreamID, e.Version, e.Position, next[e.StreamID])
		}
	}
	if got, want := next["c-shared"], int64(goroutines*((each+4)/5)); got != want {
		t.Errorf("shared stream has %d events, want %d", got, want)
	}
	rep, err := s.Verify(ctx(t), 0, 0)
	if err != nil || !rep.OK || rep.Checked != int64(total) {
		t.Fatalf("Verify after concurrent appends: %+v, %v", rep, err)
	}
}

// buildLog appends 30 events over two streams and two types, pausing now
// and then so that several distinct recorded times exist.
func buildLog(t *testing.T, s *eventstore.Store) []eventstore.Event {
	t.Helper()
	var log []eventstore.Event
	for i := range 30 {
		stream := []string{"r1", "r2"}[i%2]
		typ := []string{"T1", "T2", "T2"}[i%3]
		res := mustAppend(t, s, one(stream, eventstore.AnyVersion, ev(typ, fmt.Sprintf(`{"i":%d}`, i))))
		log = append(log, res.Events...)
		if i%6 == 5 {
			time.Sleep(3 * time.Millisecond)
		}
	}
	return log
}

func filter(log []eventstore.Event, keep func(eventstore.Event) bool) []eventstore.Event {
	var out []eventstore.Event
	for _, e := range log {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func testReads(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	log := buildLog(t, s)
	mid := log[15].RecordedAt
	late := log[24].RecordedAt

	cases := []struct {
		name string
		f    eventstore.Filter
		keep func(eventstore.Event) bool
	}{
		{"all", eventstore.Filter{}, func(eventstore.Event) bool { return true }},
		{"stream", eventstore.Filter{Stream: "r1"}, func(e eventstore.Event) bool { return e.StreamID == "r1" }},
		{"type", eventstore.Filter{Type: "T2"}, func(e eventstore.Event) bool { return e.Type == "T2" }},
		{"after", eventstore.Filter{After: 7}, func(e eventstore.Event) bool { return e.Position > 7 }},
		{"after until", eventstore.Filter{After: 5, Until: 20}, func(e eventstore.Event) bool { return e.Position > 5 && e.Position <= 20 }},
		{"stream type after", eventstore.Filter{Stream: "r2", Type: "T1", After: 3},
			func(e eventstore.Event) bool { return e.StreamID == "r2" && e.Type == "T1" && e.Position > 3 }},
		{"stream after until", eventstore.Filter{Stream: "r1", After: 10, Until: 25},
			func(e eventstore.Event) bool { return e.StreamID == "r1" && e.Position > 10 && e.Position <= 25 }},
		{"stream after its last event", eventstore.Filter{Stream: "r1", After: 29}, func(eventstore.Event) bool { return false }},
		{"stream since", eventstore.Filter{Stream: "r2", Since: mid},
			func(e eventstore.Event) bool { return e.StreamID == "r2" && !e.RecordedAt.Before(mid) }},
		{"since", eventstore.Filter{Since: mid}, func(e eventstore.Event) bool { return !e.RecordedAt.Before(mid) }},
		{"since between milliseconds", eventstore.Filter{Since: mid.Add(500 * time.Microsecond)},
			func(e eventstore.Event) bool { return e.RecordedAt.After(mid) }},
		{"before", eventstore.Filter{Before: mid}, func(e eventstore.Event) bool { return e.RecordedAt.Before(mid) }},
		{"since before type", eventstore.Filter{Since: mid, Before: late, Type: "T1"},
			func(e eventstore.Event) bool {
				return !e.RecordedAt.Before(mid) && e.RecordedAt.Before(late) && e.Type == "T1"
			}},
	}
	for _, c := range cases {
		want := filter(log, c.keep)
		sameEvents(t, "Scan "+c.name, scan(t, s, c.f), want)
		for _, limit := range []int{1, 4} {
			f := c.f
			f.Limit = limit
			sameEvents(t, fmt.Sprintf("Scan %s limit %d", c.name, limit), scan(t, s, f), want[:min(limit, len(want))])
		}
	}
	if got := scan(t, s, eventstore.Filter{Stream: "nope"}); len(got) != 0 {
		t.Errorf("Scan of an unknown stream returned %d events", len(got))
	}

	sameEvents(t, "ReadStream r2 after 4", readStream(t, s, "r2", 4),
		filter(log, func(e eventstore.Event) bool { return e.StreamID == "r2" && e.Version > 4 }))
	sameEvents(t, "ReadAll after 22", readAll(t, s, 22), log[22:])

	// PositionAt: the last position recorded at or before t.
	for _, e := range log {
		want := int64(0)
		for _, f := range log {
			if !f.RecordedAt.After(e.RecordedAt) {
				want = f.Position
			}
		}
		got, err := s.PositionAt(ctx(t), e.RecordedAt)
		if err != nil || got != want {
			t.Fatalf("PositionAt(%v) = %d, %v; want %d", e.RecordedAt, got, err, want)
		}
	}
	if got, err := s.PositionAt(ctx(t), log[0].RecordedAt.Add(-time.Millisecond)); err != nil || got != 0 {
		t.Errorf("PositionAt before the first event = %d, %v; want 0", got, err)
	}
	if got, err := s.PositionAt(ctx(t), time.Now().Add(time.Hour)); err != nil || got != s.Head() {
		t.Errorf("PositionAt in the future = %d, %v; want head %d", got, err, s.Head())
	}
}

// testPaging reads more events than fit in one page of any reader.
func testPaging(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	var log []eventstore.Event
	for r := range 7 {
		events := make([]eventstore.NewEvent, 100)
		for i := range events {
			events[i] = ev("P", fmt.Sprintf(`{"r":%d,"i":%d}`, r, i))
		}
		req := eventstore.AppendRequest{Streams: []eventstore.StreamAppend{
			{StreamID: "long", ExpectedVersion: int64(r) * 100, Events: events},
			{StreamID: fmt.Sprintf("short-%d", r), ExpectedVersion: eventstore.NoStream, Events: []eventstore.NewEvent{ev("Q", `{}`)}},
		}}
		log = append(log, mustAppend(t, s, req).Events...)
	}
	long := filter(log, func(e eventstore.Event) bool { return e.StreamID == "long" })
	sameEvents(t, "ReadAll", readAll(t, s, 0), log)
	sameEvents(t, "ReadAll after 250", readAll(t, s, 250), log[250:])
	sameEvents(t, "ReadStream", readStream(t, s, "long", 0), long)
	sameEvents(t, "ReadStream after 333", readStream(t, s, "long", 333), long[333:])
	sameEvents(t, "Scan stream after 404", scan(t, s, eventstore.Filter{Stream: "long", After: 404}),
		filter(long, func(e eventstore.Event) bool { return e.Position > 404 }))
	sameEvents(t, "Scan stream after 404 until 650", scan(t, s, eventstore.Filter{Stream: "long", After: 404, Until: 650}),
		filter(long, func(e eventstore.Event) bool { return e.Position > 404 && e.Position <= 650 }))
	sameEvents(t, "Scan limit 300", scan(t, s, eventstore.Filter{After: 10, Limit: 300}), log[10:310])
	sameEvents(t, "Scan type Q", scan(t, s, eventstore.Filter{Type: "Q"}),
		filter(log, func(e eventstore.Event) bool { return e.Type == "Q" }))
}

func testReadPositions(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	log := buildLog(t, s)
	got, err := s.ReadPositions(ctx(t), []int64{9, 2, 99999, 2, 30, 0, -4, 17})
	if err != nil {
		t.Fatalf("ReadPositions: %v", err)
	}
	sameEvents(t, "ReadPositions", got, []eventstore.Event{log[1], log[8], log[16], log[29]})
	if got, err := s.ReadPositions(ctx(t), nil); err != nil || len(got) != 0 {
		t.Errorf("ReadPositions(nil) = %d events, %v", len(got), err)
	}
	many := make([]int64, 0, 1200)
	for p := int64(1200); p > 0; p-- {
		many = append(many, p)
	}
	if got, err := s.ReadPositions(ctx(t), many); err != nil {
		t.Fatalf("ReadPositions of 1200 positions: %v", err)
	} else {
		sameEvents(t, "ReadPositions of 1200 positions", got, log)
	}
}

// testReadPayloads: the events ReadPositions returns, without metadata and
// hashes, for every path (the prepared query of up to 16 positions, a query
// of its own, chunks of 500).
func testReadPayloads(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	log := buildLog(t, s)
	// One more event, with metadata, for the projection to drop.
	req := one("r1", eventstore.AnyVersion, ev("T1", `{"i":30}`))
	req.Metadata = eventstore.Metadata{Subject: "alice", RequestID: "req-31"}
	log = append(log, mustAppend(t, s, req).Events...)
	payloads := func(es ...eventstore.Event) []eventstore.Event {
		out := make([]eventstore.Event, len(es))
		for i, e := range es {
			e.Metadata, e.PrevHash, e.Hash = eventstore.Metadata{}, "", ""
			out[i] = e
		}
		return out
	}
	read := func(what string, ps []int64, want []eventstore.Event) {
		t.Helper()
		got, err := s.ReadPayloads(ctx(t), ps)
		if err != nil {
			t.Fatalf("ReadPayloads %s: %v", what, err)
		}
		sameEvents(t, "ReadPayloads "+what, got, payloads(want...))
	}
	read("of a few, with repeats, unknown and invalid positions", []int64{9, 2, 99999, 2, 31, 0, -4, 17},
		[]eventstore.Event{log[1], log[8], log[16], log[30]})
	read("of none", nil, nil)
	upTo := func(n int64) []int64 {
		ps := make([]int64, 0, n)
		for p := n; p > 0; p-- {
			ps = append(ps, p)
		}
		return ps
	}
	read("of 16", upTo(16), log[:16])
	read("of 17", upTo(17), log[:17])
	read("of 1200 (31 known)", upTo(1200), log)
	if e := log[30]; e.Metadata == (eventstore.Metadata{}) || e.Hash == "" {
		t.Fatalf("the log's events carry no metadata or hash (%+v): the test would prove nothing", e)
	}
}

func testReadStops(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	buildLog(t, s)
	stop := errors.New("enough")
	readers := map[string]func(fn func(eventstore.Event) error) error{
		"ReadAll":    func(fn func(eventstore.Event) error) error { return s.ReadAll(ctx(t), 0, fn) },
		"Scan":       func(fn func(eventstore.Event) error) error { return s.Scan(ctx(t), eventstore.Filter{}, fn) },
		"ReadStream": func(fn func(eventstore.Event) error) error { return s.ReadStream(ctx(t), "r1", 0, fn) },
	}
	for name, read := range readers {
		calls := 0
		err := read(func(eventstore.Event) error {
			calls++
			if calls == 3 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 3 {
			t.Errorf("%s: error %v after %d calls; want the callback's error after 3", name, err, calls)
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.ReadAll(cancelled, 0, func(eventstore.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAll with a cancelled context: %v", err)
	}
}

func testReopen(t *testing.T, o Opener) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := o(t, path)
	for i := range 5 {
		mustAppend(t, s, one(fmt.Sprintf("s%d", i%3), eventstore.AnyVersion, ev("A", `{}`)))
	}
	head, hash := s.Head(), s.HeadHash()
	versions := map[string]int64{"s0": s.StreamVersion("s0"), "s1": s.StreamVersion("s1"), "s2": s.StreamVersion("s2")}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = o.at(t, path)
	if s.Head() != head || s.HeadHash() != hash {
		t.Fatalf("reopened head %d %s, want %d %s", s.Head(), s.HeadHash(), head, hash)
	}
	for id, v := range versions {
		if got := s.StreamVersion(id); got != v {
			t.Errorf("reopened StreamVersion(%s) = %d, want %d", id, got, v)
		}
	}
	_, err := s.Append(ctx(t), one("s0", versions["s0"]-1, ev("A", `{}`)))
	conflictOf(t, err)
	res := mustAppend(t, s, one("s0", versions["s0"], ev("A", `{}`)))
	if e := res.Events[0]; e.Position != head+1 || e.PrevHash != hash || e.Version != versions["s0"]+1 {
		t.Errorf("append after reopen: v%d at %d prev %s", e.Version, e.Position, e.PrevHash)
	}
	if rep, err := s.Verify(ctx(t), 0, 0); err != nil || !rep.OK || rep.Checked != head+1 {
		t.Errorf("Verify after reopen: %+v, %v", rep, err)
	}
}

func testVerifyIntact(t *testing.T, o Opener) {
	s, path := o.fresh(t)
	log := buildLog(t, s)
	rep, err := s.Verify(ctx(t), 0, 0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := eventstore.VerifyReport{OK: true, Checked: 30, HeadPosition: 30, HeadHash: log[29].Hash}
	if rep != want {
		t.Errorf("Verify = %+v, want %+v", rep, want)
	}
	rep, err = s.Verify(ctx(t), 5, 12)
	want = eventstore.VerifyReport{OK: true, Checked: 8, HeadPosition: 12, HeadHash: log[11].Hash}
	if err != nil || rep != want {
		t.Errorf("Verify(5, 12) = %+v, %v; want %+v", rep, err, want)
	}
	rep, err = eventstore.VerifyFile(ctx(t), path, 0, 0)
	want = eventstore.VerifyReport{OK: true, Checked: 30, HeadPosition: 30, HeadHash: log[29].Hash}
	if err != nil || rep != want {
		t.Errorf("VerifyFile on an open store = %+v, %v; want %+v", rep, err, want)
	}
	if _, err := s.Verify(ctx(t), 10, 4); !errors.Is(err, eventstore.ErrInvalid) {
		t.Errorf("Verify(10, 4): %v, want ErrInvalid", err)
	}
}

func testInvalid(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	mustAppend(t, s, one("ok", eventstore.NoStream, ev("A", `{}`)))
	cases := map[string]eventstore.AppendRequest{
		"no streams":       {},
		"empty stream id":  one("", eventstore.AnyVersion, ev("A", `{}`)),
		"no events":        one("x", eventstore.AnyVersion),
		"empty type":       one("x", eventstore.AnyVersion, ev("", `{}`)),
		"schema version 0": one("x", eventstore.AnyVersion, eventstore.NewEvent{Type: "A", Data: json.RawMessage(`{}`)}),
		"data not JSON":    one("x", eventstore.AnyVersion, ev("A", `{"a":`)),
		"empty data":       one("x", eventstore.AnyVersion, ev("A", ``)),
		"expected -2":      one("x", -2, ev("A", `{}`)),
		"stream twice": {Streams: []eventstore.StreamAppend{
			{StreamID: "x", ExpectedVersion: eventstore.AnyVersion, Events: []eventstore.NewEvent{ev("A", `{}`)}},
			{StreamID: "x", ExpectedVersion: eventstore.AnyVersion, Events: []eventstore.NewEvent{ev("A", `{}`)}},
		}},
		"valid stream with an invalid one": {Streams: []eventstore.StreamAppend{
			{StreamID: "y", ExpectedVersion: eventstore.AnyVersion, Events: []eventstore.NewEvent{ev("A", `{}`)}},
			{StreamID: "z", ExpectedVersion: eventstore.AnyVersion, Events: []eventstore.NewEvent{ev("A", `nope`)}},
		}},
	}
	for name, req := range cases {
		if _, err := s.Append(ctx(t), req); !errors.Is(err, eventstore.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	if got := s.Head(); got != 1 {
		t.Errorf("invalid requests moved the head to %d", got)
	}
	if got := len(readAll(t, s, 0)); got != 1 {
		t.Errorf("log holds %d events after invalid requests, want 1", got)
	}
}

func testWatch(t *testing.T, o Opener) {
	s, _ := o.fresh(t)
	ch, cancel := s.Watch()
	select {
	case <-ch:
		t.Fatal("signal before any commit")
	default:
	}
	mustAppend(t, s, one("w", eventstore.AnyVersion, ev("A", `{}`)))
	mustAppend(t, s, one("w", eventstore.AnyVersion, ev("A", `{}`)))
	select {
	case <-ch:
	default:
		t.Fatal("no signal after a commit")
	}
	select {
	case <-ch:
		t.Fatal("two signals buffered: the channel must hold at most one")
	default:
	}
	_, err := s.Append(ctx(t), one("w", eventstore.NoStream, ev("A", `{}`)))
	conflictOf(t, err)
	select {
	case <-ch:
		t.Fatal("signal for a request that committed nothing")
	default:
	}
	cancel()
	mustAppend(t, s, one("w", eventstore.AnyVersion, ev("A", `{}`)))
	select {
	case <-ch:
		t.Fatal("signal after cancel")
	default:
	}
	cancel() // idempotent
}

func testCloseDrains(t *testing.T, o Opener) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := o(t, path)
	var pending []*eventstore.Pending
	for i := range 300 {
		pending = append(pending, s.Submit(one(fmt.Sprintf("d%d", i%7), eventstore.AnyVersion, ev("D", fmt.Sprintf(`{"i":%d}`, i)))))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var committed []int64
	for i, p := range pending {
		select {
		case <-p.Done():
		default:
			t.Fatalf("request %d still pending after Close returned", i)
		}
		res, err := p.Wait(ctx(t))
		switch {
		case err == nil:
			committed = append(committed, res.Events[0].Position)
		case errors.Is(err, eventstore.ErrClosed):
		default:
			t.Fatalf("request %d: %v, want success or ErrClosed", i, err)
		}
	}
	if _, err := s.Append(ctx(t), one("late", eventstore.AnyVersion, ev("A", `{}`))); !errors.Is(err, eventstore.ErrClosed) || !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("Append after Close: %v, want ErrClosed and ErrUnavailable", err)
	}
	if err := s.ReadAll(ctx(t), 0, func(eventstore.Event) error { return nil }); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("ReadAll after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s = o.at(t, path)
	log := readAll(t, s, 0)
	if !slices.Equal(positions(log), committed) {
		t.Fatalf("after reopen the log holds %v, want exactly the committed %v", positions(log), committed)
	}
}
