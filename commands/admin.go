package commands

import (
	"context"
	"slices"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// adminOn is the path of the commands that change which queues exist or
// how they refer to each other (create, configure, delete). They hold the
// registry exclusively until their append is durable: a decision about
// another queue (does the dead-letter queue exist?) must only ever see
// committed queues, or a failed create could leave a queue pointing at a
// dead-letter queue the log never had. These commands are rare; the pause
// they cause other commands is one fsync.
//
// It returns the queue's info after the decision and the append result
// (empty when nothing was recorded).
func (a *App) adminOn(ctx context.Context, qs *queueState, decide func(now time.Time) ([]domain.Event, error)) (QueueInfo, eventstore.AppendResult, bool, error) {
	if err := a.lockQueue(ctx, qs); err != nil {
		return QueueInfo{}, eventstore.AppendResult{}, false, err
	}
	now := a.now()
	ev, err := decide(now)
	info := infoOf(qs.agg)
	if err != nil {
		err = a.decisionFailed(err, qs)
		qs.mu.Unlock()
		return QueueInfo{}, eventstore.AppendResult{}, false, err
	}
	if len(ev) == 0 {
		qs.mu.Unlock()
		return info, eventstore.AppendResult{}, false, nil
	}
	h, err := a.submit(metadataFrom(ctx), ev, qs)
	// A deleted queue's long polls wake up to find it gone.
	qs.signal()
	a.reschedule(qs, now)
	qs.mu.Unlock()
	if err != nil {
		return QueueInfo{}, eventstore.AppendResult{}, false, err
	}
	res, err := a.settle(h)
	if err != nil {
		return QueueInfo{}, eventstore.AppendResult{}, false, err
	}
	return info, res, true, nil
}

// existsFn answers "does this other queue exist" for a decision about self.
// a.mu is held exclusively, so no decision runs on any queue meanwhile.
func (a *App) existsFn(ctx context.Context, self *queueState) domain.QueueExists {
	return func(name string) bool {
		if name == self.name {
			return self.agg.Exists()
		}
		qs, ok := a.queues[name]
		if !ok {
			return false
		}
		if err := a.lockQueue(ctx, qs); err != nil {
			return false
		}
		defer qs.mu.Unlock()
		return qs.agg.Exists()
	}
}

// CreateQueue creates a queue. Created is false (and nothing is appended)
// when the queue exists with the same attributes; different ones are
// domain.ErrQueueExists.
func (a *App) CreateQueue(ctx context.Context, cmd CreateQueue) (QueueResult, error) {
	return retry(func() (QueueResult, error) {
		if err := a.checkOpen(); err != nil {
			return QueueResult{}, err
		}
		if err := domain.ValidateQueueName("name", cmd.Name); err != nil {
			return QueueResult{}, err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		qs := a.stateFor(cmd.Name)
		info, res, appended, err := a.adminOn(ctx, qs, func(now time.Time) ([]domain.Event, error) {
			return qs.agg.Create(cmd.Attributes, now, a.existsFn(ctx, qs))
		})
		if err != nil {
			return QueueResult{}, err
		}
		return QueueResult{Queue: info, Created: appended, Position: a.position(res)}, nil
	})
}

// ConfigureQueue changes some of a queue's attributes. A change to nothing
// appends nothing.
func (a *App) ConfigureQueue(ctx context.Context, cmd ConfigureQueue) (QueueResult, error) {
	return retry(func() (QueueResult, error) {
		if err := a.checkOpen(); err != nil {
			return QueueResult{}, err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		qs, err := a.lookup("name", cmd.Name)
		if err != nil {
			return QueueResult{}, err
		}
		info, res, _, err := a.adminOn(ctx, qs, func(now time.Time) ([]domain.Event, error) {
			return qs.agg.Configure(cmd.Attributes, now, a.existsFn(ctx, qs))
		})
		if err != nil {
			return QueueResult{}, err
		}
		return QueueResult{Queue: info, Position: a.position(res)}, nil
	})
}

// DeleteQueue deletes a queue and whatever it holds. A queue that another
// existing queue uses as its dead-letter queue cannot be deleted
// (domain.ErrConflict).
func (a *App) DeleteQueue(ctx context.Context, cmd DeleteQueue) (PositionResult, error) {
	return retry(func() (PositionResult, error) {
		if err := a.checkOpen(); err != nil {
			return PositionResult{}, err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		qs, err := a.lookup("name", cmd.Name)
		if err != nil {
			return PositionResult{}, err
		}
		usedBy, err := a.usersOf(ctx, cmd.Name)
		if err != nil {
			return PositionResult{}, err
		}
		_, res, _, err := a.adminOn(ctx, qs, func(now time.Time) ([]domain.Event, error) {
			return qs.agg.Delete(now, usedBy)
		})
		if err != nil {
			return PositionResult{}, err
		}
		return PositionResult{Position: a.position(res)}, nil
	})
}

// usersOf lists the existing queues whose dead-letter queue is name; a.mu
// is held exclusively.
func (a *App) usersOf(ctx context.Context, name string) ([]string, error) {
	var users []string
	for other, qs := range a.queues {
		if other == name {
			continue
		}
		if err := a.lockQueue(ctx, qs); err != nil {
			return nil, err
		}
		if qs.agg.Exists() && qs.agg.Attributes().DeadLetterQueue == name {
			users = append(users, other)
		}
		qs.mu.Unlock()
	}
	slices.Sort(users)
	return users, nil
}

// position is the position a command answers: its last event's, or the
// head when it appended nothing.
func (a *App) position(res eventstore.AppendResult) int64 {
	if p := res.LastPosition(); p > 0 {
		return p
	}
	return a.store.Head()
}
