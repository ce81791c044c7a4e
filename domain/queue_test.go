package domain

import (
	"strings"
	"testing"
	"time"
)

func TestCreateWithDefaults(t *testing.T) {
	w := newWorld(t)
	got := w.recorded(w.q("orders").Create(AttributesPatch{}, t0, w.exists))
	thenEvents(t, got, created("orders", DefaultAttributes()))
	if v := w.q("orders").Version(); v != 1 {
		t.Fatalf("version = %d, want 1", v)
	}
}

func TestCreateWithAttributes(t *testing.T) {
	w := newWorld(t)
	w.create("dlq", AttributesPatch{})
	p := AttributesPatch{
		VisibilityTimeoutMS: i64(100), DelayMS: i64(900000), RetentionMS: i64(60000),
		MaxMessageBytes: i64(1024), DeadLetterQueue: str("dlq"), MaxReceiveCount: num(3),
	}
	got := w.recorded(w.q("orders").Create(p, t0, w.exists))
	thenEvents(t, got, created("orders", Attributes{
		VisibilityTimeoutMS: 100, DelayMS: 900000, RetentionMS: 60000,
		MaxMessageBytes: 1024, DeadLetterQueue: "dlq", MaxReceiveCount: 3,
	}))
}

func TestCreateRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "-a", ".a", "_a", "a b", "a/b", "é", strings.Repeat("a", 81), "a\x00"} {
		w := newWorld(t)
		_, err := w.q(name).Create(AttributesPatch{}, t0, w.exists)
		thenError(t, err, ErrInvalidArgument, "name")
	}
	for _, name := range []string{"a", "0", "A.b_c-d", strings.Repeat("z", 80)} {
		w := newWorld(t)
		w.create(name, AttributesPatch{})
	}
}

func TestCreateRejectsOutOfRangeAttributes(t *testing.T) {
	cases := []struct {
		field string
		p     AttributesPatch
	}{
		{AttrVisibilityTimeoutMS, AttributesPatch{VisibilityTimeoutMS: i64(99)}},
		{AttrVisibilityTimeoutMS, AttributesPatch{VisibilityTimeoutMS: i64(43200001)}},
		{AttrDelayMS, AttributesPatch{DelayMS: i64(-1)}},
		{AttrDelayMS, AttributesPatch{DelayMS: i64(900001)}},
		{AttrRetentionMS, AttributesPatch{RetentionMS: i64(59999)}},
		{AttrRetentionMS, AttributesPatch{RetentionMS: i64(1209600001)}},
		{AttrMaxMessageBytes, AttributesPatch{MaxMessageBytes: i64(1023)}},
		{AttrMaxMessageBytes, AttributesPatch{MaxMessageBytes: i64(1048577)}},
		{AttrMaxReceiveCount, AttributesPatch{MaxReceiveCount: num(-1)}},
		{AttrMaxReceiveCount, AttributesPatch{MaxReceiveCount: num(1001)}},
		{AttrDeadLetterQueue, AttributesPatch{DeadLetterQueue: str("orders"), MaxReceiveCount: num(1)}},
		{AttrDeadLetterQueue, AttributesPatch{DeadLetterQueue: str("missing"), MaxReceiveCount: num(1)}},
		{AttrDeadLetterQueue, AttributesPatch{DeadLetterQueue: str("bad name"), MaxReceiveCount: num(1)}},
		{AttrMaxReceiveCount, AttributesPatch{DeadLetterQueue: str("dlq")}},
		{AttrMaxReceiveCount, AttributesPatch{DeadLetterQueue: str("dlq"), MaxReceiveCount: num(0)}},
	}
	for _, c := range cases {
		w := newWorld(t)
		w.create("dlq", AttributesPatch{})
		ev, err := w.q("orders").Create(c.p, t0, w.exists)
		thenError(t, err, ErrInvalidArgument, c.field)
		thenEvents(t, ev)
		if w.q("orders").Exists() {
			t.Fatalf("%s: a refused create changed the state", c.field)
		}
	}
}

func TestCreateAgainWithSameAttributesIsNoEvent(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{DelayMS: i64(5)})
	got, err := w.q("orders").Create(AttributesPatch{DelayMS: i64(5), VisibilityTimeoutMS: i64(DefaultVisibilityTimeoutMS)}, at(1000), w.exists)
	if err != nil {
		t.Fatal(err)
	}
	thenEvents(t, got)
}

func TestCreateAgainWithDifferentAttributesIsQueueExists(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	_, err := w.q("orders").Create(AttributesPatch{DelayMS: i64(5)}, t0, w.exists)
	thenError(t, err, ErrQueueExists, "")
	if !strings.Contains(err.Error(), AttrDelayMS) {
		t.Fatalf("error %q does not name the differing attribute", err)
	}
}

func TestRecreateAfterDeleteContinuesTheStream(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.publish("orders", 1, 0)
	w.recorded(w.q("orders").Delete(at(10), nil))
	got := w.recorded(w.q("orders").Create(AttributesPatch{DelayMS: i64(7)}, at(20), w.exists))
	a := DefaultAttributes()
	a.DelayMS = 7
	thenEvents(t, got, QueueCreated{Queue: "orders", Attributes: a, CreatedAt: at(20)})
	q := w.q("orders")
	if q.Version() != 4 || q.Len() != 0 {
		t.Fatalf("version %d, len %d; want 4 and no message from before the delete", q.Version(), q.Len())
	}
}

