package relay

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// eventsTopic is the watermill-sql topic of the event log. The relay reads
// the events table itself rather than an outbox table: every append already
// writes the events table in the same transaction, in position order, so the
// log is its own outbox and a second copy would only double the writes.
const eventsTopic = "events"

// errReadOnlyTopic is returned if something tries to publish into the event
// log through watermill-sql: only the event store appends.
var errReadOnlyTopic = errors.New("relay: the events table is written by the event store only")

var _ wsql.SchemaAdapter = eventsSchema{}

// eventsSchema is a watermill-sql SchemaAdapter over the event store's
// events table in which one row, one message, is a pack of consecutive
// events: the subscriber's batch of one row costs one transaction and one
// offset write per pack, and the pack becomes one Redis stream entry.
type eventsSchema struct {
	maxEvents int
	maxBytes  int
	// head is the store's durable head: the relay reads no further, as
	// the WAL may hold commits beyond it that are not yet fsync'd (see
	// eventstore's syncer.go). Nil: no bound (tests of the query alone).
	head func() int64
}

// SchemaInitializingQueries is empty: the event store owns its schema.
func (s eventsSchema) SchemaInitializingQueries(string) []wsql.Query { return nil }

// InsertQuery refuses: appends go through the event store.
func (s eventsSchema) InsertQuery(string, message.Messages) (wsql.Query, error) {
	return wsql.Query{}, errReadOnlyTopic
}

// SelectQuery returns at most one row: the next pack after the group's
// offset. The pack holds up to maxEvents events, cut earlier once the events
// before it reach maxBytes (a single larger event still travels alone).
// The row is first, last and count of the pack's positions and its events
// as one text that SQLite builds by concatenation only, without parsing
// data or metadata (a pack record, see record.go); UnmarshalMessage turns
// that into the PackFormat payload.
//
// The cut is found on narrow rows (position and size); the events are then
// read in position order by a rowid range, which needs no sort, and
// concatenated as they come. Sorting the wide rows (a window over them, then
// group_concat's own ORDER BY) cost as much again as reading them: 265 µs
// against 141 for a pack of 32 (BenchmarkPackFromSQL). packFromRecord
// checks that the positions follow each other, so an order SQLite did not
// keep would be an error, never a reordered pack.
func (s eventsSchema) SelectQuery(topic, consumerGroup string, offsets wsql.OffsetsAdapter) wsql.Query {
	next := offsets.NextOffsetQuery(topic, consumerGroup)
	// 200 bytes stand for the fixed fields of an event in the size bound.
	q := `WITH after AS (SELECT (` + next.Query + `) AS position),
batch AS (
	SELECT position, octet_length(data) + octet_length(metadata) + 200 AS size
	FROM events WHERE position > (SELECT position FROM after) AND position <= ? ORDER BY position LIMIT ` + strconv.Itoa(s.maxEvents) + `
), cut AS (
	SELECT max(position) AS last FROM (
		SELECT position, sum(size) OVER (ORDER BY position ROWS UNBOUNDED PRECEDING) - size AS before FROM batch)
	WHERE before < ` + strconv.Itoa(s.maxBytes) + `
)
SELECT min(position), max(position), count(*), CAST(group_concat(record, '') AS BLOB) FROM (
	SELECT position, concat(position, ',', version, ',', schema_version, ',', recorded_at, ',',
		octet_length(stream_id), ',', octet_length(type), ',', octet_length(prev_hash), ',', octet_length(hash), ',',
		octet_length(metadata), ',', octet_length(data), ',',
		stream_id, type, prev_hash, hash, metadata, data) AS record
	FROM events
	WHERE position > (SELECT position FROM after) AND position <= (SELECT last FROM cut)
	ORDER BY position)
HAVING count(*) > 0`
	head := int64(math.MaxInt64)
	if s.head != nil {
		head = s.head()
	}
	// The after CTE's placeholders come first in the text, then the head's.
	return wsql.Query{Query: q, Args: append(slices.Clip(next.Args), head)}
}

// UnmarshalMessage turns the pack row into a pack message whose offset is
// the position of its last event.
func (s eventsSchema) UnmarshalMessage(row wsql.Scanner) (wsql.Row, error) {
	// The record is read as a BLOB into RawBytes: the driver's own copy,
	// valid until the next row, which packFromRecord copies from. As TEXT
	// scanned into []byte it was copied twice (a Go string, then bytes).
	var (
		first, last int64
		n           int
		record      sql.RawBytes
	)
	if err := row.Scan(&first, &last, &n, &record); err != nil {
		return wsql.Row{}, fmt.Errorf("relay: scan pack: %w", err)
	}
	if int64(n) != last-first+1 {
		// Positions are gap-free by the store's contract; a hole would
		// mean a damaged file, and relaying around it would hide that.
		return wsql.Row{}, fmt.Errorf("relay: positions %d..%d hold %d events: the log has a gap", first, last, n)
	}
	msg, err := packFromRecord(first, n, record)
	if err != nil {
		return wsql.Row{}, fmt.Errorf("relay: pack %d..%d: %w", first, last, err)
	}
	return wsql.Row{Offset: last, UUID: []byte(msg.UUID), Payload: msg.Payload, Msg: msg}, nil
}

// SubscribeIsolationLevel is ignored by mattn/go-sqlite3.
func (s eventsSchema) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelDefault }
