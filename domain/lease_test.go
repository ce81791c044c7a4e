package domain

import (
	"fmt"
	"testing"
	"time"
)

func TestReceiveLeasesOldestFirstByAvailableTimeThenPosition(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	// m1 is delayed until 500, m2 and m3 are available at 100 (m2 first by
	// position), m4 is delayed beyond the receive time.
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(1), DelayMS: i64(500)}, at(0)))
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(2)}, at(100)))
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(3)}, at(100)))
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(4), DelayMS: i64(10000)}, at(100)))

	ev, leases, err := w.q("orders").Receive(ReceiveRequest{MaxMessages: 10, Consumer: "c1", Nonces: nonces(0, 10)}, at(600))
	got := w.recorded(ev, err)
	var want []Event
	for k, n := range []int{2, 3, 1} {
		receipt := newReceiptFor(t, mid(n), nonce(k))
		want = append(want, MessageLeased{
			Queue: "orders", MessageID: mid(n), ReceiptHash: ReceiptHash(receipt), Consumer: "c1",
			LeasedAt: at(600), LeaseExpiresAt: at(600 + DefaultVisibilityTimeoutMS), ReceiveCount: 1,
		})
		if leases[k].Receipt != receipt || leases[k].MessageID != mid(n) || leases[k].ReceiveCount != 1 {
			t.Fatalf("lease %d = %+v", k, leases[k])
		}
	}
	thenEvents(t, got, want...)
	if leases[0].PublishedVersion != 3 {
		t.Fatalf("published version = %d, want 3 (created=1, m1=2, m2=3)", leases[0].PublishedVersion)
	}
}

