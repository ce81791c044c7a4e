package eventstore_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore"
)

// committedRows counts the events in the file as another connection sees
// them: what SQLite committed, durable or not.
func committedRows(t *testing.T, path string) int64 {
	t.Helper()
	var n int64
	if err := rawDB(t, path).QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// While the WAL's fdatasync has not returned, a committed batch is invisible
// outside the store: no answer, no watcher signal, no read, no head. The
// writer meanwhile commits the next batch on top of it, and one fdatasync
// then answers both.
func TestNothingIsAnsweredBeforeTheWALIsSynced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openStore(t, path)
	first := mustAppend(t, s, appendReq("q", eventstore.NoStream, newEvent("A", `{"n":1}`)))
	wake, unwatch := s.Watch()
	defer unwatch()
	select {
	case <-wake: // the first append's signal
	default:
	}

	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	eventstore.SetSyncHook(s, func() error {
		entered <- struct{}{}
		<-release
		return nil
	})
	second := s.Submit(appendReq("q", 1, newEvent("A", `{"n":2}`)))
	<-entered // committed; its fdatasync is held
	if got := committedRows(t, path); got != 2 {
		t.Fatalf("%d events in the file while the fdatasync is held, want 2 (the writer's COMMIT ran)", got)
	}
	// Built on the version that is not durable yet: the writer commits it
	// while the first fdatasync is still held.
	third := s.Submit(appendReq("q", 2, newEvent("A", `{"n":3}`)))
	waitFor(t, "the third append's COMMIT", func() bool { return committedRows(t, path) == 3 })

	select {
	case <-second.Done():
		t.Fatal("an append was answered before the WAL's fdatasync returned")
	case <-third.Done():
		t.Fatal("an append was answered before the WAL's fdatasync returned")
	case <-wake:
		t.Fatal("a watcher heard of a commit before the WAL's fdatasync returned")
	default:
	}
	if h := s.Head(); h != 1 {
		t.Errorf("Head = %d before the fdatasync, want 1", h)
	}
	if h := s.HeadHash(); h != first.Events[0].Hash {
		t.Errorf("HeadHash moved before the fdatasync")
	}
	if v := s.StreamVersion("q"); v != 1 {
		t.Errorf("StreamVersion = %d before the fdatasync, want 1", v)
	}
	var read []eventstore.Event
	if err := s.ReadAll(testCtx(t), 0, func(e eventstore.Event) error { read = append(read, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(read) != 1 {
		t.Errorf("ReadAll saw %d events before the fdatasync, want 1", len(read))
	}
	var scanned int
	if err := s.Scan(testCtx(t), eventstore.Filter{Until: 3}, func(eventstore.Event) error { scanned++; return nil }); err != nil {
		t.Fatal(err)
	}
	if scanned != 1 {
		t.Errorf("Scan up to 3 saw %d events before the fdatasync, want 1", scanned)
	}
	if p, err := s.PositionAt(testCtx(t), time.Now().Add(time.Hour)); err != nil || p != 1 {
		t.Errorf("PositionAt(later) = %d, %v before the fdatasync; want 1", p, err)
	}
	if rep, err := s.Verify(testCtx(t), 0, 0); err != nil || !rep.OK || rep.HeadPosition != 1 {
		t.Errorf("Verify before the fdatasync = %+v, %v; want OK up to 1", rep, err)
	}

	close(release)
	for i, p := range []*eventstore.Pending{second, third} {
		res, err := p.Wait(testCtx(t))
		if err != nil {
			t.Fatalf("append %d: %v", i+2, err)
		}
		if got := res.Events[0].Position; got != int64(i+2) {
			t.Errorf("append %d at position %d", i+2, got)
		}
	}
	select {
	case <-wake:
	default:
		t.Error("no watcher signal after the fdatasync")
	}
	if h, v := s.Head(), s.StreamVersion("q"); h != 3 || v != 3 {
		t.Errorf("after the fdatasync: Head %d, StreamVersion %d; want 3, 3", h, v)
	}
	if st := s.Stats(); st.Commits != 3 || st.Syncs > 3 {
		t.Errorf("Stats = %+v: want 3 commits in at most 3 fdatasyncs", st)
	}
}

// A failed fdatasync may have lost pages the kernel then marks clean, so
// the store answers ErrUnavailable, says it is failing, and refuses every
// later append instead of trusting a later fdatasync. A reopen recovers the
// file as SQLite finds it.
func TestAFailedSyncRefusesAppendsUntilReopened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openWith(t, path, eventstore.Options{Logger: quietLogger()})
	mustAppend(t, s, appendReq("q", eventstore.NoStream, newEvent("A", `{}`)))

	eventstore.SetSyncHook(s, func() error { return errors.New("EIO (injected)") })
	if _, err := s.Append(testCtx(t), appendReq("q", 1, newEvent("A", `{}`))); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append whose fdatasync failed: %v, want ErrUnavailable", err)
	}
	if st := s.Stats(); st.FailingSince.IsZero() || !st.SyncFailed || st.Head != 1 {
		t.Errorf("Stats after a failed fdatasync = %+v: want FailingSince, SyncFailed and Head 1", st)
	}
	eventstore.SetSyncHook(s, nil) // the disk works again: the store must not believe it
	if _, err := s.Append(testCtx(t), appendReq("other", eventstore.AnyVersion, newEvent("A", `{}`))); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append after a failed fdatasync: %v, want ErrUnavailable", err)
	}
	if h := s.Head(); h != 1 {
		t.Errorf("Head = %d after the refused appends, want 1", h)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path)
	// The append whose fdatasync failed was written: its outcome was
	// unknown to its caller, as after a crash. The one refused after it
	// was never written.
	if h := s.Head(); h != 2 {
		t.Errorf("Head after reopening = %d, want 2", h)
	}
	if v := s.StreamVersion("other"); v != 0 {
		t.Errorf("a refused append is in the log: stream version %d", v)
	}
	mustAppend(t, s, appendReq("q", 2, newEvent("A", `{}`)))
	if rep, err := s.Verify(testCtx(t), 0, 0); err != nil || !rep.OK || rep.HeadPosition != 3 {
		t.Errorf("Verify after reopening = %+v, %v", rep, err)
	}
}
