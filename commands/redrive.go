package commands

import (
	"context"

	"github.com/ledgerq/ledgerq/domain"
)

// redriveChunk is how many messages one redrive append moves: big enough
// to be quick, small enough to keep each append (and the bodies it copies)
// modest.
const redriveChunk = 100

// Redrive moves dead-lettered messages out of a dead-letter queue, oldest
// first: to cmd.To, or each back to the queue it was dead-lettered from.
// Copies get new ids. Messages whose origin queue no longer exists stay
// where they are. MaxMessages 0 means all.
func (a *App) Redrive(ctx context.Context, cmd Redrive) (RedriveResult, error) {
	if cmd.MaxMessages < 0 {
		return RedriveResult{}, domain.Invalid("max_messages", "must not be negative, got %d", cmd.MaxMessages)
	}
	if err := domain.ValidateQueueName("queue", cmd.Queue); err != nil {
		return RedriveResult{}, err
	}
	if cmd.To != "" {
		if err := domain.ValidateQueueName("to", cmd.To); err != nil {
			return RedriveResult{}, err
		}
		if cmd.To == cmd.Queue {
			return RedriveResult{}, domain.Invalid("to", "must be a queue other than %q", cmd.Queue)
		}
	}
	cands, err := a.redriveCandidates(ctx, cmd)
	if err != nil {
		return RedriveResult{}, err
	}
	var out RedriveResult
	for len(cands) > 0 {
		n := min(len(cands), redriveChunk)
		chunk := cands[:n]
		moved, err := retry(func() (redriveOutcome, error) { return a.redriveChunk(ctx, cmd, chunk) })
		if err != nil {
			if out.Moved > 0 {
				// Earlier chunks are committed; say so rather than hide it.
				return out, err
			}
			return RedriveResult{}, err
		}
		out.Moved += moved.moved
		if moved.position > 0 {
			out.Position = moved.position
		}
		cands = cands[n:]
	}
	if out.Position == 0 {
		out.Position = a.store.Head()
	}
	return out, nil
}

type redriveOutcome struct {
	moved    int
	position int64
}

func (a *App) redriveCandidates(ctx context.Context, cmd Redrive) ([]bodyRef, error) {
	if err := a.checkOpen(); err != nil {
		return nil, err
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	qs, err := a.lookup("queue", cmd.Queue)
	if err != nil {
		return nil, err
	}
	if cmd.To != "" {
		if to, err := a.lookup("to", cmd.To); err != nil || !a.existsLocked(ctx, to) {
			return nil, domain.WithMessage(domain.ErrQueueNotFound, "redrive target queue %q not found", cmd.To)
		}
	}
	if err := a.lockQueue(ctx, qs); err != nil {
		return nil, err
	}
	defer qs.mu.Unlock()
	if !qs.agg.Exists() {
		return nil, domain.WithMessage(domain.ErrQueueNotFound, "queue %q not found", cmd.Queue)
	}
	cs := qs.agg.RedriveCandidates(cmd.MaxMessages)
	refs := make([]bodyRef, len(cs))
	for i, c := range cs {
		refs[i] = refFor(qs, c.MessageID, c.PublishedPosition, c.PublishedVersion)
	}
	return refs, nil
}

// existsLocked reports whether a queue exists; a.mu is held.
func (a *App) existsLocked(ctx context.Context, qs *queueState) bool {
	if err := a.lockQueue(ctx, qs); err != nil {
		return false
	}
	defer qs.mu.Unlock()
	return qs.agg.Exists()
}

// redriveChunk moves one chunk of candidates in one append.
func (a *App) redriveChunk(ctx context.Context, cmd Redrive, refs []bodyRef) (redriveOutcome, error) {
	contents, err := a.readPublished(ctx, refs)
	if err != nil {
		return redriveOutcome{}, err
	}
	if err := a.checkOpen(); err != nil {
		return redriveOutcome{}, err
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	qs, err := a.lookup("queue", cmd.Queue)
	if err != nil {
		return redriveOutcome{}, err
	}
	// Where each message goes, and the queues to lock.
	target := make(map[string]*queueState, len(refs))
	locks := []*queueState{qs}
	for _, r := range refs {
		p, ok := contents[r.id]
		if !ok {
			continue
		}
		name := cmd.To
		if name == "" {
			if p.Origin == nil || p.Origin.Reason != domain.OriginDeadLetter {
				continue
			}
			name = p.Origin.Queue
		}
		if t, ok := a.queues[name]; ok && t != qs {
			target[r.id] = t
			locks = append(locks, t)
		} else if cmd.To != "" {
			return redriveOutcome{}, domain.WithMessage(domain.ErrQueueNotFound, "redrive target queue %q not found", cmd.To)
		}
	}
	unlock, err := a.lockAll(ctx, locks...)
	if err != nil {
		return redriveOutcome{}, err
	}
	now := a.now()
	var events []domain.Event
	moved := 0
	for _, r := range refs {
		t, ok := target[r.id]
		if !ok {
			continue
		}
		if !t.agg.Exists() {
			if cmd.To != "" {
				unlock()
				return redriveOutcome{}, domain.WithMessage(domain.ErrQueueNotFound, "redrive target queue %q not found", cmd.To)
			}
			continue
		}
		newMsgID, err := newID(now)
		if err != nil {
			unlock()
			return redriveOutcome{}, err
		}
		ev, err := qs.agg.Redrive(r.id, t.agg, newMsgID, domain.ContentOf(contents[r.id]), now)
		if err != nil {
			err = a.decisionFailed(err, locks...)
			unlock()
			return redriveOutcome{}, err
		}
		if len(ev) > 0 {
			moved++
			events = append(events, ev...)
		}
	}
	if len(events) == 0 {
		unlock()
		return redriveOutcome{}, nil
	}
	h, err := a.submit(metadataFrom(ctx), events, locks...)
	if err == nil {
		for _, l := range locks {
			l.signalIfAvailable(now)
			a.reschedule(l, now)
		}
	}
	unlock()
	if err != nil {
		return redriveOutcome{}, err
	}
	res, err := a.settle(h)
	if err != nil {
		return redriveOutcome{}, err
	}
	return redriveOutcome{moved: moved, position: res.LastPosition()}, nil
}
