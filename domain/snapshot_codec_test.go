package domain

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// sim drives a few queues through random but reproducible decisions: the
// same seed and the same starting state give the same decisions. It is
// how these tests prove that a decoded aggregate decides like the original.
type sim struct {
	t        testing.TB
	rng      *rand.Rand
	qs       map[string]*Queue
	now      int64 // ms after t0
	nextID   int
	nonce    int
	receipts []simReceipt
	events   []Event
}

type simReceipt struct{ queue, receipt string }

var simQueues = []string{"orders", "orders.dlq", "other"}

func newSim(t testing.TB, seed uint64) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), qs: map[string]*Queue{}}
	for _, n := range simQueues {
		s.qs[n] = NewQueue(n)
	}
	s.do(s.qs["orders.dlq"].Create(AttributesPatch{}, at(0), s.exists))
	dl, mrc := "orders.dlq", 2
	s.do(s.qs["orders"].Create(AttributesPatch{DeadLetterQueue: &dl, MaxReceiveCount: &mrc}, at(0), s.exists))
	s.createOther()
	return s
}

// fork is a copy of the driver with other aggregates and the same random
// stream from here on.
func (s *sim) fork(t testing.TB, qs map[string]*Queue, seed uint64) *sim {
	return &sim{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), qs: qs, now: s.now,
		nextID: s.nextID, nonce: s.nonce, receipts: slices.Clone(s.receipts)}
}

func (s *sim) createOther() {
	ret := MinRetentionMS // so that messages expire within a test
	s.do(s.qs["other"].Create(AttributesPatch{RetentionMS: &ret}, at(s.now), s.exists))
}

func (s *sim) exists(name string) bool { q, ok := s.qs[name]; return ok && q.Exists() }

func (s *sim) do(ev []Event, err error) {
	s.t.Helper()
	var de *Error
	if err != nil && !errors.As(err, &de) {
		s.t.Fatalf("decision failed: %v", err)
	}
	s.events = append(s.events, ev...)
}

func (s *sim) id() string { s.nextID++; return mid(s.nextID) }

func (s *sim) nonces(n int) [][ReceiptNonceSize]byte {
	s.nonce += n
	return nonces(s.nonce, n)
}

func (s *sim) pick() string { return simQueues[s.rng.IntN(len(simQueues))] }

func (s *sim) msg() NewMessage {
	m := NewMessage{ID: s.id(), Body: "b"}
	if s.rng.IntN(3) == 0 {
		d := int64(s.rng.IntN(3)) * 1000
		m.DelayMS = &d
	}
	if s.rng.IntN(3) == 0 {
		m.DedupID = fmt.Sprintf("d%d", s.rng.IntN(8))
	}
	return m
}

func (s *sim) deadLetter(q *Queue) *DeadLetter {
	return &DeadLetter{Queue: s.qs[q.Attributes().DeadLetterQueue], MessageID: s.id(), Content: Content{Body: "b", BodyEncoding: EncodingUTF8, BodySize: 1}}
}

