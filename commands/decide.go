package commands

import (
	"context"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// decideOn is the path of every single-queue command: look the queue up,
// lock it, let decide record events against its aggregate, submit them,
// wake receivers and the scheduler, unlock. The caller then settles the
// returned handle (nil when the decision recorded nothing) outside any
// lock.
func (a *App) decideOn(ctx context.Context, queue string, decide func(qs *queueState, now time.Time) ([]domain.Event, error)) (*appendHandle, *queueState, error) {
	if err := a.checkOpen(); err != nil {
		return nil, nil, err
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	qs, err := a.lookup("queue", queue)
	if err != nil {
		return nil, nil, err
	}
	if err := a.lockQueue(ctx, qs); err != nil {
		return nil, nil, err
	}
	defer qs.mu.Unlock()
	now := a.now()
	ev, err := decide(qs, now)
	if err != nil {
		return nil, qs, a.decisionFailed(err, qs)
	}
	if len(ev) == 0 {
		return nil, qs, nil
	}
	h, err := a.submit(metadataFrom(ctx), ev, qs)
	if err != nil {
		return nil, qs, err
	}
	qs.signalIfAvailable(now)
	a.reschedule(qs, now)
	return h, qs, nil
}

// infoOf is the QueueInfo of an aggregate.
func infoOf(q *domain.Queue) QueueInfo {
	return QueueInfo{Name: q.Name(), Attributes: q.Attributes(), CreatedAt: q.CreatedAt(), UpdatedAt: q.UpdatedAt()}
}
