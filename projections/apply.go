package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/ledgerq/ledgerq/queries"
)

// txn is one read-model transaction: the SQL transaction, its statements,
// and notes of what changed, turned into hub updates once it commits.
type txn struct {
	ctx    context.Context
	tx     *sql.Tx
	eng    *Engine
	stmts  map[string]*sql.Stmt
	now    int64 // unix ms, for ready vs delayed in updates
	notify bool

	queues   map[string]*queueNote
	messages map[string]int64 // message id → position of its last change

	unprepared []string // queries to prepare on the engine after the transaction
}

// queueNote remembers what happened to a queue in this transaction.
type queueNote struct {
	changed int64 // position of the last change (0: none)
	deleted int64 // position of the last deletion (0: none)
}

func (t *txn) queueChanged(name string, pos int64) {
	if !t.notify {
		return
	}
	n := t.queues[name]
	if n == nil {
		n = &queueNote{}
		t.queues[name] = n
	}
	n.changed = pos
}

func (t *txn) queueDeleted(name string, pos int64) {
	if !t.notify {
		return
	}
	n := t.queues[name]
	if n == nil {
		n = &queueNote{}
		t.queues[name] = n
	}
	n.deleted, n.changed = pos, 0
}

func (t *txn) messageChanged(id string, pos int64) {
	if t.notify {
		t.messages[id] = pos
	}
}

func (t *txn) messageGone(id string) { delete(t.messages, id) }

// stmt returns q prepared on the writer connection (once per engine) and
// bound to this transaction.
func (t *txn) stmt(q string) (*sql.Stmt, error) {
	if s, ok := t.stmts[q]; ok {
		return s, nil
	}
	if base, ok := t.eng.stmts[q]; ok {
		s := t.tx.StmtContext(t.ctx, base)
		t.stmts[q] = s
		return s, nil
	}
	// The writer pool has one connection and the transaction holds it, so
	// an engine-level statement cannot be prepared now: prepare this one on
	// the transaction and the engine-level one once the connection is free.
	s, err := t.tx.PrepareContext(t.ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", q, err)
	}
	t.stmts[q] = s
	t.unprepared = append(t.unprepared, q)
	return s, nil
}

// prepareLater makes engine-level statements of the queries a transaction
// had to prepare for itself. Caller holds mu, with no transaction open.
func (e *Engine) prepareLater(queries []string) {
	for _, q := range queries {
		if _, ok := e.stmts[q]; ok {
			continue
		}
		// A failure only means the next transaction prepares it again.
		if s, err := e.w.Prepare(q); err == nil {
			e.stmts[q] = s
		}
	}
}

func (t *txn) exec(q string, args ...any) (sql.Result, error) {
	s, err := t.stmt(q)
	if err != nil {
		return nil, err
	}
	res, err := s.ExecContext(t.ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("exec %q: %w", q, err)
	}
	return res, nil
}

// queryRow runs a one-row query; errors (sql.ErrNoRows included) come from
// scan.
func (t *txn) queryRow(q string, args ...any) func(dest ...any) error {
	s, err := t.stmt(q)
	if err != nil {
		return func(...any) error { return err }
	}
	return s.QueryRowContext(t.ctx, args...).Scan
}

const upsertCheckpoint = `INSERT INTO checkpoints (projection, position) VALUES (?, ?)
	ON CONFLICT (projection) DO UPDATE SET position = excluded.position`

// applyBatch applies consecutive events (the first one next after the
// lowest checkpoint) to every projection that has not applied them yet, and
// each projection's checkpoint, in one transaction; then it publishes the
// position and, when notify is set, the hub updates. Caller holds mu.
func (e *Engine) applyBatch(ctx context.Context, evs []decoded, notify bool) error {
	if len(evs) == 0 {
		return nil
	}
	if first, want := evs[0].Position, e.minCheckpoint()+1; first != want {
		return fmt.Errorf("%w: batch starts at %d, expected %d", ErrGap, first, want)
	}
	// A batch is one short transaction, applied whole or not at all, so
	// stopping it half-way gains nothing. Given a context that can be
	// cancelled, database/sql starts a goroutine per transaction (to roll
	// it back on cancel) and mattn/go-sqlite3 one per statement (to
	// interrupt SQLite): more scheduling than work for single-row
	// statements. Without cancellation everything runs on this goroutine;
	// callers look at ctx between batches.
	ctx = context.WithoutCancel(ctx)
	tx, err := e.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("projections: begin: %w", err)
	}
	t := &txn{
		ctx: ctx, tx: tx, eng: e, stmts: make(map[string]*sql.Stmt),
		now: ms(e.cfg.Now()), notify: notify && e.cfg.Hub != nil,
		queues: make(map[string]*queueNote), messages: make(map[string]int64),
	}
	committed := false
	defer func() {
		tx.Rollback() // after Commit: a no-op
		for _, p := range e.projs {
			p.settle(committed)
		}
		e.prepareLater(t.unprepared)
	}()
	advanced := make(map[string]int64, len(e.projs))
	for _, p := range e.projs {
		p.begin(t)
	}
	for i, ev := range evs {
		if i > 0 && ev.Position != evs[i-1].Position+1 {
			return fmt.Errorf("%w: batch jumps from %d to %d", ErrGap, evs[i-1].Position, ev.Position)
		}
		for _, p := range e.projs {
			if ev.Position <= e.cps[p.name()] {
				continue
			}
			if err := p.apply(t, ev); err != nil {
				return fmt.Errorf("projection %s: %w", p.name(), err)
			}
			advanced[p.name()] = ev.Position
		}
	}
	for _, p := range e.projs {
		if err := p.flush(t); err != nil {
			return fmt.Errorf("projection %s: %w", p.name(), err)
		}
	}
	for name, pos := range advanced {
		if _, err := t.exec(upsertCheckpoint, name, pos); err != nil {
			return fmt.Errorf("projection %s: checkpoint: %w", name, err)
		}
	}
	var updates []queries.Update
	if t.notify {
		if updates, err = e.updates(t); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("projections: commit: %w", err)
	}
	e.commits.Add(1)
	e.wb.poke()
	committed = true
	for name, pos := range advanced {
		e.cps[name] = pos
	}
	// The notifier hands the updates to the hub, then moves the position
	// signal (notify.go).
	e.notify(updates, e.minCheckpoint())
	return nil
}

// wants asks the hub, when it can say, whether an update would reach anyone.
func (e *Engine) wants(event, queue string, pos int64) bool {
	w, ok := e.cfg.Hub.(updateWanter)
	return !ok || w.WantUpdate(event, queue, pos)
}

// updates turns the transaction's notes into hub updates, read inside the
// transaction so that they show exactly what commits. One update per queue
// and per message per transaction: each carries the whole current state, so
// coalescing loses nothing a subscriber could see.
func (e *Engine) updates(t *txn) ([]queries.Update, error) {
	var out []queries.Update
	for name, n := range t.queues {
		if n.deleted > 0 {
			data, err := json.Marshal(struct {
				Name string `json:"name"`
			}{name})
			if err != nil {
				return nil, fmt.Errorf("encode update: %w", err)
			}
			out = append(out, queries.Update{Position: n.deleted, Event: queries.EventQueueDeleted, Queue: name, Data: data})
		}
		if n.changed == 0 {
			continue
		}
		if !e.wants(queries.EventQueueUpdated, name, n.changed) {
			continue
		}
		q, err := queueWithStats(t.queryRow, name, t.now)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(q)
		if err != nil {
			return nil, fmt.Errorf("encode update: %w", err)
		}
		out = append(out, queries.Update{Position: n.changed, Event: queries.EventQueueUpdated, Queue: name, Data: data, Value: q})
	}
	for id, pos := range t.messages {
		queue, ok := e.msgs.queueOf(id)
		if !ok || !e.wants(queries.EventMessageUpdated, queue, pos) {
			continue
		}
		s, ok := e.msgs.summary(id, t.now)
		if !ok {
			continue
		}
		data, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("encode update: %w", err)
		}
		out = append(out, queries.Update{Position: pos, Event: queries.EventMessageUpdated, Queue: s.Queue, Data: data, Value: s})
	}
	// The hub wants position order; within a position, queue updates after
	// message updates so that a queue's stats never trail its messages.
	sort.Slice(out, func(i, j int) bool {
		if out[i].Position != out[j].Position {
			return out[i].Position < out[j].Position
		}
		if out[i].Event != out[j].Event {
			return out[i].Event == queries.EventMessageUpdated
		}
		if out[i].Queue != out[j].Queue {
			return out[i].Queue < out[j].Queue
		}
		return string(out[i].Data) < string(out[j].Data)
	})
	return out, nil
}
