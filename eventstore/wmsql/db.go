package wmsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/ledgerq/ledgerq/eventstore"
)

// DefaultOffsetsSchema is the name the offsets file is attached under.
const DefaultOffsetsSchema = "offsets"

// DefaultBusyTimeout is how long a connection waits for a lock another
// connection holds before SQLite reports SQLITE_BUSY.
const DefaultBusyTimeout = 5 * time.Second

// lockTable is a table in the offsets file that no query ever fills: a
// statement that writes it, even one changing no row, opens a write
// transaction on the offsets file and nothing else.
const lockTable = "watermill_subscriber_lock"

// ErrInvalidConfig is returned by Open for a Config it cannot use.
var ErrInvalidConfig = errors.New("wmsql: invalid config")

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Config says which files a subscriber connection sees.
type Config struct {
	// Path is the main database file: the topic tables, or the event log.
	Path string
	// ReadOnly opens Path with SQLITE_OPEN_READONLY. The relay sets it:
	// it must never write the event log, and then it provably cannot.
	// The file must exist and be in WAL mode (its owner keeps it open).
	ReadOnly bool
	// OffsetsPath is the database file holding the consumer offsets,
	// attached to every connection as OffsetsSchema. It is created if
	// missing and switched to WAL mode. Required.
	OffsetsPath string
	// OffsetsSchema is the schema name OffsetsPath is attached under; the
	// OffsetsAdapter must be given the same name. Default
	// DefaultOffsetsSchema.
	OffsetsSchema string
	// BusyTimeout bounds the wait for a lock, in particular for the offsets
	// file's write lock held by another subscriber of the same file.
	// Default DefaultBusyTimeout.
	BusyTimeout time.Duration
	// Exclusive makes every transaction take the offsets file's write lock
	// at BEGIN (see DB.BeginTx). A batch is then held by one transaction at
	// a time among all subscriptions using the offsets file, so delivery
	// within a consumer group is exactly-once and two subscribers of a
	// group never both get a batch. The price: a subscription whose
	// messages are not being read blocks every other subscription on that
	// file until its AckDeadline. Use it with one subscription per offsets
	// file (the relay).
	//
	// Without it a transaction reads the offsets and topic tables from a
	// snapshot and writes the offset at ack time. That write fails with
	// SQLITE_BUSY when another subscription committed to the offsets file
	// during the batch; the batch is rolled back and redelivered
	// (at-least-once), and the BackoffManager retries at once.
	Exclusive bool
	// MaxOpenConns caps the pool; 0 means no cap. Each subscription holds
	// a connection while it has a batch in flight (up to its AckDeadline
	// when nobody reads its messages), so a cap below the number of
	// subscriptions plus publishers can stall all of them.
	MaxOpenConns int
}

