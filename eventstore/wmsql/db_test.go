package wmsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	_ "github.com/mattn/go-sqlite3"

	"github.com/ledgerq/ledgerq/eventstore/wmsql"
)

// rawConn opens a plain connection to one file that fails at once instead
// of waiting for a lock.
func rawConn(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=0&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func openPair(t *testing.T, exclusive bool) (db *wmsql.DB, mainPath, offsetsPath string) {
	t.Helper()
	dir := t.TempDir()
	mainPath = filepath.Join(dir, "main.db")
	offsetsPath = filepath.Join(dir, "offsets.db")
	db, err := wmsql.Open(context.Background(), wmsql.Config{Path: mainPath, OffsetsPath: offsetsPath, Exclusive: exclusive})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS log (n INTEGER PRIMARY KEY)`,
		`CREATE TABLE IF NOT EXISTS offsets.pos (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`,
		`INSERT INTO offsets.pos (id, n) VALUES (1, 0)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return db, mainPath, offsetsPath
}

// In Exclusive mode an open subscriber transaction holds the offsets file's
// write lock and nothing of the main file: the main file's writers go on,
// other writers of the offsets file wait.
func TestExclusiveTxLocksOffsetsFileOnly(t *testing.T) {
	db, mainPath, offsetsPath := openPair(t, true)
	ctx := context.Background()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM log`).Scan(&n); err != nil {
		t.Fatalf("read main in tx: %v", err)
	}

	if _, err := rawConn(t, mainPath).ExecContext(ctx, `INSERT INTO log (n) VALUES (1)`); err != nil {
		t.Fatalf("append to the main file while a subscriber tx is open: %v", err)
	}
	_, err = rawConn(t, offsetsPath).ExecContext(ctx, `UPDATE pos SET n = 99`)
	if !wmsql.IsBusy(err) {
		t.Fatalf("write to the offsets file during an exclusive tx: got %v, want SQLITE_BUSY", err)
	}

	// The ack is a write after a read of a file someone else committed to
	// meanwhile; it must not fail.
	if _, err := tx.ExecContext(ctx, `UPDATE offsets.pos SET n = n + 1`); err != nil {
		t.Fatalf("ack after a concurrent append: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if _, err := rawConn(t, offsetsPath).ExecContext(ctx, `UPDATE pos SET n = n + 1`); err != nil {
		t.Fatalf("write offsets after commit: %v", err)
	}
}

// In the default mode a transaction only reads until its ack; the ack fails
// with SQLITE_BUSY when the offsets file changed meanwhile (the
// at-least-once case) and never because of the main file's writers.
func TestDefaultTxAckConflictsOnlyOnOffsetsFile(t *testing.T) {
	db, mainPath, offsetsPath := openPair(t, false)
	ctx := context.Background()

	readThenAck := func(during func()) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT n FROM offsets.pos), (SELECT count(*) FROM log)`).Scan(&n, new(int)); err != nil {
			return err
		}
		during()
		if _, err := tx.ExecContext(ctx, `UPDATE offsets.pos SET n = ?`, n+1); err != nil {
			return err
		}
		return tx.Commit()
	}

	err := readThenAck(func() {
		if _, err := rawConn(t, mainPath).ExecContext(ctx, `INSERT INTO log (n) VALUES (2)`); err != nil {
			t.Errorf("append during the batch: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("ack after a commit to the main file: %v", err)
	}

	err = readThenAck(func() {
		if _, err := rawConn(t, offsetsPath).ExecContext(ctx, `UPDATE pos SET n = 42`); err != nil {
			t.Errorf("offsets write during the batch: %v", err)
		}
	})
	if !wmsql.IsBusy(err) {
		t.Fatalf("ack after another commit to the offsets file: got %v, want SQLITE_BUSY", err)
	}
}

func TestReadOnlyMainRefusesWrites(t *testing.T) {
	_, mainPath, offsetsPath := openPair(t, false)
	ro, err := wmsql.Open(context.Background(), wmsql.Config{Path: mainPath, ReadOnly: true, OffsetsPath: offsetsPath, Exclusive: true})
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	defer func() { _ = ro.Close() }()
	ctx := context.Background()
	if _, err := ro.ExecContext(ctx, `INSERT INTO log (n) VALUES (7)`); err == nil || !strings.Contains(strings.ToLower(err.Error()), "readonly") {
		t.Fatalf("write to a read-only main file: got %v, want a read-only error", err)
	}
	tx, err := ro.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin on a read-only main file: %v", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE offsets.pos SET n = 5`); err != nil {
		t.Fatalf("offsets stay writable: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  wmsql.Config
		want string
	}{
		{"no path", wmsql.Config{OffsetsPath: "o.db"}, "Path is required"},
		{"no offsets", wmsql.Config{Path: "m.db"}, "OffsetsPath is required"},
		{"same file", wmsql.Config{Path: "m.db", OffsetsPath: "./m.db"}, "another file"},
		{"bad schema", wmsql.Config{Path: "m.db", OffsetsPath: "o.db", OffsetsSchema: "main"}, "schema name"},
		{"injection", wmsql.Config{Path: "m.db", OffsetsPath: "o.db", OffsetsSchema: `x"; DROP`}, "schema name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wmsql.Open(context.Background(), tc.cfg)
			if !errors.Is(err, wmsql.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
		})
	}
}

func TestBackoffManager(t *testing.T) {
	logger := watermill.NopLogger{}
	wake := make(chan struct{}, 1)
	b := wmsql.NewBackoffManager(wmsql.BackoffConfig{Wake: wake, MaxIdleWait: time.Hour, RetryInterval: 7 * time.Second})

	if got := b.HandleError(logger, false, errors.New("lock offsets: database is locked")); got != 0 {
		t.Errorf("busy error: backoff %s, want 0", got)
	}
	if got := b.HandleError(logger, false, errors.New("disk I/O error")); got != 7*time.Second {
		t.Errorf("other error: backoff %s, want RetryInterval", got)
	}
	if got := b.HandleError(logger, false, nil); got != 0 {
		t.Errorf("rows found: backoff %s, want 0", got)
	}

	// A signal sent before the idle wait starts is not lost.
	wake <- struct{}{}
	start := time.Now()
	if got := b.HandleError(logger, true, nil); got != 0 {
		t.Errorf("idle: backoff %s, want 0 after the wait", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("idle wait with a pending signal took %s", took)
	}

	done := make(chan struct{})
	go func() {
		b.HandleError(logger, true, nil)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("idle wait returned without a signal")
	case <-time.After(20 * time.Millisecond):
	}
	b.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the idle wait")
	}
}

func TestBackoffManagerPollsWithoutWake(t *testing.T) {
	b := wmsql.NewBackoffManager(wmsql.BackoffConfig{MaxIdleWait: 10 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		b.HandleError(watermill.NopLogger{}, true, nil)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("idle wait without Wake did not end after MaxIdleWait")
	}
}

// BetweenBatches runs after batches, caught up or not (and says which), at
// most once per BetweenEvery; never after an error or an empty poll.
func TestBackoffManagerBetweenBatches(t *testing.T) {
	logger := watermill.NopLogger{}
	var calls []bool
	wake := make(chan struct{}, 1)
	b := wmsql.NewBackoffManager(wmsql.BackoffConfig{Wake: wake, MaxIdleWait: time.Hour,
		BetweenBatches: func(caughtUp bool) { calls = append(calls, caughtUp) }, BetweenEvery: 300 * time.Millisecond})
	defer b.Close()

	b.HandleError(logger, false, nil)
	if len(calls) != 0 {
		t.Fatalf("called %v before BetweenEvery had passed", calls)
	}
	time.Sleep(350 * time.Millisecond)
	b.HandleError(logger, false, errors.New("disk I/O error"))
	wake <- struct{}{}
	b.HandleError(logger, true, nil) // an empty poll: waits for the signal
	if len(calls) != 0 {
		t.Fatalf("called %v after an error and an empty poll", calls)
	}
	b.CaughtUp()
	wake <- struct{}{}
	b.HandleError(logger, false, nil) // a batch that caught up: called, then waits
	b.HandleError(logger, false, nil)
	if fmt.Sprint(calls) != "[true]" {
		t.Fatalf("calls %v for a caught-up batch and one more right after, want [true]", calls)
	}
	time.Sleep(350 * time.Millisecond)
	b.HandleError(logger, false, nil)
	if fmt.Sprint(calls) != "[true false]" {
		t.Fatalf("calls %v, want [true false] once BetweenEvery passed again", calls)
	}
}

// Subscribers starting together on a new offsets file each open
// connections that switch it to WAL; SQLite answers some of them
// SQLITE_BUSY at once rather than wait. Every Open must still succeed.
func TestOpenTogetherOnNewFiles(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		const n = 12
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				db, err := wmsql.Open(context.Background(), wmsql.Config{
					Path:        filepath.Join(dir, "messages.db"),
					OffsetsPath: filepath.Join(dir, "offsets.db"),
				})
				if err == nil {
					err = db.Close()
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// LingerFor sets the pause after each Wake, and learns whether the wait
// follows a batch that caught up or an empty poll.
func TestBackoffManagerLingerFor(t *testing.T) {
	wake := make(chan struct{}, 1)
	var calls []bool
	b := wmsql.NewBackoffManager(wmsql.BackoffConfig{Wake: wake, MaxIdleWait: time.Hour, Linger: time.Hour,
		LingerFor: func(afterBatch bool) time.Duration {
			calls = append(calls, afterBatch)
			return 60 * time.Millisecond
		}})
	defer b.Close()
	logger := watermill.NopLogger{}

	b.CaughtUp()
	wake <- struct{}{}
	start := time.Now()
	b.HandleError(logger, false, nil) // a batch that caught up
	if took := time.Since(start); took < 60*time.Millisecond || took > 30*time.Second {
		t.Errorf("the wait after a caught-up batch took %s, want LingerFor's 60 ms (not Linger's hour)", took)
	}
	wake <- struct{}{}
	b.HandleError(logger, true, nil)  // an empty poll
	b.HandleError(logger, false, nil) // a batch that did not catch up: no wait
	if len(calls) != 2 || !calls[0] || calls[1] {
		t.Errorf("LingerFor called with %v, want [true false]", calls)
	}
}
