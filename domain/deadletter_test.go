package domain

import (
	"testing"
)

// dlWorld has "orders" dead-lettering into "dlq" after 2 receives.
func dlWorld(t *testing.T) *world {
	w := newWorld(t)
	w.create("dlq", AttributesPatch{RetentionMS: i64(120000)})
	w.create("orders", AttributesPatch{VisibilityTimeoutMS: i64(1000), DeadLetterQueue: str("dlq"), MaxReceiveCount: num(2)})
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(1), Body: "payload", ContentType: "text/plain", Headers: map[string]string{"k": "v"}}, at(0)))
	return w
}

var content1 = Content{Body: "payload", BodyEncoding: EncodingUTF8, BodySize: 7, ContentType: "text/plain", Headers: map[string]string{"k": "v"}}

func dlCopy(n int, ms int64, origin Origin) MessagePublished {
	return MessagePublished{
		Queue: "dlq", MessageID: mid(n), Body: "payload", BodyEncoding: EncodingUTF8, BodySize: 7,
		ContentType: "text/plain", Headers: map[string]string{"k": "v"},
		PublishedAt: at(ms), AvailableAt: at(ms), ExpiresAt: at(ms + 120000), Origin: &origin,
	}
}

func TestLeaseExpiryDeadLettersAfterMaxReceiveCount(t *testing.T) {
	w := dlWorld(t)
	orders := w.q("orders")
	w.receive("orders", 1, 0, 0)
	w.recorded(expireAll(orders, at(1000)))
	l := w.receive("orders", 1, 1000, 1)[0]
	if l.ReceiveCount != 2 {
		t.Fatalf("receive count %d", l.ReceiveCount)
	}
	// The second lease expires: the count reached max_receive_count, so the
	// message must move; Expire hands it back to the caller for its content.
	ev, dead, err := orders.Expire(at(2000), 100)
	thenEvents(t, w.recorded(ev, err))
	if len(dead) != 1 || dead[0].MessageID != mid(1) || dead[0].DeadLetterQueue != "dlq" || dead[0].ReceiveCount != 2 || dead[0].PublishedVersion != 2 {
		t.Fatalf("dead-letter candidates = %+v", dead)
	}
	got := w.recorded(orders.ExpireLease(mid(1), at(2001), &DeadLetter{Queue: w.q("dlq"), MessageID: mid(100), Content: content1}))
	thenEvents(t, got,
		MessageDeadLettered{Queue: "orders", MessageID: mid(1), DeadLetterQueue: "dlq", DeadLetterMessageID: mid(100), ReceiveCount: 2, DeadLetteredAt: at(2001)},
		dlCopy(100, 2001, Origin{Queue: "orders", MessageID: mid(1), Reason: OriginDeadLetter}),
	)
	if orders.Len() != 0 || w.q("dlq").Len() != 1 {
		t.Fatalf("orders %d, dlq %d messages", orders.Len(), w.q("dlq").Len())
	}
	if l := w.receive("dlq", 1, 2002, 2); len(l) != 1 || l[0].MessageID != mid(100) {
		t.Fatalf("the copy is not ready in the dead-letter queue: %+v", l)
	}
}

func TestExpireLeaseWithoutDeadLetterQueueMakesItReady(t *testing.T) {
	w := dlWorld(t)
	orders := w.q("orders")
	w.receive("orders", 1, 0, 0)
	w.recorded(expireAll(orders, at(1000)))
	l := w.receive("orders", 1, 1000, 1)[0]
	got := w.recorded(orders.ExpireLease(mid(1), at(2000), nil))
	thenEvents(t, got, MessageLeaseExpired{Queue: "orders", MessageID: mid(1), ReceiptHash: ReceiptHash(l.Receipt), ExpiredAt: at(2000)})
	// A lease that is not due (or gone) is no event.
	thenEvents(t, w.recorded(orders.ExpireLease(mid(1), at(2001), nil)))
}

func TestNackPastMaxReceiveCountDeadLetters(t *testing.T) {
	w := dlWorld(t)
	orders := w.q("orders")
	l := w.receive("orders", 1, 0, 0)[0]
	info, err := orders.LeaseOf(l.Receipt, at(1))
	if err != nil || info.DeadLetterQueue != "" {
		t.Fatalf("first receive: info %+v err %v; no dead-letter yet", info, err)
	}
	ev, _, err := orders.Nack(l.Receipt, 0, at(1), nil)
	w.recorded(ev, err)
	l = w.receive("orders", 1, 2, 1)[0]
	info, err = orders.LeaseOf(l.Receipt, at(3))
	if err != nil || info.DeadLetterQueue != "dlq" {
		t.Fatalf("second receive: info %+v err %v; want dead-letter to dlq", info, err)
	}
	ev, id, err := orders.Nack(l.Receipt, 0, at(3), &DeadLetter{Queue: w.q("dlq"), MessageID: mid(100), Content: content1})
	got := w.recorded(ev, err)
	thenEvents(t, got,
		MessageDeadLettered{Queue: "orders", MessageID: mid(1), DeadLetterQueue: "dlq", DeadLetterMessageID: mid(100), ReceiveCount: 2, DeadLetteredAt: at(3)},
		dlCopy(100, 3, Origin{Queue: "orders", MessageID: mid(1), Reason: OriginDeadLetter}),
	)
	if id != mid(1) {
		t.Fatal(id)
	}
}

