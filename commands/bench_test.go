package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// BenchmarkPublishReceiveAck measures full cycles through the handlers —
// publish, receive, ack: three durable appends — with many goroutines, so
// that group commit can share fsyncs between them.
func BenchmarkPublishReceiveAck(b *testing.B) {
	s, _ := openStore(b)
	a := newApp(b, s, nil)
	mustCreate(b, a, "bench", domain.AttributesPatch{})
	body := strings.Repeat("x", 256)
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := ctxT()
		for pb.Next() {
			if _, err := a.Publish(ctx, Publish{Queue: "bench", Message: Message{Body: body}}); err != nil {
				b.Error(err)
				return
			}
			r, err := a.Receive(ctx, Receive{Queue: "bench"})
			if err != nil {
				b.Error(err)
				return
			}
			for _, m := range r.Messages {
				if _, err := a.Ack(ctx, Ack{Queue: "bench", Receipt: m.Receipt}); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "cycles/s")
}

// writeLog appends n messages to queue "bench" straight through the store,
// in batches, as the handlers would have recorded them. lifecycle adds a
// lease and an ack to three messages in four, so that the log is a mix.
// It returns the number of events written and of messages left ready.
func writeLog(b *testing.B, s EventStore, n int, bodySize int, lifecycle bool) (events, ready int) {
	b.Helper()
	ctx := context.Background()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	body := strings.Repeat("b", bodySize)
	version := int64(0)
	var batch []eventstore.NewEvent
	flush := func() {
		if len(batch) == 0 {
			return
		}
		_, err := s.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamID: "queue-bench", ExpectedVersion: version, Events: batch}}})
		if err != nil {
			b.Fatal(err)
		}
		version += int64(len(batch))
		events += len(batch)
		batch = batch[:0]
	}
	add := func(e domain.Event) {
		data, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, eventstore.NewEvent{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Data: data})
		if len(batch) == 1000 {
			flush()
		}
	}
	add(domain.QueueCreated{Queue: "bench", Attributes: domain.DefaultAttributes(), CreatedAt: t0})
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		id, err := newID(at)
		if err != nil {
			b.Fatal(err)
		}
		add(domain.MessagePublished{
			Queue: "bench", MessageID: id, Body: body, BodyEncoding: domain.EncodingUTF8, BodySize: int64(bodySize),
			ContentType: "text/plain", Headers: map[string]string{"trace": fmt.Sprint(i)},
			PublishedAt: at, AvailableAt: at, ExpiresAt: at.Add(96 * time.Hour),
		})
		if lifecycle && i%4 != 0 {
			receipt, err := domain.NewReceipt(id, [domain.ReceiptNonceSize]byte{byte(i)})
			if err != nil {
				b.Fatal(err)
			}
			h := domain.ReceiptHash(receipt)
			add(domain.MessageLeased{Queue: "bench", MessageID: id, ReceiptHash: h, Consumer: "c", LeasedAt: at, LeaseExpiresAt: at.Add(30 * time.Second), ReceiveCount: 1})
			add(domain.MessageAcked{Queue: "bench", MessageID: id, ReceiptHash: h, AckedAt: at})
		} else {
			ready++
		}
	}
	flush()
	return events, ready
}

// BenchmarkStartup rebuilds the command state from a log of about a
// million events (published, leased and acked messages; 1 in 4 left ready),
// with small and with 1 KiB bodies. store-read-s is a bare ReadAll of the
// same log, the part of the start-up the command side does not control.
func BenchmarkStartup(b *testing.B) {
	for _, size := range []int{128, 1024} {
		b.Run(fmt.Sprintf("body=%dB", size), func(b *testing.B) {
			s, _ := openStore(b)
			events, ready := writeLog(b, s, 400_000, size, true)
			start := time.Now()
			if err := s.ReadAll(context.Background(), 0, func(eventstore.Event) error { return nil }); err != nil {
				b.Fatal(err)
			}
			read := time.Since(start)
			b.ResetTimer()
			for b.Loop() {
				a, err := New(s, Options{Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				_ = a.Close()
			}
			b.ReportMetric(float64(events), "events")
			b.ReportMetric(float64(ready), "ready")
			b.ReportMetric(read.Seconds(), "store-read-s")
		})
	}
}

// BenchmarkReadyMemory measures the heap the command state keeps for a
// million ready messages of 1 KiB (bodies stay in the log), and how long
// rebuilding it takes.
func BenchmarkReadyMemory(b *testing.B) {
	s, _ := openStore(b)
	const n = 1_000_000
	writeLog(b, s, n, 1024, false)
	var perMsg atomic.Value
	b.ResetTimer()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a, err := New(s, Options{Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perMsg.Store(float64(after.HeapInuse-before.HeapInuse) / n)
		runtime.KeepAlive(a)
		_ = a.Close()
	}
	b.ReportMetric(perMsg.Load().(float64), "heap-B/msg")
}
