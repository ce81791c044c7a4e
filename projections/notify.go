package projections

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/ledgerq/ledgerq/queries"
)

// The notifier tells the hub and the position signal about committed
// transactions on a goroutine of its own.
//
// Handing a transaction's updates to the hub wakes every SSE stream that
// takes one: with 1,000 subscribers over 250 queues that took 26 % of the
// projections' goroutine's busy time at 5,600 publishes/s (per transaction
// p50 0.3 ms, p99 4.2 ms), and the next transaction waited for it. The
// notifier does it instead, in commit order, while the projections apply
// the next pack; notices that queued up meanwhile go to the hub in one call.
//
// The order that matters is kept: the hub gets a transaction's updates
// before the position signal moves past it (whoever sees the new position,
// WaitForPosition or an SSE handler choosing where to resume, must find
// its updates in the hub), and the hub gets them in position order.

// notice is one committed transaction: its hub updates and the position
// every projection has reached. A notice with flushed set carries nothing;
// the notifier closes flushed once every notice before it was handled.
type notice struct {
	updates []queries.Update
	pos     int64
	flushed chan struct{}
}

// noticeQueue bounds the committed transactions waiting for the notifier;
// a projection that gets that far ahead waits.
const noticeQueue = 64

func (e *Engine) startNotifier() {
	e.notices = make(chan notice, noticeQueue)
	e.notifierDone = make(chan struct{})
	go e.runNotifier()
}

func (e *Engine) runNotifier() {
	defer close(e.notifierDone)
	var updates []queries.Update
	for n := range e.notices {
		// Take whatever else is waiting: one Publish, one wake-up per
		// subscriber, for all of it.
		updates = append(updates[:0], n.updates...)
		pos, flushed := n.pos, n.flushed
		for more := flushed == nil; more; {
			select {
			case m, ok := <-e.notices:
				if !ok {
					more = false
					break
				}
				updates = append(updates, m.updates...)
				if m.flushed != nil {
					flushed, more = m.flushed, false
				} else {
					pos = m.pos
				}
			default:
				more = false
			}
		}
		if len(updates) > 0 && e.cfg.Hub != nil {
			e.publish(updates)
		}
		if pos > 0 {
			e.signal.set(pos)
		}
		if flushed != nil {
			close(flushed)
		}
		clear(updates) // let the hub's copies be the only ones kept
	}
}

// notify queues a committed transaction's updates and position. Caller
// holds mu.
func (e *Engine) notify(updates []queries.Update, pos int64) {
	e.notices <- notice{updates: updates, pos: pos}
}

// flushNotices waits until the notifier handled every notice queued so far.
// Caller holds mu (so no notice is queued meanwhile) or has stopped calling
// notify.
func (e *Engine) flushNotices() {
	done := make(chan struct{})
	e.notices <- notice{flushed: done}
	<-done
}

// publish hands updates to the hub. A panic there (a renderer's, say) must
// not take the process down from this goroutine: it is logged as an error,
// the position still moves, and live subscribers may miss those updates.
func (e *Engine) publish(updates []queries.Update) {
	defer func() {
		if r := recover(); r != nil {
			e.cfg.Logger.Error("projections: hub publish panicked", fmt.Errorf("%v", r),
				watermill.LogFields{"first_position": updates[0].Position, "updates": len(updates)})
		}
	}()
	e.cfg.Hub.Publish(updates...)
}
