package projections

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/url"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/mattn/go-sqlite3"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/walbuf"
)

// schemaVersion is the read-model layout. Read models are disposable, so a
// file written by another layout is dropped and rebuilt from the log rather
// than migrated. Version 2 keeps each message's MessagePublished in its row
// instead of in message_history and the body column.
const schemaVersion = 2

// connector opens mattn connections with per-connection pragmas that the DSN
// cannot carry, without registering a global driver name.
type connector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.driver }

func newConnector(dsn string, pragmas ...string) connector {
	return connector{
		dsn: dsn,
		driver: &sqlite3.SQLiteDriver{ConnectHook: func(conn *sqlite3.SQLiteConn) error {
			for _, p := range pragmas {
				if _, err := conn.Exec(p, nil); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			return nil
		}},
	}
}

// openDBs opens the read-model file twice: one writer connection (the only
// one that ever writes, so no "database is locked" between our own writers;
// BEGIN IMMEDIATE takes the write lock up front) and a pool of readers that
// WAL lets run beside the writer.
func openDBs(path string, readConns int) (w, r, ck *sql.DB, err error) {
	wp := url.Values{}
	wp.Set("_journal_mode", "WAL")
	// The read model can always be rebuilt from the log, and checkpoint and
	// rows commit together, so losing the last commits on power loss costs
	// a short catch-up, never correctness: no fsync per commit.
	wp.Set("_synchronous", "NORMAL")
	wp.Set("_busy_timeout", "5000")
	wp.Set("_txlock", "immediate")
	// Its WAL writes are gathered into one write per commit (walbuf).
	if err := walbuf.Register(); err != nil {
		return nil, nil, nil, err
	}
	wp.Set("vfs", walbuf.Name)
	// A 16 MiB page cache: the projections insert at the right edges of the
	// tables and indexes (positions and ULIDs grow) and update rows near the
	// oldest unacked message, so their pages stay few. 64 MiB was no faster
	// and the cache filled as the read model grew (480 B per message), which
	// the bench counted as memory per ready message.
	dsn, err := eventstore.FileURI(path, wp)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open read model %s: %w", path, err)
	}
	w = sql.OpenDB(newConnector(dsn, "PRAGMA cache_size = -16384", "PRAGMA temp_store = MEMORY",
		"PRAGMA wal_autocheckpoint = "+strconv.Itoa(writerAutoCheckpoint)))
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, nil, nil, fmt.Errorf("open read model %s: %w", path, err)
	}

	rp := url.Values{}
	rp.Set("_busy_timeout", "5000")
	// Readers never write; query_only turns a stray write into an error.
	rp.Set("_query_only", "1")
	// The queries are a fixed set; keep them prepared per connection (a
	// queue's stats statement costs more to prepare than to run).
	rp.Set("_stmt_cache_size", "64")
	if dsn, err = eventstore.FileURI(path, rp); err != nil {
		w.Close()
		return nil, nil, nil, fmt.Errorf("open read model %s for reading: %w", path, err)
	}
	r = sql.OpenDB(newConnector(dsn, "PRAGMA cache_size = -16384"))
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	if err := r.Ping(); err != nil {
		w.Close()
		r.Close()
		return nil, nil, nil, fmt.Errorf("open read model %s for reading: %w", path, err)
	}

	// The checkpointer's connection (see checkpointer) writes only the
	// database file, and syncs it as the writer would.
	cp := url.Values{}
	cp.Set("_synchronous", "NORMAL")
	cp.Set("_busy_timeout", "5000")
	if dsn, err = eventstore.FileURI(path, cp); err != nil {
		w.Close()
		r.Close()
		return nil, nil, nil, fmt.Errorf("open read model %s for checkpoints: %w", path, err)
	}
	ck = sql.OpenDB(newConnector(dsn))
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	ck.SetConnMaxLifetime(0)
	if err := ck.Ping(); err != nil {
		w.Close()
		r.Close()
		ck.Close()
		return nil, nil, nil, fmt.Errorf("open read model %s for checkpoints: %w", path, err)
	}
	return w, r, ck, nil
}

const checkpointsDDL = `CREATE TABLE IF NOT EXISTS checkpoints (
	projection TEXT PRIMARY KEY,
	position   INTEGER NOT NULL
) WITHOUT ROWID`

// migrate creates the tables, dropping everything first when the file holds
// another layout.
func migrate(ctx context.Context, w *sql.DB, projs []projection, logger watermill.LoggerAdapter) error {
	var v int
	if err := w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if v != schemaVersion {
		if err := dropAll(ctx, tx, projs); err != nil {
			return err
		}
		if v != 0 {
			logger.Info("read model of another layout dropped: it is rebuilt from the log",
				watermill.LogFields{"layout": v, "want": schemaVersion})
		}
	}
	if err := createAll(ctx, tx, projs); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func createAll(ctx context.Context, tx *sql.Tx, projs []projection) error {
	stmts := []string{checkpointsDDL}
	for _, p := range projs {
		stmts = append(stmts, p.schema()...)
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("create read model: %w", err)
		}
	}
	return nil
}

func dropAll(ctx context.Context, tx *sql.Tx, projs []projection) error {
	stmts := []string{"DROP TABLE IF EXISTS checkpoints"}
	for _, p := range projs {
		for _, t := range p.tables() {
			stmts = append(stmts, "DROP TABLE IF EXISTS "+t)
		}
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("drop read model: %w", err)
		}
	}
	return nil
}
