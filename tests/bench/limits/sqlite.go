package limits

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/ledgerq/ledgerq/eventstore"

	// The driver ledgerq's event store uses, so the limit runs the same
	// SQLite build.
	_ "github.com/mattn/go-sqlite3"
)

// EventsSchema is ledgerq's events table.
const EventsSchema = `CREATE TABLE events (
	position INTEGER PRIMARY KEY,
	stream_id TEXT NOT NULL,
	version INTEGER NOT NULL,
	type TEXT NOT NULL,
	schema_version INTEGER NOT NULL,
	data TEXT NOT NULL,
	metadata TEXT NOT NULL,
	recorded_at INTEGER NOT NULL,
	prev_hash TEXT NOT NULL,
	hash TEXT NOT NULL,
	UNIQUE(stream_id, version))`

// SQLiteConfig describes one raw-insert run.
type SQLiteConfig struct {
	// Dir is where the database file is created (and removed): the data
	// directory's file system, so the sync cost is the same.
	Dir string
	// Streams is how many streams the batches rotate over: batch i goes to
	// stream i mod Streams, as ledgerq's batch benchmark spreads its
	// requests over that many queues. Default 16.
	Streams int
	// Batch is rows per transaction: one batch-publish request. Default 100.
	Batch int
	// Duration bounds the run. Default 5 s.
	Duration time.Duration
	// MaxRows stops the run early when > 0 (tests).
	MaxRows int64
	// BodyBytes is the message body size. Default BodyBytes.
	BodyBytes int
}

func (c *SQLiteConfig) setDefaults() {
	if c.Streams <= 0 {
		c.Streams = 16
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.BodyBytes <= 0 {
		c.BodyBytes = BodyBytes
	}
}

// OpenEventsDB creates a fresh events database at path the way a durable
// event store runs it, by the simplest means: WAL, synchronous=FULL (the
// fsync inside each COMMIT; ledgerq's store syncs the WAL itself after the
// COMMIT, the same work), BEGIN IMMEDIATE, one writer connection.
func OpenEventsDB(path string) (*sql.DB, error) {
	dsn, err := eventstore.FileURI(path, url.Values{"_journal_mode": {"WAL"}, "_synchronous": {"FULL"},
		"_txlock": {"immediate"}, "_busy_timeout": {"5000"}})
	if err != nil {
		return nil, fmt.Errorf("limits: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("limits: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(EventsSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("limits: create schema: %w", err)
	}
	return db, nil
}

// SQLiteInsert measures raw inserts of MessagePublished rows into the events
// schema: one transaction per batch, versions kept in memory (no MAX(version)
// read), the hash chain computed per row as the store must. Ops counts
// committed rows. The database is removed afterwards.
func SQLiteInsert(ctx context.Context, cfg SQLiteConfig) (Result, error) {
	cfg.setDefaults()
	dir, err := os.MkdirTemp(cfg.Dir, "sqlite-limit-")
	if err != nil {
		return Result{}, fmt.Errorf("limits: %w", err)
	}
	defer os.RemoveAll(dir)
	db, err := OpenEventsDB(filepath.Join(dir, "events.db"))
	if err != nil {
		return Result{}, err
	}
	defer db.Close()

	return insertRows(ctx, db, cfg)
}

// insertRows is SQLiteInsert's timed part on an open events database.
func insertRows(ctx context.Context, db *sql.DB, cfg SQLiteConfig) (Result, error) {
	cfg.setDefaults()
	streams := make([]string, cfg.Streams)
	versions := make([]int64, cfg.Streams)
	for i := range streams {
		streams[i] = "queue-bench-batch-" + strconv.Itoa(i)
	}
	// Payloads are encoded before the clock starts: the limit is the cost
	// of SQLite, not of encoding/json. The hash chain stays inside the
	// loop because every row's hash depends on the one before.
	body := Body(cfg.BodyBytes)
	payloads := make([]string, 1024)
	for i := range payloads {
		p, err := PublishedData("bench-batch-0", ulid.Make().String(), body, time.Now())
		if err != nil {
			return Result{}, err
		}
		payloads[i] = string(p) // TEXT column: bind a string, not a blob
	}
	const metadata = `{"subject":"bench","request_id":"01J0000000000000000000BENCH","correlation_id":"01J0000000000000000000BENCH"}`
	stmt, err := db.PrepareContext(ctx, `INSERT INTO events
		(stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
		VALUES (?, ?, 'MessagePublished', 1, ?, ?, ?, ?, ?)`)
	if err != nil {
		return Result{}, fmt.Errorf("limits: prepare: %w", err)
	}
	defer stmt.Close()

	prev := hex.EncodeToString(make([]byte, sha256.Size))
	var rows int64
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for batch := 0; time.Now().Before(deadline) && (cfg.MaxRows <= 0 || rows < cfg.MaxRows); batch++ {
		s := batch % cfg.Streams
		next, err := insertBatch(ctx, db, stmt, streams[s], versions[s], payloads, int(rows), cfg.Batch, metadata, prev)
		if err != nil {
			return Result{}, err
		}
		versions[s] += int64(cfg.Batch)
		prev = next
		rows += int64(cfg.Batch)
	}
	return Result{Ops: rows, Elapsed: time.Since(start)}, nil
}

// insertBatch commits one transaction of n rows of stream after version and
// returns the last row's hash.
func insertBatch(ctx context.Context, db *sql.DB, stmt *sql.Stmt, stream string, version int64, payloads []string, seq, n int, metadata, prev string) (string, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("limits: begin: %w", err)
	}
	defer tx.Rollback() // a no-op after Commit
	ins := tx.StmtContext(ctx, stmt)
	now := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		data := payloads[(seq+i)%len(payloads)]
		version++
		next := chainHash(prev, stream, version, data)
		if _, err := ins.ExecContext(ctx, stream, version, data, metadata, now, prev, next); err != nil {
			return "", fmt.Errorf("limits: insert: %w", err)
		}
		prev = next
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("limits: commit: %w", err)
	}
	return prev, nil
}

// chainHash is the limits' stand-in for the store's hash chain: SHA-256 of
// the previous hash, the stream, the version and the data, hex-encoded. Not
// the store's exact encoding (docs/hash-chain.md), but the same work.
func chainHash(prev, stream string, version int64, data string) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte(stream))
	h.Write([]byte(strconv.FormatInt(version, 10)))
	h.Write([]byte(data))
	return hex.EncodeToString(h.Sum(nil))
}
