package commands

import (
	"testing"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

func TestCreateQueueRecordsEventWithCallerMetadata(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	r, err := a.CreateQueue(ctxT(), CreateQueue{Name: "orders", Attributes: domain.AttributesPatch{DelayMS: i64(5)}})
	if err != nil {
		t.Fatal(err)
	}
	want := domain.DefaultAttributes()
	want.DelayMS = 5
	if !r.Created || r.Position != 1 || r.Queue.Name != "orders" || r.Queue.Attributes != want {
		t.Fatalf("result = %+v", r)
	}
	ev := logged(t, s)
	if len(ev) != 1 || ev[0].Type != domain.TypeQueueCreated || ev[0].StreamID != "queue-orders" || ev[0].Version != 1 {
		t.Fatalf("log = %+v", ev)
	}
	wantMD := eventstore.Metadata{Subject: "alice", RequestID: "req-1", CorrelationID: "corr-1", CausationID: "req-1"}
	if ev[0].Metadata != wantMD {
		t.Fatalf("metadata = %+v, want %+v", ev[0].Metadata, wantMD)
	}
	if !r.Queue.CreatedAt.Equal(newClock().Now()) {
		t.Fatalf("created_at = %v", r.Queue.CreatedAt)
	}
}

func TestCreateQueueAgain(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	r, err := a.CreateQueue(ctxT(), CreateQueue{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Created || r.Position != 1 {
		t.Fatalf("same attributes: %+v, want Created false at the head", r)
	}
	_, err = a.CreateQueue(ctxT(), CreateQueue{Name: "orders", Attributes: domain.AttributesPatch{RetentionMS: i64(60000)}})
	wantErr(t, err, domain.ErrQueueExists)
	_, err = a.CreateQueue(ctxT(), CreateQueue{Name: "bad name"})
	wantErr(t, err, domain.ErrInvalidArgument)
	if n := len(logged(t, s)); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestConfigureQueue(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	_, err := a.ConfigureQueue(ctxT(), ConfigureQueue{Name: "orders", Attributes: domain.AttributesPatch{DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(3)}})
	wantErr(t, err, domain.ErrInvalidArgument)
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	r, err := a.ConfigureQueue(ctxT(), ConfigureQueue{Name: "orders", Attributes: domain.AttributesPatch{DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(3)}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Queue.Attributes.DeadLetterQueue != "dlq" || r.Position != 3 {
		t.Fatalf("result = %+v", r)
	}
	// Nothing to change: no event, the head as position.
	r, err = a.ConfigureQueue(ctxT(), ConfigureQueue{Name: "orders", Attributes: domain.AttributesPatch{MaxReceiveCount: intp(3)}})
	if err != nil || r.Position != 3 || len(logged(t, s)) != 3 {
		t.Fatalf("no-op configure: %+v %v", r, err)
	}
	_, err = a.ConfigureQueue(ctxT(), ConfigureQueue{Name: "nope"})
	wantErr(t, err, domain.ErrQueueNotFound)
}

func TestDeleteQueue(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	mustCreate(t, a, "orders", domain.AttributesPatch{DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(1)})
	mustPublish(t, a, "orders", "x")

	_, err := a.DeleteQueue(ctxT(), DeleteQueue{Name: "dlq"})
	wantErr(t, err, domain.ErrConflict)

	r, err := a.DeleteQueue(ctxT(), DeleteQueue{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Position != 4 {
		t.Fatalf("position = %d", r.Position)
	}
	// With its user gone, the dead-letter queue can go too.
	if _, err := a.DeleteQueue(ctxT(), DeleteQueue{Name: "dlq"}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "y"}})
	wantErr(t, err, domain.ErrQueueNotFound)
	_, err = a.DeleteQueue(ctxT(), DeleteQueue{Name: "orders"})
	wantErr(t, err, domain.ErrQueueNotFound)

	// Re-creating continues the stream; the old message is gone.
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	ev := logged(t, s)
	last := ev[len(ev)-1]
	if last.StreamID != "queue-orders" || last.Version != 4 {
		t.Fatalf("re-create at %s v%d, want queue-orders v4", last.StreamID, last.Version)
	}
	if got := mustReceive(t, a, Receive{Queue: "orders"}); len(got) != 0 {
		t.Fatalf("a message survived its queue's deletion: %+v", got)
	}
	checkRestart(t, a, s)
}

func TestPurgeQueue(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	for _, b := range []string{"a", "b", "c"} {
		mustPublish(t, a, "orders", b)
	}
	if _, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "later", DelayMS: i64(60000)}}); err != nil {
		t.Fatal(err)
	}
	leased := mustReceive(t, a, Receive{Queue: "orders"})
	r, err := a.PurgeQueue(ctxT(), PurgeQueue{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Purged != 3 || r.Position != a.Head() {
		t.Fatalf("purge = %+v, want 3 (two ready, one delayed)", r)
	}
	if got := mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 10}); len(got) != 0 {
		t.Fatalf("received %d after purge", len(got))
	}
	if _, err := a.Ack(ctxT(), Ack{Queue: "orders", Receipt: leased[0].Receipt}); err != nil {
		t.Fatalf("the leased message did not survive the purge: %v", err)
	}
	_, err = a.PurgeQueue(ctxT(), PurgeQueue{Name: "nope"})
	wantErr(t, err, domain.ErrQueueNotFound)
}
