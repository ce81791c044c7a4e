package relay

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/wmsql"
)

// Store is what the relay needs of the event store.
type Store interface {
	// Path is the SQLite file of the log; the relay reads it read-only.
	Path() string
	// Head is the last durable position; the relay reads no further.
	Head() int64
	// Watch is signalled after every commit.
	Watch() (<-chan struct{}, func())
}

var _ Store = (*eventstore.Store)(nil)

// walCheckpointer is what the relay uses of a Store that also has it
// (*eventstore.Store does): a checkpoint of the log's WAL, asked for while
// the relay catches up. See eventstore.Store.CheckpointWAL.
type walCheckpointer interface {
	CheckpointWAL(ctx context.Context) (eventstore.WALCheckpoint, error)
}

var _ walCheckpointer = (*eventstore.Store)(nil)

// Errors of the relay.
var (
	// ErrRunning: Run was called while the relay was already running.
	ErrRunning = errors.New("relay: already running")
	// ErrClosed: the relay was closed.
	ErrClosed = errors.New("relay: closed")
)

// Defaults of Config.
const (
	DefaultOffsetsFile   = "relay-offsets.db"
	DefaultConsumerGroup = "relay"
	DefaultMaxPackEvents = 1024
	DefaultMaxPackBytes  = 1 << 20
)

// Config configures a Relay. The zero value is valid.
type Config struct {
	// OffsetsPath is the SQLite file holding the relay's offset.
	// Default: DefaultOffsetsFile next to the store's file.
	OffsetsPath string
	// ConsumerGroup names the relay's offset row. Default
	// DefaultConsumerGroup.
	ConsumerGroup string
	// MaxPackEvents caps the events of one message (one Redis entry).
	// 1 publishes one event per message. Default DefaultMaxPackEvents.
	MaxPackEvents int
	// MaxPackBytes closes a pack early once its events reach this size;
	// a single larger event still travels alone. Default
	// DefaultMaxPackBytes.
	MaxPackBytes int
	// MinBackoff and MaxBackoff bound the wait between failed publishes
	// (doubling from MinBackoff). Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// PublishTimeout bounds one publish attempt to Redis (and the wait for
	// a first subscriber on the in-process bus). Default 10s.
	PublishTimeout time.Duration
	// MaxIdleWait is the longest the relay sleeps without a commit signal
	// before it looks at the log anyway. Default 1s.
	MaxIdleWait time.Duration
	// Linger is how long the relay waits after a commit signal before it
	// reads, also after a pack that was not full, so the commits of that
	// moment leave in one pack. It adds to the latency of an event and
	// saves transactions, CPU and Redis entries under load. Default 2ms;
	// negative: none (and no pacing either).
	Linger time.Duration
	// BusyRate and BusyInterval pace the relay under load: while the log
	// grows by at least BusyRate events a second (its durable head,
	// measured over 100 ms or more), the relay starts a read
	// at most every BusyInterval (lingering longer than Linger when a pack
	// was handled sooner), so each pack's fixed cost (a read transaction,
	// an offset write, a bus message, a read-model transaction: about a
	// millisecond of CPU on a 2-core machine) is shared by more events when
	// CPU is scarcest. A pack whose handling took BusyInterval or longer
	// is followed by Linger only. Below BusyRate only Linger applies.
	// Defaults 5,000 events/s and 20ms; a negative BusyRate turns pacing
	// off.
	BusyRate     float64
	BusyInterval time.Duration
	// Logger receives the relay's logs. Default: none.
	Logger watermill.LoggerAdapter
	// OnRelayed, if set, is called after each pack was published.
	OnRelayed func(first, last int64)
	// OnError, if set, is called with every publish or read error.
	OnError func(error)
}

