package commands

import (
	"context"
	"sync"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// The scheduler is one goroutine that sleeps until the earliest time any
// queue has something due — a lease deadline, a retention deadline, a
// delayed message becoming available — then lets that queue's aggregate
// decide the events (MessageLeaseExpired, MessageDeadLettered with the
// copy's MessagePublished, MessageExpired) and appends them through the
// same path as the handlers. Delayed messages need no event: their waiting
// receives are just woken.
//
// Queues add entries whenever a decision may have made their next due time
// earlier (reschedule). An entry that turns out stale costs one look at
// the queue.
type scheduler struct {
	a    *App
	mu   sync.Mutex
	heap []schedEntry
	wake chan struct{}
}

type schedEntry struct {
	due int64 // unix ms
	qs  *queueState
}

func newScheduler(a *App) *scheduler {
	return &scheduler{a: a, wake: make(chan struct{}, 1)}
}

func (s *scheduler) add(due int64, qs *queueState) {
	s.mu.Lock()
	s.heap = append(s.heap, schedEntry{due, qs})
	j := len(s.heap) - 1
	for j > 0 {
		p := (j - 1) / 2
		if s.heap[p].due <= s.heap[j].due {
			break
		}
		s.heap[p], s.heap[j] = s.heap[j], s.heap[p]
		j = p
	}
	top := j == 0
	s.mu.Unlock()
	if top {
		s.poke()
	}
}

// poke makes the scheduler look at its entries now.
func (s *scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) pop() schedEntry {
	e := s.heap[0]
	last := len(s.heap) - 1
	s.heap[0] = s.heap[last]
	s.heap[last] = schedEntry{}
	s.heap = s.heap[:last]
	for j := 0; ; {
		l := 2*j + 1
		if l >= len(s.heap) {
			break
		}
		c := l
		if r := l + 1; r < len(s.heap) && s.heap[r].due < s.heap[l].due {
			c = r
		}
		if s.heap[j].due <= s.heap[c].due {
			break
		}
		s.heap[j], s.heap[c] = s.heap[c], s.heap[j]
		j = c
	}
	return e
}

// takeDue removes the entries due at or before now, one per queue.
func (s *scheduler) takeDue(now int64) []*queueState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*queueState
	seen := map[*queueState]bool{}
	for len(s.heap) > 0 && s.heap[0].due <= now {
		e := s.pop()
		if !seen[e.qs] {
			seen[e.qs] = true
			out = append(out, e.qs)
		}
	}
	return out
}

func (s *scheduler) next() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heap) == 0 {
		return 0, false
	}
	return s.heap[0].due, true
}

func (s *scheduler) run() {
	a := s.a
	defer close(a.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		for _, qs := range s.takeDue(a.now().UnixMilli()) {
			if a.isClosed() {
				return
			}
			a.tick(qs)
		}
		var fire <-chan time.Time
		if due, ok := s.next(); ok {
			d := time.Duration(due-a.now().UnixMilli()) * time.Millisecond
			if d <= 0 {
				continue
			}
			timer.Reset(d)
			fire = timer.C
		}
		select {
		case <-a.closed:
			timer.Stop()
			return
		case <-s.wake:
		case <-fire:
		}
		timer.Stop()
	}
}

// reschedule makes sure the scheduler looks at qs by its next due time.
// qs is locked.
func (a *App) reschedule(qs *queueState, now time.Time) {
	due, ok := qs.agg.NextDue(now)
	if !ok {
		return
	}
	ms := due.UnixMilli()
	if qs.scheduled != 0 && qs.scheduled <= ms {
		return
	}
	qs.scheduled = ms
	a.sched.add(ms, qs)
}

var schedulerMetadata = eventstore.Metadata{Subject: SchedulerSubject}

