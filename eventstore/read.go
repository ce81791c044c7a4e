package eventstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// Reads run on the read-only pool, one short statement per page of
// readPage events: the page is copied out and the statement finished before
// the caller's function sees any event, so a slow consumer never holds a
// read transaction open (which would stop WAL checkpoints from recycling
// the log) and memory stays bounded by one page, however long the log.
const readPage = 256

const eventColumns = `position, stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash`

// Filter selects events for Scan. Zero fields do not filter.
type Filter struct {
	// After: only positions greater than After.
	After int64
	// Until: only positions up to and including Until; 0 means the head at
	// the time Scan starts.
	Until int64
	// Stream: only this stream.
	Stream string
	// Type: only this event type.
	Type string
	// Since: only events recorded at or after Since.
	Since time.Time
	// Before: only events recorded strictly before Before.
	Before time.Time
	// Limit: at most this many events (0: no limit).
	Limit int
}

type rowScanner interface{ Scan(dest ...any) error }

func scanEvent(r rowScanner) (Event, error) {
	var (
		e          Event
		data, meta []byte
		ms         int64
	)
	if err := r.Scan(&e.Position, &e.StreamID, &e.Version, &e.Type, &e.SchemaVersion,
		&data, &meta, &ms, &e.PrevHash, &e.Hash); err != nil {
		return Event{}, err
	}
	// go-json-experiment/json decodes in one pass (encoding/json scans the
	// bytes once to validate, then again to decode): every read of the log
	// goes through here. Metadata is written by encoding/json from a
	// struct, so it is valid UTF-8 with exactly-cased, unique member
	// names, the points where the two packages differ.
	if err := jsonv2.Unmarshal(meta, &e.Metadata); err != nil {
		return Event{}, fmt.Errorf("event %d: metadata is not valid JSON: %w", e.Position, err)
	}
	e.Data = data
	e.RecordedAt = time.UnixMilli(ms).UTC()
	return e, nil
}

// readErr classifies a failed read: the caller's context, a closed store, or
// the storage.
func (s *Store) readErr(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("eventstore: %s: %w", op, ctxErr)
	}
	if s.closed.Load() {
		return fmt.Errorf("eventstore: %s: %w", op, errClosed)
	}
	return fmt.Errorf("eventstore: %s: %w", op, unavailable("read", err))
}

