package commands

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// advance moves the test clock and makes the scheduler look at it.
func advance(a *App, c *clock, d time.Duration) {
	c.Advance(d)
	a.sched.poke()
}

func TestSchedulerExpiresLeases(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "orders", domain.AttributesPatch{VisibilityTimeoutMS: i64(1000)})
	mustPublish(t, a, "orders", "x")
	first := mustReceive(t, a, Receive{Queue: "orders"})[0]

	advance(a, c, time.Second)
	// The expiry makes the message ready again, which wakes this receive.
	again := mustReceive(t, a, Receive{Queue: "orders", WaitMS: 10000})
	if len(again) != 1 || again[0].ID != first.ID || again[0].ReceiveCount != 2 {
		t.Fatalf("after expiry: %+v", again)
	}
	exp := eventsOfType(logged(t, s), domain.TypeMessageLeaseExpired)
	if len(exp) != 1 || exp[0].Metadata.Subject != SchedulerSubject {
		t.Fatalf("expiry events = %+v", exp)
	}
	var e domain.MessageLeaseExpired
	if err := json.Unmarshal(exp[0].Data, &e); err != nil {
		t.Fatal(err)
	}
	if e.ReceiptHash != domain.ReceiptHash(first.Receipt) || !e.ExpiredAt.Equal(c.Now()) {
		t.Fatalf("expiry = %+v", e)
	}
	checkRestart(t, a, s)
}

func TestSchedulerDeadLettersAfterMaxReceiveCount(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	mustCreate(t, a, "orders", domain.AttributesPatch{VisibilityTimeoutMS: i64(1000), DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(1)})
	if _, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "poison", Headers: map[string]string{"k": "v"}}}); err != nil {
		t.Fatal(err)
	}
	orig := mustReceive(t, a, Receive{Queue: "orders"})[0]

	advance(a, c, time.Second)
	got := mustReceive(t, a, Receive{Queue: "dlq", WaitMS: 10000})
	if len(got) != 1 || got[0].Body != "poison" || got[0].Headers["k"] != "v" || got[0].ID == orig.ID || got[0].ReceiveCount != 1 {
		t.Fatalf("dead-letter copy = %+v", got)
	}
	ev := logged(t, s)
	dl := eventsOfType(ev, domain.TypeMessageDeadLettered)
	if len(dl) != 1 || dl[0].StreamID != "queue-orders" || dl[0].Metadata.Subject != SchedulerSubject {
		t.Fatalf("dead-letter events = %+v", dl)
	}
	cp := ev[dl[0].Position] // the next event, positions start at 1
	if cp.Type != domain.TypeMessagePublished || cp.StreamID != "queue-dlq" {
		t.Fatalf("event after the dead-letter = %s in %s, want the copy in queue-dlq", cp.Type, cp.StreamID)
	}
	var p domain.MessagePublished
	if err := json.Unmarshal(cp.Data, &p); err != nil {
		t.Fatal(err)
	}
	if p.Origin == nil || *p.Origin != (domain.Origin{Queue: "orders", MessageID: orig.ID, Reason: domain.OriginDeadLetter}) || p.MessageID != got[0].ID {
		t.Fatalf("copy = %+v", p)
	}
	if n := len(mustReceive(t, a, Receive{Queue: "orders"})); n != 0 {
		t.Fatal("the dead-lettered message is still in its queue")
	}
	checkRestart(t, a, s)
}

func TestNackPastMaxReceiveCountDeadLetters(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	mustCreate(t, a, "orders", domain.AttributesPatch{DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(2)})
	mustPublish(t, a, "orders", "x")
	m := mustReceive(t, a, Receive{Queue: "orders"})[0]
	if _, err := a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt}); err != nil {
		t.Fatal(err)
	}
	m = mustReceive(t, a, Receive{Queue: "orders"})[0]
	r, err := a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != m.ID {
		t.Fatalf("nack = %+v", r)
	}
	last := logged(t, s)[r.Position-2:]
	if got := types(last); got[0] != domain.TypeMessageDeadLettered || got[1] != domain.TypeMessagePublished || last[1].StreamID != "queue-dlq" {
		t.Fatalf("last events = %v", got)
	}
	if got := mustReceive(t, a, Receive{Queue: "dlq"}); len(got) != 1 || got[0].Body != "x" {
		t.Fatalf("dead-letter queue holds %+v", got)
	}
	checkRestart(t, a, s)
}

func TestRedrive(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	mustCreate(t, a, "orders", domain.AttributesPatch{DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(1)})
	mustCreate(t, a, "retry", domain.AttributesPatch{})
	for _, b := range []string{"a", "b", "c"} {
		mustPublish(t, a, "orders", b)
	}
	for _, m := range mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 3}) {
		if _, err := a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt}); err != nil {
			t.Fatal(err)
		}
	}
	mustPublish(t, a, "dlq", "published straight to the dlq")

	_, err := a.Redrive(ctxT(), Redrive{Queue: "dlq", To: "nope"})
	wantErr(t, err, domain.ErrQueueNotFound)
	_, err = a.Redrive(ctxT(), Redrive{Queue: "dlq", To: "dlq"})
	wantErr(t, err, domain.ErrInvalidArgument)

	r, err := a.Redrive(ctxT(), Redrive{Queue: "dlq", To: "retry", MaxMessages: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Moved != 1 || r.Position != a.Head() {
		t.Fatalf("redrive to retry = %+v", r)
	}
	r, err = a.Redrive(ctxT(), Redrive{Queue: "dlq"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Moved != 2 {
		t.Fatalf("redrive to origin = %+v", r)
	}
	if got := bodies(mustReceive(t, a, Receive{Queue: "retry", MaxMessages: 10})); len(got) != 1 || got[0] != "a" {
		t.Fatalf("retry holds %v", got)
	}
	if got := bodies(mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 10})); len(got) != 2 || got[0] != "b" || got[1] != "c" {
		t.Fatalf("orders holds %v", got)
	}
	if got := bodies(mustReceive(t, a, Receive{Queue: "dlq", MaxMessages: 10})); len(got) != 1 {
		t.Fatalf("dlq holds %v, want only the message published there", got)
	}
	r, err = a.Redrive(ctxT(), Redrive{Queue: "dlq"})
	if err != nil || r.Moved != 0 {
		t.Fatalf("nothing left: %+v %v", r, err)
	}
	checkRestart(t, a, s)
}

func TestSchedulerExpiresMessagesPastRetention(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "orders", domain.AttributesPatch{RetentionMS: i64(60000)})
	mustPublish(t, a, "orders", "old")
	c.Advance(30 * time.Second)
	mustPublish(t, a, "orders", "young")
	advance(a, c, 30*time.Second)
	waitUntil(t, "the old message expired", func() bool {
		return len(eventsOfType(logged(t, s), domain.TypeMessageExpired)) == 1
	})
	if got := bodies(mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 10})); len(got) != 1 || got[0] != "young" {
		t.Fatalf("after retention: %v", got)
	}
	checkRestart(t, a, s)
}

