package eventstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
)

// VerifyReport is the outcome of walking the hash chain.
type VerifyReport struct {
	// OK is true when every event of the range is intact and linked.
	OK bool `json:"ok"`
	// Checked is the number of events verified intact.
	Checked int64 `json:"checked"`
	// HeadPosition and HeadHash are the last event verified intact (the end
	// of the range when OK). Recording HeadHash elsewhere anchors the log:
	// a later Verify that reaches HeadPosition with another hash proves a
	// rewrite.
	HeadPosition int64  `json:"head_position"`
	HeadHash     string `json:"head_hash"`
	// FirstBadPosition is the lowest position found missing, altered or
	// mislinked (0 when OK).
	FirstBadPosition int64 `json:"first_bad_position,omitempty"`
	// Reason says what is wrong at FirstBadPosition.
	Reason string `json:"reason,omitempty"`
}

// verifyPage is the number of rows one verify statement reads. Rows are
// hashed as they are read, so memory stays constant.
const verifyPage = 1024

// Verify walks the hash chain over positions from..to (from < 1 means 1;
// to 0 means the head when Verify starts) and reports the first bad
// position. Each event's hash is recomputed from its stored bytes and its
// prev_hash must equal the hash of the event before it, so an edited
// payload or metadata, a deleted, inserted or moved event is found. When
// the range reaches the head, the last event must also be the head this
// store committed, which catches a truncated tail. A range starting after
// 1 trusts the stored hash of event from-1.
//
// The error is non-nil only when the walk itself failed (I/O, ctx); a
// damaged log is a report with OK false.
func (s *Store) Verify(ctx context.Context, from, to int64) (VerifyReport, error) {
	if s.closed.Load() {
		return VerifyReport{}, fmt.Errorf("eventstore: verify: %w", errClosed)
	}
	s.mu.RLock()
	head, headHash := s.head, s.headHash
	s.mu.RUnlock()
	if to < 0 || (to != 0 && to < max(from, 1)) {
		return VerifyReport{}, invalidf("verify: range %d..%d is empty", from, to)
	}
	if to == 0 || to > head {
		to = head
	}
	if max(from, 1) > to {
		// Nothing committed in the range (an empty log, or from past the head).
		return VerifyReport{OK: true, HeadPosition: head, HeadHash: headHash}, nil
	}
	return verifyChain(ctx, s.rdb, from, to, &chainEnd{position: head, hash: headHash})
}

// VerifyFile verifies the chain of the store file at path without opening
// a Store: it opens the file read-only (it may be in use by a running
// server) and walks positions from..to (to 0: to the last stored event).
// Without a Store's committed head to compare with, a log whose last events
// were deleted cannot be told from a shorter one: compare HeadPosition and
// HeadHash with a value recorded earlier.
func VerifyFile(ctx context.Context, path string, from, to int64) (VerifyReport, error) {
	if _, err := os.Stat(path); err != nil {
		return VerifyReport{}, fmt.Errorf("eventstore: verify %s: %w", path, err)
	}
	var (
		db  *sql.DB
		err error
	)
	if dirWritable(filepath.Dir(path)) {
		db, err = openReader(path, 1, DefaultBusyTimeout)
	} else {
		db, err = openImmutable(path)
	}
	if err != nil {
		return VerifyReport{}, fmt.Errorf("eventstore: verify %s: %w", path, err)
	}
	defer db.Close()
	return verifyChain(ctx, db, from, to, nil)
}

// dirWritable reports whether SQLite could create the WAL index (-shm)
// beside the file, which even a read-only WAL connection needs.
func dirWritable(dir string) bool {
	f, err := os.CreateTemp(dir, ".ledgerq-verify-*")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return true
}

// openImmutable opens a log in a directory nobody may write (a read-only
// backup or mount). SQLite's immutable mode reads the main file alone and
// ignores a WAL, so a log with a non-empty WAL is refused rather than
// verified short.
func openImmutable(path string) (*sql.DB, error) {
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("%w: the directory is read-only and %s-wal holds commits not yet in the main file; verify a copy in a writable directory", ErrUnavailable, path)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("immutable", "1")
	dsn, err := FileURI(path, q)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(newConnector(dsn, readerPragmas(DefaultBusyTimeout)))
	db.SetMaxOpenConns(1)
	return db, nil
}

// chainEnd is the head a store committed, which the chain must end at.
type chainEnd struct {
	position int64
	hash     string
}

