package commands

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

func TestPublishReceiveAck(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	bin := base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})
	p1, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{
		Body: "hello", ContentType: "text/plain", Headers: map[string]string{"trace": "t1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !domain.ValidMessageID(p1.ID) || p1.Queue != "orders" || p1.Position != 2 || p1.Duplicate {
		t.Fatalf("publish = %+v", p1)
	}
	p2, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: bin, BodyEncoding: domain.EncodingBase64}})
	if err != nil {
		t.Fatal(err)
	}

	c.Advance(time.Second)
	r, err := a.Receive(ctxT(), Receive{Queue: "orders", MaxMessages: 10, Consumer: "worker-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != 2 || r.Position != 5 { // created, 2 published, 2 leased
		t.Fatalf("receive = %+v", r)
	}
	m := r.Messages[0]
	want := ReceivedMessage{
		ID: p1.ID, Queue: "orders", Body: "hello", BodyEncoding: domain.EncodingUTF8, ContentType: "text/plain",
		Headers: map[string]string{"trace": "t1"}, Receipt: m.Receipt, ReceiveCount: 1,
		PublishedAt: newClock().Now(), LeaseExpiresAt: c.Now().Add(30 * time.Second),
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("message = %+v\nwant      %+v", m, want)
	}
	if b := r.Messages[1]; b.ID != p2.ID || b.Body != bin || b.BodyEncoding != domain.EncodingBase64 {
		t.Fatalf("binary message = %+v", b)
	}
	leased := eventsOfType(logged(t, s), domain.TypeMessageLeased)
	if len(leased) != 2 || strings.Contains(string(leased[0].Data), m.Receipt) {
		t.Fatal("the receipt itself reached the log")
	}
	if !strings.Contains(string(leased[0].Data), domain.ReceiptHash(m.Receipt)) || !strings.Contains(string(leased[0].Data), `"consumer":"worker-1"`) {
		t.Fatalf("lease event = %s", leased[0].Data)
	}

	ack, err := a.Ack(ctxT(), Ack{Queue: "orders", Receipt: m.Receipt})
	if err != nil {
		t.Fatal(err)
	}
	if ack.ID != p1.ID || ack.Position != 6 {
		t.Fatalf("ack = %+v", ack)
	}
	_, err = a.Ack(ctxT(), Ack{Queue: "orders", Receipt: m.Receipt})
	wantErr(t, err, domain.ErrReceiptNotFound)
	_, err = a.Ack(ctxT(), Ack{Queue: "orders", Receipt: "forged"})
	wantErr(t, err, domain.ErrReceiptNotFound)
	checkRestart(t, a, s)
}

func TestPublishValidation(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{MaxMessageBytes: i64(1024)})
	_, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: strings.Repeat("x", 1025)}})
	wantErr(t, err, domain.ErrPayloadTooLarge)
	_, err = a.Publish(ctxT(), Publish{Queue: "nope", Message: Message{Body: "x"}})
	wantErr(t, err, domain.ErrQueueNotFound)
	_, err = a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "x", BodyEncoding: "rot13"}})
	wantErr(t, err, domain.ErrInvalidArgument)
	if n := len(logged(t, s)); n != 1 {
		t.Fatalf("refused publishes appended: %d events", n)
	}
}

func TestPublishBatchAllOrNothing(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{MaxMessageBytes: i64(1024)})
	_, err := a.PublishBatch(ctxT(), PublishBatch{Queue: "orders", Messages: []Message{{Body: "ok"}, {Body: strings.Repeat("x", 2000)}}})
	var de *domain.Error
	if !errors.As(err, &de) || de.Field != "messages[1].body" || de.Code != "payload_too_large" {
		t.Fatalf("error = %v, want payload_too_large on messages[1].body", err)
	}
	if n := len(logged(t, s)); n != 1 {
		t.Fatalf("refused batch appended: %d events", n)
	}
	r, err := a.PublishBatch(ctxT(), PublishBatch{Queue: "orders", Messages: []Message{{Body: "a", DedupID: "k"}, {Body: "b"}, {Body: "c", DedupID: "k"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 3 || r.Position != 3 {
		t.Fatalf("batch = %+v", r)
	}
	if r.Results[0].Position != 2 || r.Results[1].Position != 3 || r.Results[0].ID == r.Results[1].ID {
		t.Fatalf("results = %+v", r.Results)
	}
	if !r.Results[2].Duplicate || r.Results[2].ID != r.Results[0].ID {
		t.Fatalf("in-batch duplicate = %+v", r.Results[2])
	}
	got := mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 10})
	if len(got) != 2 || got[0].Body != "a" || got[1].Body != "b" {
		t.Fatalf("received %+v", got)
	}
}

func TestDedupWithinFiveMinutes(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	first, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "a", DedupID: "order-42"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(4 * time.Minute)
	dup, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "a again", DedupID: "order-42"}})
	if err != nil {
		t.Fatal(err)
	}
	if !dup.Duplicate || dup.ID != first.ID || dup.Position != a.Head() {
		t.Fatalf("duplicate = %+v, first = %+v", dup, first)
	}
	if n := len(eventsOfType(logged(t, s), domain.TypeMessagePublished)); n != 1 {
		t.Fatalf("%d MessagePublished, want 1", n)
	}
	c.Advance(time.Minute)
	again, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "a", DedupID: "order-42"}})
	if err != nil || again.Duplicate || again.ID == first.ID {
		t.Fatalf("after the window: %+v %v", again, err)
	}
	checkRestart(t, a, s)
}

