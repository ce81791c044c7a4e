package eventstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/ledgerq/ledgerq/eventstore/walbuf"
)

// schema is the log table (fixed: the watermill-sql adapter in
// eventstore/wmsql reads it directly) and the indexes the reads need.
const schema = `
CREATE TABLE IF NOT EXISTS events (
  position       INTEGER PRIMARY KEY,
  stream_id      TEXT    NOT NULL,
  version        INTEGER NOT NULL,
  type           TEXT    NOT NULL,
  schema_version INTEGER NOT NULL,
  data           TEXT    NOT NULL,
  metadata       TEXT    NOT NULL,
  recorded_at    INTEGER NOT NULL,
  prev_hash      TEXT    NOT NULL,
  hash           TEXT    NOT NULL,
  UNIQUE (stream_id, version)
);
-- No (stream_id, position) index: UNIQUE (stream_id, version) serves stream
-- reads (version order is position order within a stream), and a second
-- per-stream index costs about a third of append throughput when appends
-- spread over many streams (each touches a different leaf page).
-- Scan with a type filter (GET /v1/events?type=).
CREATE INDEX IF NOT EXISTS events_type_position ON events (type, position);
-- No index on recorded_at: it never decreases with position, so PositionAt
-- and time-bounded scans search the primary key (read.go). The index they
-- once used cost ~5 % of the store's CPU per append (an insert and a page
-- per commit); stores written before keep theirs until this drops it.
DROP INDEX IF EXISTS events_recorded_at;
-- Facts about the file itself; see checkFormat.
CREATE TABLE IF NOT EXISTS store_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT INTO store_meta (key, value) VALUES ('format', '1'), ('hash', 'sha256-ledgerq-event-v1')
  ON CONFLICT (key) DO NOTHING;
`

// storeFormat is the layout this code reads and writes; a file written by a
// newer, incompatible version says so in store_meta and is refused.
const storeFormat = "1"

// A pragma and the reason it is set.
type pragma struct{ sql, why string }

// writerPragmas run on the single writer connection each time it is
// (re)opened. They are applied by a connect hook rather than the DSN so that
// each one carries its reason here.
func writerPragmas(busy time.Duration) []pragma {
	return []pragma{
		{"PRAGMA journal_mode = WAL",
			"readers never block the writer and the writer never blocks readers; a commit appends to the WAL and needs one fsync"},
		{"PRAGMA synchronous = NORMAL",
			"a COMMIT writes the WAL without an fsync: the syncer fdatasyncs the WAL after it, while the next batch is built, and no append is answered before (syncer.go); checkpoints still sync the WAL before they copy it and the database file after"},
		{"PRAGMA busy_timeout = " + strconv.FormatInt(busy.Milliseconds(), 10),
			"another process (an offline audit, a backup) may hold a lock briefly; wait instead of failing at once"},
		{"PRAGMA wal_autocheckpoint = 8192",
			"a backstop (32 MiB of WAL): the relay's CheckpointWAL copies the WAL from a connection of its own and starts it over every 16 MiB; SQLite's default of 1,000 frames checkpointed inside a commit, holding every request in flight"},
		{"PRAGMA journal_size_limit = 67108864",
			"truncate a WAL that grew past 64 MiB (e.g. behind a long reader) after the next checkpoint, so disk use shrinks back"},
		{"PRAGMA cache_size = -16384",
			"16 MiB page cache: the right edges of the indexes stay hot for appends"},
		{"PRAGMA foreign_keys = OFF",
			"the log has no foreign keys; say so rather than depend on a compile-time default"},
	}
}

// readerPragmas run on every connection of the read-only pool.
func readerPragmas(busy time.Duration) []pragma {
	return []pragma{
		{"PRAGMA query_only = ON",
			"defence in depth beside mode=ro: a read connection can never write the log"},
		{"PRAGMA busy_timeout = " + strconv.FormatInt(busy.Milliseconds(), 10),
			"a WAL reader can see SQLITE_BUSY while the WAL index is recovered after a crash; wait instead of failing"},
		{"PRAGMA cache_size = -8192",
			"8 MiB page cache per reader: replays and scans read sequentially and benefit from read-ahead of interior pages"},
	}
}

