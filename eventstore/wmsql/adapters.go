package wmsql

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// DefaultSubscribeBatchSize is how many messages one subscriber transaction
// reads at most.
const DefaultSubscribeBatchSize = 100

// maxInsertVariables is SQLite's default SQLITE_MAX_VARIABLE_NUMBER (since
// 3.32): one INSERT cannot bind more parameters.
const maxInsertVariables = 32766

// ErrTooManyMessages is returned by InsertQuery for a Publish call whose
// messages do not fit in one INSERT statement.
var ErrTooManyMessages = errors.New("wmsql: too many messages in one publish")

var (
	_ wsql.SchemaAdapter  = SchemaAdapter{}
	_ wsql.OffsetsAdapter = OffsetsAdapter{}
)

// SchemaAdapter is a watermill-sql SchemaAdapter for generic topics on
// SQLite: one table per topic, "watermill_<topic>", with an AUTOINCREMENT
// offset. SQLite has a single writer, so offsets become visible in commit
// order and no late-committing row can be skipped (the problem PostgreSQL's
// adapter solves with transaction ids does not exist here).
type SchemaAdapter struct {
	// GenerateMessagesTableName overrides the table name of a topic. The
	// result is used in SQL as is: quote it.
	GenerateMessagesTableName func(topic string) string
	// SubscribeBatchSize is the number of messages read per transaction.
	// A larger batch means more redelivery after a crash mid-batch.
	// Default DefaultSubscribeBatchSize.
	SubscribeBatchSize int
}

// MessagesTable is the quoted table name of topic.
func (s SchemaAdapter) MessagesTable(topic string) string {
	if s.GenerateMessagesTableName != nil {
		return s.GenerateMessagesTableName(topic)
	}
	return quoteIdent("watermill_" + topic)
}

// SchemaInitializingQueries creates the topic's table.
func (s SchemaAdapter) SchemaInitializingQueries(topic string) []wsql.Query {
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + s.MessagesTable(topic) + ` (
		"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL,
		created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
		payload BLOB,
		metadata TEXT
	)`}}
}

