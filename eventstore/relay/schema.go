package relay

import (
	"database/sql"
	"errors"
	"fmt"
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
// The JSON of each event matches wireEvent.
func (s eventsSchema) SelectQuery(topic, consumerGroup string, offsets wsql.OffsetsAdapter) wsql.Query {
	next := offsets.NextOffsetQuery(topic, consumerGroup)
	// 200 bytes stand for the fixed fields of an event in the size bound.
	q := `WITH batch AS (
	SELECT position, stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash,
		octet_length(data) + octet_length(metadata) + 200 AS size
	FROM events WHERE position > (` + next.Query + `) ORDER BY position LIMIT ` + strconv.Itoa(s.maxEvents) + `
), sized AS (
	SELECT *, sum(size) OVER (ORDER BY position ROWS UNBOUNDED PRECEDING) - size AS before FROM batch
), pack AS (
	SELECT min(position) AS first, max(position) AS last, count(*) AS n,
		json_group_array(json_object(
			'position', position, 'stream_id', stream_id, 'version', version, 'type', type,
			'schema_version', schema_version, 'data', json(data), 'metadata', json(metadata),
			'recorded_at', recorded_at, 'prev_hash', prev_hash, 'hash', hash) ORDER BY position) AS body
	FROM sized WHERE before < ` + strconv.Itoa(s.maxBytes) + `
)
SELECT pack.first, pack.last, pack.n, pack.body, e.stream_id, e.version, e.type
FROM pack JOIN events AS e ON e.position = pack.last`
	return wsql.Query{Query: q, Args: next.Args}
}

// UnmarshalMessage turns the pack row into a pack message whose offset is
// the position of its last event.
func (s eventsSchema) UnmarshalMessage(row wsql.Scanner) (wsql.Row, error) {
	var (
		first, last, version int64
		n                    int
		body                 string
		stream, typ          string
	)
	if err := row.Scan(&first, &last, &n, &body, &stream, &version, &typ); err != nil {
		return wsql.Row{}, fmt.Errorf("relay: scan pack: %w", err)
	}
	if int64(n) != last-first+1 {
		// Positions are gap-free by the store's contract; a hole would
		// mean a damaged file, and relaying around it would hide that.
		return wsql.Row{}, fmt.Errorf("relay: positions %d..%d hold %d events: the log has a gap", first, last, n)
	}
	msg := message.NewMessage(packUUID(first, last), []byte(body))
	setPackMetadata(msg, first, last, n, stream, version, typ)
	return wsql.Row{Offset: last, UUID: []byte(msg.UUID), Payload: msg.Payload, Msg: msg}, nil
}

// SubscribeIsolationLevel is ignored by mattn/go-sqlite3.
func (s eventsSchema) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelDefault }
