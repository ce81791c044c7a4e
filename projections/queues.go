package projections

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/ledgerq/ledgerq/domain"
)

// queuesProjection keeps the queue summary and list: attributes, created and
// updated times, and lifetime counters. A deleted queue's row goes; a queue
// created again starts from zero, as its new life does.
type queuesProjection struct {
	// rows caches, per transaction, the queues touched: one read and one
	// write per queue per transaction instead of one per event.
	rows map[string]*queueRow
	// known are the rows as the last committed transactions left them (the
	// read model is only written here), so that a queue's row is read from
	// the table once, not once per transaction.
	known map[string]queueRow
}

type queueRow struct {
	exists     bool // false: deleted (or never created) as of now
	loaded     bool // the row was in the table at the start
	attrs      domain.Attributes
	createdAt  int64
	updatedAt  int64
	published  int64
	acked      int64
	released   int64
	expired    int64
	deadLetter int64
	lastPos    int64
	// configured: created, configured or deleted in this transaction, so
	// more than the counters changed. A row that was loaded and only
	// counted messages is written by the narrow countsQueue.
	configured bool
}

func (*queuesProjection) name() string { return "queues" }

func (*queuesProjection) tables() []string { return []string{"queues"} }

func (*queuesProjection) schema() []string {
	return []string{`CREATE TABLE IF NOT EXISTS queues (
		name                  TEXT PRIMARY KEY,
		visibility_timeout_ms INTEGER NOT NULL,
		delay_ms              INTEGER NOT NULL,
		retention_ms          INTEGER NOT NULL,
		max_message_bytes     INTEGER NOT NULL,
		dead_letter_queue     TEXT,
		max_receive_count     INTEGER NOT NULL,
		created_at            INTEGER NOT NULL,
		updated_at            INTEGER NOT NULL,
		published_total       INTEGER NOT NULL,
		acked_total           INTEGER NOT NULL,
		released_total        INTEGER NOT NULL,
		expired_total         INTEGER NOT NULL,
		dead_lettered_total   INTEGER NOT NULL,
		last_position         INTEGER NOT NULL
	) WITHOUT ROWID`}
}

func (p *queuesProjection) begin(*txn) { p.rows = make(map[string]*queueRow) }

const selectQueueRow = `SELECT visibility_timeout_ms, delay_ms, retention_ms, max_message_bytes,
	COALESCE(dead_letter_queue, ''), max_receive_count, created_at, updated_at, published_total,
	acked_total, released_total, expired_total, dead_lettered_total, last_position
	FROM queues WHERE name = ?`

func (p *queuesProjection) row(t *txn, name string) (*queueRow, error) {
	if r, ok := p.rows[name]; ok {
		return r, nil
	}
	if k, ok := p.known[name]; ok {
		r := &k
		p.rows[name] = r
		return r, nil
	}
	r := &queueRow{}
	err := t.queryRow(selectQueueRow, name)(&r.attrs.VisibilityTimeoutMS, &r.attrs.DelayMS,
		&r.attrs.RetentionMS, &r.attrs.MaxMessageBytes, &r.attrs.DeadLetterQueue, &r.attrs.MaxReceiveCount,
		&r.createdAt, &r.updatedAt, &r.published, &r.acked, &r.released, &r.expired, &r.deadLetter, &r.lastPos)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("load queue %q: %w", name, err)
	default:
		r.exists, r.loaded = true, true
	}
	p.rows[name] = r
	return r, nil
}

func (p *queuesProjection) apply(t *txn, ev decoded) error {
	name := ev.data.QueueName()
	r, err := p.row(t, name)
	if err != nil {
		return err
	}
	if created, ok := ev.data.(domain.QueueCreated); ok {
		if r.exists {
			return fmt.Errorf("%w: QueueCreated at %d for existing queue %q", ErrInconsistent, ev.Position, name)
		}
		*r = queueRow{exists: true, loaded: r.loaded, attrs: created.Attributes,
			createdAt: ms(created.CreatedAt), updatedAt: ms(created.CreatedAt), lastPos: ev.Position, configured: true}
		t.queueChanged(name, ev.Position)
		return nil
	}
	if !r.exists {
		return fmt.Errorf("%w: %s at %d for unknown queue %q", ErrInconsistent, ev.Type, ev.Position, name)
	}
	r.lastPos = ev.Position
	switch d := ev.data.(type) {
	case domain.QueueConfigured:
		r.attrs, r.updatedAt, r.configured = d.Attributes, ms(d.ConfiguredAt), true
	case domain.QueueDeleted:
		*r = queueRow{loaded: r.loaded, configured: true}
		t.queueDeleted(name, ev.Position)
		return nil
	case domain.MessagePublished:
		r.published++
	case domain.MessageAcked:
		r.acked++
	case domain.MessageReleased:
		r.released++
	case domain.MessageExpired:
		r.expired++
	case domain.MessageDeadLettered:
		r.deadLetter++
	}
	// Every event of a queue's stream changes its stats (ready, in flight…)
	// if not its counters.
	t.queueChanged(name, ev.Position)
	return nil
}

const upsertQueue = `INSERT INTO queues (name, visibility_timeout_ms, delay_ms, retention_ms,
	max_message_bytes, dead_letter_queue, max_receive_count, created_at, updated_at, published_total,
	acked_total, released_total, expired_total, dead_lettered_total, last_position)
	VALUES (?, ?, ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (name) DO UPDATE SET
	visibility_timeout_ms = excluded.visibility_timeout_ms, delay_ms = excluded.delay_ms,
	retention_ms = excluded.retention_ms, max_message_bytes = excluded.max_message_bytes,
	dead_letter_queue = excluded.dead_letter_queue, max_receive_count = excluded.max_receive_count,
	created_at = excluded.created_at, updated_at = excluded.updated_at,
	published_total = excluded.published_total, acked_total = excluded.acked_total,
	released_total = excluded.released_total, expired_total = excluded.expired_total,
	dead_lettered_total = excluded.dead_lettered_total, last_position = excluded.last_position`

// countsQueue writes what message events change: the counters and the
// position (7 values to bind where upsertQueue binds 15, and no conflict
// to resolve).
const countsQueue = `UPDATE queues SET published_total = ?, acked_total = ?, released_total = ?,
	expired_total = ?, dead_lettered_total = ?, last_position = ? WHERE name = ?`

func (p *queuesProjection) flush(t *txn) error {
	for name, r := range p.rows {
		switch {
		case r.exists && r.loaded && !r.configured:
			if _, err := t.exec(countsQueue, r.published, r.acked, r.released, r.expired, r.deadLetter,
				r.lastPos, name); err != nil {
				return err
			}
		case r.exists:
			if _, err := t.exec(upsertQueue, name, r.attrs.VisibilityTimeoutMS, r.attrs.DelayMS,
				r.attrs.RetentionMS, r.attrs.MaxMessageBytes, r.attrs.DeadLetterQueue, r.attrs.MaxReceiveCount,
				r.createdAt, r.updatedAt, r.published, r.acked, r.released, r.expired, r.deadLetter,
				r.lastPos); err != nil {
				return err
			}
		case r.loaded:
			if _, err := t.exec("DELETE FROM queues WHERE name = ?", name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *queuesProjection) settle(committed bool) {
	if !committed {
		p.known = nil
		return
	}
	if p.known == nil {
		p.known = make(map[string]queueRow)
	}
	for name, r := range p.rows {
		k := *r
		k.loaded = k.exists // flush wrote the row, or deleted it
		k.configured = false
		p.known[name] = k
	}
}