// step makes one random decision, or moves the clock.
func (s *sim) step() {
	s.t.Helper()
	now := at(s.now)
	name := s.pick()
	q := s.qs[name]
	switch r := s.rng.IntN(100); {
	case r < 20:
		ev, _, err := q.Publish(s.msg(), now)
		s.do(ev, err)
	case r < 30:
		batch := make([]NewMessage, 1+s.rng.IntN(5))
		for i := range batch {
			batch[i] = s.msg()
		}
		ev, _, err := q.PublishBatch(batch, now)
		s.do(ev, err)
	case r < 45:
		max := 1 + s.rng.IntN(4)
		vt := int64(100 + s.rng.IntN(3000))
		ev, leases, err := q.Receive(ReceiveRequest{MaxMessages: max, VisibilityTimeoutMS: &vt, Consumer: "c", Nonces: s.nonces(max)}, now)
		s.do(ev, err)
		for _, l := range leases {
			s.receipts = append(s.receipts, simReceipt{name, l.Receipt})
		}
	case r < 65 && len(s.receipts) > 0:
		// Mostly recent receipts, which are more often still valid.
		rc := s.receipts[len(s.receipts)-1-s.rng.IntN(min(len(s.receipts), 6))]
		q := s.qs[rc.queue]
		switch s.rng.IntN(3) {
		case 0:
			ev, _, err := q.Ack(rc.receipt, now)
			s.do(ev, err)
		case 1:
			var dl *DeadLetter
			if li, err := q.LeaseOf(rc.receipt, now); err == nil && li.DeadLetterQueue != "" {
				dl = s.deadLetter(q)
			}
			ev, _, err := q.Nack(rc.receipt, int64(s.rng.IntN(2))*500, now, dl)
			s.do(ev, err)
		default:
			ev, _, _, err := q.Extend(rc.receipt, int64(100+s.rng.IntN(2000)), now)
			s.do(ev, err)
		}
	case r < 72:
		ev, dead, err := q.Expire(now, 1+s.rng.IntN(6))
		s.do(ev, err)
		for _, li := range dead {
			s.do(q.ExpireLease(li.MessageID, now, s.deadLetter(q)))
		}
	case r < 75:
		dlq := s.qs["orders.dlq"]
		for _, c := range dlq.RedriveCandidates(2) {
			s.do(dlq.Redrive(c.MessageID, s.qs["orders"], s.id(), Content{Body: "b", BodyEncoding: EncodingUTF8, BodySize: 1}, now))
		}
	case r < 76:
		ev, _, err := q.Purge(now)
		s.do(ev, err)
	case r < 77:
		o := s.qs["other"]
		if o.Exists() {
			s.do(o.Delete(now, nil))
		} else {
			s.createOther()
		}
	default:
		switch s.rng.IntN(10) {
		case 0, 1, 2, 3:
			// Time stands still: messages tie on their due times.
		case 9:
			s.now += dedupWindowMS / 2
		default:
			s.now += int64(s.rng.IntN(2500))
		}
	}
}

func roundTrip(t testing.TB, q *Queue) *Queue {
	t.Helper()
	b, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeQueue(b)
	if err != nil {
		t.Fatalf("decode queue %q: %v", q.Name(), err)
	}
	if got, want := d.Snapshot(), q.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("queue %q: decoded state differs\ndecoded  %+v\noriginal %+v", q.Name(), got, want)
	}
	return d
}

// TestQueueCodecDecidesLikeTheOriginal encodes and decodes every queue in
// the middle of a random history, then lets the original and the decoded
// aggregates make the same decisions: the events they record (which
// message a receive leases, which one the scheduler expires, …) and their
// states must stay equal.
func TestQueueCodecDecidesLikeTheOriginal(t *testing.T) {
	seen := map[string]int{}
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s := newSim(t, seed)
			for range 300 + int(seed)*20 {
				s.step()
			}
			decoded := map[string]*Queue{}
			for name, q := range s.qs {
				decoded[name] = roundTrip(t, q)
			}
			a := s.fork(t, s.qs, seed+1000)
			b := s.fork(t, decoded, seed+1000)
			for range 400 {
				a.step()
				b.step()
			}
			if !reflect.DeepEqual(a.events, b.events) {
				for i := range min(len(a.events), len(b.events)) {
					if !reflect.DeepEqual(a.events[i], b.events[i]) {
						t.Fatalf("event %d differs:\noriginal %T %+v\ndecoded  %T %+v", i, a.events[i], a.events[i], b.events[i], b.events[i])
					}
				}
				t.Fatalf("original recorded %d events, decoded %d", len(a.events), len(b.events))
			}
			for _, e := range a.events {
				seen[e.EventType()]++
			}
			for _, name := range simQueues {
				if got, want := b.qs[name].Snapshot(), a.qs[name].Snapshot(); !reflect.DeepEqual(got, want) {
					t.Fatalf("queue %q differs after the same decisions\ndecoded  %+v\noriginal %+v", name, got, want)
				}
				roundTrip(t, b.qs[name])
			}
		})
	}
	// The decisions after the round trip cover every kind of event, so
	// every part of the state was put to use.
	for _, typ := range []string{TypeQueueCreated, TypeQueuePurged, TypeQueueDeleted, TypeMessagePublished,
		TypeMessageLeased, TypeMessageLeaseExtended, TypeMessageAcked, TypeMessageReleased,
		TypeMessageLeaseExpired, TypeMessageDeadLettered, TypeMessageExpired, TypeMessageRedriven} {
		if seen[typ] == 0 {
			t.Errorf("no %s after any round trip", typ)
		}
	}
	t.Logf("events after the round trips: %v", seen)
}

