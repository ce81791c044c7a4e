package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// EventStore is what the command side needs from the event log. It is the
// subset of *eventstore.Store the handlers use.
type EventStore interface {
	// Submit queues an append in order and returns at once.
	Submit(req eventstore.AppendRequest) *eventstore.Pending
	// Append submits and waits until the append is durable.
	Append(ctx context.Context, req eventstore.AppendRequest) (eventstore.AppendResult, error)
	// Head is the position of the last committed event.
	Head() int64
	// ReadAll calls fn for every event after afterPosition, in order.
	ReadAll(ctx context.Context, afterPosition int64, fn func(eventstore.Event) error) error
	// ReadPositions returns the events at the given positions.
	ReadPositions(ctx context.Context, positions []int64) ([]eventstore.Event, error)
}

var _ EventStore = (*eventstore.Store)(nil)

// streamReader is an optional capability of the store: reading one stream
// lets a queue whose append failed be rebuilt without scanning the whole
// log. Without it, the rebuild filters ReadAll.
type streamReader interface {
	ReadStream(ctx context.Context, streamID string, afterVersion int64, fn func(eventstore.Event) error) error
}

// ErrUnavailable: the event store could not take the append (disk,
// closed store) or the app is shutting down; nothing was recorded. HTTP
// answers 503. Errors wrapping it also answer Unavailable() == true, for
// edges that classify by behaviour rather than by sentinel.
var ErrUnavailable error = &unavailableError{"commands: event store unavailable"}

type unavailableError struct{ msg string }

func (e *unavailableError) Error() string { return e.msg }

// Unavailable reports that the failure is the service's, and temporary.
func (e *unavailableError) Unavailable() bool { return true }

// SchedulerSubject is the metadata subject of the events the scheduler
// appends (lease expiries, dead-lettering, retention).
const SchedulerSubject = "ledgerq-scheduler"

// MaxWaitMS bounds a receive's long poll.
const MaxWaitMS = 20000

// Defaults of Options.
const (
	// DefaultExpireBatch is how many due items the scheduler turns into
	// events per append.
	DefaultExpireBatch = 256
	// DefaultRetryDelay is how long the scheduler waits before it tries a
	// queue again after a failed append.
	DefaultRetryDelay = time.Second
	// DefaultSnapshotInterval is how often the background snapshot writer
	// looks at the log's head.
	DefaultSnapshotInterval = 5 * time.Second
)

// Options configure an App. The zero value is valid.
type Options struct {
	// Clock is the time decisions are made at. Default time.Now. Waiting
	// (long polls, the scheduler's timer) always uses real time; a test
	// with a fixed clock pokes the scheduler instead.
	Clock func() time.Time
	// Logger receives what the scheduler cannot report to a caller.
	// Default logrus.StandardLogger().
	Logger logrus.FieldLogger
	// ExpireBatch caps the events of one scheduler append. Default
	// DefaultExpireBatch.
	ExpireBatch int
	// RetryDelay is the scheduler's pause after a failed append. Default
	// DefaultRetryDelay.
	RetryDelay time.Duration
	// SnapshotPath is the command-state snapshot file. When set, New
	// starts from it if it is valid for this log (and says why not
	// otherwise) and replays only the events after it; WriteSnapshot
	// writes it. Deleting the file is always safe: the next start replays
	// the whole log.
	SnapshotPath string
	// SnapshotEvery writes a snapshot to SnapshotPath in the background
	// once that many events were appended since the last one (0: never).
	SnapshotEvery int64
	// SnapshotInterval is how often the background writer checks whether
	// a snapshot is due. Default DefaultSnapshotInterval.
	SnapshotInterval time.Duration
}

func (o *Options) setDefaults() {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.ExpireBatch == 0 {
		o.ExpireBatch = DefaultExpireBatch
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = DefaultSnapshotInterval
	}
}

