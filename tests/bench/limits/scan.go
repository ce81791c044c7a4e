package limits

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// ErrNoEventsDB means no SQLite file under the directory has an events table.
var ErrNoEventsDB = errors.New("limits: no SQLite database with an events table")

// FindEventsDB returns the SQLite file under dir (searched recursively; any
// file that starts with SQLite's header, whatever its name) that holds an
// events table.
func FindEventsDB(dir string) (string, error) {
	var found string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" || !d.Type().IsRegular() {
			return err
		}
		if !isSQLiteFile(path) {
			return nil
		}
		ok, err := hasEventsTable(path)
		if err != nil {
			return err
		}
		if ok {
			found = path
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("limits: search %s: %w", dir, err)
	}
	if found == "" {
		return "", fmt.Errorf("%w under %s", ErrNoEventsDB, dir)
	}
	return found, nil
}

// sqliteMagic starts every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

func isSQLiteFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, len(sqliteMagic))
	_, err = io.ReadFull(f, head)
	return err == nil && string(head) == sqliteMagic
}

func hasEventsTable(path string) (bool, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return false, err
	}
	defer db.Close()
	var n int
	err = db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'`).Scan(&n)
	if err != nil {
		// Not a database, or one we cannot read: not the one we want.
		return false, nil
	}
	return n == 1, nil
}

func openReadOnly(path string) (*sql.DB, error) {
	dsn, err := eventstore.FileURI(path, url.Values{"mode": {"ro"}, "_busy_timeout": {"5000"}})
	if err != nil {
		return nil, fmt.Errorf("limits: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("limits: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// eventFactories makes an empty value of each event type for decoding.
var eventFactories = map[string]func() any{
	domain.TypeQueueCreated:         func() any { return new(domain.QueueCreated) },
	domain.TypeQueueConfigured:      func() any { return new(domain.QueueConfigured) },
	domain.TypeQueuePurged:          func() any { return new(domain.QueuePurged) },
	domain.TypeQueueDeleted:         func() any { return new(domain.QueueDeleted) },
	domain.TypeMessagePublished:     func() any { return new(domain.MessagePublished) },
	domain.TypeMessageLeased:        func() any { return new(domain.MessageLeased) },
	domain.TypeMessageLeaseExtended: func() any { return new(domain.MessageLeaseExtended) },
	domain.TypeMessageAcked:         func() any { return new(domain.MessageAcked) },
	domain.TypeMessageReleased:      func() any { return new(domain.MessageReleased) },
	domain.TypeMessageLeaseExpired:  func() any { return new(domain.MessageLeaseExpired) },
	domain.TypeMessageDeadLettered:  func() any { return new(domain.MessageDeadLettered) },
	domain.TypeMessageExpired:       func() any { return new(domain.MessageExpired) },
	domain.TypeMessageRedriven:      func() any { return new(domain.MessageRedriven) },
}

// eventMetadata mirrors eventstore.Metadata's JSON; decoding it is part of
// reading a row.
type eventMetadata struct {
	Subject       string `json:"subject,omitempty"`
	RequestID     string `json:"request_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
}

// ScanDecode reads every row of the events table at path in position order
// and decodes its data into the domain event type named by its type column
// and its metadata, which is the least a replay must do. Ops counts rows.
// An unknown event type is an error, as it is for a replay.
func ScanDecode(ctx context.Context, path string) (Result, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return Result{}, err
	}
	defer db.Close()
	start := time.Now()
	rows, err := db.QueryContext(ctx, `SELECT position, stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash
		FROM events ORDER BY position`)
	if err != nil {
		return Result{}, fmt.Errorf("limits: scan: %w", err)
	}
	defer rows.Close()
	var (
		n                    int64
		position, version    int64
		schema               int
		stream, typ, prev, h string
		data, meta           []byte
		// recorded_at is read whatever its storage class: the scan is
		// timed, not the column's type.
		rec any
	)
	for rows.Next() {
		if err := rows.Scan(&position, &stream, &version, &typ, &schema, &data, &meta, &rec, &prev, &h); err != nil {
			return Result{}, fmt.Errorf("limits: scan row: %w", err)
		}
		mk, ok := eventFactories[typ]
		if !ok {
			return Result{}, fmt.Errorf("limits: position %d: unknown event type %q", position, typ)
		}
		v := mk()
		if err := json.Unmarshal(data, v); err != nil {
			return Result{}, fmt.Errorf("limits: position %d: decode %s: %w", position, typ, err)
		}
		var m eventMetadata
		if err := json.Unmarshal(meta, &m); err != nil {
			return Result{}, fmt.Errorf("limits: position %d: decode metadata: %w", position, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return Result{}, fmt.Errorf("limits: scan: %w", err)
	}
	return Result{Ops: n, Elapsed: time.Since(start)}, nil
}