func TestReceiveValidationAndOrder(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	_, err := a.Receive(ctxT(), Receive{Queue: "orders", WaitMS: 20001})
	wantErr(t, err, domain.ErrInvalidArgument)
	_, err = a.Receive(ctxT(), Receive{Queue: "orders", MaxMessages: 101})
	wantErr(t, err, domain.ErrInvalidArgument)
	_, err = a.Receive(ctxT(), Receive{Queue: "orders", VisibilityTimeoutMS: i64(50)})
	wantErr(t, err, domain.ErrInvalidArgument)
	_, err = a.Receive(ctxT(), Receive{Queue: "nope"})
	wantErr(t, err, domain.ErrQueueNotFound)

	if _, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "late", DelayMS: i64(2000)}}); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	mustPublish(t, a, "orders", "early")
	c.Advance(time.Second)
	mustPublish(t, a, "orders", "now")
	got := mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 2, VisibilityTimeoutMS: i64(100)})
	if len(got) != 2 || got[0].Body != "early" || got[1].Body != "late" {
		t.Fatalf("order = %v, want early (available first), then late", bodies(got))
	}
	if !got[0].LeaseExpiresAt.Equal(c.Now().Add(100 * time.Millisecond)) {
		t.Fatalf("visibility override ignored: %v", got[0].LeaseExpiresAt)
	}
}

func bodies(ms []ReceivedMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Body
	}
	return out
}

func TestLeaseOwnership(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "orders", domain.AttributesPatch{VisibilityTimeoutMS: i64(1000)})
	mustPublish(t, a, "orders", "x")
	m := mustReceive(t, a, Receive{Queue: "orders"})[0]

	// A receipt with the right message id but another nonce.
	forged, err := domain.NewReceipt(m.ID, [domain.ReceiptNonceSize]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Ack(ctxT(), Ack{Queue: "orders", Receipt: forged})
	wantErr(t, err, domain.ErrLeaseMismatch)
	// A receipt used on another queue.
	mustCreate(t, a, "other", domain.AttributesPatch{})
	_, err = a.Ack(ctxT(), Ack{Queue: "other", Receipt: m.Receipt})
	wantErr(t, err, domain.ErrReceiptNotFound)
	// Past the deadline, before the scheduler wrote the expiry: refused.
	c.Advance(1000 * time.Millisecond)
	_, err = a.Ack(ctxT(), Ack{Queue: "orders", Receipt: m.Receipt})
	wantErr(t, err, domain.ErrLeaseMismatch)
	_, err = a.Extend(ctxT(), Extend{Queue: "orders", Receipt: m.Receipt, VisibilityTimeoutMS: 1000})
	wantErr(t, err, domain.ErrLeaseMismatch)
	_, err = a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt})
	wantErr(t, err, domain.ErrLeaseMismatch)
	if n := len(logged(t, s)); n != 4 {
		t.Fatalf("refused commands appended: %d events", n)
	}
}

func TestNackWithDelayAndExtend(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "orders", domain.AttributesPatch{VisibilityTimeoutMS: i64(1000)})
	p := mustPublish(t, a, "orders", "x")
	m := mustReceive(t, a, Receive{Queue: "orders"})[0]

	c.Advance(500 * time.Millisecond)
	ext, err := a.Extend(ctxT(), Extend{Queue: "orders", Receipt: m.Receipt, VisibilityTimeoutMS: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if ext.ID != p.ID || !ext.LeaseExpiresAt.Equal(c.Now().Add(5*time.Second)) || ext.Position != 4 {
		t.Fatalf("extend = %+v", ext)
	}
	_, err = a.Extend(ctxT(), Extend{Queue: "orders", Receipt: m.Receipt, VisibilityTimeoutMS: 10})
	wantErr(t, err, domain.ErrInvalidArgument)
	c.Advance(4 * time.Second) // past the first deadline, within the extended one
	_, err = a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt, DelayMS: 900001})
	wantErr(t, err, domain.ErrInvalidArgument)
	n, err := a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt, DelayMS: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != p.ID || n.Position != 5 {
		t.Fatalf("nack = %+v", n)
	}
	if got := mustReceive(t, a, Receive{Queue: "orders"}); len(got) != 0 {
		t.Fatal("a nacked message came back before its delay")
	}
	c.Advance(2 * time.Second)
	got := mustReceive(t, a, Receive{Queue: "orders"})
	if len(got) != 1 || got[0].ReceiveCount != 2 {
		t.Fatalf("after the delay: %+v", got)
	}
	checkRestart(t, a, s)
}

func TestAckBatch(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	mustPublish(t, a, "orders", "a")
	mustPublish(t, a, "orders", "b")
	ms := mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 2})
	r, err := a.AckBatch(ctxT(), AckBatch{Queue: "orders", Receipts: []string{ms[0].Receipt, "bogus", ms[1].Receipt, ms[0].Receipt}})
	if err != nil {
		t.Fatal(err)
	}
	want := []AckItem{
		{Receipt: ms[0].Receipt, OK: true},
		{Receipt: "bogus", Code: "receipt_not_found"},
		{Receipt: ms[1].Receipt, OK: true},
		{Receipt: ms[0].Receipt, Code: "receipt_not_found"},
	}
	if !reflect.DeepEqual(r.Results, want) || r.Position != 7 { // created, 2 published, 2 leased, 2 acked
		t.Fatalf("batch = %+v", r)
	}
	if n := len(eventsOfType(logged(t, s), domain.TypeMessageAcked)); n != 2 {
		t.Fatalf("%d acks logged", n)
	}
	_, err = a.AckBatch(ctxT(), AckBatch{Queue: "orders"})
	wantErr(t, err, domain.ErrInvalidArgument)
	_, err = a.AckBatch(ctxT(), AckBatch{Queue: "orders", Receipts: make([]string, 101)})
	wantErr(t, err, domain.ErrInvalidArgument)
}
