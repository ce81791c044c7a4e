package commands

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// TestLeanDecodeReplaysLikeFullDecode replays the same events decoded both
// ways and compares the states: the lean decoder must not drop anything
// apply reads.
func TestLeanDecodeReplaysLikeFullDecode(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	id := func(n int) string {
		s, err := newID(t0.Add(time.Duration(n) * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	m1, m2, m3, m4 := id(1), id(2), id(3), id(4)
	receipt := func(m string, n byte) string {
		r, err := domain.NewReceipt(m, [domain.ReceiptNonceSize]byte{n})
		if err != nil {
			t.Fatal(err)
		}
		return domain.ReceiptHash(r)
	}
	h1, h2, h3 := receipt(m1, 1), receipt(m2, 2), receipt(m1, 3)
	attrs := domain.DefaultAttributes()
	attrs2 := attrs
	attrs2.DelayMS = 10
	pub := func(m string, dedup string, origin *domain.Origin) domain.MessagePublished {
		return domain.MessagePublished{
			Queue: "q", MessageID: m, Body: "a \"quoted\" body with \\ and {braces} [and] \u00e9", BodyEncoding: "utf8", BodySize: 10,
			ContentType: "text/plain", Headers: map[string]string{"k": "v \"x\""}, PublishedAt: t0, AvailableAt: t0.Add(time.Second),
			ExpiresAt: t0.Add(time.Hour), DedupID: dedup, Origin: origin,
		}
	}
	events := []domain.Event{
		domain.QueueCreated{Queue: "q", Attributes: attrs, CreatedAt: t0},
		domain.QueueConfigured{Queue: "q", Attributes: attrs2, Changed: []string{"delay_ms"}, ConfiguredAt: t0},
		pub(m1, "dedup \"one\"", nil),
		pub(m2, "", &domain.Origin{Queue: "other", MessageID: m4, Reason: domain.OriginDeadLetter}),
		pub(m3, "", nil),
		domain.MessageLeased{Queue: "q", MessageID: m1, ReceiptHash: h1, Consumer: "c", LeasedAt: t0, LeaseExpiresAt: t0.Add(time.Minute), ReceiveCount: 1},
		domain.MessageLeaseExtended{Queue: "q", MessageID: m1, ReceiptHash: h1, ExtendedAt: t0, LeaseExpiresAt: t0.Add(2 * time.Minute)},
		domain.MessageReleased{Queue: "q", MessageID: m1, ReceiptHash: h1, DelayMS: 5, ReleasedAt: t0, AvailableAt: t0.Add(5 * time.Millisecond)},
		domain.MessageLeased{Queue: "q", MessageID: m2, ReceiptHash: h2, LeasedAt: t0, LeaseExpiresAt: t0.Add(time.Minute), ReceiveCount: 3},
		domain.MessageLeaseExpired{Queue: "q", MessageID: m2, ReceiptHash: h2, ExpiredAt: t0.Add(time.Minute)},
		domain.MessageLeased{Queue: "q", MessageID: m1, ReceiptHash: h3, LeasedAt: t0, LeaseExpiresAt: t0.Add(time.Minute), ReceiveCount: 2},
		domain.MessageAcked{Queue: "q", MessageID: m1, ReceiptHash: h3, AckedAt: t0},
		domain.MessageExpired{Queue: "q", MessageID: m3, ExpiredAt: t0},
	}
	full, lean := domain.NewQueue("q"), domain.NewQueue("q")
	for _, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		fe, err := domain.DecodeEvent(e.EventType(), data)
		if err != nil {
			t.Fatal(err)
		}
		le, err := domain.DecodeForReplay(e.EventType(), data)
		if err != nil {
			t.Fatalf("%s: %v", e.EventType(), err)
		}
		if err := full.ApplyAt(fe, 7); err != nil {
			t.Fatal(err)
		}
		if err := lean.ApplyAt(le, 7); err != nil {
			t.Fatalf("%s: %v", e.EventType(), err)
		}
		if !reflect.DeepEqual(full.Snapshot(), lean.Snapshot()) {
			t.Fatalf("after %s the states differ:\nfull %+v\nlean %+v", e.EventType(), full.Snapshot(), lean.Snapshot())
		}
	}
	if len(full.Snapshot().Messages) != 1 || len(full.Snapshot().Dedup) != 1 {
		t.Fatalf("the test did not exercise what it means to: %+v", full.Snapshot())
	}
}

func TestLeanDecodeFallsBackOnOddInput(t *testing.T) {
	// Whitespace and member order do not matter; what the scanner cannot
	// read goes to encoding/json, which reports real errors.
	data := []byte(" {\n \"expired_at\" : \"2025-01-02T03:04:05Z\" ,\"message_id\":\"01ARZ3NDEKTSV4RRFFQ69G5FAV\", \"queue\":\"q\"}")
	ev, err := domain.DecodeForReplay(domain.TypeMessageExpired, data)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := ev.(domain.MessageExpired); !ok || e.Queue != "q" || e.MessageID != "01ARZ3NDEKTSV4RRFFQ69G5FAV" {
		t.Fatalf("decoded %+v", ev)
	}
	if _, err := domain.DecodeForReplay(domain.TypeMessageAcked, []byte(`{"queue":`)); err == nil {
		t.Fatal("truncated payload decoded")
	}
	if _, err := domain.DecodeForReplay(domain.TypeMessageLeased, []byte(`{"receive_count":"x"}`)); err == nil {
		t.Fatal("a bad receive_count decoded")
	}
	if _, err := domain.DecodeForReplay("Unknown", []byte(`{}`)); err == nil {
		t.Fatal("unknown type decoded")
	}
}
