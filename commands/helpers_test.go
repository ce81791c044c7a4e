package commands

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

func quietLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// openStore opens a real event store in a temp file.
func openStore(t testing.TB) (*eventstore.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := eventstore.Open(path, eventstore.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// clock is a settable clock for tests that must not depend on real time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newApp starts an App on store; a nil clock means real time.
func newApp(t testing.TB, store EventStore, c *clock) *App {
	t.Helper()
	opts := Options{Logger: quietLogger()}
	if c != nil {
		opts.Clock = c.Now
	}
	a, err := New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

var caller = Caller{Subject: "alice", RequestID: "req-1", CorrelationID: "corr-1"}

func ctxT() context.Context { return WithCaller(context.Background(), caller) }

func i64(v int64) *int64    { return &v }
func strp(v string) *string { return &v }
func intp(v int) *int       { return &v }

func mustCreate(t testing.TB, a *App, name string, p domain.AttributesPatch) {
	t.Helper()
	if _, err := a.CreateQueue(ctxT(), CreateQueue{Name: name, Attributes: p}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func mustPublish(t testing.TB, a *App, queue, body string) PublishResult {
	t.Helper()
	r, err := a.Publish(ctxT(), Publish{Queue: queue, Message: Message{Body: body}})
	if err != nil {
		t.Fatalf("publish to %s: %v", queue, err)
	}
	return r
}

func mustReceive(t testing.TB, a *App, cmd Receive) []ReceivedMessage {
	t.Helper()
	r, err := a.Receive(ctxT(), cmd)
	if err != nil {
		t.Fatalf("receive from %s: %v", cmd.Queue, err)
	}
	return r.Messages
}

func wantErr(t testing.TB, err error, sentinel *domain.Error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %s", err, sentinel.Code)
	}
}

// logged reads the whole log.
func logged(t testing.TB, s EventStore) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	if err := s.ReadAll(context.Background(), 0, func(e eventstore.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func types(events []eventstore.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

func eventsOfType(events []eventstore.Event, typ string) []eventstore.Event {
	var out []eventstore.Event
	for _, e := range events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitUntil polls cond until it holds; tests use it to learn that another
// goroutine reached a state (say, a receive is waiting), never to let time
// pass for the code under test.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waiters(a *App, queue string) int {
	a.mu.RLock()
	qs := a.queues[queue]
	a.mu.RUnlock()
	qs.mu.Lock()
	defer qs.mu.Unlock()
	return qs.waiters
}

// checkRestart proves that the live state equals a fresh replay of the log:
// it closes a, starts a new App on the same store and compares snapshots.
func checkRestart(t testing.TB, a *App, store EventStore) {
	t.Helper()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	live, err := a.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(store, Options{Logger: quietLogger(), Clock: a.opts.Clock})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	replayed, err := b.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(replayed) {
		t.Fatalf("live has %d queues, replay %d", len(live), len(replayed))
	}
	for name, l := range live {
		if r := replayed[name]; !reflect.DeepEqual(l, r) {
			t.Fatalf("queue %q: live state differs from the replay\nlive     %+v\nreplayed %+v", name, l, r)
		}
	}
}

// faultyStore wraps a real store and spoils chosen appends: failNext makes
// the next Submit fail as the disk would (the request is refused, nothing is
// written); conflictNext makes it fail a version check.
type faultyStore struct {
	*eventstore.Store
	failNext     atomic.Int32
	conflictNext atomic.Int32
}

func (f *faultyStore) Submit(req eventstore.AppendRequest) *eventstore.Pending {
	if f.failNext.Add(-1) >= 0 {
		// An empty stream id makes the store refuse the request before
		// writing anything: a failed append, seen from the caller.
		req.Streams = append([]eventstore.StreamAppend(nil), req.Streams...)
		req.Streams[0].StreamID = ""
	} else if f.conflictNext.Add(-1) >= 0 {
		req.Streams = append([]eventstore.StreamAppend(nil), req.Streams...)
		req.Streams[0].ExpectedVersion += 100
	}
	return f.Store.Submit(req)
}

func (f *faultyStore) Append(ctx context.Context, req eventstore.AppendRequest) (eventstore.AppendResult, error) {
	return f.Submit(req).Wait(ctx)
}
