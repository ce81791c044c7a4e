package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
)

// projection is one read model: a stable name (its checkpoint row; renaming
// it re-consumes everything), its tables, and how events change them. All
// methods run under the engine's apply lock inside one transaction.
type projection interface {
	name() string
	schema() []string
	tables() []string
	// begin resets per-transaction state (caches) for a new transaction.
	begin(t *txn)
	apply(t *txn, ev decoded) error
	// flush writes whatever apply deferred.
	flush(t *txn) error
	// settle is told how the transaction ended: committed, its rows may be
	// remembered for the next one; otherwise (or after the tables were
	// dropped) everything remembered is forgotten.
	settle(committed bool)
}

// Engine runs the projections. Create it with New, start it with Run, read
// from it through the queries.ReadModel and queries.Waiter it implements.
type Engine struct {
	cfg   Config
	w, r  *sql.DB
	ck    *sql.DB       // the checkpointer's connection
	walCk *checkpointer // started by New, stopped by Close
	wb    *writeback    // started by New, stopped by Close
	projs []projection
	msgs  *messagesProjection

	// mu serialises everything that writes: packs from the bus, catch-up,
	// rebuild. It also guards cps and stmts.
	mu     sync.Mutex
	cps    map[string]int64
	stmts  map[string]*sql.Stmt
	closed bool

	signal *positionSignal
	// notices feed the notifier (notify.go), which tells the hub and moves
	// signal; notifierDone closes when it ended.
	notices      chan notice
	notifierDone chan struct{}
	running      atomic.Bool
	packs        atomic.Int64 // packs applied, so the poller knows the bus is alive
	commits      atomic.Int64 // transactions committed, so the checkpointer knows the WAL grew
	failures     atomic.Int64
	lastErr      atomic.Pointer[error]
}

var (
	_ queries.ReadModel = (*Engine)(nil)
	_ queries.Waiter    = (*Engine)(nil)
)

// New opens (or creates) the read-model file and loads the checkpoints. It
// does not read the Source yet: Run catches up.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w, r, ck, err := openDBs(cfg.Path, cfg.ReadConns)
	if err != nil {
		return nil, err
	}
	msgs := &messagesProjection{}
	e := &Engine{
		cfg:   cfg,
		w:     w,
		r:     r,
		ck:    ck,
		projs: []projection{&queuesProjection{}, msgs},
		msgs:  msgs,
		cps:   make(map[string]int64),
		stmts: make(map[string]*sql.Stmt),
	}
	ctx := context.Background()
	if err := migrate(ctx, w, e.projs, cfg.Logger); err != nil {
		e.closeDBs()
		return nil, err
	}
	if err := e.loadCheckpoints(ctx); err != nil {
		e.closeDBs()
		return nil, err
	}
	e.signal = newPositionSignal(e.minCheckpoint())
	if cfg.Hub != nil {
		cfg.Hub.SetFloor(e.minCheckpoint())
	}
	e.walCk = startCheckpointer(ck, &e.commits, cfg.Logger)
	e.wb = startWriteback(cfg.Path+"-wal", cfg.Logger)
	e.startNotifier()
	return e, nil
}

func (e *Engine) loadCheckpoints(ctx context.Context) error {
	for _, p := range e.projs {
		e.cps[p.name()] = 0
	}
	rows, err := e.w.QueryContext(ctx, "SELECT projection, position FROM checkpoints")
	if err != nil {
		return fmt.Errorf("load checkpoints: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var pos int64
		if err := rows.Scan(&name, &pos); err != nil {
			return fmt.Errorf("load checkpoints: %w", err)
		}
		if _, ok := e.cps[name]; ok {
			e.cps[name] = pos
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load checkpoints: %w", err)
	}
	return nil
}

// minCheckpoint is the position every projection has reached. Caller holds
// mu (or is New).
func (e *Engine) minCheckpoint() int64 {
	first := true
	var m int64
	for _, p := range e.projs {
		if c := e.cps[p.name()]; first || c < m {
			m, first = c, false
		}
	}
	return m
}

// Projections lists the projections' stable names.
func (e *Engine) Projections() []string {
	names := make([]string, len(e.projs))
	for i, p := range e.projs {
		names[i] = p.name()
	}
	return names
}

// Checkpoints returns each projection's applied position.
func (e *Engine) Checkpoints() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.cps))
	for k, v := range e.cps {
		out[k] = v
	}
	return out
}

// AppliedPosition is the global position every projection has applied and
// committed, and whose updates the hub has: the X-Ledgerq-Position of query
// responses. It moves on the notifier's goroutine (notify.go), just after
// the commit, so it may trail a pack that ApplyPack has just returned from.
func (e *Engine) AppliedPosition() int64 {
	p, _ := e.signal.get()
	return p
}

// WaitForPosition returns once AppliedPosition() >= position, or ctx's error.
// The notifier wakes it after each commit; it does not poll.
func (e *Engine) WaitForPosition(ctx context.Context, position int64) error {
	return e.signal.wait(ctx, position)
}