func TestConfigureRecordsChangedAttributes(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.create("dlq", AttributesPatch{})
	got := w.recorded(w.q("orders").Configure(AttributesPatch{
		DelayMS: i64(10), DeadLetterQueue: str("dlq"), MaxReceiveCount: num(2), RetentionMS: i64(DefaultRetentionMS),
	}, at(5), w.exists))
	a := DefaultAttributes()
	a.DelayMS, a.DeadLetterQueue, a.MaxReceiveCount = 10, "dlq", 2
	thenEvents(t, got, QueueConfigured{
		Queue: "orders", Attributes: a, ConfiguredAt: at(5),
		Changed: []string{AttrDelayMS, AttrDeadLetterQueue, AttrMaxReceiveCount},
	})
	if !w.q("orders").UpdatedAt().Equal(at(5)) {
		t.Fatalf("updated_at = %v", w.q("orders").UpdatedAt())
	}
	// Removing the dead-letter queue keeps max_receive_count as it was.
	got = w.recorded(w.q("orders").Configure(AttributesPatch{DeadLetterQueue: str("")}, at(6), w.exists))
	a.DeadLetterQueue = ""
	thenEvents(t, got, QueueConfigured{Queue: "orders", Attributes: a, ConfiguredAt: at(6), Changed: []string{AttrDeadLetterQueue}})
}

func TestConfigureWithoutChangeIsNoEvent(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	got := w.recorded(w.q("orders").Configure(AttributesPatch{DelayMS: i64(0)}, at(5), w.exists))
	thenEvents(t, got)
}

func TestConfigureRules(t *testing.T) {
	w := newWorld(t)
	_, err := w.q("nope").Configure(AttributesPatch{}, t0, w.exists)
	thenError(t, err, ErrQueueNotFound, "")

	w.create("orders", AttributesPatch{})
	_, err = w.q("orders").Configure(AttributesPatch{DeadLetterQueue: str("missing"), MaxReceiveCount: num(1)}, t0, w.exists)
	thenError(t, err, ErrInvalidArgument, AttrDeadLetterQueue)
	_, err = w.q("orders").Configure(AttributesPatch{VisibilityTimeoutMS: i64(1)}, t0, w.exists)
	thenError(t, err, ErrInvalidArgument, AttrVisibilityTimeoutMS)
	if w.q("orders").Attributes() != DefaultAttributes() {
		t.Fatal("a refused configure changed the attributes")
	}
}

func TestDeleteRules(t *testing.T) {
	w := newWorld(t)
	_, err := w.q("nope").Delete(t0, nil)
	thenError(t, err, ErrQueueNotFound, "")

	w.create("dlq", AttributesPatch{})
	_, err = w.q("dlq").Delete(t0, []string{"orders"})
	thenError(t, err, ErrConflict, "")
	if !w.q("dlq").Exists() {
		t.Fatal("refused delete removed the queue")
	}
	got := w.recorded(w.q("dlq").Delete(at(3), nil))
	thenEvents(t, got, QueueDeleted{Queue: "dlq", DeletedAt: at(3)})
	_, _, err = w.q("dlq").Publish(NewMessage{ID: mid(1)}, at(4))
	thenError(t, err, ErrQueueNotFound, "")
}

func TestPurgeDropsReadyAndDelayedButNotLeased(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.publish("orders", 1, 0)
	w.publish("orders", 2, 1)
	ev, _, err := w.q("orders").Publish(NewMessage{ID: mid(3), DelayMS: i64(60000)}, at(2))
	w.recorded(ev, err)
	leases := w.receive("orders", 1, 10, 0)

	ev, n, err := w.q("orders").Purge(at(20))
	got := w.recorded(ev, err)
	thenEvents(t, got, QueuePurged{Queue: "orders", Purged: 2, PurgedAt: at(20)})
	if n != 2 {
		t.Fatalf("purged = %d, want 2", n)
	}
	if w.q("orders").Len() != 1 {
		t.Fatalf("len = %d, want the leased message only", w.q("orders").Len())
	}
	// The leased message can still be acked.
	w.recorded(ackOf(w.q("orders"), leases[0].Receipt, at(30)))
}

func ackOf(q *Queue, receipt string, now time.Time) ([]Event, error) {
	ev, _, err := q.Ack(receipt, now)
	return ev, err
}

func TestEventsOfAnotherQueueOrOfAMissingQueueAreRefused(t *testing.T) {
	q := NewQueue("a")
	if err := q.Apply(published("a", 1, 0)); err == nil {
		t.Fatal("a message applied to a queue that was never created")
	}
	if err := q.Apply(created("b", DefaultAttributes())); err == nil {
		t.Fatal("another queue's event was applied")
	}
	if err := q.Apply(created("a", DefaultAttributes())); err != nil {
		t.Fatal(err)
	}
	if err := q.Apply(created("a", DefaultAttributes())); err == nil {
		t.Fatal("QueueCreated applied twice")
	}
}
