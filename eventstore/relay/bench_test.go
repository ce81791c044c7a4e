package relay

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/eventstore"
)

// benchPackEvents is the size of the packs measured: what the relay sends
// under steady single publishes is a few to a few dozen events.
const benchPackEvents = 32

// publishedData is the JSON of a MessagePublished event as the domain
// writes it (the fields and tags of domain.MessagePublished), with a
// 200-byte UTF-8 body. It is spelled out here so that the relay's
// benchmarks do not depend on the domain package.
func publishedData(i int) json.RawMessage {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	body := fmt.Sprintf(`{"order_id":"ord-%06d","customer":"cust-4411","items":[{"sku":"A-100","qty":2},{"sku":"B-7","qty":1}],"total_cents":12999,"currency":"EUR","note":"leave at the door"}`, i)
	body += strings.Repeat(" ", max(0, 200-len(body)))
	data, err := json.Marshal(struct {
		Queue        string    `json:"queue"`
		MessageID    string    `json:"message_id"`
		Body         string    `json:"body"`
		BodyEncoding string    `json:"body_encoding"`
		BodySize     int64     `json:"body_size"`
		ContentType  string    `json:"content_type,omitempty"`
		PublishedAt  time.Time `json:"published_at"`
		AvailableAt  time.Time `json:"available_at"`
		ExpiresAt    time.Time `json:"expires_at"`
	}{
		Queue: "orders", MessageID: fmt.Sprintf("01JNQ8ZK3M4X5Y6Z7A8B9C%04d", i), Body: body,
		BodyEncoding: "utf8", BodySize: int64(len(body)), ContentType: "application/json",
		PublishedAt: at, AvailableAt: at, ExpiresAt: at.Add(14 * 24 * time.Hour),
	})
	if err != nil {
		panic(err)
	}
	return data
}

// benchStore is a store holding packs*benchPackEvents MessagePublished
// events of one queue, appended one per request as single publishes do.
func benchStore(b testing.TB, packs int) *eventstore.Store {
	b.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	s, err := eventstore.Open(filepath.Join(b.TempDir(), "events.db"), eventstore.Options{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	pending := make([]*eventstore.Pending, 0, packs*benchPackEvents)
	for i := range packs * benchPackEvents {
		pending = append(pending, s.Submit(eventstore.AppendRequest{
			Metadata: eventstore.Metadata{Subject: "svc-checkout", RequestID: "01JNQ8ZK3M4X5Y6Z7A8B9CREQ1",
				CorrelationID: "01JNQ8ZK3M4X5Y6Z7A8B9CREQ1", CausationID: "01JNQ8ZK3M4X5Y6Z7A8B9CREQ1"},
			Streams: []eventstore.StreamAppend{{StreamID: "queue-orders", ExpectedVersion: eventstore.AnyVersion,
				Events: []eventstore.NewEvent{{Type: "MessagePublished", SchemaVersion: 1, Data: publishedData(i)}}}},
		}))
	}
	for _, p := range pending {
		if _, err := p.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func benchEvents(b *testing.B) []eventstore.Event {
	b.Helper()
	s := benchStore(b, 1)
	var events []eventstore.Event
	if err := s.ReadAll(context.Background(), 0, func(e eventstore.Event) error { events = append(events, e); return nil }); err != nil {
		b.Fatal(err)
	}
	return events
}

// benchFormats are the pack encoders compared: the JSON one packs were
// written with before, and today's.
var benchFormats = []struct {
	name   string
	encode func([]eventstore.Event) (*message.Message, error)
}{
	{"json", encodeJSONPack},
	{"binary", EncodePack},
}

// BenchmarkPack encodes and decodes a pack of 32 realistic
// MessagePublished events in each format.
func BenchmarkPack(b *testing.B) {
	events := benchEvents(b)
	for _, f := range benchFormats {
		b.Run("encode/"+f.name, func(b *testing.B) {
			b.ReportAllocs()
			var size int
			for b.Loop() {
				msg, err := f.encode(events)
				if err != nil {
					b.Fatal(err)
				}
				size = len(msg.Payload)
			}
			b.ReportMetric(float64(size), "payload-bytes")
		})
		b.Run("decode/"+f.name, func(b *testing.B) {
			msg, err := f.encode(events)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodePack(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// argOffset is an OffsetsAdapter whose next offset is the query's only
// argument.
type argOffset struct{ wsql.OffsetsAdapter }

func (argOffset) NextOffsetQuery(string, string) wsql.Query { return wsql.Query{Query: "SELECT ?"} }

// BenchmarkPackFromSQL is the relay's side: the query that reads the next
// pack of 32 events from the log and the message built from its row.
func BenchmarkPackFromSQL(b *testing.B) {
	const packs = 64
	s := benchStore(b, packs)
	db, err := sql.Open("sqlite3", "file:"+s.Path()+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	schema := eventsSchema{maxEvents: benchPackEvents, maxBytes: DefaultMaxPackBytes}
	q := schema.SelectQuery(eventsTopic, "bench", argOffset{})
	stmt, err := db.Prepare(q.Query)
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		after := int64(i%packs) * benchPackEvents
		i++
		rows, err := stmt.Query(append([]any{after}, q.Args...)...)
		if err != nil {
			b.Fatal(err)
		}
		if !rows.Next() {
			b.Fatalf("no pack after %d: %v", after, rows.Err())
		}
		row, err := schema.UnmarshalMessage(rows)
		if err != nil {
			b.Fatal(err)
		}
		_ = rows.Close()
		if row.Offset != after+benchPackEvents {
			b.Fatalf("pack ends at %d, want %d", row.Offset, after+benchPackEvents)
		}
	}
}
