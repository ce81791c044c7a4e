package commands

import (
	"context"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// maxDeadLetterRounds bounds how often a nack that must dead-letter starts
// over because the queue's dead-letter settings changed under it.
const maxDeadLetterRounds = 3

// Nack releases a leased message, ready again after DelayMS. When the
// message has been received max_receive_count times and the queue has a
// dead-letter queue, it moves there instead (MessageDeadLettered here and
// the copy's MessagePublished there, in one append).
func (a *App) Nack(ctx context.Context, cmd Nack) (AckResult, error) {
	if cmd.DelayMS < 0 || cmd.DelayMS > domain.MaxDelayMS {
		return AckResult{}, domain.Invalid("delay_ms", "must be 0…%d, got %d", domain.MaxDelayMS, cmd.DelayMS)
	}
	return retry(func() (AckResult, error) {
		for round := 0; ; round++ {
			// First try on the queue alone: the usual case needs nothing else.
			var id string
			var dead *domain.LeaseInfo
			var ref bodyRef
			h, _, err := a.decideOn(ctx, cmd.Queue, func(qs *queueState, now time.Time) ([]domain.Event, error) {
				if info, err := qs.agg.LeaseOf(cmd.Receipt, now); err == nil && info.DeadLetterQueue != "" && round < maxDeadLetterRounds {
					dead = &info
					ref = refFor(qs, info.MessageID, info.PublishedPosition, info.PublishedVersion)
					return nil, nil
				}
				ev, mid, err := qs.agg.Nack(cmd.Receipt, cmd.DelayMS, now, nil)
				id = mid
				return ev, err
			})
			if err != nil {
				return AckResult{}, err
			}
			if dead == nil {
				res, err := a.settle(h)
				if err != nil {
					return AckResult{}, err
				}
				return AckResult{ID: id, Position: res.LastPosition()}, nil
			}
			res, again, err := a.nackDeadLetter(ctx, cmd, *dead, ref)
			if err != nil || !again {
				return res, err
			}
		}
	})
}

// nackDeadLetter reads the message's content, then locks the queue and its
// dead-letter queue and decides again. again is true when the queue's
// dead-letter settings changed meanwhile, so the nack must start over.
func (a *App) nackDeadLetter(ctx context.Context, cmd Nack, info domain.LeaseInfo, ref bodyRef) (AckResult, bool, error) {
	contents, err := a.readPublished(ctx, []bodyRef{ref})
	if err != nil {
		return AckResult{}, false, err
	}
	if err := a.checkOpen(); err != nil {
		return AckResult{}, false, err
	}
	a.mu.RLock()
	qs, err := a.lookup("queue", cmd.Queue)
	if err != nil {
		a.mu.RUnlock()
		return AckResult{}, false, err
	}
	locks := []*queueState{qs}
	dlqs := a.queues[info.DeadLetterQueue]
	if dlqs != nil {
		locks = append(locks, dlqs)
	}
	unlock, err := a.lockAll(ctx, locks...)
	if err != nil {
		a.mu.RUnlock()
		return AckResult{}, false, err
	}
	release := func() {
		unlock()
		a.mu.RUnlock()
	}
	now := a.now()
	current, err := qs.agg.LeaseOf(cmd.Receipt, now)
	if err == nil && (current.DeadLetterQueue != info.DeadLetterQueue || current.MessageID != info.MessageID) {
		release()
		return AckResult{}, true, nil
	}
	var dl *domain.DeadLetter
	if p, ok := contents[info.MessageID]; ok && dlqs != nil && dlqs.agg.Exists() {
		newMsgID, err := newID(now)
		if err != nil {
			release()
			return AckResult{}, false, err
		}
		dl = &domain.DeadLetter{Queue: dlqs.agg, MessageID: newMsgID, Content: domain.ContentOf(p)}
	}
	ev, id, err := qs.agg.Nack(cmd.Receipt, cmd.DelayMS, now, dl)
	if err != nil {
		err = a.decisionFailed(err, locks...)
		release()
		return AckResult{}, false, err
	}
	h, err := a.submit(metadataFrom(ctx), ev, locks...)
	if err == nil {
		for _, l := range locks {
			l.signalIfAvailable(now)
			a.reschedule(l, now)
		}
	}
	release()
	if err != nil {
		return AckResult{}, false, err
	}
	res, err := a.settle(h)
	if err != nil {
		return AckResult{}, false, err
	}
	return AckResult{ID: id, Position: res.LastPosition()}, false, nil
}