func (c *Config) setDefaults(store Store) {
	if c.OffsetsPath == "" {
		c.OffsetsPath = filepath.Join(filepath.Dir(store.Path()), DefaultOffsetsFile)
	}
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = DefaultConsumerGroup
	}
	if c.MaxPackEvents == 0 {
		c.MaxPackEvents = DefaultMaxPackEvents
	}
	if c.MaxPackBytes == 0 {
		c.MaxPackBytes = DefaultMaxPackBytes
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.MaxIdleWait == 0 {
		c.MaxIdleWait = time.Second
	}
	if c.Linger == 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.BusyRate == 0 {
		c.BusyRate = 5000
	}
	if c.BusyInterval == 0 {
		c.BusyInterval = 20 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxPackEvents < 0 {
		errs = append(errs, fmt.Errorf("MaxPackEvents must not be negative, got %d", c.MaxPackEvents))
	}
	if c.MaxPackBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxPackBytes must not be negative, got %d", c.MaxPackBytes))
	}
	if c.MinBackoff < 0 || c.MaxBackoff < 0 || c.MinBackoff > c.MaxBackoff && c.MaxBackoff != 0 {
		errs = append(errs, fmt.Errorf("backoff %s..%s is not a range", c.MinBackoff, c.MaxBackoff))
	}
	if c.BusyInterval < 0 {
		errs = append(errs, fmt.Errorf("BusyInterval must not be negative, got %s", c.BusyInterval))
	}
	if c.PublishTimeout < 0 || c.MaxIdleWait < 0 {
		errs = append(errs, errors.New("PublishTimeout and MaxIdleWait must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Stats are the relay's counters since New.
type Stats struct {
	// RelayedPosition is the last position published (and being acked),
	// starting from the stored offset.
	RelayedPosition int64
	// Packs and Events count what was published, republished packs included.
	Packs, Events uint64
	// PublishErrors counts failed publish attempts; ReadErrors failed
	// reads of the log or the offsets.
	PublishErrors, ReadErrors uint64
	// Rewinds counts the times the relay went back because Redis had lost
	// published packs.
	Rewinds uint64
	// Checkpoints counts the WAL checkpoints the relay asked the store for
	// between two packs.
	Checkpoints uint64
	// LastError and LastErrorAt describe the latest error ("" if none).
	LastError   string
	LastErrorAt time.Time
}

// Relay moves events from the event store to the bus: in position order,
// packed, at-least-once.
//
// Only one relay should run per store. Two would not corrupt anything (the
// offsets file's lock lets one publish a pack at a time and the offset
// decides what comes next) but would double the retries.
type Relay struct {
	store   Store
	bus     *Bus
	cfg     Config
	db      *wmsql.DB
	offsets wmsql.OffsetsAdapter
	schema  eventsSchema
	logger  watermill.LoggerAdapter

	relayed                                                atomic.Int64
	packs, events, pubErrs, readErrs, rewinds, checkpoints atomic.Uint64
	checkpointedAt                                         atomic.Uint64 // events at the last checkpoint asked for
	pacer                                                  readPacer

	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time

	runMu   sync.Mutex
	running bool
	closed  bool
	stop    context.CancelFunc
	done    chan struct{}
}

// New opens the relay's offsets and reads where it stopped last time.
func New(store Store, bus *Bus, cfg Config) (*Relay, error) {
	if store == nil || bus == nil {
		return nil, fmt.Errorf("%w: store and bus are required", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults(store)
	ctx := context.Background()
	db, err := wmsql.Open(ctx, wmsql.Config{
		Path:        store.Path(),
		ReadOnly:    true,
		OffsetsPath: cfg.OffsetsPath,
		Exclusive:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Relay{
		store:   store,
		bus:     bus,
		cfg:     cfg,
		db:      db,
		offsets: wmsql.OffsetsAdapter{Schema: db.OffsetsSchema()},
		schema:  eventsSchema{maxEvents: cfg.MaxPackEvents, maxBytes: cfg.MaxPackBytes, head: store.Head},
		logger:  cfg.Logger.With(watermill.LogFields{"component": "relay"}),
	}
	for _, q := range r.offsets.SchemaInitializingQueries(eventsTopic) {
		if _, err := db.ExecContext(ctx, q.Query, q.Args...); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("relay: create offsets table: %w", err)
		}
	}
	q := r.offsets.NextOffsetQuery(eventsTopic, cfg.ConsumerGroup)
	var pos int64
	if err := db.QueryRowContext(ctx, q.Query, q.Args...).Scan(&pos); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("relay: read offset: %w", err)
	}
	r.relayed.Store(pos)
	return r, nil
}

// Run relays until ctx ends or Close is called; then it returns nil.
// Failures to read or publish are retried with backoff, never skipped.
func (r *Relay) Run(ctx context.Context) error {
	r.runMu.Lock()
	switch {
	case r.closed:
		r.runMu.Unlock()
		return ErrClosed
	case r.running:
		r.runMu.Unlock()
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	r.running, r.stop, r.done = true, cancel, make(chan struct{})
	done := r.done
	r.runMu.Unlock()
	defer func() {
		cancel()
		r.runMu.Lock()
		r.running = false
		r.runMu.Unlock()
		close(done)
	}()

	wake, unwatch := r.store.Watch()
	defer unwatch()
	retry := newBackoff(r.cfg.MinBackoff, r.cfg.MaxBackoff)
	for ctx.Err() == nil {
		rewindTo, err := r.runSubscription(ctx, wake, retry)
		switch {
		case ctx.Err() != nil:
		case rewindTo >= 0:
			if err := r.rewind(ctx, rewindTo); err != nil {
				r.readErrs.Add(1)
				r.noteError(err)
				retry.sleep(ctx)
			}
		case err != nil:
			r.noteError(err)
			retry.sleep(ctx)
		}
	}
	return nil
}

// runSubscription relays through one watermill-sql subscription until ctx
// ends, a publish fails, or Redis turned out to have lost packs (then it
// returns the position to relay again from; else -1). A failure closes the
// subscription, which ends its transaction: the relay never holds a read
// snapshot of the log while it waits to retry.
func (r *Relay) runSubscription(ctx context.Context, wake <-chan struct{}, retry *backoff) (int64, error) {
	bm := &countingBackoff{
		BackoffManager: wmsql.NewBackoffManager(wmsql.BackoffConfig{
			Wake: wake, MaxIdleWait: r.cfg.MaxIdleWait, RetryInterval: r.cfg.MinBackoff,
			LingerFor: func(afterBatch bool) time.Duration {
				if !afterBatch {
					// The log went quiet: the next event is not part of
					// the load the last packs measured.
					r.pacer.reset()
				}
				return r.pacer.linger(r.cfg, time.Now())
			},
			BetweenBatches: func(caughtUp bool) { r.maybeCheckpoint(ctx, caughtUp) },
		}),
		onError: func(err error) { r.readErrs.Add(1); r.noteError(err) },
	}
	// The deadline only matters when a publish outlives it (a stuck
	// in-process consumer): the pack is then read again and republished.
	ackDeadline := max(time.Minute, 2*r.cfg.PublishTimeout)
	sub, err := wsql.NewSubscriber(r.db, wsql.SubscriberConfig{
		ConsumerGroup:  r.cfg.ConsumerGroup,
		AckDeadline:    &ackDeadline,
		PollInterval:   r.cfg.MaxIdleWait,
		ResendInterval: r.cfg.MinBackoff,
		RetryInterval:  r.cfg.MinBackoff,
		BackoffManager: bm,
		SchemaAdapter:  r.schema,
		OffsetsAdapter: r.offsets,
	}, r.logger)
	if err != nil {
		return -1, fmt.Errorf("relay: subscriber: %w", err)
	}
	defer func() {
		bm.Close()
		_ = sub.Close()
	}()
	// The subscription ends through sub.Close (deferred) rather than ctx:
	// Close lets watermill-sql commit the offset of a pack already acked,
	// where a cancelled context would roll it back and the pack would be
	// published again after a restart.
	msgs, err := sub.Subscribe(context.WithoutCancel(ctx), eventsTopic)
	if err != nil {
		r.readErrs.Add(1)
		return -1, fmt.Errorf("relay: subscribe to the log: %w", err)
	}
	// While the log is idle no pack comes to check the mark against, so
	// look at it now and then: Redis may have restarted empty meanwhile.
	var check <-chan time.Time
	if r.bus.IsRedis() {
		t := time.NewTicker(r.cfg.MaxIdleWait)
		defer t.Stop()
		check = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return -1, nil
		case <-check:
			checkCtx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
			mark, _, err := r.bus.relayMark(checkCtx)
			cancel()
			if err == nil && mark < r.relayed.Load() {
				return mark, nil
			}
		case msg, ok := <-msgs:
			if !ok {
				return -1, nil
			}
			rewindTo, err := r.publish(ctx, msg)
			if err != nil {
				r.pubErrs.Add(1)
				return -1, err
			}
			if rewindTo >= 0 {
				return rewindTo, nil
			}
			r.pacer.packed(r.store.Head(), time.Now())
			if !r.full(msg) {
				bm.CaughtUp()
			}
			msg.Ack()
			retry.reset()
		}
	}
}

// publish sends one pack to the bus. Over Redis it first checks the relay
// mark: Redis restarted without its data (or lost its last writes) when the
// mark is below the pack's first position - 1, and the relay must go back
// to the mark.
func (r *Relay) publish(ctx context.Context, msg *message.Message) (rewindTo int64, err error) {
	first, last, err := PackRange(msg)
	if err != nil {
		return -1, err
	}
	pubCtx, cancel := context.WithTimeout(msg.Context(), r.cfg.PublishTimeout)
	defer cancel()
	if r.bus.IsRedis() {
		mark, _, err := r.bus.relayMark(pubCtx)
		if err != nil {
			return -1, err
		}
		if mark < first-1 {
			return mark, nil
		}
	}
	// A copy: the original's ack belongs to the watermill-sql subscriber.
	out := msg.Copy()
	out.SetContext(pubCtx)
	if err := r.bus.Publisher().Publish(Topic, out); err != nil {
		return -1, fmt.Errorf("relay: publish %s: %w", msg.UUID, err)
	}
	if r.bus.IsRedis() {
		if err := r.bus.setRelayMark(pubCtx, last); err != nil {
			return -1, err
		}
	}
	r.relayed.Store(last)
	r.packs.Add(1)
	r.events.Add(uint64(last - first + 1))
	if r.cfg.OnRelayed != nil {
		r.cfg.OnRelayed(first, last)
	}
	return -1, nil
}

// readPacer decides the relay's linger from the log's rate: how fast its
// durable head moves, measured over windows of at least rateWindow (see
// Config.BusyRate). The head, not the packs the relay is handed: while the
// relay catches up, its packs come faster than the log grows. The relay's
// goroutine reports packs; the subscriber's asks for the linger.
type readPacer struct {
	mu       sync.Mutex
	last     time.Time // when the last pack came to the relay
	winStart time.Time // start of the window being measured; zero: none
	winHead  int64     // the log's head at winStart
	rate     float64   // events/s over the last complete window; 0 unknown
}

// rateWindow is the shortest span the log's rate is measured over: the
// head read at two packs in a row is too noisy (a slow fsync makes two
// commits durable at once), and a noisy rate would pace the relay below
// BusyRate.
const rateWindow = 100 * time.Millisecond

// packed records that a pack was handed to the relay at at, when the log's
// durable head was head.
func (p *readPacer) packed(head int64, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = at
	if p.winStart.IsZero() {
		p.winStart, p.winHead = at, head
		return
	}
	if d := at.Sub(p.winStart); d >= rateWindow {
		p.rate = float64(head-p.winHead) / d.Seconds()
		p.winStart, p.winHead = at, head
	}
}

// reset forgets the rate: the log went quiet.
func (p *readPacer) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.winStart, p.winHead, p.rate = time.Time{}, time.Time{}, 0, 0
}

// linger is the pause before the next read, at now, after a commit signal.
func (p *readPacer) linger(c Config, now time.Time) time.Duration {
	if c.Linger < 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.BusyRate > 0 && p.rate >= c.BusyRate {
		return max(c.Linger, c.BusyInterval-now.Sub(p.last))
	}
	return c.Linger
}

// full tells a pack cut by MaxPackEvents or MaxPackBytes, after which more
// events are waiting, from one that reached the head of the log. A pack cut
// by size is counted full once its payload is half the bound (the bound
// counts the SQL row sizes, not the payload's).
func (r *Relay) full(msg *message.Message) bool {
	first, last, err := PackRange(msg)
	return err == nil && (last-first+1 >= int64(r.cfg.MaxPackEvents) || len(msg.Payload) >= r.cfg.MaxPackBytes/2)
}

// checkpointEvents is how many events a relay that keeps up relays between
// two WAL checkpoints it asks for (one behind asks every 100 ms).
const checkpointEvents = 1024

// maybeCheckpoint runs between two packs, when the relay holds no read
// snapshot of the log, at most every 100 ms. SQLite starts the WAL over
// only after a checkpoint that found no reader in the way; a relay behind
// reads pack after pack, and one that keeps up under load reads again a
// Linger after each pack, so such moments are rare and the WAL grows by
// whatever is appended (320 MB in 20 s of the SSE benchmark). So the relay
// asks for a checkpoint every time while behind, and after every
// checkpointEvents events while it keeps up; a quiet log needs none.
func (r *Relay) maybeCheckpoint(ctx context.Context, caughtUp bool) {
	if caughtUp && r.events.Load()-r.checkpointedAt.Load() < checkpointEvents {
		return
	}
	r.checkpointedAt.Store(r.events.Load())
	r.checkpoint(ctx)
}

// checkpoint lets the store copy its WAL into the log's file.
func (r *Relay) checkpoint(ctx context.Context) {
	c, ok := r.store.(walCheckpointer)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	if _, err := c.CheckpointWAL(ctx); err != nil {
		if ctx.Err() == nil && !errors.Is(err, eventstore.ErrClosed) {
			r.logger.Error("WAL checkpoint failed", err, nil)
		}
		return
	}
	r.checkpoints.Add(1)
}

// rewind sets the relay's offset back to pos so the packs after it are
// published again.
func (r *Relay) rewind(ctx context.Context, pos int64) error {
	r.logger.Info("Redis lost published events; relaying again", watermill.LogFields{
		"from_position": pos + 1, "relayed_position": r.relayed.Load(),
	})
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("relay: rewind: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	q := r.offsets.AckMessageQuery(eventsTopic, wsql.Row{Offset: pos}, r.cfg.ConsumerGroup)
	if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
		return fmt.Errorf("relay: rewind: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("relay: rewind: %w", err)
	}
	r.relayed.Store(pos)
	r.rewinds.Add(1)
	return nil
}

func (r *Relay) noteError(err error) {
	r.errMu.Lock()
	r.lastErr, r.lastErrAt = err.Error(), time.Now()
	r.errMu.Unlock()
	r.logger.Error("Relay error, retrying", err, nil)
	if r.cfg.OnError != nil {
		r.cfg.OnError(err)
	}
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return Stats{
		RelayedPosition: r.relayed.Load(),
		Packs:           r.packs.Load(),
		Events:          r.events.Load(),
		PublishErrors:   r.pubErrs.Load(),
		ReadErrors:      r.readErrs.Load(),
		Rewinds:         r.rewinds.Load(),
		Checkpoints:     r.checkpoints.Load(),
		LastError:       r.lastErr,
		LastErrorAt:     r.lastErrAt,
	}
}

// Position is the last position published.
func (r *Relay) Position() int64 { return r.relayed.Load() }

// Lag is how many committed events are not published yet.
func (r *Relay) Lag() int64 { return max(0, r.store.Head()-r.relayed.Load()) }

// Close stops Run, waits for it and closes the offsets database.
func (r *Relay) Close() error {
	r.runMu.Lock()
	if r.closed {
		r.runMu.Unlock()
		return nil
	}
	r.closed = true
	stop, done, running := r.stop, r.done, r.running
	r.runMu.Unlock()
	if running {
		stop()
		<-done
	}
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("relay: close: %w", err)
	}
	return nil
}

// countingBackoff reports the subscriber's read errors to the relay's
// stats before the wmsql BackoffManager decides the wait.
type countingBackoff struct {
	*wmsql.BackoffManager
	onError func(error)
}

func (c *countingBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	// Busy is retried at once and a cancelled context is the relay
	// stopping: neither is worth an alarm.
	if err != nil && !wmsql.IsBusy(err) && !errors.Is(err, context.Canceled) {
		c.onError(err)
	}
	return c.BackoffManager.HandleError(logger, noMsg, err)
}
