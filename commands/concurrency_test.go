package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

func TestConcurrentConsumersNeverShareALease(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, nil)
	mustCreate(t, a, "jobs", domain.AttributesPatch{VisibilityTimeoutMS: i64(600000)})
	const total = 2000
	for b := 0; b < total/100; b++ {
		msgs := make([]Message, 100)
		for i := range msgs {
			msgs[i] = Message{Body: fmt.Sprintf("job-%d", b*100+i)}
		}
		if _, err := a.PublishBatch(ctxT(), PublishBatch{Queue: "jobs", Messages: msgs}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu     sync.Mutex
		leased = map[string]int{}
		acked  = map[string]int{}
		wg     sync.WaitGroup
		errs   = make(chan error, 8)
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := a.Receive(ctxT(), Receive{Queue: "jobs", MaxMessages: 1 + w%10, Consumer: fmt.Sprint("w", w)})
				if err != nil {
					errs <- err
					return
				}
				if len(r.Messages) == 0 {
					return
				}
				for _, m := range r.Messages {
					mu.Lock()
					leased[m.ID]++
					mu.Unlock()
					if _, err := a.Ack(ctxT(), Ack{Queue: "jobs", Receipt: m.Receipt}); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					acked[m.ID]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(leased) != total || len(acked) != total {
		t.Fatalf("leased %d distinct, acked %d distinct, want %d", len(leased), len(acked), total)
	}
	for id, n := range leased {
		if n != 1 || acked[id] != 1 {
			t.Fatalf("message %s leased %d times, acked %d times", id, n, acked[id])
		}
	}
	checkRestart(t, a, s)
}

func TestManyPublishersAndConsumersLoseNothing(t *testing.T) {
	s, _ := openStore(t)
	a := newApp(t, s, nil)
	mustCreate(t, a, "stream", domain.AttributesPatch{})
	const publishers, each = 4, 150
	var (
		mu        sync.Mutex
		published = map[string]bool{}
		received  = map[string]int{}
		pubWG     sync.WaitGroup
		conWG     sync.WaitGroup
		errs      = make(chan error, 16)
	)
	ctx, stop := context.WithCancel(ctxT())
	defer stop()
	for c := 0; c < 4; c++ {
		conWG.Add(1)
		go func() {
			defer conWG.Done()
			for ctx.Err() == nil {
				r, err := a.Receive(ctx, Receive{Queue: "stream", MaxMessages: 5, WaitMS: 1000})
				if err != nil {
					errs <- err
					return
				}
				for _, m := range r.Messages {
					if _, err := a.Ack(ctxT(), Ack{Queue: "stream", Receipt: m.Receipt}); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					received[m.Body]++
					mu.Unlock()
				}
			}
		}()
	}
	for p := 0; p < publishers; p++ {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf("p%d-%d", p, i)
				if _, err := a.Publish(ctxT(), Publish{Queue: "stream", Message: Message{Body: body}}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				published[body] = true
				mu.Unlock()
			}
		}()
	}
	pubWG.Wait()
	waitUntil(t, "every message was received", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= publishers*each || len(errs) > 0
	})
	stop()
	conWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for body := range published {
		if received[body] != 1 {
			t.Fatalf("%s received %d times", body, received[body])
		}
	}
	if len(received) != len(published) {
		t.Fatalf("received %d distinct bodies, published %d", len(received), len(published))
	}
	checkRestart(t, a, s)
}

// TestRestartEqualsReplay runs a bit of everything, then proves that New on
// the same log rebuilds exactly the live state.
func TestRestartEqualsReplay(t *testing.T) {
	s, _ := openStore(t)
	c := newClock()
	a := newApp(t, s, c)
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	mustCreate(t, a, "orders", domain.AttributesPatch{VisibilityTimeoutMS: i64(1000), DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(2)})
	mustCreate(t, a, "tmp", domain.AttributesPatch{})
	for i := 0; i < 30; i++ {
		m := Message{Body: fmt.Sprint("m", i)}
		if i%3 == 0 {
			m.DedupID = fmt.Sprint("d", i%6)
		}
		if i%5 == 0 {
			m.DelayMS = i64(5000)
		}
		if _, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: m}); err != nil {
			t.Fatal(err)
		}
	}
	ms := mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 10})
	for i, m := range ms {
		var err error
		switch i % 3 {
		case 0:
			_, err = a.Ack(ctxT(), Ack{Queue: "orders", Receipt: m.Receipt})
		case 1:
			_, err = a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt, DelayMS: 100})
		default:
			_, err = a.Extend(ctxT(), Extend{Queue: "orders", Receipt: m.Receipt, VisibilityTimeoutMS: 3000})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 5})
	advance(a, c, 1500*time.Millisecond)
	mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 5, WaitMS: 5000})
	advance(a, c, 1500*time.Millisecond)
	waitUntil(t, "something was dead-lettered", func() bool {
		return len(eventsOfType(logged(t, s), domain.TypeMessageDeadLettered)) > 0
	})
	if _, err := a.Redrive(ctxT(), Redrive{Queue: "dlq", MaxMessages: 1}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, a, "tmp", "gone")
	if _, err := a.DeleteQueue(ctxT(), DeleteQueue{Name: "tmp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PurgeQueue(ctxT(), PurgeQueue{Name: "dlq"}); err != nil {
		t.Fatal(err)
	}
	checkRestart(t, a, s)
}

func TestFailedAppendIsRolledBackFromTheLog(t *testing.T) {
	s, _ := openStore(t)
	f := &faultyStore{Store: s}
	a := newApp(t, f, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	mustPublish(t, a, "orders", "kept")

	f.failNext.Store(1)
	_, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "lost"}})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("failed append: %v, want ErrUnavailable wrapping the store's error", err)
	}
	// The next command finds the state rebuilt: the failed publish is not
	// there, and its stream version is free again.
	mustPublish(t, a, "orders", "after")
	got := bodies(mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 10}))
	if len(got) != 2 || got[0] != "kept" || got[1] != "after" {
		t.Fatalf("queue holds %v, want kept and after", got)
	}
	checkRestart(t, a, f)
}

func TestVersionConflictIsRetriedOnce(t *testing.T) {
	s, _ := openStore(t)
	f := &faultyStore{Store: s}
	a := newApp(t, f, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{})

	f.conflictNext.Store(1)
	r, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "x"}})
	if err != nil {
		t.Fatalf("a single conflict should be retried: %v", err)
	}
	if n := len(eventsOfType(logged(t, s), domain.TypeMessagePublished)); n != 1 || r.Position != 2 {
		t.Fatalf("%d MessagePublished at %d, want exactly one at 2", n, r.Position)
	}
	f.conflictNext.Store(2)
	_, err = a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "y"}})
	wantErr(t, err, domain.ErrConflict)
	checkRestart(t, a, f)
}

func TestUnavailableErrorsSayUnavailable(t *testing.T) {
	s, _ := openStore(t)
	f := &faultyStore{Store: s}
	a := newApp(t, f, newClock())
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	f.failNext.Store(1)
	_, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "x"}})
	var u interface{ Unavailable() bool }
	if !errors.As(err, &u) || !u.Unavailable() || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v does not say it is unavailable", err)
	}
	_, err = a.Publish(ctxT(), Publish{Queue: "nope", Message: Message{Body: "x"}})
	if errors.As(err, &u) {
		t.Fatalf("a domain error claims to be unavailable: %v", err)
	}
}