// connector opens mattn/go-sqlite3 connections with a fixed DSN and runs
// pragmas on each new connection, without registering a global driver name.
type connector struct {
	drv *sqlite3.SQLiteDriver
	dsn string
}

func newConnector(dsn string, pragmas []pragma) *connector {
	drv := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, p := range pragmas {
			if _, err := c.Exec(p.sql, nil); err != nil {
				return fmt.Errorf("%s: %w", p.sql, err)
			}
		}
		return nil
	}}
	return &connector{drv: drv, dsn: dsn}
}

func (c *connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c *connector) Driver() driver.Driver                        { return c.drv }

// FileURI builds the SQLite URI of the file at path (made absolute) with
// query as its parameters, escaping the characters, such as '?' and '#', that
// would otherwise end the file name. Every SQLite file of the server is
// opened through it.
func FileURI(path string, query url.Values) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: query.Encode()}
	return u.String(), nil
}

// openWriter opens the writer handle: one connection, kept open forever.
func openWriter(path string, busy time.Duration) (*sql.DB, error) {
	q := url.Values{}
	// BEGIN IMMEDIATE takes the write lock at BEGIN, so a batch never fails
	// half-way with SQLITE_BUSY when it tries to upgrade a read lock.
	q.Set("_txlock", "immediate")
	// database/sql already serialises use of a connection; SQLite's own
	// per-connection mutex would only add overhead.
	q.Set("_mutex", "no")
	// Its WAL writes are gathered into one write per commit (walbuf).
	if err := walbuf.Register(); err != nil {
		return nil, err
	}
	q.Set("vfs", walbuf.Name)
	// One writer connection: SQLite has a single write lock anyway, and the
	// in-memory stream heads are only correct if every write goes through
	// the writer goroutine.
	return openOne(path, q, writerPragmas(busy))
}

// openOne opens a handle of one connection, kept open forever.
func openOne(path string, q url.Values, pragmas []pragma) (*sql.DB, error) {
	dsn, err := FileURI(path, q)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(newConnector(dsn, pragmas))
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// checkpointerPragmas run on the connection CheckpointWAL uses. It never
// writes a row: it copies committed WAL frames into the database file.
func checkpointerPragmas(busy time.Duration) []pragma {
	return []pragma{
		{"PRAGMA busy_timeout = " + strconv.FormatInt(busy.Milliseconds(), 10),
			"another process (an offline audit, a backup) may hold a lock briefly; wait instead of failing at once"},
		{"PRAGMA synchronous = NORMAL",
			"a checkpoint syncs the WAL before it copies and the database file after, as at FULL; this connection commits nothing"},
		{"PRAGMA cache_size = -1024",
			"a checkpoint copies frames from the WAL to the file without the page cache"},
	}
}

// openCheckpointer opens the connection of CheckpointWAL, beside the
// writer's: in WAL mode a checkpoint and a commit do not wait for each
// other, so group commits go on while one runs.
func openCheckpointer(path string, busy time.Duration) (*sql.DB, error) {
	return openOne(path, url.Values{"_mutex": {"no"}}, checkpointerPragmas(busy))
}

// openReader opens the read-only pool.
func openReader(path string, conns int, busy time.Duration) (*sql.DB, error) {
	q := url.Values{}
	// SQLITE_OPEN_READONLY: a read can never take the write lock.
	q.Set("mode", "ro")
	q.Set("_mutex", "no")
	dsn, err := FileURI(path, q)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(newConnector(dsn, readerPragmas(busy)))
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db, nil
}

// initSchema creates the tables on first open and refuses a file written in
// an unknown format.
func initSchema(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return checkFormat(ctx, db)
}

func checkFormat(ctx context.Context, db *sql.DB) error {
	var format string
	err := db.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = 'format'`).Scan(&format)
	if err != nil {
		return fmt.Errorf("read store format: %w", err)
	}
	if format != storeFormat {
		return fmt.Errorf("%w: file has store format %q, this build reads %q", ErrInvalid, format, storeFormat)
	}
	return nil
}