func (c *Config) setDefaults() {
	if c.OffsetsSchema == "" {
		c.OffsetsSchema = DefaultOffsetsSchema
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("Path is required"))
	}
	if c.OffsetsPath == "" {
		errs = append(errs, errors.New("OffsetsPath is required"))
	}
	if c.Path != "" && c.OffsetsPath != "" && filepath.Clean(c.Path) == filepath.Clean(c.OffsetsPath) {
		errs = append(errs, errors.New("OffsetsPath must be another file than Path: sharing the file would share its write lock"))
	}
	if !schemaName.MatchString(c.OffsetsSchema) || strings.EqualFold(c.OffsetsSchema, "main") || strings.EqualFold(c.OffsetsSchema, "temp") {
		errs = append(errs, fmt.Errorf("OffsetsSchema %q is not a usable schema name", c.OffsetsSchema))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("BusyTimeout must not be negative, got %s", c.BusyTimeout))
	}
	if c.MaxOpenConns < 0 {
		errs = append(errs, fmt.Errorf("MaxOpenConns must not be negative, got %d", c.MaxOpenConns))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// DB is a connection pool for watermill-sql subscribers (and publishers) on
// SQLite. It satisfies watermill-sql's Beginner. With Config.Exclusive every
// transaction it begins first takes the offsets file's write lock, so the
// transaction later writes its offset without upgrading a read snapshot.
type DB struct {
	*sql.DB
	schema    string
	lockQuery string
}

// Open opens a DB on cfg.Path with cfg.OffsetsPath attached to every
// connection. It checks that both files can be opened.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10))
	// A subscriber runs the same few statements for every batch; parsing
	// the relay's pack query alone costs more than running it.
	q.Set("_stmt_cache_size", "32")
	if cfg.ReadOnly {
		q.Set("mode", "ro")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "NORMAL")
	}
	dsn, err := eventstore.FileURI(cfg.Path, q)
	if err != nil {
		return nil, fmt.Errorf("wmsql: %w", err)
	}
	offsetsPath, err := filepath.Abs(cfg.OffsetsPath)
	if err != nil {
		return nil, fmt.Errorf("wmsql: offsets path: %w", err)
	}
	schema := `"` + cfg.OffsetsSchema + `"`
	hook := func(c *sqlite3.SQLiteConn) error {
		steps := []struct{ sql, why string }{
			{"ATTACH DATABASE ? AS " + schema, "offsets live in their own file so an ack never takes the main file's write lock"},
			{"PRAGMA " + schema + ".journal_mode = WAL", "readers of the offsets never wait for the subscriber holding its write lock"},
			{"PRAGMA " + schema + ".synchronous = NORMAL", "an offset lost to a power cut only causes a redelivery; no fsync per ack"},
			{"CREATE TABLE IF NOT EXISTS " + schema + "." + lockTable + " (id INTEGER PRIMARY KEY)", "the target of the lock statement of BeginTx"},
		}
		for i, s := range steps {
			var args []driver.Value
			if i == 0 {
				args = []driver.Value{offsetsPath}
			}
			if _, err := c.Exec(s.sql, args); err != nil {
				return fmt.Errorf("%s (%s): %w", s.sql, s.why, err)
			}
		}
		return nil
	}
	db := sql.OpenDB(&connector{drv: &sqlite3.SQLiteDriver{ConnectHook: hook}, dsn: dsn, retry: cfg.BusyTimeout})
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	// Keep connections: each new one re-runs the ATTACH and pragmas.
	db.SetMaxIdleConns(max(cfg.MaxOpenConns, 4))
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("wmsql: open %s with offsets %s: %w", cfg.Path, cfg.OffsetsPath, err)
	}
	d := &DB{DB: db, schema: cfg.OffsetsSchema}
	if cfg.Exclusive {
		// DELETE … WHERE 0 changes nothing and writes no page, but SQLite
		// opens a write transaction on the offsets file to run it.
		d.lockQuery = "DELETE FROM " + schema + "." + lockTable + " WHERE 0"
	}
	return d, nil
}

// OffsetsSchema is the schema name the offsets file is attached under.
func (d *DB) OffsetsSchema() string { return d.schema }

// BeginTx begins a transaction. With Config.Exclusive it holds the offsets
// file's write lock from its first statement on, waiting up to the busy
// timeout for another transaction holding it; the main file is only read.
func (d *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	tx, err := d.DB.BeginTx(ctx, opts)
	if err != nil || d.lockQuery == "" {
		return tx, err
	}
	if _, err := tx.ExecContext(ctx, d.lockQuery); err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("lock offsets: %w", err)
	}
	return tx, nil
}

// Begin is BeginTx with a background context.
func (d *DB) Begin() (*sql.Tx, error) { return d.BeginTx(context.Background(), nil) }

// connector opens mattn/go-sqlite3 connections without registering a global
// driver name, so each DB carries its own connect hook.
type connector struct {
	drv driver.Driver
	dsn string
	// retry bounds how long a busy open is tried again.
	retry time.Duration
}

// Connect opens a connection. Setting one up can meet SQLITE_BUSY that the
// busy handler does not wait out: SQLite answers at once rather than risk a
// deadlock when a connection that read the file asks for the exclusive lock
// that switching a new file to WAL needs while another connection does the
// same (several subscribers starting on a new offsets file). Such an open
// is tried again, with a growing pause, for up to c.retry.
func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	deadline := time.Now().Add(c.retry)
	pause := time.Millisecond
	for {
		conn, err := c.drv.Open(c.dsn)
		if err == nil || !IsBusy(err) || !time.Now().Add(pause).Before(deadline) {
			return conn, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (after %w)", ctx.Err(), err)
		case <-t.C:
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

func (c *connector) Driver() driver.Driver { return c.drv }

// IsBusy reports whether err is SQLite's "database is locked" (SQLITE_BUSY)
// or "database table is locked" (SQLITE_LOCKED): a transient conflict worth
// retrying at once rather than an error.
func IsBusy(err error) bool {
	if err == nil {
		return false
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	// watermill-sql sometimes flattens errors into text (errors.Join of a
	// rollback failure, logged strings); match SQLite's messages too.
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "database table is locked")
}
