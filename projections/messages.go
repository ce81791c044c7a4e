package projections

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// messagesProjection keeps the message index (one row per message, body
// included so that query nodes can return it), each message's history
// (every event about it, verbatim), and each queue's count of available and
// in-flight messages, which the stats need and which only this projection
// can keep right (it knows each message's previous state).
//
// A message's first event, its MessagePublished, is kept once: verbatim in
// the message's row (column published), which is both where its body is read
// from and the first entry of its history; message_history holds the events
// after it. Kept in both tables, the body was written twice per publish.
type messagesProjection struct {
	// rows caches, per transaction, the messages touched; their writes are
	// deferred to flush so that a message published, leased and acked in one
	// pack costs one INSERT.
	rows   map[string]*msgRow
	counts map[string]*countRow
	// knownCounts are the counts as the last committed transactions left
	// them, so that a queue's are read from the table once.
	knownCounts map[string]liveCounts
}

type msgRow struct {
	msgFacts
	id          string
	position    int64 // of its MessagePublished: the row's key and paging order
	publishedAt int64
	headers     string // JSON object
	lastPos     int64
	isNew       bool
	dirty       bool
	pub         *domain.MessagePublished // for isNew rows: what the INSERT needs
	pubData     string                   // for isNew rows: the MessagePublished verbatim
	recordedAt  int64                    // for isNew rows: when it was logged
}

type countRow struct {
	liveCounts
	dirty bool
}

func (*messagesProjection) name() string { return "messages" }

func (*messagesProjection) tables() []string {
	return []string{"messages", "message_history", "message_counts"}
}