func newReceiptFor(t *testing.T, id string, n [ReceiptNonceSize]byte) string {
	t.Helper()
	r, err := NewReceipt(id, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReceiveLeasesAMessageToOneConsumerAtATime(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.publish("orders", 1, 0)
	first := w.receive("orders", 1, 1, 0)
	if len(first) != 1 {
		t.Fatalf("leases = %d", len(first))
	}
	ev, again, err := w.q("orders").Receive(ReceiveRequest{Nonces: nonces(5, 1)}, at(2))
	thenEvents(t, w.recorded(ev, err))
	if len(again) != 0 {
		t.Fatal("a leased message was leased again while its lease is live")
	}
	if w.q("orders").Available(at(2)) {
		t.Fatal("Available with every message leased")
	}
}

func TestReceiveValidation(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	_, _, err := w.q("orders").Receive(ReceiveRequest{MaxMessages: 101, Nonces: nonces(0, 101)}, t0)
	thenError(t, err, ErrInvalidArgument, "max_messages")
	_, _, err = w.q("orders").Receive(ReceiveRequest{MaxMessages: -1, Nonces: nonces(0, 1)}, t0)
	thenError(t, err, ErrInvalidArgument, "max_messages")
	_, _, err = w.q("orders").Receive(ReceiveRequest{VisibilityTimeoutMS: i64(99), Nonces: nonces(0, 1)}, t0)
	thenError(t, err, ErrInvalidArgument, "visibility_timeout_ms")
	_, _, err = w.q("orders").Receive(ReceiveRequest{VisibilityTimeoutMS: i64(43200001), Nonces: nonces(0, 1)}, t0)
	thenError(t, err, ErrInvalidArgument, "visibility_timeout_ms")
	_, _, err = w.q("orders").Receive(ReceiveRequest{Consumer: "a\nb", Nonces: nonces(0, 1)}, t0)
	thenError(t, err, ErrInvalidArgument, "consumer")
	_, _, err = NewQueue("nope").Receive(ReceiveRequest{Nonces: nonces(0, 1)}, t0)
	thenError(t, err, ErrQueueNotFound, "")
}

func TestReceiveVisibilityOverrideAndReceiveCount(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.publish("orders", 1, 0)
	ev, leases, err := w.q("orders").Receive(ReceiveRequest{VisibilityTimeoutMS: i64(100), Nonces: nonces(0, 1)}, at(0))
	w.recorded(ev, err)
	if !leases[0].LeaseExpiresAt.Equal(at(100)) {
		t.Fatalf("deadline %v, want now+100ms", leases[0].LeaseExpiresAt)
	}
	// The lease expires, and the next receive counts 2.
	w.recorded(expireAll(w.q("orders"), at(100)))
	again := w.receive("orders", 1, 101, 1)
	if len(again) != 1 || again[0].ReceiveCount != 2 {
		t.Fatalf("second lease = %+v, want receive count 2", again)
	}
}

func expireAll(q *Queue, now time.Time) ([]Event, error) {
	ev, dead, err := q.Expire(now, 1000)
	if err == nil && len(dead) > 0 {
		err = fmt.Errorf("unexpected dead-letter candidates %+v", dead)
	}
	return ev, err
}

func TestReceiveSkipsMessagesPastRetention(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{RetentionMS: i64(60000)})
	w.publish("orders", 1, 0)
	w.publish("orders", 2, 30000)
	leases := w.receive("orders", 2, 60000, 0)
	if len(leases) != 1 || leases[0].MessageID != mid(2) {
		t.Fatalf("leases = %+v, want only the message still within retention", leases)
	}
}

func TestAckRemovesTheMessage(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.publish("orders", 1, 0)
	l := w.receive("orders", 1, 10, 0)[0]
	ev, id, err := w.q("orders").Ack(l.Receipt, at(20))
	got := w.recorded(ev, err)
	thenEvents(t, got, MessageAcked{Queue: "orders", MessageID: mid(1), ReceiptHash: ReceiptHash(l.Receipt), AckedAt: at(20)})
	if id != mid(1) || w.q("orders").Len() != 0 {
		t.Fatalf("id %s, len %d", id, w.q("orders").Len())
	}
	// Acking again: the message is gone, the receipt unknown.
	_, _, err = w.q("orders").Ack(l.Receipt, at(30))
	thenError(t, err, ErrReceiptNotFound, "")
}

func TestLeaseOwnershipChecks(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{VisibilityTimeoutMS: i64(1000)})
	w.publish("orders", 1, 0)
	l := w.receive("orders", 1, 0, 0)[0]
	q := w.q("orders")

	// Not a receipt at all, or a receipt of a message the queue never had.
	_, _, err := q.Ack("garbage", at(1))
	thenError(t, err, ErrReceiptNotFound, "")
	_, _, err = q.Ack(newReceiptFor(t, mid(99), nonce(0)), at(1))
	thenError(t, err, ErrReceiptNotFound, "")
	_, _, err = q.Ack("", at(1))
	thenError(t, err, ErrInvalidArgument, "receipt")
	// The right message with a guessed nonce.
	_, _, err = q.Ack(newReceiptFor(t, mid(1), nonce(1)), at(1))
	thenError(t, err, ErrLeaseMismatch, "")
	// The deadline passed, even with no MessageLeaseExpired recorded yet.
	_, _, err = q.Ack(l.Receipt, at(1000))
	thenError(t, err, ErrLeaseMismatch, "")
	_, _, err = q.Nack(l.Receipt, 0, at(1000), nil)
	thenError(t, err, ErrLeaseMismatch, "")
	_, _, _, err = q.Extend(l.Receipt, 1000, at(1000))
	thenError(t, err, ErrLeaseMismatch, "")
	// Replaced: the lease expired and another consumer got the message.
	w.recorded(expireAll(q, at(1000)))
	l2 := w.receive("orders", 1, 1001, 1)[0]
	_, _, err = q.Ack(l.Receipt, at(1002))
	thenError(t, err, ErrLeaseMismatch, "")
	if _, err := q.LeaseOf(l2.Receipt, at(1002)); err != nil {
		t.Fatalf("the new lease is refused: %v", err)
	}
	if q.InFlight() != 1 {
		t.Fatal("a refused ack changed the state")
	}
}

func TestNackReleasesWithDelay(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.publish("orders", 1, 0)
	l := w.receive("orders", 1, 0, 0)[0]
	_, _, err := w.q("orders").Nack(l.Receipt, 900001, at(5), nil)
	thenError(t, err, ErrInvalidArgument, "delay_ms")
	ev, id, err := w.q("orders").Nack(l.Receipt, 2000, at(5), nil)
	got := w.recorded(ev, err)
	thenEvents(t, got, MessageReleased{
		Queue: "orders", MessageID: mid(1), ReceiptHash: ReceiptHash(l.Receipt), DelayMS: 2000, ReleasedAt: at(5), AvailableAt: at(2005),
	})
	if id != mid(1) {
		t.Fatal(id)
	}
	if len(w.receive("orders", 1, 2004, 1)) != 0 {
		t.Fatal("a released message came back before its delay")
	}
	if len(w.receive("orders", 1, 2005, 2)) != 1 {
		t.Fatal("a released message did not come back after its delay")
	}
}

