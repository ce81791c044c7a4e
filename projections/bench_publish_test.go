package projections

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
)

// BenchmarkApplyPublishes measures the live path under the closed-loop
// publish load of `ledgerq bench`: only publishes, of 200-byte bodies with
// ULID message ids, over 16 queues, applied in packs of 100 (about what the
// relay hands over then). It reports the time and the read model's size per
// message.
func BenchmarkApplyPublishes(b *testing.B) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	body := strings.Repeat("x", 200)
	const queues, perPack = 16, 100
	ctx := context.Background()
	e := newEngine(b, Config{Source: newMemLog(), Hub: queries.NewHub(queries.HubConfig{}), Now: time.Now})
	log := newMemLog()
	for q := range queues {
		log.add(b, domain.QueueCreated{Queue: fmt.Sprintf("bench-%d", q), Attributes: defaultAttrs(), CreatedAt: t0})
	}
	if err := e.ApplyPack(ctx, log.all()); err != nil {
		b.Fatal(err)
	}
	entropy := ulid.Monotonic(rand.Reader, 0)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		var pack []eventstore.Event
		for j := range perPack {
			n := i*perPack + j
			now := t0.Add(time.Duration(n) * time.Microsecond)
			pack = append(pack, log.add(b, domain.MessagePublished{
				Queue: fmt.Sprintf("bench-%d", n%queues), MessageID: ulid.MustNew(ulid.Timestamp(now), entropy).String(),
				Body: body, BodyEncoding: "utf8", BodySize: int64(len(body)), ContentType: "application/json",
				PublishedAt: now, AvailableAt: now, ExpiresAt: now.Add(96 * time.Hour)})...)
		}
		b.StartTimer()
		if err := e.ApplyPack(ctx, pack); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perPack), "ns/event")
	var size int64
	if err := e.r.QueryRowContext(ctx, `SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size)/float64(b.N*perPack), "read-model-B/msg")
}
