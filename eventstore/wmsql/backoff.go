package wmsql

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
)

var _ wsql.BackoffManager = (*BackoffManager)(nil)

// BackoffConfig configures a BackoffManager.
type BackoffConfig struct {
	// Wake is signalled after commits that may have added rows to the
	// topic (the event store's Watch channel). When a poll found nothing,
	// the subscriber waits for it instead of sleeping a poll interval, so
	// a new row is picked up within a scheduling delay of its commit.
	// A signal sent while the subscriber was busy must stay pending (a
	// buffered channel of capacity 1 with non-blocking sends does that).
	// Nil: poll every MaxIdleWait.
	//
	// WARNING: a channel delivers each signal to one receiver. Give every
	// subscription its own Wake channel (and so its own BackoffManager);
	// subscriptions sharing one fall back to MaxIdleWait polling.
	Wake <-chan struct{}
	// MaxIdleWait bounds an idle wait: the subscriber polls at least this
	// often even without a signal (rows written by another process, a
	// missed signal). It also bounds how long a Subscribe context
	// cancellation can go unnoticed while idle. Default 1s.
	MaxIdleWait time.Duration
	// RetryInterval is the wait after an error other than SQLite busy.
	// Default 1s.
	RetryInterval time.Duration
	// Linger is a pause after a Wake signal before the next poll, so that
	// the commits of the next moments are read in the same batch: fewer,
	// larger batches under load, at the price of Linger more latency.
	// Default 0.
	Linger time.Duration
	// LingerFor, if set, is asked for the pause after each Wake signal
	// instead of using Linger, so the pause can follow the load (the relay
	// lingers longer after larger packs). afterBatch tells a wait after a
	// batch that caught up from one after an empty poll. A result <= 0
	// means none.
	LingerFor func(afterBatch bool) time.Duration
	// BetweenBatches, if set, is called after a batch (not after an empty
	// poll or an error), once its transaction has ended (the subscriber
	// then holds no lock and no snapshot), at most once per BetweenEvery;
	// caughtUp says whether CaughtUp was called for the batch. A busy
	// subscriber starts its next read right after the last (behind) or a
	// Linger after it (caught up), so some read snapshot of the main file
	// is nearly always open; the relay uses the call to let the event store
	// checkpoint its WAL without one.
	BetweenBatches func(caughtUp bool)
	// BetweenEvery spaces the BetweenBatches calls. Default 100ms.
	BetweenEvery time.Duration
}

// BackoffManager is a watermill-sql BackoffManager for SQLite. "Database is
// locked" means another subscriber of the same offsets file holds its lock
// (the busy timeout has already been waited inside SQLite): retry at once.
// Other errors wait RetryInterval. An empty poll waits for Wake, at most
// MaxIdleWait.
//
// watermill-sql calls HandleError after the polling transaction has been
// committed or rolled back, so waiting inside it holds no lock and no
// snapshot.
type BackoffManager struct {
	cfg      BackoffConfig
	caughtUp atomic.Bool
	// between is when BetweenBatches was last called (unix nanoseconds).
	between   atomic.Int64
	done      chan struct{}
	closeOnce sync.Once
}

// NewBackoffManager returns a BackoffManager with cfg's defaults filled in.
func NewBackoffManager(cfg BackoffConfig) *BackoffManager {
	if cfg.MaxIdleWait <= 0 {
		cfg.MaxIdleWait = time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.BetweenEvery <= 0 {
		cfg.BetweenEvery = 100 * time.Millisecond
	}
	b := &BackoffManager{cfg: cfg, done: make(chan struct{})}
	b.between.Store(time.Now().UnixNano())
	return b
}

// HandleError decides how long the subscriber waits before its next poll.
func (b *BackoffManager) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if err != nil {
		if IsBusy(err) {
			logger.Debug("SQLite busy while polling, retrying", watermill.LogFields{"err": err.Error()})
			return 0
		}
		logger.Error("Error polling for messages", err, watermill.LogFields{"wait_time": b.cfg.RetryInterval})
		return b.cfg.RetryInterval
	}
	if !noMsg {
		caughtUp := b.caughtUp.Swap(false)
		b.maybeBetween(caughtUp)
		if !caughtUp {
			return 0
		}
	}
	b.waitIdle(!noMsg)
	return 0
}

// CaughtUp tells the manager that the batch being handled reached the end
// of the topic (it was not full), so the next poll would find at most the
// few rows committed since: the subscriber then waits as after an empty
// poll (for Wake, then Linger) instead of chasing every commit with a
// batch of its own.
func (b *BackoffManager) CaughtUp() { b.caughtUp.Store(true) }

// maybeBetween calls BetweenBatches when BetweenEvery has passed since the
// last call.
func (b *BackoffManager) maybeBetween(caughtUp bool) {
	if b.cfg.BetweenBatches == nil {
		return
	}
	now := time.Now().UnixNano()
	last := b.between.Load()
	if now-last < int64(b.cfg.BetweenEvery) || !b.between.CompareAndSwap(last, now) {
		return
	}
	b.cfg.BetweenBatches(caughtUp)
}

func (b *BackoffManager) waitIdle(afterBatch bool) {
	t := time.NewTimer(b.cfg.MaxIdleWait)
	defer t.Stop()
	select {
	case <-b.cfg.Wake:
	case <-t.C:
		return
	case <-b.done:
		return
	}
	linger := b.cfg.Linger
	if b.cfg.LingerFor != nil {
		linger = b.cfg.LingerFor(afterBatch)
	}
	if linger > 0 {
		t.Reset(linger)
		select {
		case <-t.C:
		case <-b.done:
		}
	}
}

// Close ends a pending idle wait at once and makes later ones return
// immediately. Call it before closing the subscriber so Close does not wait
// up to MaxIdleWait.
func (b *BackoffManager) Close() {
	b.closeOnce.Do(func() { close(b.done) })
}