func TestExtendMovesTheDeadline(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{VisibilityTimeoutMS: i64(1000)})
	w.publish("orders", 1, 0)
	l := w.receive("orders", 1, 0, 0)[0]
	_, _, _, err := w.q("orders").Extend(l.Receipt, 99, at(500))
	thenError(t, err, ErrInvalidArgument, "visibility_timeout_ms")
	ev, id, deadline, err := w.q("orders").Extend(l.Receipt, 5000, at(500))
	got := w.recorded(ev, err)
	thenEvents(t, got, MessageLeaseExtended{
		Queue: "orders", MessageID: mid(1), ReceiptHash: ReceiptHash(l.Receipt), ExtendedAt: at(500), LeaseExpiresAt: at(5500),
	})
	if id != mid(1) || !deadline.Equal(at(5500)) {
		t.Fatalf("id %s deadline %v", id, deadline)
	}
	// The old deadline no longer expires the lease.
	ev, _, err = w.q("orders").Expire(at(1000), 100)
	thenEvents(t, w.recorded(ev, err))
	w.recorded(ackOf(w.q("orders"), l.Receipt, at(5499)))
}

func TestExpireEmitsLeaseExpiryAndRetention(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{VisibilityTimeoutMS: i64(1000), RetentionMS: i64(60000)})
	w.publish("orders", 1, 0)
	w.publish("orders", 2, 10)
	w.publish("orders", 3, 20000)
	l := w.receive("orders", 1, 100, 0)[0]
	if due, ok := w.q("orders").NextDue(at(100)); !ok || !due.Equal(at(1100)) {
		t.Fatalf("next due = %v %v, want the lease deadline", due, ok)
	}
	ev, dead, err := w.q("orders").Expire(at(1100), 100)
	got := w.recorded(ev, err)
	thenEvents(t, got, MessageLeaseExpired{Queue: "orders", MessageID: mid(1), ReceiptHash: ReceiptHash(l.Receipt), ExpiredAt: at(1100)})
	if len(dead) != 0 {
		t.Fatal(dead)
	}
	// The message is ready again, behind m2 which was available earlier.
	again := w.receive("orders", 1, 1200, 1)
	if again[0].MessageID != mid(2) {
		t.Fatalf("leased %s, want %s (available since 10)", again[0].MessageID, mid(2))
	}
	// Retention expires every message past it, leased or not.
	ev, _, err = w.q("orders").Expire(at(60010), 100)
	got = w.recorded(ev, err)
	thenEvents(t, got,
		MessageExpired{Queue: "orders", MessageID: mid(1), ExpiredAt: at(60010)},
		MessageExpired{Queue: "orders", MessageID: mid(2), ExpiredAt: at(60010)},
	)
	if w.q("orders").Len() != 1 {
		t.Fatalf("len = %d", w.q("orders").Len())
	}
	_, _, err = w.q("orders").Ack(again[0].Receipt, at(60011))
	thenError(t, err, ErrReceiptNotFound, "")
}

func TestExpireRespectsLimit(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{RetentionMS: i64(60000)})
	for n := 0; n < 10; n++ {
		w.publish("orders", n, int64(n))
	}
	ev, _, err := w.q("orders").Expire(at(70000), 4)
	got := w.recorded(ev, err)
	if len(got) != 4 {
		t.Fatalf("%d events, want 4", len(got))
	}
	for k, e := range got {
		if e.(MessageExpired).MessageID != mid(k) {
			t.Fatalf("event %d expires %s, want oldest first", k, e.(MessageExpired).MessageID)
		}
	}
}

func TestNextDueForDelayedMessages(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{RetentionMS: i64(60000)})
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(1), DelayMS: i64(5000)}, at(0)))
	due, ok := w.q("orders").NextDue(at(0))
	if !ok || !due.Equal(at(5000)) {
		t.Fatalf("next due %v %v, want when the delayed message comes due", due, ok)
	}
	if w.q("orders").Available(at(4999)) || !w.q("orders").Available(at(5000)) {
		t.Fatal("Available does not follow the delay")
	}
	if due, _ := w.q("orders").NextDue(at(5000)); !due.Equal(at(60000)) {
		t.Fatalf("once available the next due is retention, got %v", due)
	}
}
