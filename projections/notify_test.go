package projections

import (
	"context"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/queries"
)

// orderCheckingHub records, for each update it gets, the position the
// engine reported at that moment: it must be below the update's, since the
// position may only move once the hub has the transaction's updates.
type orderCheckingHub struct {
	recordingHub
	e       *Engine
	early   []int64 // updates whose position was already reported
	blocked chan struct{}
}

func (h *orderCheckingHub) Publish(us ...queries.Update) {
	if h.blocked != nil {
		<-h.blocked
	}
	for _, u := range us {
		if h.e != nil && h.e.AppliedPosition() >= u.Position {
			h.early = append(h.early, u.Position)
		}
	}
	h.recordingHub.Publish(us...)
}

// The hub hears of every committed transaction, in position order, before
// AppliedPosition moves past it, though ApplyPack does not wait for the hub;
// transactions that queue up while the hub is busy reach it in one call.
func TestNotifierTellsTheHubBeforeThePositionMoves(t *testing.T) {
	log, events := simulatedLog(t, 3, 400)
	hub := &orderCheckingHub{blocked: make(chan struct{})}
	e := newEngine(t, Config{Source: log, Hub: hub})
	hub.e = e
	ctx := context.Background()
	// The hub blocks: ApplyPack must still return (as far as the notices
	// fit in their queue), and the position must not move.
	applied := make(chan error, 1)
	go func() {
		for i := 0; i <= 10*(noticeQueue/2); i += 10 {
			if err := e.ApplyPack(ctx, events[i:min(i+10, len(events))]); err != nil {
				applied <- err
				return
			}
		}
		applied <- nil
	}()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(hub.blocked)
		t.Fatal("ApplyPack waited for the hub")
	}
	if got := e.AppliedPosition(); got != 0 {
		t.Fatalf("AppliedPosition %d while the hub has not taken the first transaction, want 0", got)
	}
	close(hub.blocked)
	for i := 10 * (noticeQueue/2 + 1); i < len(events); i += 10 {
		if err := e.ApplyPack(ctx, events[i:min(i+10, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
	head := events[len(events)-1].Position
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.WaitForPosition(wctx, head); err != nil {
		t.Fatalf("position %d never reported: %v (at %d)", head, err, e.AppliedPosition())
	}
	if len(hub.early) > 0 {
		t.Errorf("%d updates reached the hub after AppliedPosition had passed them (first at %d)", len(hub.early), hub.early[0])
	}
	all := hub.all()
	if len(all) == 0 {
		t.Fatal("the hub got no update")
	}
	for i := 1; i < len(all); i++ {
		if all[i].Position < all[i-1].Position {
			t.Fatalf("update %d at position %d after one at %d", i, all[i].Position, all[i-1].Position)
		}
	}
}

type panickingHub struct{ recordingHub }

func (*panickingHub) Publish(...queries.Update) { panic("render failed") }

// A hub that panics does not take the process down from the notifier's
// goroutine, and the position still moves.
func TestNotifierSurvivesAPanickingHub(t *testing.T) {
	log, events := simulatedLog(t, 2, 50)
	e := newEngine(t, Config{Source: log, Hub: &panickingHub{}})
	if err := e.ApplyPack(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if got, want := applied(e), events[len(events)-1].Position; got != want {
		t.Fatalf("applied %d, want %d", got, want)
	}
}
