package eventstore_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore"
)

// holdWriteLock takes SQLite's write lock from a second connection, so the
// store's writer blocks in BEGIN IMMEDIATE and requests pile up in its
// queue. The returned function releases the lock.
func holdWriteLock(t *testing.T, path string) func() {
	t.Helper()
	db := rawDB(t, path)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	// A write makes the deferred transaction take the write lock now.
	if _, err := tx.Exec(`UPDATE store_meta SET value = value WHERE key = 'format'`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGroupCommit: requests queued while the writer waits are committed in
// as few transactions as MaxBatch allows, and a conflicting request in a
// batch fails alone.
func TestGroupCommit(t *testing.T) {
	for _, maxBatch := range []int{256, 10} {
		t.Run(fmt.Sprintf("MaxBatch=%d", maxBatch), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			// A generous busy timeout: the writer waits on our lock, it must
			// not give up while the test is submitting.
			s := openWith(t, path, eventstore.Options{MaxBatch: maxBatch, BusyTimeout: time.Minute})
			mustAppend(t, s, appendReq("g", eventstore.NoStream, newEvent("G", `{}`)))
			before := s.Stats()

			release := holdWriteLock(t, path)
			const n = 100
			var pending []*eventstore.Pending
			valid := int64(1) // g is at version 1
			for i := range n {
				if i%10 == 5 {
					// Stale: must fail alone, without disturbing the
					// requests around it in the same batch.
					pending = append(pending, s.Submit(appendReq("g", 0, newEvent("G", `{"stale":true}`))))
					continue
				}
				pending = append(pending, s.Submit(appendReq("g", valid, newEvent("G", fmt.Sprintf(`{"i":%d}`, i)))))
				valid++
			}
			release()

			version := int64(1)
			for i, p := range pending {
				res, err := p.Wait(testCtx(t))
				if i%10 == 5 {
					if !errors.Is(err, eventstore.ErrConcurrency) {
						t.Fatalf("stale request %d: %v, want a conflict", i, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				version++
				if got := res.Events[0].Version; got != version {
					t.Fatalf("request %d got version %d, want %d", i, got, version)
				}
			}
			st := s.Stats()
			commits := st.Commits - before.Commits
			// At most one batch was taken before the writer blocked; the rest
			// waited in the queue and went MaxBatch at a time.
			minCommits := int64((n + maxBatch - 1) / maxBatch)
			if commits < minCommits || commits > minCommits+1 {
				t.Errorf("%d requests took %d commits, want %d or %d", n, commits, minCommits, minCommits+1)
			}
			if st.Requests-before.Requests != n-n/10 || st.Conflicts-before.Conflicts != n/10 || s.StreamVersion("g") != version {
				t.Errorf("stats %+v, stream version %d; want %d committed requests and %d conflicts", st, s.StreamVersion("g"), n-n/10, n/10)
			}
			t.Logf("%d requests, %d commits", n, commits)
		})
	}
}

// TestUniqueIndexIsTheSafetyNet writes an event behind the store's back, so
// its in-memory head of that stream is stale: the UNIQUE (stream_id,
// version) index must refuse the append as a conflict, the requests around
// it in the batch must commit, and the store must adopt the file's version.
func TestUniqueIndexIsTheSafetyNet(t *testing.T) {
	for _, events := range []int{1, 20} {
		// One event: a single INSERT without a savepoint. Twenty events plus
		// a second stream: multi-row and single-row INSERTs in a savepoint.
		t.Run(fmt.Sprintf("%d events", events), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			s := openWith(t, path, eventstore.Options{BusyTimeout: time.Minute, Logger: quietLogger()})
			mustAppend(t, s, appendReq("x", eventstore.NoStream, newEvent("X", `{}`)))
			// A version of x the store does not know of, at a position far
			// from its next one. With 20 events it is met by the second
			// statement, after the first one inserted 16 rows.
			rawVersion := int64(2)
			if events > 1 {
				rawVersion = 19
			}
			raw := rawDB(t, path)
			if _, err := raw.Exec(`INSERT INTO events SELECT 1000, stream_id, ?, type, schema_version, data, metadata, recorded_at, prev_hash, hash FROM events WHERE position = 1`, rawVersion); err != nil {
				t.Fatal(err)
			}

			release := holdWriteLock(t, path)
			first := s.Submit(appendReq("y", eventstore.NoStream, newEvent("Y", `{}`)))
			waitQueueEmpty(t, s)
			var xs []eventstore.NewEvent
			for range events {
				xs = append(xs, newEvent("X", `{}`))
			}
			req := appendReq("x", 1, xs...)
			if events > 1 {
				req.Streams = append(req.Streams, eventstore.StreamAppend{StreamID: "z", ExpectedVersion: eventstore.NoStream, Events: []eventstore.NewEvent{newEvent("Z", `{}`)}})
			}
			stale := s.Submit(req)
			after := s.Submit(appendReq("y", 1, newEvent("Y", `{}`)))
			release()

			if _, err := first.Wait(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			_, err := stale.Wait(testCtx(t))
			var ce *eventstore.ConflictError
			if !errors.As(err, &ce) || ce.StreamID != "x" || ce.ExpectedVersion != 1 || ce.ActualVersion != rawVersion {
				t.Fatalf("append on a stale head: %v, want a conflict on x (expected 1, actual %d)", err, rawVersion)
			}
			var rows int
			if err := raw.QueryRow(`SELECT COUNT(*) FROM events WHERE stream_id IN ('x', 'z')`).Scan(&rows); err != nil || rows != 2 {
				t.Errorf("x and z hold %d rows (%v), want the 2 written before: part of the refused request was kept", rows, err)
			}
			res, err := after.Wait(testCtx(t))
			if err != nil {
				t.Fatalf("request after the conflict in the same batch: %v", err)
			}
			if got := res.Events[0].Position; got != 3 {
				t.Errorf("request after the conflict got position %d, want 3 (no gap)", got)
			}
			if got := s.StreamVersion("x"); got != rawVersion {
				t.Errorf("StreamVersion(x) = %d after the conflict, want the file's %d", got, rawVersion)
			}
			if got := s.StreamVersion("z"); got != 0 {
				t.Errorf("z has version %d: part of the refused request was kept", got)
			}
		})
	}
}

// TestPositionCollisionResyncs: a row written behind the store's back at
// its next position fails that batch with ErrUnavailable; the store then
// reloads its heads from the file and carries on after that row.
func TestPositionCollisionResyncs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openWith(t, path, eventstore.Options{Logger: quietLogger()})
	first := mustAppend(t, s, appendReq("a", eventstore.NoStream, newEvent("A", `{}`))).Events[0]
	execAll(t, rawDB(t, path), `INSERT INTO events SELECT 2, 'intruder', 1, type, schema_version, data, metadata, recorded_at, hash, hash FROM events WHERE position = 1`)

	if _, err := s.Append(testCtx(t), appendReq("a", 1, newEvent("A", `{}`))); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append onto an occupied position: %v, want ErrUnavailable", err)
	}
	if s.Head() != 2 || s.StreamVersion("intruder") != 1 || s.HeadHash() != first.Hash {
		t.Fatalf("after the collision: head %d %s, intruder v%d; want the file's state", s.Head(), s.HeadHash(), s.StreamVersion("intruder"))
	}
	res := mustAppend(t, s, appendReq("a", 1, newEvent("A", `{}`)))
	if e := res.Events[0]; e.Position != 3 || e.Version != 2 {
		t.Errorf("append after the resync: v%d at %d, want v2 at 3", e.Version, e.Position)
	}
	// The intruder copied event 1's hash, so the chain breaks at 2.
	if rep, err := s.Verify(testCtx(t), 0, 0); err != nil || rep.OK || rep.FirstBadPosition != 2 {
		t.Errorf("Verify = %+v, %v; want the intruder at 2 named", rep, err)
	}
}

// TestSequentialAppenderIsNotKeptWaiting: a lone appender that waits for
// each answer before its next request gains nothing from a commit delay, so
// after the first few the writer stops waiting for company (one trial every
// 64 commits remains).
func TestSequentialAppenderIsNotKeptWaiting(t *testing.T) {
	s := openWith(t, filepath.Join(t.TempDir(), "events.db"), eventstore.Options{CommitDelay: 20 * time.Millisecond})
	const n = 300
	start := time.Now()
	for i := range n {
		mustAppend(t, s, appendReq("seq", int64(i), newEvent("E", `{}`)))
	}
	elapsed := time.Since(start)
	st := s.Stats()
	if st.Commits != n {
		t.Errorf("%d sequential appends took %d commits", n, st.Commits)
	}
	// A 20 ms delay makes every wait show: 300 of them would take 6 s.
	if max := int64(1 + n/64 + 1); st.CommitWaits > max {
		t.Errorf("the writer waited %d times for %d sequential appends (%v), want at most %d", st.CommitWaits, n, elapsed, max)
	}
	t.Logf("%d appends in %v, %d waits", n, elapsed, st.CommitWaits)
}

// TestSteadyTrickleIsCommittedInGroups: requests arriving one at a time,
// every 250 µs, share fsyncs: the writer waits up to CommitDelay for more
// before a small commit, instead of syncing each one alone.
func TestSteadyTrickleIsCommittedInGroups(t *testing.T) {
	s := openWith(t, filepath.Join(t.TempDir(), "events.db"), eventstore.Options{CommitDelay: 2 * time.Millisecond})
	const n = 1000
	pending := make([]*eventstore.Pending, 0, n)
	start := time.Now()
	for i := range n {
		pending = append(pending, s.Submit(appendReq(fmt.Sprintf("trickle-%d", i), eventstore.NoStream, newEvent("E", `{}`))))
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 250 * time.Microsecond)))
	}
	for i, p := range pending {
		if _, err := p.Wait(testCtx(t)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	st := s.Stats()
	// Without the delay a request every 250 µs mostly finds the writer idle
	// (an fdatasync takes ~200 µs here): ~1.5 requests per commit.
	if st.Commits > n/3 {
		t.Errorf("%d requests over %v took %d commits (%d waits), want at most %d", n, time.Since(start), st.Commits, st.CommitWaits, n/3)
	}
	t.Logf("%d requests over %v: %d commits, %d waits", n, time.Since(start), st.Commits, st.CommitWaits)
}

// TestObserveCommit: every durable group commit is reported once, with its
// requests and events; a request that conflicted is not among them.
func TestObserveCommit(t *testing.T) {
	var mu sync.Mutex
	var commits, requests, events int
	var total time.Duration
	s := openWith(t, filepath.Join(t.TempDir(), "events.db"), eventstore.Options{
		ObserveCommit: func(r, e int, took time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			commits, requests, events, total = commits+1, requests+r, events+e, total+took
		},
	})
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.Append(testCtx(t), appendReq(fmt.Sprintf("obs-%d", i), eventstore.NoStream, newEvent("E", `{}`), newEvent("E", `{}`))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Stream obs-0 exists: this append conflicts and commits nothing.
	if _, err := s.Append(testCtx(t), appendReq("obs-0", eventstore.NoStream, newEvent("E", `{}`))); err == nil {
		t.Fatal("an append to an existing stream with NoStream succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	st := s.Stats()
	if int64(commits) != st.Commits || requests != n || events != 2*n {
		t.Errorf("observed %d commits of %d requests and %d events; the store made %d commits of %d requests, %d events",
			commits, requests, events, st.Commits, n, 2*n)
	}
	if total <= 0 {
		t.Errorf("the commits took %v in all", total)
	}
}
