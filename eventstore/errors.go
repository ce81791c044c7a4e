package eventstore

import (
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"
)

// ErrInvalid: an append request or a read argument is malformed (no
// streams, an empty stream id or type, a payload that is not JSON, an
// expected version below AnyVersion, …). Nothing was written.
var ErrInvalid = errors.New("eventstore: invalid request")

// errClosed is what operations on a closed store return. It matches both
// ErrClosed and ErrUnavailable, as the contract in event.go lists "closed"
// among the reasons a store is unavailable (a 503 while shutting down).
var errClosed = fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// unavailable wraps a storage failure so callers can classify it with
// errors.Is(err, ErrUnavailable) while the cause stays inspectable.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// sqliteCode returns the extended SQLite result code of err, if it has one.
func sqliteCode(err error) (sqlite3.ErrNoExtended, bool) {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode, true
	}
	return 0, false
}

// isVersionConflict reports whether err is the UNIQUE (stream_id, version)
// index refusing a row: the safety net behind the in-memory stream heads.
func isVersionConflict(err error) bool {
	code, ok := sqliteCode(err)
	return ok && code == sqlite3.ErrConstraintUnique
}

// isPositionCollision reports whether err is the primary key refusing a
// position: the file was written behind the store's back.
func isPositionCollision(err error) bool {
	code, ok := sqliteCode(err)
	return ok && code == sqlite3.ErrConstraintPrimaryKey
}