// LastError is the error of the last failed attempt to apply a pack or to
// catch up, or nil once one succeeded since. Health checks show it: a
// projection stuck on an event it cannot apply is retried, never skipped.
func (e *Engine) LastError() error {
	if p := e.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (e *Engine) setErr(err error) {
	if err == nil {
		e.lastErr.Store(nil)
		return
	}
	e.lastErr.Store(&err)
}

// Run catches up from the Source, attaches to the bus (when a Subscriber is
// configured), catches up again to cover what the bus dropped before the
// subscription existed, then keeps applying packs until ctx ends. It returns
// nil when ctx ends, or an error when the bus subscription fails.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("projections: engine already running")
	}
	defer e.running.Store(false)

	e.tryCatchUp(ctx)

	var (
		router    *message.Router
		routerErr chan error
	)
	if e.cfg.Subscriber != nil {
		var err error
		router, err = message.NewRouter(message.RouterConfig{}, e.cfg.Logger)
		if err != nil {
			return fmt.Errorf("projections: router: %w", err)
		}
		router.AddConsumerHandler(e.cfg.HandlerName, e.cfg.Topic, e.cfg.Subscriber, e.handleMessage)
		routerErr = make(chan error, 1)
		go func() { routerErr <- router.Run(ctx) }()
		// WARNING: no ctx.Done case here. Closing a watermill router before
		// it runs makes Close wait its whole CloseTimeout (Close holds the
		// handlers lock Run needs); Running comes even when ctx has ended.
		select {
		case <-router.Running():
		case err := <-routerErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("projections: bus subscription ended at start: %w", err)
		}
		e.tryCatchUp(ctx)
	}

	var tick <-chan time.Time
	if e.cfg.PollInterval > 0 {
		t := time.NewTicker(e.cfg.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	seen := e.packs.Load()
	for {
		select {
		case <-ctx.Done():
			if router != nil {
				router.Close()
				<-routerErr
			}
			return nil
		case err := <-routerErr:
			if ctx.Err() != nil {
				return nil // the router noticed the end of ctx first
			}
			if err == nil {
				err = errors.New("router stopped")
			}
			return fmt.Errorf("projections: bus subscription ended: %w", err)
		case <-tick:
			// Only look at the Source when the bus was idle: while packs flow,
			// reading ahead of them would only turn them into duplicates.
			if n := e.packs.Load(); n == seen {
				e.tryCatchUp(ctx)
			} else {
				seen = n
			}
		}
	}
}

func (e *Engine) tryCatchUp(ctx context.Context) {
	if err := e.CatchUp(ctx); err != nil && ctx.Err() == nil {
		e.setErr(err)
		e.cfg.Logger.Error("projections: catch-up failed", err, nil)
	}
}

// handleMessage is the router handler: one message, one pack. An error nacks
// the message so the bus redelivers it; the growing pause before returning
// keeps a pack that keeps failing from spinning (the in-process bus resends
// at once).
func (e *Engine) handleMessage(msg *message.Message) (err error) {
	defer func() {
		// A panic must not take the process down from a bus goroutine; it
		// is one more failed attempt.
		if r := recover(); r != nil {
			err = fmt.Errorf("projections: pack %s: panic: %v", msg.UUID, r)
			e.setErr(err)
		}
	}()
	events, err := e.cfg.DecodePack(msg)
	if err != nil {
		err = fmt.Errorf("projections: decode pack %s: %w", msg.UUID, err)
	} else {
		err = e.ApplyPack(msg.Context(), events)
	}
	if err != nil {
		e.setErr(err)
		n := e.failures.Add(1)
		e.cfg.Logger.Error("projections: pack failed, will retry", err, watermill.LogFields{"attempt": n})
		pause := min(50*time.Millisecond<<min(n, 10), 10*time.Second)
		select {
		case <-time.After(pause):
		case <-msg.Context().Done():
		}
		return err
	}
	e.failures.Store(0)
	e.setErr(nil)
	return nil
}

// ApplyPack applies a pack of events (in position order, as the relay sends
// them) in one transaction per consecutive run. Events at or below a
// projection's checkpoint are skipped (at-least-once delivery); when an event
// lies beyond the next expected position the missing ones are read from the
// Source and applied first. Nothing is ever skipped: if the Source cannot
// supply the missing events, ErrGap is returned and nothing after the gap is
// applied.
func (e *Engine) ApplyPack(ctx context.Context, events []eventstore.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.packs.Add(1)
	next := e.minCheckpoint() + 1
	run := make([]decoded, 0, len(events))
	for _, ev := range events {
		if ev.Position < next {
			continue
		}
		if ev.Position > next {
			if err := e.applyLive(ctx, run); err != nil {
				return err
			}
			run = run[:0]
			if err := e.catchUpLocked(ctx, ev.Position-1, true); err != nil {
				return err
			}
			if reached := e.minCheckpoint(); reached < ev.Position-1 {
				return fmt.Errorf("%w: pack starts at %d, source ends at %d", ErrGap, ev.Position, reached)
			}
		}
		d, err := decodeWith(e.cfg.Upcast, ev)
		if err != nil {
			return err
		}
		run = append(run, d)
		next = ev.Position + 1
	}
	return e.applyLive(ctx, run)
}

// applyLive applies events that came in a pack from the bus, and reports
// the transaction and each event's delay to Config's observers. Caller
// holds mu.
func (e *Engine) applyLive(ctx context.Context, run []decoded) error {
	start := time.Now()
	if err := e.applyBatch(ctx, run, true); err != nil {
		return err
	}
	if len(run) == 0 {
		return nil
	}
	end := time.Now()
	if e.cfg.ObserveTransaction != nil {
		e.cfg.ObserveTransaction(len(run), end.Sub(start))
	}
	if e.cfg.ObserveDelay != nil {
		for _, ev := range run {
			e.cfg.ObserveDelay(end.Sub(ev.RecordedAt))
		}
	}
	return nil
}

// errStop ends a Source read early once the wanted position was reached.
var errStop = errors.New("projections: stop reading")

// CatchUp applies everything the Source has after the applied position.
func (e *Engine) CatchUp(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if err := e.catchUpLocked(ctx, 0, true); err != nil {
		return err
	}
	e.setErr(nil)
	return nil
}

// catchUpLocked reads the Source from the applied position up to upTo (0:
// its head), applying CatchUpBatch events per transaction.
//
// The Source is read and decoded on a goroutine of its own, a batch or two
// ahead, while this one applies the batch before: reading the log and
// writing the read model then run at once instead of in turn, which is
// what a rebuild of a long log waits for. Batches are applied in order,
// and a read error is returned after the batches read before it were
// applied, as a single loop would.
func (e *Engine) catchUpLocked(ctx context.Context, upTo int64, notify bool) error {
	after := e.minCheckpoint()
	readCtx, stop := context.WithCancel(ctx)
	defer stop()
	batches := make(chan []decoded, 1)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		readErr <- e.readBatches(readCtx, after, upTo, batches)
	}()
	for batch := range batches {
		if err := e.applyBatch(ctx, batch, notify); err != nil {
			stop()
			for range batches {
				// The reader sees the cancellation at its next event or send.
			}
			<-readErr
			return err
		}
	}
	if err := <-readErr; err != nil {
		return fmt.Errorf("projections: catch up after %d: %w", after, err)
	}
	return nil
}