func (*messagesProjection) schema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS messages (
			position         INTEGER PRIMARY KEY,
			id               TEXT NOT NULL,
			queue            TEXT NOT NULL,
			state            TEXT NOT NULL,
			published_at     INTEGER NOT NULL,
			available_at     INTEGER NOT NULL,
			expires_at       INTEGER NOT NULL,
			receive_count    INTEGER NOT NULL,
			lease_expires_at INTEGER,
			content_type     TEXT NOT NULL,
			headers          TEXT NOT NULL,
			published        TEXT NOT NULL,
			recorded_at      INTEGER NOT NULL,
			body_encoding    TEXT NOT NULL,
			body_size        INTEGER NOT NULL,
			dedup_id         TEXT,
			origin_queue     TEXT,
			origin_id        TEXT,
			origin_reason    TEXT,
			moved_queue      TEXT,
			moved_id         TEXT,
			moved_reason     TEXT,
			last_position    INTEGER NOT NULL
		)`,
		`CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON messages (id)`,
		// Listing a queue's messages of one state in publish order (rowid =
		// position follows the key), and of every state by merging those
		// ranges (see Engine.Messages).
		`CREATE INDEX IF NOT EXISTS messages_queue_state ON messages (queue, state)`,
		// An index on (queue) alone served the listing of every state until
		// the merge replaced it: each commit changed a leaf of it per queue
		// touched, ~1/3 of the index pages a publish writes over many queues.
		`DROP INDEX IF EXISTS messages_queue`,
		// Ready vs delayed and the oldest ready message, per queue, at query
		// time: only available messages, so final ones cost nothing here.
		`CREATE INDEX IF NOT EXISTS messages_available ON messages (queue, available_at) WHERE state = 'available'`,
		`CREATE TABLE IF NOT EXISTS message_history (
			seq         INTEGER PRIMARY KEY,
			message_id  TEXT NOT NULL,
			position    INTEGER NOT NULL,
			type        TEXT NOT NULL,
			recorded_at INTEGER NOT NULL,
			data        TEXT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS message_history_message ON message_history (message_id, position)`,
		`CREATE TABLE IF NOT EXISTS message_counts (
			queue     TEXT PRIMARY KEY,
			available INTEGER NOT NULL,
			in_flight INTEGER NOT NULL
		) WITHOUT ROWID`,
	}
}

func (p *messagesProjection) begin(*txn) {
	p.rows = make(map[string]*msgRow)
	p.counts = make(map[string]*countRow)
}

const insertHistory = `INSERT INTO message_history (message_id, position, type, recorded_at, data)
	VALUES (?, ?, ?, ?, ?)`

func (p *messagesProjection) apply(t *txn, ev decoded) error {
	switch d := ev.data.(type) {
	case domain.QueueCreated, domain.QueueConfigured:
		return nil
	case domain.QueuePurged:
		return p.purge(t, ev, d.Queue)
	case domain.QueueDeleted:
		return p.deleteQueue(t, d.Queue)
	case domain.MessagePublished:
		if err := p.publish(t, ev, d); err != nil {
			return err
		}
		// Its history entry is the message's row (see messagesProjection).
		t.messageChanged(d.MessageID, ev.Position)
		return nil
	default:
		if err := p.change(t, ev); err != nil {
			return err
		}
	}
	id := messageID(ev.data)
	if _, err := t.exec(insertHistory, id, ev.Position, ev.Type, ms(ev.RecordedAt), string(ev.Data)); err != nil {
		return err
	}
	t.messageChanged(id, ev.Position)
	return nil
}

func (p *messagesProjection) publish(t *txn, ev decoded, d domain.MessagePublished) error {
	if _, ok := p.rows[d.MessageID]; ok {
		return fmt.Errorf("%w: message %s published again at %d", ErrInconsistent, d.MessageID, ev.Position)
	}
	headers, err := encodeHeaders(d.Headers)
	if err != nil {
		return err
	}
	r := &msgRow{
		msgFacts:    msgFacts{queue: d.Queue, state: stAvailable, availableAt: ms(d.AvailableAt)},
		id:          d.MessageID,
		position:    ev.Position,
		publishedAt: ms(d.PublishedAt),
		headers:     headers,
		lastPos:     ev.Position,
		isNew:       true,
		dirty:       true,
		pub:         &d,
		pubData:     string(ev.Data),
		recordedAt:  ms(ev.RecordedAt),
	}
	p.rows[d.MessageID] = r
	c, err := p.count(t, d.Queue)
	if err != nil {
		return err
	}
	c.move("", stAvailable)
	c.dirty = true
	return nil
}

func (p *messagesProjection) change(t *txn, ev decoded) error {
	id := messageID(ev.data)
	r, err := p.row(t, id)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("%w: %s at %d for unknown message %s", ErrInconsistent, ev.Type, ev.Position, id)
	}
	prev, err := applyMessageEvent(&r.msgFacts, ev.data, id, ev.Position)
	if err != nil {
		return err
	}
	r.lastPos, r.dirty = ev.Position, true
	c, err := p.count(t, r.queue)
	if err != nil {
		return err
	}
	c.move(prev, r.state)
	c.dirty = true
	return nil
}

const selectMessageRow = `SELECT position, queue, state, published_at, available_at, receive_count,
	COALESCE(lease_expires_at, 0), headers, COALESCE(moved_queue, ''), COALESCE(moved_id, ''),
	COALESCE(moved_reason, ''), last_position
	FROM messages WHERE id = ?`

// row returns the message from the cache or the table; nil when unknown.
func (p *messagesProjection) row(t *txn, id string) (*msgRow, error) {
	if r, ok := p.rows[id]; ok {
		return r, nil
	}
	r := &msgRow{id: id}
	var moved domain.Origin
	err := t.queryRow(selectMessageRow, id)(&r.position, &r.queue, &r.state, &r.publishedAt,
		&r.availableAt, &r.receiveCount, &r.leaseExpiresAt, &r.headers, &moved.Queue, &moved.MessageID,
		&moved.Reason, &r.lastPos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load message %s: %w", id, err)
	}
	if moved.MessageID != "" {
		r.movedTo = &moved
	}
	p.rows[id] = r
	return r, nil
}

func (p *messagesProjection) count(t *txn, queue string) (*countRow, error) {
	if c, ok := p.counts[queue]; ok {
		return c, nil
	}
	if k, ok := p.knownCounts[queue]; ok {
		c := &countRow{liveCounts: k}
		p.counts[queue] = c
		return c, nil
	}
	c := &countRow{}
	err := t.queryRow("SELECT available, in_flight FROM message_counts WHERE queue = ?", queue)(&c.available, &c.inFlight)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("load counts of %q: %w", queue, err)
	}
	p.counts[queue] = c
	return c, nil
}

// purge moves every available message of the queue to purged and records
// the purge in each one's history. It works on the table, so deferred rows
// are written first.
func (p *messagesProjection) purge(t *txn, ev decoded, queue string) error {
	if err := p.flushRows(t); err != nil {
		return err
	}
	if _, err := t.exec(`INSERT INTO message_history (message_id, position, type, recorded_at, data)
		SELECT id, ?, ?, ?, ? FROM messages WHERE queue = ? AND state = 'available' ORDER BY position`,
		ev.Position, ev.Type, ms(ev.RecordedAt), string(ev.Data), queue); err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE messages SET state = 'purged', last_position = ?
		WHERE queue = ? AND state = 'available'`, ev.Position, queue); err != nil {
		return err
	}
	for id, r := range p.rows {
		if r.queue == queue && r.state == stAvailable {
			r.state, r.lastPos = stPurged, ev.Position
			t.messageChanged(id, ev.Position)
		}
	}
	c, err := p.count(t, queue)
	if err != nil {
		return err
	}
	c.available, c.dirty = 0, true
	return nil
}