func TestDeadLetterRefusesAWrongQueue(t *testing.T) {
	w := dlWorld(t)
	w.create("other", AttributesPatch{})
	orders := w.q("orders")
	l := w.receive("orders", 1, 0, 0)[0]
	w.recorded(expireAll(orders, at(1000)))
	l = w.receive("orders", 1, 1000, 1)[0]
	_, _, err := orders.Nack(l.Receipt, 0, at(1001), &DeadLetter{Queue: w.q("other"), MessageID: mid(100), Content: content1})
	if err == nil {
		t.Fatal("dead-lettered into a queue that is not the dead-letter queue")
	}
	if orders.Len() != 1 || orders.InFlight() != 1 {
		t.Fatal("a refused dead-letter changed the state")
	}
}

func TestRedriveMovesDeadLetteredMessages(t *testing.T) {
	w := dlWorld(t)
	orders, dlq := w.q("orders"), w.q("dlq")
	w.receive("orders", 1, 0, 0)
	w.recorded(expireAll(orders, at(1000)))
	w.receive("orders", 1, 1000, 1)
	w.recorded(orders.ExpireLease(mid(1), at(2000), &DeadLetter{Queue: dlq, MessageID: mid(100), Content: content1}))
	// A message published straight to the dead-letter queue is not redriven.
	w.publish("dlq", 200, 2001)

	cands := dlq.RedriveCandidates(0)
	if len(cands) != 1 || cands[0].MessageID != mid(100) {
		t.Fatalf("candidates = %+v", cands)
	}
	got := w.recorded(dlq.Redrive(mid(100), orders, mid(300), content1, at(3000)))
	copyEv := MessagePublished{
		Queue: "orders", MessageID: mid(300), Body: "payload", BodyEncoding: EncodingUTF8, BodySize: 7,
		ContentType: "text/plain", Headers: map[string]string{"k": "v"},
		PublishedAt: at(3000), AvailableAt: at(3000), ExpiresAt: at(3000 + DefaultRetentionMS),
		Origin: &Origin{Queue: "dlq", MessageID: mid(100), Reason: OriginRedrive},
	}
	thenEvents(t, got, MessageRedriven{Queue: "dlq", MessageID: mid(100), ToQueue: "orders", NewMessageID: mid(300), RedrivenAt: at(3000)}, copyEv)
	if len(dlq.RedriveCandidates(0)) != 0 || dlq.Len() != 1 || orders.Len() != 1 {
		t.Fatalf("after redrive: dlq %d (%d candidates), orders %d", dlq.Len(), len(dlq.RedriveCandidates(0)), orders.Len())
	}
	// The copy starts afresh: its receive count is 1 on the next receive.
	if l := w.receive("orders", 1, 3001, 5); len(l) != 1 || l[0].ReceiveCount != 1 {
		t.Fatalf("copy lease = %+v", l)
	}
	// Redriving again is no event; redriving into itself is refused.
	thenEvents(t, w.recorded(dlq.Redrive(mid(100), orders, mid(301), content1, at(3002))))
	_, err := dlq.Redrive(mid(200), dlq, mid(302), content1, at(3002))
	thenError(t, err, ErrInvalidArgument, "to")
	_, err = dlq.Redrive(mid(200), NewQueue("gone"), mid(302), content1, at(3002))
	thenError(t, err, ErrQueueNotFound, "")
}

func TestRedriveSkipsLeasedMessages(t *testing.T) {
	w := dlWorld(t)
	orders, dlq := w.q("orders"), w.q("dlq")
	w.receive("orders", 1, 0, 0)
	w.recorded(expireAll(orders, at(1000)))
	w.receive("orders", 1, 1000, 1)
	w.recorded(orders.ExpireLease(mid(1), at(2000), &DeadLetter{Queue: dlq, MessageID: mid(100), Content: content1}))
	w.receive("dlq", 1, 2001, 2)
	if len(dlq.RedriveCandidates(0)) != 0 {
		t.Fatal("a leased message is a redrive candidate")
	}
	thenEvents(t, w.recorded(dlq.Redrive(mid(100), orders, mid(300), content1, at(2002))))
}
