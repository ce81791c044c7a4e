package eventstore_test

import (
	"errors"
	"fmt"
	"path/filepath"
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
