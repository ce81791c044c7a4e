package domain

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestMessageIDRoundTrip(t *testing.T) {
	// The ULID specification's example.
	id, ok := parseMessageID("01ARZ3NDEKTSV4RRFFQ69G5FAV")
	if !ok {
		t.Fatal("spec example refused")
	}
	// Bytes as github.com/oklog/ulid/v2 decodes the same string.
	want := messageID{1, 86, 62, 58, 181, 211, 214, 118, 76, 97, 239, 185, 147, 2, 189, 91}
	if id != want {
		t.Fatalf("bytes = %v, want %v", id, want)
	}
	if id.String() != "01ARZ3NDEKTSV4RRFFQ69G5FAV" {
		t.Fatalf("format = %s", id.String())
	}
	var max messageID
	for i := range max {
		max[i] = 0xff
	}
	if max.String() != "7ZZZZZZZZZZZZZZZZZZZZZZZZZ" {
		t.Fatalf("max = %s", max.String())
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		var b messageID
		binary.BigEndian.PutUint64(b[:8], r.Uint64())
		binary.BigEndian.PutUint64(b[8:], r.Uint64())
		back, ok := parseMessageID(b.String())
		if !ok || back != b {
			t.Fatalf("round trip of %x failed", b)
		}
	}
	for _, bad := range []string{"", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01arz3ndektsv4rrffq69g5fav", "01ARZ3NDEKTSV4RRFFQ69G5FAI", "01ARZ3NDEKTSV4RRFFQ69G5FA"} {
		if ValidMessageID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReceiptFormat(t *testing.T) {
	r, err := NewReceipt(mid(7), nonce(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 43 || strings.ContainsAny(r, "+/=") {
		t.Fatalf("receipt %q is not 43 characters of base64url", r)
	}
	if id, ok := ReceiptMessageID(r); !ok || id != mid(7) {
		t.Fatalf("receipt names %q", id)
	}
	other, _ := NewReceipt(mid(7), nonce(2))
	if other == r || ReceiptHash(other) == ReceiptHash(r) {
		t.Fatal("different nonces give the same receipt")
	}
	if h := ReceiptHash(r); len(h) != 64 || strings.Contains(h, r) {
		t.Fatalf("hash %q", h)
	}
	if _, ok := ReceiptMessageID(r[:42]); ok {
		t.Fatal("truncated receipt accepted")
	}
	if _, err := NewReceipt("nope", nonce(1)); err == nil {
		t.Fatal("receipt for a non-id")
	}
}

func TestEveryEventTypeRoundTripsThroughJSON(t *testing.T) {
	origin := &Origin{Queue: "a", MessageID: mid(1), Reason: OriginDeadLetter}
	events := []Event{
		created("q", DefaultAttributes()),
		QueueConfigured{Queue: "q", Attributes: DefaultAttributes(), Changed: []string{AttrDelayMS}, ConfiguredAt: at(1)},
		QueuePurged{Queue: "q", Purged: 3, PurgedAt: at(2)},
		QueueDeleted{Queue: "q", DeletedAt: at(3)},
		MessagePublished{Queue: "q", MessageID: mid(1), Body: "b", BodyEncoding: EncodingUTF8, BodySize: 1, Headers: map[string]string{"a": "b"}, PublishedAt: at(4), AvailableAt: at(5), ExpiresAt: at(6), DedupID: "d", Origin: origin},
		MessageLeased{Queue: "q", MessageID: mid(1), ReceiptHash: "ab", Consumer: "c", LeasedAt: at(7), LeaseExpiresAt: at(8), ReceiveCount: 2},
		MessageLeaseExtended{Queue: "q", MessageID: mid(1), ReceiptHash: "ab", ExtendedAt: at(9), LeaseExpiresAt: at(10)},
		MessageAcked{Queue: "q", MessageID: mid(1), ReceiptHash: "ab", AckedAt: at(11)},
		MessageReleased{Queue: "q", MessageID: mid(1), ReceiptHash: "ab", DelayMS: 5, ReleasedAt: at(12), AvailableAt: at(17)},
		MessageLeaseExpired{Queue: "q", MessageID: mid(1), ReceiptHash: "ab", ExpiredAt: at(13)},
		MessageDeadLettered{Queue: "q", MessageID: mid(1), DeadLetterQueue: "d", DeadLetterMessageID: mid(2), ReceiveCount: 3, DeadLetteredAt: at(14)},
		MessageExpired{Queue: "q", MessageID: mid(1), ExpiredAt: at(15)},
		MessageRedriven{Queue: "q", MessageID: mid(1), ToQueue: "a", NewMessageID: mid(3), RedrivenAt: at(16)},
	}
	if len(events) != len(EventTypes) {
		t.Fatalf("test covers %d event types, catalogue has %d", len(events), len(EventTypes))
	}
	for i, e := range events {
		if e.EventType() != EventTypes[i] {
			t.Fatalf("event %d is %s, catalogue says %s", i, e.EventType(), EventTypes[i])
		}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeEvent(e.EventType(), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("%s: decoded %+v, want %+v", e.EventType(), back, e)
		}
	}
	if _, err := DecodeEvent("Nope", []byte("{}")); err == nil || !strings.Contains(err.Error(), "unknown event type") {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := DecodeEvent(TypeQueueCreated, []byte("{")); err == nil {
		t.Fatal("malformed JSON decoded")
	}
}

// TestRandomLifecycleKeepsInvariants drives one queue through random
// operations and checks, after each, that the heaps agree with a brute-force
// view of the messages; the world checks the replay at the end.
func TestRandomLifecycleKeepsInvariants(t *testing.T) {
	w := newWorld(t)
	w.create("dlq", AttributesPatch{})
	w.create("q", AttributesPatch{VisibilityTimeoutMS: i64(300), RetentionMS: i64(60000), DeadLetterQueue: str("dlq"), MaxReceiveCount: num(3)})
	q := w.q("q")
	r := rand.New(rand.NewPCG(7, 9))
	var receipts []string
	next := 0
	now := int64(0)
	for step := 0; step < 3000; step++ {
		now += int64(r.IntN(50))
		switch op := r.IntN(10); {
		case op < 3:
			next++
			d := int64(r.IntN(3)) * 100
			w.recorded(pub(q, NewMessage{ID: mid(next), DelayMS: &d, DedupID: []string{"", "", "a", "b"}[r.IntN(4)]}, at(now)))
		case op < 5:
			ev, leases, err := q.Receive(ReceiveRequest{MaxMessages: 1 + r.IntN(3), Nonces: nonces(step*10, 3)}, at(now))
			w.recorded(ev, err)
			for _, l := range leases {
				receipts = append(receipts, l.Receipt)
			}
		case op < 8 && len(receipts) > 0:
			k := r.IntN(len(receipts))
			rc := receipts[k]
			info, err := q.LeaseOf(rc, at(now))
			if err != nil {
				receipts = append(receipts[:k], receipts[k+1:]...)
				continue
			}
			var dl *DeadLetter
			if info.DeadLetterQueue != "" {
				next++
				dl = &DeadLetter{Queue: w.q("dlq"), MessageID: mid(1_000_000 + next), Content: Content{BodyEncoding: EncodingUTF8}}
			}
			switch r.IntN(3) {
			case 0:
				w.recorded(ackOf(q, rc, at(now)))
			case 1:
				ev, _, err := q.Nack(rc, int64(r.IntN(2))*100, at(now), dl)
				w.recorded(ev, err)
			default:
				ev, _, _, err := q.Extend(rc, 300, at(now))
				w.recorded(ev, err)
			}
		default:
			ev, dead, err := q.Expire(at(now), 5)
			w.recorded(ev, err)
			for _, d := range dead {
				next++
				w.recorded(q.ExpireLease(d.MessageID, at(now), &DeadLetter{Queue: w.q("dlq"), MessageID: mid(1_000_000 + next), Content: Content{BodyEncoding: EncodingUTF8}}))
			}
		}
		checkHeaps(t, q)
	}
}

func checkHeaps(t *testing.T, q *Queue) {
	t.Helper()
	if got, want := q.ready.len()+q.leased.len(), q.msgs.len(); got != want {
		t.Fatalf("heaps hold %d messages, slab %d", got, want)
	}
	if q.retention.len() != q.msgs.len() || len(q.leases) != q.leased.len() {
		t.Fatalf("retention %d, leases %d, leased %d, slab %d", q.retention.len(), len(q.leases), q.leased.len(), q.msgs.len())
	}
	for _, h := range []*slotHeap{&q.ready, &q.leased, &q.retention} {
		for j := 1; j < len(h.items); j++ {
			if h.less(q.msgs.slots, h.items[j], h.items[(j-1)/2]) {
				t.Fatalf("heap order broken at %d", j)
			}
			if h.index(q.msgs.slots, h.items[j]) != j {
				t.Fatalf("heap index broken at %d", j)
			}
		}
	}
}

// TestReadyMessageMemory holds the aggregate to its budget: a few hundred
// bytes per ready message, bodies excluded.
func TestReadyMessageMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200k messages")
	}
	const n = 200_000
	q := NewQueue("mem")
	if err := q.Apply(created("mem", DefaultAttributes())); err != nil {
		t.Fatal(err)
	}
	var id messageID
	id[0] = 1
	ids := make([]string, n)
	for i := range ids {
		binary.BigEndian.PutUint64(id[8:], uint64(i))
		ids[i] = id.String()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		e := MessagePublished{Queue: "mem", MessageID: ids[i], BodyEncoding: EncodingUTF8, BodySize: 1024, PublishedAt: at(int64(i)), AvailableAt: at(int64(i)), ExpiresAt: at(int64(i) + DefaultRetentionMS)}
		if err := q.ApplyAt(e, int64(i+2)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapInuse-before.HeapInuse) / n
	t.Logf("%.0f bytes of heap per ready message", per)
	if per > 256 {
		t.Fatalf("%.0f bytes per ready message, budget 256", per)
	}
	runtime.KeepAlive(q)
	runtime.KeepAlive(ids)
}