// deleteQueue forgets the queue's messages and their histories: a deleted
// queue's messages are gone for queries (the log keeps them for audit), and
// a queue created again under the same name starts empty.
func (p *messagesProjection) deleteQueue(t *txn, queue string) error {
	if err := p.flushRows(t); err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM message_history WHERE message_id IN (SELECT id FROM messages WHERE queue = ?)`,
		`DELETE FROM messages WHERE queue = ?`,
		`DELETE FROM message_counts WHERE queue = ?`,
	} {
		if _, err := t.exec(q, queue); err != nil {
			return err
		}
	}
	for id, r := range p.rows {
		if r.queue == queue {
			delete(p.rows, id)
			t.messageGone(id)
		}
	}
	// Known to be zero and already deleted: written only if the queue is
	// created again and gets messages in this transaction.
	p.counts[queue] = &countRow{}
	return nil
}

// insertInto names the columns the two INSERTs below write, in order.
const insertInto = `INSERT INTO messages (position, id, queue, state, published_at, available_at,
	expires_at, receive_count, lease_expires_at, content_type, headers, published, recorded_at,
	body_encoding, body_size, dedup_id, origin_queue, origin_id, origin_reason, moved_queue, moved_id,
	moved_reason, last_position)`

const insertMessage = insertInto + `
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, 0), ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''),
	NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), ?)`

// insertPlainMessage is insertMessage for a message with no dedup id, no
// origin, not moved and not leased: each bound value is a cgo call, and the
// common row needs only 15 of them.
const insertPlainMessage = insertInto + `
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ?)`

const updateMessage = `UPDATE messages SET state = ?, available_at = ?, receive_count = ?,
	lease_expires_at = NULLIF(?, 0), moved_queue = NULLIF(?, ''), moved_id = NULLIF(?, ''),
	moved_reason = NULLIF(?, ''), last_position = ? WHERE id = ?`

func (p *messagesProjection) flushRows(t *txn) error {
	for _, r := range p.rows {
		if !r.dirty {
			continue
		}
		var moved domain.Origin
		if r.movedTo != nil {
			moved = *r.movedTo
		}
		if r.isNew {
			d := r.pub
			if d.Origin == nil && d.DedupID == "" && r.movedTo == nil && r.leaseExpiresAt == 0 {
				// Most rows: 15 values to bind instead of 23.
				if _, err := t.exec(insertPlainMessage, r.position, r.id, r.queue, r.state, r.publishedAt,
					r.availableAt, ms(d.ExpiresAt), r.receiveCount, d.ContentType, r.headers,
					r.pubData, r.recordedAt, d.BodyEncoding, d.BodySize, r.lastPos); err != nil {
					return err
				}
				r.isNew, r.pub, r.pubData, r.dirty = false, nil, "", false
				continue
			}
			var origin domain.Origin
			if d.Origin != nil {
				origin = *d.Origin
			}
			if _, err := t.exec(insertMessage, r.position, r.id, r.queue, r.state, r.publishedAt,
				r.availableAt, ms(d.ExpiresAt), r.receiveCount, r.leaseExpiresAt, d.ContentType, r.headers,
				r.pubData, r.recordedAt, d.BodyEncoding, d.BodySize, d.DedupID, origin.Queue, origin.MessageID,
				origin.Reason, moved.Queue, moved.MessageID, moved.Reason, r.lastPos); err != nil {
				return err
			}
			r.isNew, r.pub, r.pubData = false, nil, ""
		} else {
			if _, err := t.exec(updateMessage, r.state, r.availableAt, r.receiveCount, r.leaseExpiresAt,
				moved.Queue, moved.MessageID, moved.Reason, r.lastPos, r.id); err != nil {
				return err
			}
		}
		r.dirty = false
	}
	return nil
}

func (p *messagesProjection) flush(t *txn) error {
	if err := p.flushRows(t); err != nil {
		return err
	}
	for queue, c := range p.counts {
		if !c.dirty {
			continue
		}
		if _, err := t.exec(`INSERT INTO message_counts (queue, available, in_flight) VALUES (?, ?, ?)
			ON CONFLICT (queue) DO UPDATE SET available = excluded.available, in_flight = excluded.in_flight`,
			queue, c.available, c.inFlight); err != nil {
			return err
		}
		c.dirty = false
	}
	return nil
}

func (p *messagesProjection) settle(committed bool) {
	if !committed {
		p.knownCounts = nil
		return
	}
	if p.knownCounts == nil {
		p.knownCounts = make(map[string]liveCounts)
	}
	for queue, c := range p.counts {
		p.knownCounts[queue] = c.liveCounts
	}
}

// queueOf is the queue of a message changed in the current transaction.
func (p *messagesProjection) queueOf(id string) (string, bool) {
	r, ok := p.rows[id]
	if !ok {
		return "", false
	}
	return r.queue, true
}

// summary is the message.updated payload of a message changed in the
// current transaction (flushed, not yet committed).
func (p *messagesProjection) summary(id string, now int64) (queries.MessageSummary, bool) {
	r, ok := p.rows[id]
	if !ok {
		return queries.MessageSummary{}, false
	}
	headers := map[string]string{}
	// The row's headers were encoded by encodeHeaders; a decoding failure
	// could only mean a damaged file, and an update without headers is
	// still worth sending.
	_ = json.Unmarshal([]byte(r.headers), &headers)
	return queries.MessageSummary{
		ID:           r.id,
		Queue:        r.queue,
		State:        publicState(r.state, r.availableAt, now),
		PublishedAt:  fromMS(r.publishedAt),
		ReceiveCount: r.receiveCount,
		Headers:      headers,
	}, true
}

func encodeHeaders(h map[string]string) (string, error) {
	if len(h) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(h) // map keys come out sorted: stable bytes
	if err != nil {
		return "", fmt.Errorf("encode headers: %w", err)
	}
	return string(b), nil
}
