package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/storetest"
)

func TestMain(m *testing.M) {
	// The crash test re-executes this binary as the process it kills.
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(runCrashChild(path))
	}
	os.Exit(m.Run())
}

// testLogger sends the store's log lines to the test log, so a failing
// test shows what the writer reported.
func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(tbWriter{t})
	return l
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

func quietLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func openWith(t testing.TB, path string, opts eventstore.Options) *eventstore.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := eventstore.Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openStore(t *testing.T, path string) *eventstore.Store {
	return openWith(t, path, eventstore.Options{})
}

func TestContract(t *testing.T) {
	storetest.Run(t, openStore)
}

// The suite again with one request per transaction: batching must not be
// what makes it pass.
func TestContractMaxBatchOne(t *testing.T) {
	if testing.Short() {
		t.Skip("the full suite already ran with the default batch size")
	}
	storetest.Run(t, func(t *testing.T, path string) *eventstore.Store {
		return openWith(t, path, eventstore.Options{MaxBatch: 1})
	})
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newEvent(typ, data string) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, SchemaVersion: 1, Data: json.RawMessage(data)}
}

func appendReq(stream string, expected int64, events ...eventstore.NewEvent) eventstore.AppendRequest {
	return eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{StreamID: stream, ExpectedVersion: expected, Events: events}}}
}

func mustAppend(t testing.TB, s *eventstore.Store, req eventstore.AppendRequest) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(testCtx(t), req)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

func TestOpenTwiceIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openStore(t, path)
	if s2, err := eventstore.Open(path, eventstore.Options{Logger: quietLogger()}); !errors.Is(err, eventstore.ErrUnavailable) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Open of an open file: %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	if got := s.Path(); got != path {
		t.Errorf("Path = %q, want %q", got, path)
	}
}

func TestOpenValidatesOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	_, err := eventstore.Open(path, eventstore.Options{MaxBatch: -1, ReadConns: -2, Upcasters: eventstore.Upcasters{"X": nil}})
	if !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("Open with bad options: %v, want ErrInvalid", err)
	}
	for _, want := range []string{"MaxBatch", "ReadConns", `"X"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with bad options created the file: %v", err)
	}
}

func TestOpenRefusesUnknownFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openStore(t, path)
	s.Close()
	db := rawDB(t, path)
	if _, err := db.Exec(`UPDATE store_meta SET value = '99' WHERE key = 'format'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := eventstore.Open(path, eventstore.Options{Logger: quietLogger()}); !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("Open of a format-99 file: %v, want ErrInvalid", err)
	}
}

// fakeClock returns the times it is given, in order, then the last one.
type fakeClock struct {
	times []time.Time
}

func (c *fakeClock) now() time.Time {
	t := c.times[0]
	if len(c.times) > 1 {
		c.times = c.times[1:]
	}
	return t
}

func TestRecordedAtNeverDecreases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	clock := &fakeClock{times: []time.Time{
		t0.Add(1500 * time.Microsecond), // stored as t0+1ms
		t0.Add(-time.Hour),              // the wall clock stepped back
		t0.Add(5 * time.Millisecond),
	}}
	s := openWith(t, path, eventstore.Options{Now: clock.now})
	var got []time.Time
	for range 3 {
		got = append(got, mustAppend(t, s, appendReq("t", eventstore.AnyVersion, newEvent("A", `{}`))).Events[0].RecordedAt)
	}
	want := []time.Time{t0.Add(time.Millisecond), t0.Add(time.Millisecond), t0.Add(5 * time.Millisecond)}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("event %d recorded at %v, want %v", i+1, got[i], want[i])
		}
	}
	s.Close()

	// The clamp survives a restart: the head's time is loaded from the file.
	s = openWith(t, path, eventstore.Options{Now: func() time.Time { return t0 }})
	if e := mustAppend(t, s, appendReq("t", eventstore.AnyVersion, newEvent("A", `{}`))).Events[0]; !e.RecordedAt.Equal(want[2]) {
		t.Errorf("after reopen with an earlier clock: recorded at %v, want %v", e.RecordedAt, want[2])
	}
	if rep, err := s.Verify(testCtx(t), 0, 0); err != nil || !rep.OK {
		t.Errorf("Verify: %+v, %v", rep, err)
	}
}

func TestStats(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "events.db"))
	mustAppend(t, s, appendReq("a", eventstore.NoStream, newEvent("A", `{}`), newEvent("A", `{}`)))
	mustAppend(t, s, appendReq("b", eventstore.NoStream, newEvent("A", `{}`)))
	if _, err := s.Append(testCtx(t), appendReq("b", eventstore.NoStream, newEvent("A", `{}`))); !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("want a conflict, got %v", err)
	}
	st := s.Stats()
	want := eventstore.Stats{Head: 3, Streams: 2, Commits: 2, Syncs: 2, Requests: 2, Events: 3, Conflicts: 1}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

func ExampleStore_Append() {
	dir, _ := os.MkdirTemp("", "ledgerq-example")
	defer os.RemoveAll(dir)
	s, err := eventstore.Open(filepath.Join(dir, "events.db"), eventstore.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	res, err := s.Append(context.Background(), eventstore.AppendRequest{
		Metadata: eventstore.Metadata{Subject: "alice"},
		Streams: []eventstore.StreamAppend{{
			StreamID:        "queue-orders",
			ExpectedVersion: eventstore.NoStream,
			Events:          []eventstore.NewEvent{{Type: "QueueCreated", SchemaVersion: 1, Data: json.RawMessage(`{"name":"orders"}`)}},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.LastPosition(), s.StreamVersion("queue-orders"))
	// Output: 1 1
}

// A store written before the log searched its primary key for times kept
// an index on recorded_at that every append paid for; opening it drops the
// index, and time lookups give the same answers without it.
func TestOpenDropsTheRecordedAtIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openWith(t, path, eventstore.Options{})
	var log []eventstore.Event
	for i := range 5 {
		log = append(log, mustAppend(t, s, appendReq("s", eventstore.AnyVersion, newEvent("T", `{}`))).Events...)
		if i == 2 {
			time.Sleep(3 * time.Millisecond) // two distinct times at least
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	indexes := func() int {
		db := rawDB(t, path)
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'events_recorded_at'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	db := rawDB(t, path)
	execAll(t, db, `CREATE INDEX events_recorded_at ON events (recorded_at)`)
	db.Close()
	if indexes() != 1 {
		t.Fatal("the older store's index was not created")
	}
	s = openWith(t, path, eventstore.Options{})
	if n := indexes(); n != 0 {
		t.Fatalf("%d events_recorded_at indexes after Open, want 0", n)
	}
	for _, e := range log {
		want := e.Position
		for _, later := range log[e.Position:] {
			if later.RecordedAt.Equal(e.RecordedAt) {
				want = later.Position
			}
		}
		if got, err := s.PositionAt(testCtx(t), e.RecordedAt); err != nil || got != want {
			t.Errorf("PositionAt(%v) = %d, %v; want %d", e.RecordedAt, got, err, want)
		}
	}
}