// TestQueueCodecTies: messages due at the same millisecond are leased in
// publish order after a round trip too, even when the slab has reused
// slots so that its order is not the publish order.
func TestQueueCodecTies(t *testing.T) {
	q := NewQueue("q")
	if _, err := q.Create(AttributesPatch{}, at(0), nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	publish := func(k int, ms int64) {
		batch := make([]NewMessage, k)
		for i := range batch {
			n++
			batch[i] = NewMessage{ID: mid(n), Body: "x"}
		}
		if _, _, err := q.PublishBatch(batch, at(ms)); err != nil {
			t.Fatal(err)
		}
	}
	publish(50, 0)
	// Lease and ack 30, freeing slots that the next publish reuses.
	_, leases, err := q.Receive(ReceiveRequest{MaxMessages: 30, Consumer: "c", Nonces: nonces(0, 30)}, at(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if _, _, err := q.Ack(l.Receipt, at(2)); err != nil {
			t.Fatal(err)
		}
	}
	publish(40, 0) // published later, available at the same time as the rest
	d := roundTrip(t, q)
	for i := 0; i < 60; i += 7 {
		_, want, err := q.Receive(ReceiveRequest{MaxMessages: 7, Consumer: "c", Nonces: nonces(100+i, 7)}, at(5))
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := d.Receive(ReceiveRequest{MaxMessages: 7, Consumer: "c", Nonces: nonces(100+i, 7)}, at(5))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("receive %d: decoded leased %+v, original %+v", i, got, want)
		}
	}
}

// TestQueueImageIsACopy: an image taken under the queue's lock encodes the
// state of that moment, whatever the queue does afterwards.
func TestQueueImageIsACopy(t *testing.T) {
	s := newSim(t, 7)
	for range 300 {
		s.step()
	}
	q := s.qs["orders"]
	want, _ := q.MarshalBinary()
	im := q.Image()
	// Reserved memory, too small and large enough, gives the same image.
	small := q.ImageInto(ReserveImage(1))
	roomy := q.ImageInto(ReserveImage(q.ImageCapacity() + 10))
	for range 300 {
		s.step()
	}
	for _, x := range []*QueueImage{im, small, roomy} {
		if got, _ := x.AppendBinary(nil); !bytes.Equal(got, want) {
			t.Fatal("the image changed with the queue")
		}
	}
	if im.Name() != "orders" || im.Messages() != len(mustDecode(t, want).Snapshot().Messages) {
		t.Fatalf("image of %q with %d messages", im.Name(), im.Messages())
	}
}

// TestQueueImageNotePosition: an image taken before a publish committed
// learns the position afterwards, as the queue does, and encodes it.
func TestQueueImageNotePosition(t *testing.T) {
	q := NewQueue("q")
	if _, err := q.Create(AttributesPatch{}, at(0), nil); err != nil {
		t.Fatal(err)
	}
	ev, _, err := q.PublishBatch([]NewMessage{{ID: mid(1), Body: "x"}, {ID: mid(2), Body: "y"}}, at(0))
	if err != nil || len(ev) != 2 {
		t.Fatal(err)
	}
	q.NotePosition(mid(1), 7)
	im := q.Image()
	if im.Unplaced() != 1 {
		t.Fatalf("%d messages without a position, want 1", im.Unplaced())
	}
	im.NotePosition(mid(2), 8)
	if im.Unplaced() != 0 {
		t.Fatalf("%d messages without a position after NotePosition", im.Unplaced())
	}
	im.NotePosition(mid(1), 99) // placed already: unchanged
	im.NotePosition("not an id", 5)
	q.NotePosition(mid(2), 8)
	b, _ := im.AppendBinary(nil)
	if got, want := mustDecode(t, b).Snapshot(), q.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image with noted positions\ngot  %+v\nwant %+v", got, want)
	}
}