// tick works through what is due on one queue, in batches.
func (a *App) tick(qs *queueState) {
	for !a.isClosed() {
		more, err := a.expireOnce(qs)
		if err != nil {
			a.log.WithError(err).WithField("queue", qs.name).Error("commands: scheduler could not record due events; retrying")
			qs.mu.Lock()
			retryAt := a.now().Add(a.opts.RetryDelay).UnixMilli()
			qs.scheduled = retryAt
			qs.mu.Unlock()
			a.sched.add(retryAt, qs)
			return
		}
		if !more {
			return
		}
	}
}

// expireOnce records one batch of due events for qs. more says a full
// batch was found, so there may be more.
func (a *App) expireOnce(qs *queueState) (more bool, err error) {
	ctx := context.Background()
	a.mu.RLock()
	if err := a.lockQueue(ctx, qs); err != nil {
		a.mu.RUnlock()
		return false, err
	}
	now := a.now()
	qs.scheduled = 0
	ev, dead, err := qs.agg.Expire(now, a.opts.ExpireBatch)
	if err != nil {
		err = a.decisionFailed(err, qs)
		qs.mu.Unlock()
		a.mu.RUnlock()
		return false, err
	}
	var h *appendHandle
	if len(ev) > 0 {
		h, err = a.submit(schedulerMetadata, ev, qs)
	}
	refs := refsOf(qs, dead)
	qs.signalIfAvailable(now)
	a.reschedule(qs, now)
	qs.mu.Unlock()
	a.mu.RUnlock()
	if err != nil {
		return false, err
	}
	if h != nil {
		if _, err := a.settle(h); err != nil {
			return false, err
		}
	}
	if len(dead) > 0 {
		if err := a.deadLetterDue(ctx, qs, dead, refs); err != nil {
			return false, err
		}
	}
	return len(ev)+len(dead) >= a.opts.ExpireBatch, nil
}

// deadLetterDue moves leases that expired past max_receive_count to the
// dead-letter queue: it reads the messages' content, then locks both queues
// and decides again, since anything may have changed meanwhile.
func (a *App) deadLetterDue(ctx context.Context, qs *queueState, dead []domain.LeaseInfo, refs []bodyRef) error {
	contents, err := a.readPublished(ctx, refs)
	if err != nil {
		return err
	}
	dlqName := dead[0].DeadLetterQueue
	a.mu.RLock()
	defer a.mu.RUnlock()
	dlqs := a.queues[dlqName]
	locks := []*queueState{qs}
	if dlqs != nil {
		locks = append(locks, dlqs)
	}
	unlock, err := a.lockAll(ctx, locks...)
	if err != nil {
		return err
	}
	now := a.now()
	var events []domain.Event
	var derr error
	if qs.agg.Attributes().DeadLetterQueue == dlqName {
		for _, d := range dead {
			var dl *domain.DeadLetter
			if dlqs != nil && dlqs.agg.Exists() {
				if p, ok := contents[d.MessageID]; ok {
					id, err := newID(now)
					if err != nil {
						derr = err
						break
					}
					dl = &domain.DeadLetter{Queue: dlqs.agg, MessageID: id, Content: domain.ContentOf(p)}
				} else {
					// Without its content the message cannot be copied;
					// letting it be ready again beats retrying forever.
					a.log.WithField("queue", qs.name).WithField("message_id", d.MessageID).
						Error("commands: the MessagePublished of a message to dead-letter is missing from the log")
				}
			}
			ev, err := qs.agg.ExpireLease(d.MessageID, now, dl)
			if err != nil {
				derr = a.decisionFailed(err, locks...)
				break
			}
			events = append(events, ev...)
		}
	}
	var h *appendHandle
	if derr == nil && len(events) > 0 {
		h, derr = a.submit(schedulerMetadata, events, locks...)
	}
	for _, l := range locks {
		l.signalIfAvailable(now)
		a.reschedule(l, now)
	}
	unlock()
	if derr != nil {
		return derr
	}
	if h != nil {
		_, err = a.settle(h)
	}
	return err
}