func verifyChain(ctx context.Context, db *sql.DB, from, to int64, end *chainEnd) (VerifyReport, error) {
	if to < 0 {
		return VerifyReport{}, invalidf("verify: negative end position %d", to)
	}
	from = max(from, 1)
	if to != 0 && to < from {
		return VerifyReport{}, invalidf("verify: range %d..%d is empty", from, to)
	}
	w := chainWalker{hasher: newChainHasher(), prevHash: GenesisHash, prevMS: math.MinInt64, next: from}
	rep := VerifyReport{OK: true, HeadPosition: from - 1, HeadHash: GenesisHash}

	if from > 1 {
		// The range is anchored on the stored hash of the event before it.
		err := db.QueryRowContext(ctx, `SELECT hash, recorded_at FROM events WHERE position = ?`, from-1).
			Scan(&w.prevHash, &w.prevMS)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			var later int
			err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE position >= ? LIMIT 1)`, from).Scan(&later)
			if err != nil {
				return VerifyReport{}, verifyErr(ctx, err)
			}
			if later == 0 && end == nil {
				return rep, nil // the range lies beyond the end of the log
			}
			return bad(rep, from-1, "event %d, the anchor of the range, is missing", from-1), nil
		case err != nil:
			return VerifyReport{}, verifyErr(ctx, err)
		}
		rep.HeadHash = w.prevHash
	}

	for {
		if err := ctx.Err(); err != nil {
			return VerifyReport{}, fmt.Errorf("eventstore: verify: %w", err)
		}
		n, problem, err := w.page(ctx, db, to, &rep)
		if err != nil {
			return VerifyReport{}, verifyErr(ctx, err)
		}
		if problem != "" {
			return bad(rep, w.next, "%s", problem), nil
		}
		if n < verifyPage || (to != 0 && w.next > to) {
			break
		}
	}

	if end != nil && to >= end.position {
		switch {
		case rep.HeadPosition < end.position:
			return bad(rep, rep.HeadPosition+1, "the log ends at %d but the store committed up to %d", rep.HeadPosition, end.position), nil
		case rep.HeadHash != end.hash:
			return bad(rep, end.position, "the head event's hash differs from the one the store committed"), nil
		}
	}
	return rep, nil
}

func bad(rep VerifyReport, pos int64, format string, args ...any) VerifyReport {
	rep.OK = false
	rep.FirstBadPosition = pos
	rep.Reason = fmt.Sprintf(format, args...)
	return rep
}

func verifyErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("eventstore: verify: %w", ctxErr)
	}
	return fmt.Errorf("eventstore: verify: %w", unavailable("read", err))
}

// chainWalker checks rows in position order against the chain so far.
type chainWalker struct {
	hasher   *chainHasher
	prevHash string
	prevMS   int64
	next     int64 // the position the next row must have
}

// page checks up to verifyPage rows starting at w.next. problem describes
// the first defect, found at w.next.
func (w *chainWalker) page(ctx context.Context, db *sql.DB, to int64, rep *VerifyReport) (n int, problem string, err error) {
	q := `SELECT position, stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash
		FROM events WHERE position >= ? AND (? = 0 OR position <= ?) ORDER BY position LIMIT ?`
	rows, err := db.QueryContext(ctx, q, w.next, to, to, verifyPage)
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	for rows.Next() {
		n++
		var (
			pos                     int64
			stream, typ, prev, hash string
			version, schema, ms     any // a tampered row may hold anything
			data, meta              sql.RawBytes
		)
		if err := rows.Scan(&pos, &stream, &version, &typ, &schema, &data, &meta, &ms, &prev, &hash); err != nil {
			return n, "", err
		}
		if problem := w.check(pos, stream, version, typ, schema, data, meta, ms, prev, hash); problem != "" {
			return n, problem, nil
		}
		rep.Checked++
		rep.HeadPosition, rep.HeadHash = pos, hash
	}
	return n, "", rows.Err()
}

func (w *chainWalker) check(pos int64, stream string, version any, typ string, schema any,
	data, meta []byte, ms any, prev, hash string) string {
	if pos != w.next {
		return fmt.Sprintf("event %d is missing (the next stored event is %d)", w.next, pos)
	}
	if prev != w.prevHash {
		return fmt.Sprintf("prev_hash of event %d does not match the hash of event %d", pos, pos-1)
	}
	v, ok1 := asInt64(version)
	sv, ok2 := asInt64(schema)
	rec, ok3 := asInt64(ms)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Sprintf("event %d has a non-integer version, schema_version or recorded_at", pos)
	}
	if rec < w.prevMS {
		return fmt.Sprintf("recorded_at of event %d is earlier than the event before it", pos)
	}
	sum, ok := w.hasher.sum(hashInput{
		prevHash: prev, position: pos, streamID: stream, version: v, eventType: typ,
		schemaVersion: sv, data: data, metadata: meta, recordedAtMS: rec,
	})
	if !ok || sum != hash {
		return fmt.Sprintf("hash of event %d does not match its contents", pos)
	}
	w.prevHash, w.prevMS, w.next = hash, rec, pos+1
	return ""
}

// asInt64 accepts what SQLite returns for an INTEGER column, including an
// integer stored as text.
func asInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	case []byte:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return n, err == nil
	default:
		return 0, false
	}
}
