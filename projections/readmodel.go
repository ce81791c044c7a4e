package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// rowQuerier runs a one-row query; the returned scan reports its error
// (sql.ErrNoRows included). Both a read transaction and the writer's
// transaction (for hub updates) provide one, so the stats SQL exists once.
type rowQuerier = func(q string, args ...any) func(dest ...any) error

// selectQueueWithStats reads a queue, its counters and its live counts, and
// splits available messages into ready and delayed by the clock (?1) with
// the partial index on available messages: a count over the delayed ones
// and a min over the ready ones, both index-only.
const selectQueueWithStats = `SELECT q.name, q.visibility_timeout_ms, q.delay_ms, q.retention_ms,
	q.max_message_bytes, COALESCE(q.dead_letter_queue, ''), q.max_receive_count, q.created_at,
	q.updated_at, q.published_total, q.acked_total, q.released_total, q.expired_total,
	q.dead_lettered_total, COALESCE(c.available, 0), COALESCE(c.in_flight, 0),
	(SELECT COUNT(*) FROM messages m
		WHERE m.queue = q.name AND m.state = 'available' AND m.available_at > ?1),
	(SELECT MIN(m.available_at) FROM messages m
		WHERE m.queue = q.name AND m.state = 'available' AND m.available_at <= ?1)
	FROM queues q LEFT JOIN message_counts c ON c.queue = q.name
	WHERE q.name = ?2`

// queueWithStats returns the queue with its stats as of now (unix ms), or
// sql.ErrNoRows.
func queueWithStats(query rowQuerier, name string, now int64) (queries.Queue, error) {
	var (
		q                   queries.Queue
		a                   domain.Attributes
		created, updated    int64
		available, delayed  int64
		oldestReadyAt       sql.NullInt64
		inFlight, published int64
	)
	err := query(selectQueueWithStats, now, name)(&q.Name, &a.VisibilityTimeoutMS, &a.DelayMS,
		&a.RetentionMS, &a.MaxMessageBytes, &a.DeadLetterQueue, &a.MaxReceiveCount, &created, &updated,
		&published, &q.Stats.AckedTotal, &q.Stats.ReleasedTotal, &q.Stats.ExpiredTotal,
		&q.Stats.DeadLetteredTotal, &available, &inFlight, &delayed, &oldestReadyAt)
	if errors.Is(err, sql.ErrNoRows) {
		return queries.Queue{}, sql.ErrNoRows
	}
	if err != nil {
		return queries.Queue{}, fmt.Errorf("read queue %q: %w", name, err)
	}
	q.Attributes = attrsView(a)
	q.CreatedAt, q.UpdatedAt = fromMS(created), fromMS(updated)
	q.Stats.PublishedTotal = published
	q.Stats.InFlight = inFlight
	q.Stats.Delayed = delayed
	q.Stats.Ready = available - delayed
	if oldestReadyAt.Valid {
		q.Stats.OldestReadyAgeMS = max(0, now-oldestReadyAt.Int64)
	}
	return q, nil
}

// read runs fn in one read transaction: every query of a request sees the
// same committed state.
func (e *Engine) read(ctx context.Context, fn func(q rowQuerier, tx *sql.Tx) error) error {
	tx, err := e.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("read model: %w", err)
	}
	defer tx.Rollback()
	q := func(query string, args ...any) func(dest ...any) error {
		return tx.QueryRowContext(ctx, query, args...).Scan
	}
	return fn(q, tx)
}

// Queues implements queries.ReadModel.
func (e *Engine) Queues(ctx context.Context, f queries.QueueFilter) ([]queries.Queue, error) {
	var out []queries.Queue
	err := e.read(ctx, func(q rowQuerier, tx *sql.Tx) error {
		names, err := queueNames(ctx, tx, f)
		if err != nil {
			return err
		}
		now := ms(f.Now)
		for _, name := range names {
			queue, err := queueWithStats(q, name, now)
			if err != nil {
				return err
			}
			out = append(out, queue)
		}
		return nil
	})
	return out, err
}

// queueNames walks names in order from the cursor: the Allowed filter is Go
// code, so it runs here, before the limit, as ListQueues promises.
func queueNames(ctx context.Context, tx *sql.Tx, f queries.QueueFilter) ([]string, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name FROM queues WHERE name > ? AND name >= ? ORDER BY name", f.After, f.Prefix)
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	defer rows.Close()
	var names []string
	for len(names) < f.Limit && rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list queues: %w", err)
		}
		if !strings.HasPrefix(name, f.Prefix) {
			break
		}
		if f.Allowed == nil || f.Allowed(name) {
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return names, nil
}

// Queue implements queries.ReadModel.
func (e *Engine) Queue(ctx context.Context, name string, now time.Time) (queries.Queue, error) {
	var out queries.Queue
	err := e.read(ctx, func(q rowQuerier, _ *sql.Tx) error {
		var err error
		out, err = queueWithStats(q, name, ms(now))
		if errors.Is(err, sql.ErrNoRows) {
			return domain.WithMessage(domain.ErrQueueNotFound, "queue %q not found", name)
		}
		return err
	})
	return out, err
}

