package wmsql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
)

// busyDriver answers SQLITE_BUSY to the first busy opens (as the connect
// hook's pragmas do when SQLite declines to wait), then opens.
type busyDriver struct {
	busy  int
	fail  error // returned instead of busy when set
	opens int
}

type stubConn struct{}

func (stubConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("stub") }
func (stubConn) Close() error                        { return nil }
func (stubConn) Begin() (driver.Tx, error)           { return nil, errors.New("stub") }

func (d *busyDriver) Open(string) (driver.Conn, error) {
	d.opens++
	if d.fail != nil {
		return nil, d.fail
	}
	if d.opens <= d.busy {
		return nil, fmt.Errorf("PRAGMA x.journal_mode = WAL: %w", sqlite3.Error{Code: sqlite3.ErrBusy})
	}
	return stubConn{}, nil
}

func TestConnectRetriesABusyOpen(t *testing.T) {
	d := &busyDriver{busy: 3}
	c := &connector{drv: d, retry: time.Second}
	conn, err := c.Connect(context.Background())
	if err != nil || conn == nil {
		t.Fatalf("Connect: %v, want a connection once the file is free", err)
	}
	if d.opens != 4 {
		t.Fatalf("%d opens, want 3 busy ones and the one that worked", d.opens)
	}
}

func TestConnectGivesUpAfterTheBusyTimeout(t *testing.T) {
	d := &busyDriver{busy: 1 << 30}
	c := &connector{drv: d, retry: 40 * time.Millisecond}
	start := time.Now()
	_, err := c.Connect(context.Background())
	if !IsBusy(err) {
		t.Fatalf("Connect: %v, want the busy error once the time is up", err)
	}
	if took := time.Since(start); took > time.Second || d.opens < 2 {
		t.Fatalf("%d opens in %s, want a few within the 40 ms bound", d.opens, took)
	}
}

func TestConnectDoesNotRetryOtherErrors(t *testing.T) {
	d := &busyDriver{fail: sqlite3.Error{Code: sqlite3.ErrCantOpen}}
	c := &connector{drv: d, retry: time.Second}
	if _, err := c.Connect(context.Background()); err == nil || IsBusy(err) || d.opens != 1 {
		t.Fatalf("Connect: %v after %d opens, want the error of the only open", err, d.opens)
	}
}

func TestConnectStopsWithItsContext(t *testing.T) {
	d := &busyDriver{busy: 1 << 30}
	c := &connector{drv: d, retry: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c.Connect(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !IsBusy(err) {
		t.Fatalf("Connect: %v, want the context's error with the busy one", err)
	}
}