// InsertQuery inserts msgs in one statement, so one Publish call is atomic
// and its messages keep their order.
func (s SchemaAdapter) InsertQuery(topic string, msgs message.Messages) (wsql.Query, error) {
	if len(msgs) == 0 {
		return wsql.Query{}, errors.New("wmsql: no messages to insert")
	}
	if len(msgs)*3 > maxInsertVariables {
		return wsql.Query{}, fmt.Errorf("%w: %d messages, at most %d", ErrTooManyMessages, len(msgs), maxInsertVariables/3)
	}
	args := make([]any, 0, len(msgs)*3)
	for _, msg := range msgs {
		md, err := json.Marshal(msg.Metadata)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("wmsql: metadata of message %s: %w", msg.UUID, err)
		}
		args = append(args, msg.UUID, []byte(msg.Payload), string(md))
	}
	q := `INSERT INTO ` + s.MessagesTable(topic) + ` (uuid, payload, metadata) VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?,?,?),", len(msgs)), ",")
	return wsql.Query{Query: q, Args: args}, nil
}

func (s SchemaAdapter) batchSize() int {
	if s.SubscribeBatchSize <= 0 {
		return DefaultSubscribeBatchSize
	}
	return s.SubscribeBatchSize
}

// SelectQuery reads the next batch after the group's acked offset.
func (s SchemaAdapter) SelectQuery(topic string, consumerGroup string, offsetsAdapter wsql.OffsetsAdapter) wsql.Query {
	next := offsetsAdapter.NextOffsetQuery(topic, consumerGroup)
	q := `SELECT "offset", uuid, payload, metadata FROM ` + s.MessagesTable(topic) +
		` WHERE "offset" > (` + next.Query + `) ORDER BY "offset" LIMIT ` + strconv.Itoa(s.batchSize())
	return wsql.Query{Query: q, Args: next.Args}
}

// UnmarshalMessage turns a row of SelectQuery into a message.
func (s SchemaAdapter) UnmarshalMessage(row wsql.Scanner) (wsql.Row, error) {
	var (
		r        wsql.Row
		uuid     string
		metadata sql.NullString
	)
	if err := row.Scan(&r.Offset, &uuid, &r.Payload, &metadata); err != nil {
		return wsql.Row{}, fmt.Errorf("wmsql: scan message row: %w", err)
	}
	r.UUID = []byte(uuid)
	msg := message.NewMessage(uuid, r.Payload)
	if metadata.Valid && metadata.String != "" {
		r.Metadata = []byte(metadata.String)
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			return wsql.Row{}, fmt.Errorf("wmsql: metadata of message %s at offset %d: %w", uuid, r.Offset, err)
		}
	}
	r.Msg = msg
	return r, nil
}

// SubscribeIsolationLevel is ignored by mattn/go-sqlite3; SQLite
// transactions are serializable. DB.BeginTx supplies any locking.
func (s SchemaAdapter) SubscribeIsolationLevel() sql.IsolationLevel {
	return sql.LevelDefault
}

// OffsetsAdapter is a watermill-sql OffsetsAdapter for SQLite that keeps the
// offsets of a topic in "<Schema>"."watermill_offsets_<topic>", normally in
// a file attached by Open. There is no FOR UPDATE in SQLite: exclusivity
// within a consumer group, where wanted, comes from DB.BeginTx with
// Config.Exclusive, which takes the offsets file's write lock before the
// batch is read.
type OffsetsAdapter struct {
	// Schema is the schema the offsets tables live in: the name the offsets
	// file was attached under (DB.OffsetsSchema). "" means the main file,
	// which brings back the lock conflicts this package exists to avoid.
	Schema string
	// GenerateOffsetsTableName overrides the table name (without schema)
	// of a topic's offsets. The result is used in SQL as is: quote it.
	GenerateOffsetsTableName func(topic string) string
}

// OffsetsTable is the schema-qualified, quoted offsets table of topic.
func (a OffsetsAdapter) OffsetsTable(topic string) string {
	name := quoteIdent("watermill_offsets_" + topic)
	if a.GenerateOffsetsTableName != nil {
		name = a.GenerateOffsetsTableName(topic)
	}
	if a.Schema == "" {
		return name
	}
	return quoteIdent(a.Schema) + "." + name
}

// SchemaInitializingQueries creates the topic's offsets table.
func (a OffsetsAdapter) SchemaInitializingQueries(topic string) []wsql.Query {
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + a.OffsetsTable(topic) + ` (
		consumer_group TEXT NOT NULL PRIMARY KEY,
		offset_acked INTEGER NOT NULL
	)`}}
}

// AckMessageQuery records row's offset as the group's last acked offset.
func (a OffsetsAdapter) AckMessageQuery(topic string, row wsql.Row, consumerGroup string) wsql.Query {
	return wsql.Query{
		Query: `INSERT INTO ` + a.OffsetsTable(topic) + ` (consumer_group, offset_acked) VALUES (?, ?)
			ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = excluded.offset_acked`,
		Args: []any{consumerGroup, row.Offset},
	}
}

// ConsumedMessageQuery is the zero Query. MySQL's adapter uses it to provoke
// a deadlock between racing subscribers; on SQLite the race is settled by
// the offsets file's write lock (at BEGIN, or at ack time).
func (a OffsetsAdapter) ConsumedMessageQuery(string, wsql.Row, string, []byte) wsql.Query {
	return wsql.Query{}
}

// NextOffsetQuery returns the group's last acked offset, 0 before any ack.
func (a OffsetsAdapter) NextOffsetQuery(topic, consumerGroup string) wsql.Query {
	return wsql.Query{
		Query: `SELECT COALESCE((SELECT offset_acked FROM ` + a.OffsetsTable(topic) + ` WHERE consumer_group = ?), 0)`,
		Args:  []any{consumerGroup},
	}
}

// BeforeSubscribingQueries returns nothing: NextOffsetQuery already reads a
// missing group as offset 0, and a write here would make Subscribe wait for
// the offsets file's lock (and fail after the busy timeout) while another
// subscription holds it.
func (a OffsetsAdapter) BeforeSubscribingQueries(string, string) []wsql.Query {
	return nil
}

// quoteIdent quotes an SQL identifier. watermill-sql allows '-', '.', ':'
// and '$' in topic names, which SQLite only accepts inside quotes.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
