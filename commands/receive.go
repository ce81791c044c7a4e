package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// Receive leases up to MaxMessages ready messages, oldest first. With
// WaitMS > 0 and nothing ready it waits, and wakes the moment a message
// becomes available (a publish, a nack, an expired lease, a delayed message
// coming due); it answers an empty list when the wait ends, ctx is done or
// the app closes. The answer is sent only once the leases are durable;
// bodies are then read from the log.
func (a *App) Receive(ctx context.Context, cmd Receive) (ReceiveResult, error) {
	if cmd.WaitMS < 0 || cmd.WaitMS > MaxWaitMS {
		return ReceiveResult{}, domain.Invalid("wait_ms", "must be 0…%d, got %d", MaxWaitMS, cmd.WaitMS)
	}
	var expired <-chan time.Time
	if cmd.WaitMS > 0 {
		t := time.NewTimer(time.Duration(cmd.WaitMS) * time.Millisecond)
		defer t.Stop()
		expired = t.C
	}
	for {
		att, err := retry(func() (receiveAttempt, error) { return a.receiveOnce(ctx, cmd, expired != nil) })
		if err != nil {
			return ReceiveResult{}, err
		}
		if att.wake == nil {
			return att.res, nil
		}
		stop := false
		select {
		case <-att.wake:
		case <-expired:
			stop = true
		case <-ctx.Done():
			stop = true
		case <-a.closed:
			stop = true
		}
		att.qs.mu.Lock()
		att.qs.waiters--
		att.qs.mu.Unlock()
		if stop {
			return ReceiveResult{Messages: []ReceivedMessage{}, Position: a.store.Head()}, nil
		}
	}
}

// receiveAttempt is one try: leased messages, or — when nothing was ready
// and the caller may wait — the channel that signals a change. The attempt
// then counts as a waiter of qs until the caller stops waiting.
type receiveAttempt struct {
	res  ReceiveResult
	qs   *queueState
	wake <-chan struct{}
}

func (a *App) receiveOnce(ctx context.Context, cmd Receive, wait bool) (receiveAttempt, error) {
	if err := a.checkOpen(); err != nil {
		return receiveAttempt{}, err
	}
	a.mu.RLock()
	qs, err := a.lookup("queue", cmd.Queue)
	if err != nil {
		a.mu.RUnlock()
		return receiveAttempt{}, err
	}
	if err := a.lockQueue(ctx, qs); err != nil {
		a.mu.RUnlock()
		return receiveAttempt{}, err
	}
	unlock := func() {
		qs.mu.Unlock()
		a.mu.RUnlock()
	}
	now := a.now()
	ev, leases, err := qs.agg.Receive(domain.ReceiveRequest{
		MaxMessages:         cmd.MaxMessages,
		VisibilityTimeoutMS: cmd.VisibilityTimeoutMS,
		Consumer:            cmd.Consumer,
		Nonces:              newNonces(min(max(cmd.MaxMessages, 1), domain.MaxReceiveMessages)),
	}, now)
	if err != nil {
		err = a.decisionFailed(err, qs)
		unlock()
		return receiveAttempt{}, err
	}
	if len(leases) == 0 {
		att := receiveAttempt{res: ReceiveResult{Messages: []ReceivedMessage{}, Position: a.store.Head()}}
		if wait && !a.isClosed() {
			qs.waiters++
			att.qs, att.wake = qs, qs.notify
		}
		unlock()
		return att, nil
	}
	refs := make([]bodyRef, len(leases))
	for i, l := range leases {
		refs[i] = refFor(qs, l.MessageID, l.PublishedPosition, l.PublishedVersion)
	}
	h, err := a.submit(metadataFrom(ctx), ev, qs)
	if err == nil {
		a.reschedule(qs, now)
	}
	unlock()
	if err != nil {
		return receiveAttempt{}, err
	}
	res, err := a.settle(h)
	if err != nil {
		return receiveAttempt{}, err
	}
	// The leases are durable, and so is every publish before them. Read
	// the bodies even if the caller's context ends now (shutdown, a client
	// going away): the leases are taken, and an answer without them would
	// leave the messages in flight for nothing and count a receive.
	contents, err := a.readPublished(context.WithoutCancel(ctx), refs)
	if err != nil {
		return receiveAttempt{}, err
	}
	msgs := make([]ReceivedMessage, len(leases))
	for i, l := range leases {
		p, ok := contents[l.MessageID]
		if !ok {
			return receiveAttempt{}, fmt.Errorf("commands: the MessagePublished of leased message %s is missing from the log", l.MessageID)
		}
		msgs[i] = ReceivedMessage{
			ID:             l.MessageID,
			Queue:          qs.name,
			Body:           p.Body,
			BodyEncoding:   p.BodyEncoding,
			ContentType:    p.ContentType,
			Headers:        p.Headers,
			Receipt:        l.Receipt,
			ReceiveCount:   l.ReceiveCount,
			PublishedAt:    p.PublishedAt,
			LeaseExpiresAt: l.LeaseExpiresAt,
		}
	}
	return receiveAttempt{res: ReceiveResult{Messages: msgs, Position: res.LastPosition()}}, nil
}