// readBatches reads the Source after position after (up to upTo when it is
// positive), decodes each event and sends them in batches of CatchUpBatch,
// the last one possibly shorter. It checks that positions follow each
// other without a gap.
func (e *Engine) readBatches(ctx context.Context, after, upTo int64, out chan<- []decoded) error {
	next := after + 1
	batch := make([]decoded, 0, e.cfg.CatchUpBatch)
	send := func() error {
		select {
		case out <- batch:
			batch = make([]decoded, 0, e.cfg.CatchUpBatch)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := e.cfg.Source.ReadAll(ctx, after, func(ev eventstore.Event) error {
		if upTo > 0 && ev.Position > upTo {
			return errStop
		}
		if ev.Position < next {
			return nil
		}
		if ev.Position > next {
			return fmt.Errorf("%w: source went from %d to %d", ErrGap, next-1, ev.Position)
		}
		d, err := decodeWith(e.cfg.Upcast, ev)
		if err != nil {
			return err
		}
		batch = append(batch, d)
		next++
		if len(batch) == cap(batch) {
			return send()
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	if len(batch) > 0 {
		return send()
	}
	return nil
}

// Rebuild drops every read model and rebuilds it from position 0 through the
// same code path as live packs (without telling the hub: nothing changes
// for subscribers once it is done). Packs arriving meanwhile wait. While it
// runs, AppliedPosition reports its progress.
func (e *Engine) Rebuild(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	for _, p := range e.projs {
		p.settle(false) // the tables are about to go
	}
	// Statements compiled against the dropped tables are of no further use.
	for q, s := range e.stmts {
		s.Close()
		delete(e.stmts, q)
	}
	tx, err := e.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	defer tx.Rollback()
	if err := dropAll(ctx, tx, e.projs); err != nil {
		return err
	}
	if err := createAll(ctx, tx, e.projs); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	for k := range e.cps {
		e.cps[k] = 0
	}
	e.flushNotices() // none of them may move the signal after this
	e.signal.set(0)
	if err := e.catchUpLocked(ctx, 0, false); err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	return nil
}

// Close waits for the pack being applied, then closes the read-model file.
// Call it after Run returned.
func (e *Engine) Close() error {
	e.walCk.close()
	e.wb.close()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	close(e.notices)
	<-e.notifierDone
	for _, s := range e.stmts {
		s.Close()
	}
	return e.closeDBs()
}

func (e *Engine) closeDBs() error {
	return errors.Join(e.r.Close(), e.w.Close(), e.ck.Close())
}