func mustDecode(t testing.TB, b []byte) *Queue {
	t.Helper()
	q, err := DecodeQueue(b)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestQueueCodecEmptyAndDeleted: a queue that was never created and one
// that was deleted round-trip too (the deleted one keeps its version).
func TestQueueCodecEmptyAndDeleted(t *testing.T) {
	roundTrip(t, NewQueue("fresh"))
	w := newWorld(t)
	w.create("gone", AttributesPatch{})
	w.publish("gone", 1, 0)
	w.recorded(w.q("gone").Delete(at(1), nil))
	d := roundTrip(t, w.q("gone"))
	if d.Version() != 3 || d.Exists() {
		t.Fatalf("deleted queue decoded at version %d, exists %v", d.Version(), d.Exists())
	}
}

// TestQueueCodecRejectsDamage: every truncation of a valid encoding, and
// bytes that contradict the aggregate's invariants, are errors.
func TestQueueCodecRejectsDamage(t *testing.T) {
	s := newSim(t, 3)
	for range 400 {
		s.step()
	}
	b, _ := s.qs["orders"].MarshalBinary()
	if len(mustDecode(t, b).Snapshot().Messages) == 0 {
		t.Fatal("the sample queue holds no messages")
	}
	for n := range len(b) {
		if _, err := DecodeQueue(b[:n]); err == nil {
			t.Fatalf("a truncation to %d of %d bytes decoded", n, len(b))
		}
	}
	if _, err := DecodeQueue(append(slices.Clone(b), 0)); err == nil {
		t.Fatal("trailing bytes decoded")
	}
	bad := slices.Clone(b)
	bad[0] = QueueCodecVersion + 1
	if _, err := DecodeQueue(bad); err == nil {
		t.Fatal("another codec version decoded")
	}

	// Two messages with the same id.
	q := NewQueue("q")
	q.Create(AttributesPatch{}, at(0), nil)
	q.Publish(NewMessage{ID: mid(1), Body: "x"}, at(0))
	q.Publish(NewMessage{ID: mid(2), Body: "x"}, at(0))
	b, _ = q.MarshalBinary()
	id1, id2 := mustID(t, mid(1)), mustID(t, mid(2))
	i := bytes.Index(b, id2[:])
	copy(b[i:], id1[:])
	if _, err := DecodeQueue(b); err == nil {
		t.Fatal("a duplicated message id decoded")
	}

	// A deleted queue with a message.
	q = NewQueue("q")
	q.Create(AttributesPatch{}, at(0), nil)
	q.Publish(NewMessage{ID: mid(1), Body: "x"}, at(0))
	b, _ = q.MarshalBinary()
	// codec version, name length, "q", stream version (2), flags.
	if b[4] != codecExists {
		t.Fatalf("flags byte is %#x, the layout changed", b[4])
	}
	b[4] = 0
	if _, err := DecodeQueue(b); err == nil {
		t.Fatal("a queue that does not exist decoded with a message")
	}
}

func mustID(t testing.TB, s string) messageID {
	id, ok := parseMessageID(s)
	if !ok {
		t.Fatalf("bad id %q", s)
	}
	return id
}

// FuzzDecodeQueue feeds arbitrary bytes to the queue decoder, as a corrupt
// or hostile snapshot file would (the command side checks a checksum
// first; this is the layer below it). Decoding must never panic; what
// decodes must encode and decode again to the same state, and must stand
// up to decisions without panicking.
func FuzzDecodeQueue(f *testing.F) {
	for seed := range uint64(4) {
		s := newSim(f, seed)
		for range 150 {
			s.step()
		}
		for _, q := range s.qs {
			b, _ := q.MarshalBinary()
			f.Add(b)
		}
	}
	b, _ := NewQueue("empty").MarshalBinary()
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{QueueCodecVersion, 1, 'q', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := DecodeQueue(data)
		if err != nil {
			if q != nil {
				t.Fatal("DecodeQueue returned a queue and an error")
			}
			return
		}
		again := roundTrip(t, q)
		now := time.UnixMilli(0).UTC()
		if i, ok := q.ready.top(); ok {
			now = msTime(q.msgs.slots[i].due)
		}
		for _, x := range []*Queue{q, again} {
			x.RedriveCandidates(0)
			x.NextDue(now)
			if _, _, err := x.Expire(now, 10); err != nil {
				t.Fatalf("expire: %v", err)
			}
			if _, _, err := x.Receive(ReceiveRequest{MaxMessages: 3, Consumer: "c", Nonces: nonces(0, 3)}, now); err != nil && !isDomainError(err) {
				t.Fatalf("receive: %v", err)
			}
			if _, _, err := x.Publish(NewMessage{ID: mid(1 << 40), Body: "x", DedupID: "d"}, now); err != nil && !isDomainError(err) {
				t.Fatalf("publish: %v", err)
			}
		}
		if !reflect.DeepEqual(q.Snapshot(), again.Snapshot()) {
			t.Fatal("the same decisions on equal states ended differently")
		}
	})
}

func isDomainError(err error) bool {
	var de *Error
	return errors.As(err, &de)
}