func TestLongPollWakesAtOnceOnPublish(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, nil)
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	type result struct {
		msgs []ReceivedMessage
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		r, err := a.Receive(ctxT(), Receive{Queue: "orders", WaitMS: 20000})
		done <- result{r.Messages, err, time.Now()}
	}()
	waitUntil(t, "the receive is waiting", func() bool { return waiters(a, "orders") == 1 })
	published := time.Now()
	mustPublish(t, a, "orders", "wake up")
	r := <-done
	if r.err != nil || len(r.msgs) != 1 || r.msgs[0].Body != "wake up" {
		t.Fatalf("long poll = %+v %v", r.msgs, r.err)
	}
	if d := r.at.Sub(published); d > 2*time.Second {
		t.Fatalf("the long poll answered %v after the publish; it should wake at once", d)
	}
	if waiters(a, "orders") != 0 {
		t.Fatal("the waiter was not released")
	}
}

func TestLongPollWakesWhenADelayedMessageComesDue(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, nil)
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	if _, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "later", DelayMS: i64(300)}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := mustReceive(t, a, Receive{Queue: "orders", WaitMS: 20000})
	d := time.Since(start)
	if len(got) != 1 || got[0].Body != "later" {
		t.Fatalf("got %+v", got)
	}
	if d < 250*time.Millisecond || d > 10*time.Second {
		t.Fatalf("delayed message received after %v, want about 300ms", d)
	}
}

func TestLongPollEndsEmpty(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, nil)
	mustCreate(t, a, "orders", domain.AttributesPatch{})

	start := time.Now()
	r, err := a.Receive(ctxT(), Receive{Queue: "orders", WaitMS: 200})
	if err != nil || len(r.Messages) != 0 || r.Messages == nil || r.Position != a.Head() {
		t.Fatalf("timeout: %+v %v", r, err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatal("returned before wait_ms")
	}

	ctx, cancel := context.WithCancel(ctxT())
	done := make(chan error, 1)
	go func() {
		_, err := a.Receive(ctx, Receive{Queue: "orders", WaitMS: 20000})
		done <- err
	}()
	waitUntil(t, "the receive is waiting", func() bool { return waiters(a, "orders") == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("cancelled long poll: %v", err)
	}

	go func() {
		_, err := a.Receive(ctxT(), Receive{Queue: "orders", WaitMS: 20000})
		done <- err
	}()
	waitUntil(t, "the receive is waiting", func() bool { return waiters(a, "orders") == 1 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("long poll at close: %v", err)
	}
	_, err = a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "x"}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish after Close: %v, want ErrUnavailable", err)
	}
}

func TestLongPollWakesOnNack(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, nil)
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	mustPublish(t, a, "orders", "x")
	m := mustReceive(t, a, Receive{Queue: "orders"})[0]
	done := make(chan []ReceivedMessage, 1)
	go func() {
		r, _ := a.Receive(ctxT(), Receive{Queue: "orders", WaitMS: 20000})
		done <- r.Messages
	}()
	waitUntil(t, "the receive is waiting", func() bool { return waiters(a, "orders") == 1 })
	if _, err := a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if len(got) != 1 || got[0].ID != m.ID || got[0].ReceiveCount != 2 {
			t.Fatalf("got %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the nack did not wake the waiting receive")
	}
}

func TestSchedulerRetriesAfterAFailedAppend(t *testing.T) {
	s, _ := openStore(t)
	f := &faultyStore{Store: s}
	a, err := New(f, Options{Logger: quietLogger(), RetryDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	mustCreate(t, a, "orders", domain.AttributesPatch{VisibilityTimeoutMS: i64(100)})
	mustPublish(t, a, "orders", "x")
	first := mustReceive(t, a, Receive{Queue: "orders"})
	// Nothing else appends now: the next append is the scheduler's expiry
	// of that lease, and it fails.
	f.failNext.Store(1)
	got := mustReceive(t, a, Receive{Queue: "orders", WaitMS: 10000})
	if len(got) != 1 || got[0].ID != first[0].ID || got[0].ReceiveCount != 2 {
		t.Fatalf("after the failed expiry and its retry: %+v", got)
	}
	if f.failNext.Load() >= 0 {
		t.Fatal("the fault was never injected")
	}
	if n := len(eventsOfType(logged(t, s), domain.TypeMessageLeaseExpired)); n != 1 {
		t.Fatalf("%d expiries logged, want 1", n)
	}
	checkRestart(t, a, f)
}
