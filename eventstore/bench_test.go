package eventstore_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ledgerq/ledgerq/eventstore"
)

func benchStore(b *testing.B) *eventstore.Store {
	b.Helper()
	return openWith(b, filepath.Join(b.TempDir(), "events.db"), eventstore.Options{Logger: quietLogger()})
}

// benchPayload is about the size of a small MessagePublished event.
const benchPayload = `{"id":"01J8Z6Q4W3E2R1T0Y9U8I7O6P5","queue":"orders","body":"hello, world: a small message body","content_type":"text/plain","headers":{"k":"v"},"available_at":"2026-03-01T10:00:00.000Z"}`

func reportRates(b *testing.B, s *eventstore.Store, before eventstore.Stats, events int) {
	st := s.Stats()
	secs := b.Elapsed().Seconds()
	commits := st.Commits - before.Commits
	b.ReportMetric(float64(events)/secs, "events/s")
	b.ReportMetric(float64(commits)/secs, "commits/s")
	if commits > 0 {
		b.ReportMetric(float64(st.Requests-before.Requests)/float64(commits), "requests/commit")
	}
}

// BenchmarkAppend64Goroutines: 64 goroutines each appending one event per
// request to their own stream with an expected version, b.N requests in all.
// Every request is durable (fsync'd) when it returns.
func BenchmarkAppend64Goroutines(b *testing.B) {
	s := benchStore(b)
	before := s.Stats()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := range 64 {
		wg.Go(func() {
			stream := fmt.Sprintf("bench-%d", g)
			var version int64
			for next.Add(1) <= int64(b.N) {
				res, err := s.Append(b.Context(), appendReq(stream, version, newEvent("MessagePublished", benchPayload)))
				if err != nil {
					b.Error(err)
					return
				}
				version = res.Events[0].Version
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	reportRates(b, s, before, b.N)
}

// BenchmarkAppendBatch100: one goroutine appending requests of 100 events
// (the HTTP batch publish), one request per operation.
func BenchmarkAppendBatch100(b *testing.B) {
	s := benchStore(b)
	events := make([]eventstore.NewEvent, 100)
	for i := range events {
		events[i] = newEvent("MessagePublished", benchPayload)
	}
	before := s.Stats()
	b.ResetTimer()
	var version int64
	for b.Loop() {
		res, err := s.Append(b.Context(), appendReq("batch", version, events...))
		if err != nil {
			b.Fatal(err)
		}
		version = res.Events[len(res.Events)-1].Version
	}
	b.StopTimer()
	reportRates(b, s, before, b.N*100)
}

// BenchmarkReadAll: one replay of a 20,000-event log per operation.
func BenchmarkReadAll(b *testing.B) {
	s := benchStore(b)
	const total = 20000
	events := make([]eventstore.NewEvent, 100)
	for i := range events {
		events[i] = newEvent("MessagePublished", benchPayload)
	}
	for i := range total / 100 {
		if _, err := s.Append(b.Context(), appendReq(fmt.Sprintf("s%d", i%50), eventstore.AnyVersion, events...)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := s.ReadAll(b.Context(), 0, func(eventstore.Event) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != total {
			b.Fatalf("read %d events, want %d", n, total)
		}
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkVerify: one hash-chain walk over a 20,000-event log per operation.
func BenchmarkVerify(b *testing.B) {
	s := benchStore(b)
	const total = 20000
	events := make([]eventstore.NewEvent, 100)
	for i := range events {
		events[i] = newEvent("MessagePublished", benchPayload)
	}
	for range total / 100 {
		if _, err := s.Append(b.Context(), appendReq("v", eventstore.AnyVersion, events...)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := s.Verify(b.Context(), 0, 0)
		if err != nil || !rep.OK {
			b.Fatalf("Verify: %+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFsync is the platform's baseline: a 4 KiB write plus fsync per
// operation in the same temp directory, the cost every commit pays once.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	var off int64
	for b.Loop() {
		if _, err := f.WriteAt(page, off); err != nil {
			b.Fatal(err)
		}
		off = (off + 4096) % (1 << 20)
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
}