// Validate reports every problem of the options at once.
func (o Options) Validate() error {
	var errs []error
	if o.ExpireBatch < 0 {
		errs = append(errs, fmt.Errorf("ExpireBatch must not be negative, got %d", o.ExpireBatch))
	}
	if o.RetryDelay < 0 {
		errs = append(errs, fmt.Errorf("RetryDelay must not be negative, got %s", o.RetryDelay))
	}
	if o.SnapshotEvery < 0 {
		errs = append(errs, fmt.Errorf("SnapshotEvery must not be negative, got %d", o.SnapshotEvery))
	}
	if o.SnapshotEvery > 0 && o.SnapshotPath == "" {
		errs = append(errs, errors.New("SnapshotEvery needs a SnapshotPath"))
	}
	if o.SnapshotInterval < 0 {
		errs = append(errs, fmt.Errorf("SnapshotInterval must not be negative, got %s", o.SnapshotInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("commands: options: %w", err)
	}
	return nil
}

// App holds the command side: every queue's state in memory (without
// bodies), the handlers, and the scheduler.
//
// Locking: mu guards the registry of queues. Creating, configuring and
// deleting a queue take it exclusively, because they look at other queues
// (does the dead-letter queue exist, does anyone use this queue as theirs);
// every other command takes it shared, just long enough to decide and
// submit. Each queue has its own mutex; commands that touch several queues
// (dead-lettering, redrive) lock them in name order. Nobody waits for I/O
// while holding mu.
type App struct {
	store EventStore
	opts  Options
	now   func() time.Time
	log   logrus.FieldLogger

	mu     sync.RWMutex
	queues map[string]*queueState

	sched     *scheduler
	closed    chan struct{}
	closeOnce sync.Once
	done      chan struct{}

	// snapMu lets one snapshot be written at a time; snapPos is the
	// position of the last one written or loaded; snapDone is closed when
	// the background writer (if any) has stopped.
	snapMu   sync.Mutex
	snapPos  atomic.Int64
	snapDone chan struct{}
	startup  StartupReport
}

// New rebuilds every queue's state — from the snapshot at
// opts.SnapshotPath and the events after it when that is valid, else from
// the whole log — and starts the scheduler (and the snapshot writer when
// opts.SnapshotEvery is set). Call Close to stop them.
func New(store EventStore, opts Options) (*App, error) {
	if store == nil {
		return nil, errors.New("commands: New: nil store")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	a := &App{
		store:  store,
		opts:   opts,
		now:    func() time.Time { return opts.Clock().UTC().Truncate(time.Millisecond) },
		log:    opts.Logger.WithField("component", "commands"),
		queues: make(map[string]*queueState),
		closed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	a.sched = newScheduler(a)
	if err := a.rebuild(context.Background()); err != nil {
		return nil, err
	}
	now := a.now()
	for _, qs := range a.queues {
		qs.mu.Lock()
		a.reschedule(qs, now)
		qs.mu.Unlock()
	}
	go a.sched.run()
	if opts.SnapshotEvery > 0 {
		a.snapDone = make(chan struct{})
		go a.runSnapshots()
	}
	return a, nil
}

// Close stops the scheduler and the snapshot writer and wakes every long
// poll, which then returns empty. Commands after Close fail with
// ErrUnavailable; WriteSnapshot still works. It does not close the store.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		close(a.closed)
		<-a.done
		if a.snapDone != nil {
			<-a.snapDone
		}
	})
	return nil
}

func (a *App) isClosed() bool {
	select {
	case <-a.closed:
		return true
	default:
		return false
	}
}

func (a *App) checkOpen() error {
	if a.isClosed() {
		return fmt.Errorf("%w: the command side is shut down", ErrUnavailable)
	}
	return nil
}

// Head is the position of the last committed event.
func (a *App) Head() int64 { return a.store.Head() }

// Snapshot returns the state of every queue the log knows (deleted ones
// included), by name, for comparing the live state with a replay. A queue
// left broken by a failed append is rebuilt from the log first, as the
// next command on it would.
func (a *App) Snapshot(ctx context.Context) (map[string]domain.Snapshot, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make(map[string]domain.Snapshot, len(a.queues))
	for _, qs := range a.queues {
		if err := a.lockQueue(ctx, qs); err != nil {
			return nil, err
		}
		// A queue whose creation failed has no stream: the log does not
		// know it, and neither does the snapshot.
		if qs.agg.Version() > 0 {
			out[qs.name] = qs.agg.Snapshot()
		}
		qs.mu.Unlock()
	}
	return out, nil
}

// lookup returns the state of an existing queue name; a.mu must be held.
func (a *App) lookup(field, name string) (*queueState, error) {
	if err := domain.ValidateQueueName(field, name); err != nil {
		return nil, err
	}
	qs, ok := a.queues[name]
	if !ok {
		return nil, domain.WithMessage(domain.ErrQueueNotFound, "queue %q not found", name)
	}
	return qs, nil
}

// stateFor returns the state of name, creating an empty one; a.mu must be
// held exclusively.
func (a *App) stateFor(name string) *queueState {
	qs, ok := a.queues[name]
	if !ok {
		qs = newQueueState(name)
		a.queues[name] = qs
	}
	return qs
}

// lockAll locks queues in name order (skipping repeats) and rebuilds any
// that a failed append left broken. It returns the unlock function.
func (a *App) lockAll(ctx context.Context, qss ...*queueState) (func(), error) {
	qss = slices.Clone(qss)
	slices.SortFunc(qss, func(x, y *queueState) int {
		switch {
		case x.name < y.name:
			return -1
		case x.name > y.name:
			return 1
		}
		return 0
	})
	qss = slices.Compact(qss)
	locked := make([]*queueState, 0, len(qss))
	unlock := func() {
		for i := len(locked) - 1; i >= 0; i-- {
			locked[i].mu.Unlock()
		}
	}
	for _, qs := range qss {
		if err := a.lockQueue(ctx, qs); err != nil {
			unlock()
			return nil, err
		}
		locked = append(locked, qs)
	}
	return unlock, nil
}

// lockQueue locks one queue, rebuilding it first if it is broken.
func (a *App) lockQueue(ctx context.Context, qs *queueState) error {
	qs.mu.Lock()
	if !qs.broken {
		return nil
	}
	if err := a.rebuildQueue(ctx, qs); err != nil {
		qs.mu.Unlock()
		return err
	}
	return nil
}