// query runs one page query and returns its events.
func (s *Store) query(ctx context.Context, op, q string, args ...any) ([]Event, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("eventstore: %s: %w", op, errClosed)
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.readErr(ctx, op, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, s.readErr(ctx, op, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(ctx, op, err)
	}
	return out, nil
}

// Upcast returns e with its data brought to the current schema version by
// the upcaster registered for its type (e unchanged if there is none). Hash
// and PrevHash keep describing the stored bytes.
func (s *Store) Upcast(e Event) (Event, error) {
	up, ok := s.opts.Upcasters[e.Type]
	if !ok {
		return e, nil
	}
	v, data, err := up(e.SchemaVersion, e.Data)
	if err != nil {
		return Event{}, fmt.Errorf("eventstore: upcast %s v%d at position %d: %w", e.Type, e.SchemaVersion, e.Position, err)
	}
	e.SchemaVersion, e.Data = v, data
	return e, nil
}

// ReadStream calls fn for each event of a stream after afterVersion, in
// version order, upcasted, up to the stream's committed version when the
// call starts. It stops at the first error from fn and returns it as is.
func (s *Store) ReadStream(ctx context.Context, streamID string, afterVersion int64, fn func(Event) error) error {
	if streamID == "" {
		return invalidf("ReadStream: empty stream id")
	}
	if s.closed.Load() {
		return fmt.Errorf("eventstore: read stream: %w", errClosed)
	}
	until := s.StreamVersion(streamID)
	return s.pages(0, true, fn, func(n int) ([]Event, error) {
		if afterVersion >= until {
			return nil, nil
		}
		page, err := s.query(ctx, "read stream",
			`SELECT `+eventColumns+` FROM events WHERE stream_id = ? AND version > ? AND version <= ? ORDER BY version LIMIT ?`,
			streamID, afterVersion, until, n)
		if len(page) > 0 {
			afterVersion = page[len(page)-1].Version
		}
		return page, err
	})
}

// ReadAll calls fn for every event after afterPosition, in position order,
// upcasted, up to the head when the call starts: the replay iterator. Memory
// use does not grow with the log. It stops at the first error from fn and
// returns it as is.
func (s *Store) ReadAll(ctx context.Context, afterPosition int64, fn func(Event) error) error {
	return s.scan(ctx, Filter{After: afterPosition}, true, fn)
}

// Scan calls fn for each event matching f, in position order, with the data
// exactly as stored (no upcasting: what the hash chain covers, for audit;
// see Upcast). It stops at the first error from fn and returns it as is.
//
// Time bounds are turned into a position range: recorded_at never decreases
// with position.
func (s *Store) Scan(ctx context.Context, f Filter, fn func(Event) error) error {
	return s.scan(ctx, f, false, fn)
}

func (s *Store) scan(ctx context.Context, f Filter, upcast bool, fn func(Event) error) error {
	if f.After < 0 || f.Until < 0 || f.Limit < 0 {
		return invalidf("Scan: After, Until and Limit must not be negative")
	}
	if s.closed.Load() {
		return fmt.Errorf("eventstore: scan: %w", errClosed)
	}
	// Never past the durable head: the file may hold commits beyond it
	// whose fdatasync has not returned (syncer.go).
	lo, hi := f.After, s.Head()
	if f.Until != 0 {
		hi = min(hi, f.Until)
	}
	if !f.Since.IsZero() {
		// Events at or after Since come after the last one recorded before it.
		p, err := s.positionAtMS(ctx, ceilMS(f.Since)-1)
		if err != nil {
			return err
		}
		lo = max(lo, p)
	}
	if !f.Before.IsZero() {
		p, err := s.positionAtMS(ctx, ceilMS(f.Before)-1)
		if err != nil {
			return err
		}
		hi = min(hi, p)
	}

	if f.Stream != "" {
		return s.scanStream(ctx, f, lo, hi, upcast, fn)
	}
	q := `SELECT ` + eventColumns + ` FROM events WHERE position > ? AND position <= ?`
	var extra []any
	if f.Type != "" {
		q += ` AND type = ?`
		extra = append(extra, f.Type)
	}
	q += ` ORDER BY position LIMIT ?`
	return s.pages(f.Limit, upcast, fn, func(n int) ([]Event, error) {
		if lo >= hi {
			return nil, nil
		}
		page, err := s.query(ctx, "scan", q, append(append([]any{lo, hi}, extra...), n)...)
		if len(page) > 0 {
			lo = page[len(page)-1].Position
		}
		return page, err
	})
}

// scanStream serves a Scan with a stream filter through the UNIQUE
// (stream_id, version) index: it finds the first version after the position
// range starts by binary search (positions grow with versions), then pages
// by version.
func (s *Store) scanStream(ctx context.Context, f Filter, lo, hi int64, upcast bool, fn func(Event) error) error {
	if lo >= hi {
		return nil
	}
	after, err := s.firstVersionAfter(ctx, f.Stream, lo)
	if err != nil {
		return err
	}
	after-- // page queries ask for versions greater than after
	q := `SELECT ` + eventColumns + ` FROM events WHERE stream_id = ? AND version > ? AND position <= ?`
	extra := []any{}
	if f.Type != "" {
		q += ` AND type = ?`
		extra = append(extra, f.Type)
	}
	q += ` ORDER BY version LIMIT ?`
	return s.pages(f.Limit, upcast, fn, func(n int) ([]Event, error) {
		page, err := s.query(ctx, "scan", q, append(append([]any{f.Stream, after, hi}, extra...), n)...)
		if len(page) > 0 {
			after = page[len(page)-1].Version
		}
		return page, err
	})
}

// firstVersionAfter returns the lowest version of stream whose position is
// greater than pos (the stream's version + 1 if there is none), in
// O(log versions) index lookups.
func (s *Store) firstVersionAfter(ctx context.Context, stream string, pos int64) (int64, error) {
	lo, hi := int64(1), s.StreamVersion(stream)+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		var p int64
		// The nearest existing version at or above mid: a hole (which only
		// tampering can make) must not derail the search.
		err := s.rdb.QueryRowContext(ctx, `SELECT COALESCE((SELECT position FROM events
			WHERE stream_id = ? AND version >= ? ORDER BY version LIMIT 1), 9223372036854775807)`, stream, mid).Scan(&p)
		if err != nil {
			return 0, s.readErr(ctx, "scan", err)
		}
		if p > pos {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// pages feeds fn from next, one page at a time, until a short page, the
// limit, or an error.
func (s *Store) pages(limit int, upcast bool, fn func(Event) error, next func(n int) ([]Event, error)) error {
	left := limit
	for {
		n := readPage
		if limit > 0 {
			if left == 0 {
				return nil
			}
			n = min(n, left)
		}
		page, err := next(n)
		if err != nil {
			return err
		}
		for _, e := range page {
			if upcast {
				if e, err = s.Upcast(e); err != nil {
					return err
				}
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		left -= len(page)
		if len(page) < n {
			return nil
		}
	}
}

// ReadPositions returns the events at the given positions, in position
// order, with the data as stored. Positions that do not exist are left out.
func (s *Store) ReadPositions(ctx context.Context, positions []int64) ([]Event, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("eventstore: read positions: %w", errClosed)
	}
	ps := wantedPositions(positions)
	out := make([]Event, 0, len(ps))
	for c := range slices.Chunk(ps, positionsChunk) {
		page, err := s.query(ctx, "read positions", positionsQuery(eventColumns, len(c)), positionArgs(c, len(c))...)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
	}
	return out, nil
}

// positionsChunk bounds the positions one query asks for, well below
// SQLite's bound-parameter limit.
const positionsChunk = 500

// wantedPositions is positions sorted, without repeats and without any
// below 1, which no event has.
func wantedPositions(positions []int64) []int64 {
	ps := slices.Clone(positions)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	return slices.DeleteFunc(ps, func(p int64) bool { return p < 1 })
}

// positionsQuery selects columns of the events at n positions, in position
// order.
func positionsQuery(columns string, n int) string {
	return `SELECT ` + columns + ` FROM events WHERE position IN (?` + strings.Repeat(`, ?`, n-1) + `) ORDER BY position`
}

// positionArgs are the positions c as n query arguments, the ones past c
// 0, which is no event's position.
func positionArgs(c []int64, n int) []any {
	args := make([]any, n)
	for i := range args {
		if i < len(c) {
			args[i] = c[i]
		} else {
			args[i] = int64(0)
		}
	}
	return args
}

// payloadColumns are what ReadPayloads reads of an event: no metadata to
// decode, no hashes to copy.
const payloadColumns = `position, stream_id, version, type, schema_version, data, recorded_at`

// payloadArgs is how many positions the prepared payload query takes; a
// receive asks for at most 10 bodies.
const payloadArgs = 16

// ReadPayloads returns the events at the given positions in position order,
// like ReadPositions, with their data but without their metadata and hashes
// (Metadata, PrevHash and Hash are zero). It is for readers that need only
// payloads, such as a receive reading its messages' bodies: ReadPositions
// decodes each event's metadata, which such a reader throws away, and up to
// payloadArgs positions here take one prepared query instead of a new one.
func (s *Store) ReadPayloads(ctx context.Context, positions []int64) ([]Event, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("eventstore: read payloads: %w", errClosed)
	}
	ps := wantedPositions(positions)
	out := make([]Event, 0, len(ps))
	for c := range slices.Chunk(ps, positionsChunk) {
		var (
			rows *sql.Rows
			err  error
		)
		if len(c) <= payloadArgs {
			rows, err = s.payloads.QueryContext(ctx, positionArgs(c, payloadArgs)...)
		} else {
			rows, err = s.rdb.QueryContext(ctx, positionsQuery(payloadColumns, len(c)), positionArgs(c, len(c))...)
		}
		if err != nil {
			return nil, s.readErr(ctx, "read payloads", err)
		}
		if out, err = scanPayloads(rows, out); err != nil {
			return nil, s.readErr(ctx, "read payloads", err)
		}
	}
	return out, nil
}

func scanPayloads(rows *sql.Rows, out []Event) ([]Event, error) {
	defer rows.Close()
	for rows.Next() {
		var (
			e    Event
			data []byte
			ms   int64
		)
		if err := rows.Scan(&e.Position, &e.StreamID, &e.Version, &e.Type, &e.SchemaVersion, &data, &ms); err != nil {
			return out, err
		}
		e.Data = data
		e.RecordedAt = time.UnixMilli(ms).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// PositionAt returns the last position recorded at or before t (0 if the
// log has nothing that old): the log's state "as of t" is the prefix up to
// that position.
func (s *Store) PositionAt(ctx context.Context, t time.Time) (int64, error) {
	return s.positionAtMS(ctx, floorMS(t))
}

func (s *Store) positionAtMS(ctx context.Context, ms int64) (int64, error) {
	if s.closed.Load() {
		return 0, fmt.Errorf("eventstore: position at: %w", errClosed)
	}
	// Only up to the durable head (the file may hold commits past it). Since
	// recorded_at never decreases with position, "the first event at or
	// after x was recorded after ms, or there is none up to the head" holds
	// for every x from some point on: a binary search over the primary key
	// (~20 steps for a million events, all inside SQLite) finds the first
	// such x, and the answer is the position before it.
	var pos int64
	err := s.rdb.QueryRowContext(ctx, positionAtQuery, s.Head(), ms).Scan(&pos)
	if err != nil {
		return 0, s.readErr(ctx, "position at", err)
	}
	return pos, nil
}

// positionAtQuery is positionAtMS's binary search (?1 the head, ?2 the
// time in Unix milliseconds). Each step keeps [lo, hi) around the first x
// whose first event at or after it is later than ?2 or missing.
const positionAtQuery = `WITH RECURSIVE search(lo, hi) AS (
	SELECT 1, ?1 + 1
	UNION ALL
	SELECT
		CASE WHEN ` + positionAtAfter + ` THEN lo ELSE (lo + hi) / 2 + 1 END,
		CASE WHEN ` + positionAtAfter + ` THEN (lo + hi) / 2 ELSE hi END
	FROM search WHERE lo < hi
)
SELECT lo - 1 FROM search WHERE lo >= hi`

// positionAtAfter is the test of one step at mid = (lo + hi) / 2 (SQLite
// allows the recursive table in no subquery's FROM, so each column of the
// step asks it: two lookups of the primary key).
const positionAtAfter = `COALESCE((SELECT recorded_at FROM events WHERE position >= (lo + hi) / 2 AND position <= ?1
		ORDER BY position LIMIT 1) > ?2, 1)`

// floorMS and ceilMS convert t to Unix milliseconds, rounding down or up
// (UnixMilli truncates toward zero).
func floorMS(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).After(t) {
		ms--
	}
	return ms
}

func ceilMS(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}
