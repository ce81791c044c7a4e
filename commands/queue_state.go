package commands

import (
	"sync"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// queueState is one queue on the command side: its aggregate and what the
// handlers need around it. Everything is guarded by mu.
type queueState struct {
	name string
	mu   sync.Mutex
	agg  *domain.Queue
	// broken is set when an append touching this queue failed: the
	// aggregate holds events the log does not, so it is rebuilt from the
	// log before anyone decides against it again.
	broken bool
	// pending are the submitted appends touching this queue that have not
	// settled yet. A lease of a message whose publish is among them finds
	// the message's position here once that append commits.
	pending map[*appendHandle]struct{}
	// notify is closed (and replaced) when a message may have become
	// available, waking the long polls that wait on it; waiters counts
	// them so that nobody pays for a channel when no one listens.
	notify  chan struct{}
	waiters int
	// scheduled is the earliest time (unix ms) the scheduler will look at
	// this queue, 0 when it has no entry.
	scheduled int64
}

func newQueueState(name string) *queueState {
	return &queueState{
		name:    name,
		agg:     domain.NewQueue(name),
		pending: make(map[*appendHandle]struct{}),
		notify:  make(chan struct{}),
	}
}

// signal wakes the long polls of this queue.
func (qs *queueState) signal() {
	if qs.waiters > 0 {
		close(qs.notify)
		qs.notify = make(chan struct{})
	}
}

// signalIfAvailable wakes the long polls when a message can be leased now.
func (qs *queueState) signalIfAvailable(now time.Time) {
	if qs.waiters > 0 && qs.agg.Available(now) {
		qs.signal()
	}
}

// pendingPublish returns the unsettled append that publishes the message
// at stream version ver of this queue, if any.
func (qs *queueState) pendingPublish(ver int64) *appendHandle {
	for h := range qs.pending {
		if h.covers(qs.name, ver) {
			return h
		}
	}
	return nil
}