// Messages implements queries.ReadModel. The INDEXED BY clauses pin the
// plans that return rows already in publish order.
func (e *Engine) Messages(ctx context.Context, f queries.MessageFilter) ([]queries.ListedMessage, error) {
	cols := "position, id, queue, state, published_at, available_at, receive_count, headers"
	if f.IncludeBody {
		cols += ", " + bodyColumn + ", body_encoding"
	}
	now := ms(f.Now)
	var (
		query string
		args  []any
	)
	const byState = "SELECT %s FROM messages INDEXED BY messages_queue_state WHERE queue = ? AND state = ? AND position > ?"
	switch f.State {
	case "":
		// Every state, in publish order: one ordered range of the index per
		// state, which SQLite merges (a compound SELECT with ORDER BY is a
		// merge of its arms, stopped by the LIMIT), so a page reads about
		// LIMIT rows however many the queue holds.
		arms := make([]string, len(storedStates))
		for i, st := range storedStates {
			arms[i] = fmt.Sprintf(byState, cols)
			args = append(args, f.Queue, st, f.AfterPosition)
		}
		query = strings.Join(arms, " UNION ALL ")
	case queries.StateReady, queries.StateDelayed:
		cmp := "<="
		if f.State == queries.StateDelayed {
			cmp = ">"
		}
		query = fmt.Sprintf(byState, cols) + " AND available_at " + cmp + " ?"
		args = []any{f.Queue, stAvailable, f.AfterPosition, now}
	default:
		query = fmt.Sprintf(byState, cols)
		args = []any{f.Queue, f.State, f.AfterPosition}
	}
	query += " ORDER BY position LIMIT ?"
	args = append(args, f.Limit)

	var out []queries.ListedMessage
	err := e.read(ctx, func(q rowQuerier, tx *sql.Tx) error {
		var one int
		if err := q("SELECT 1 FROM queues WHERE name = ?", f.Queue)(&one); errors.Is(err, sql.ErrNoRows) {
			return domain.WithMessage(domain.ErrQueueNotFound, "queue %q not found", f.Queue)
		} else if err != nil {
			return fmt.Errorf("list messages: %w", err)
		}
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("list messages: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				m                        queries.ListedMessage
				state, headers           string
				publishedAt, availableAt int64
				body, encoding           string
			)
			dest := []any{&m.Position, &m.ID, &m.Queue, &state, &publishedAt, &availableAt, &m.ReceiveCount, &headers}
			if f.IncludeBody {
				dest = append(dest, &body, &encoding)
			}
			if err := rows.Scan(dest...); err != nil {
				return fmt.Errorf("list messages: %w", err)
			}
			m.State = publicState(state, availableAt, now)
			m.PublishedAt = fromMS(publishedAt)
			if err := json.Unmarshal([]byte(headers), &m.Headers); err != nil {
				return fmt.Errorf("message %s: headers: %w", m.ID, err)
			}
			if f.IncludeBody {
				m.Body, m.BodyEncoding = &body, encoding
			}
			out = append(out, m)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list messages: %w", err)
		}
		return nil
	})
	return out, err
}

// bodyColumn reads a message's body out of its MessagePublished, which the
// row keeps verbatim (see messagesProjection).
const bodyColumn = `COALESCE(json_extract(published, '$.body'), '')`

const selectMessageDetail = `SELECT id, queue, state, ` + bodyColumn + `, body_encoding, content_type, headers,
	receive_count, published_at, available_at, COALESCE(lease_expires_at, 0),
	COALESCE(origin_queue, ''), COALESCE(origin_id, ''), COALESCE(origin_reason, ''),
	COALESCE(moved_queue, ''), COALESCE(moved_id, ''), COALESCE(moved_reason, '')
	FROM messages WHERE id = ?`

// Message implements queries.ReadModel.
func (e *Engine) Message(ctx context.Context, id string, now time.Time) (queries.MessageDetail, error) {
	var m queries.MessageDetail
	err := e.read(ctx, func(q rowQuerier, tx *sql.Tx) error {
		var (
			state, headers                  string
			publishedAt, availableAt, lease int64
			origin, moved                   queries.MessageLink
		)
		err := q(selectMessageDetail, id)(&m.ID, &m.Queue, &state, &m.Body, &m.BodyEncoding,
			&m.ContentType, &headers, &m.ReceiveCount, &publishedAt, &availableAt, &lease,
			&origin.Queue, &origin.MessageID, &origin.Reason, &moved.Queue, &moved.MessageID, &moved.Reason)
		if errors.Is(err, sql.ErrNoRows) {
			return domain.WithMessage(domain.ErrMessageNotFound, "message %q not found", id)
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
		m.State = publicState(state, availableAt, ms(now))
		m.PublishedAt, m.AvailableAt = fromMS(publishedAt), fromMS(availableAt)
		if lease != 0 {
			t := fromMS(lease)
			m.LeaseExpiresAt = &t
		}
		if origin.MessageID != "" {
			m.Origin = &origin
		}
		if moved.MessageID != "" {
			m.MovedTo = &moved
		}
		if err := json.Unmarshal([]byte(headers), &m.Headers); err != nil {
			return fmt.Errorf("message %s: headers: %w", id, err)
		}
		m.History, err = history(ctx, tx, id)
		return err
	})
	return m, err
}

func history(ctx context.Context, tx *sql.Tx, id string) ([]queries.HistoryEntry, error) {
	// The first entry, the MessagePublished, is kept in the message's row.
	rows, err := tx.QueryContext(ctx, `SELECT position, ?1, recorded_at, published, 0 FROM messages WHERE id = ?2
		UNION ALL
		SELECT position, type, recorded_at, data, seq FROM message_history WHERE message_id = ?2
		ORDER BY 1, 5`, domain.TypeMessagePublished, id)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer rows.Close()
	out := []queries.HistoryEntry{}
	for rows.Next() {
		var (
			h          queries.HistoryEntry
			recordedAt int64
			data       string
		)
		var seq int64
		if err := rows.Scan(&h.Position, &h.Type, &recordedAt, &data, &seq); err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		h.RecordedAt, h.Data = fromMS(recordedAt), json.RawMessage(data)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return out, nil
}
