package eventstore_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ledgerq/ledgerq/eventstore"
)

// The writer commits without an fsync (synchronous=NORMAL), so what makes an
// answered append durable is the syncer's fdatasync of the WAL. Right after
// Append returns, the WAL has no page left that is dirty or still being
// written: cachestat(2) (Linux 6.5) counts them. Without the fdatasync the
// kernel would hold them for up to 30 s (dirty_expire_centisecs).
func TestAnAnsweredAppendLeftNoDirtyPageInTheWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openStore(t, path)
	wal, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(wal.Fd()), &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Fatalf("%s is on tmpfs, whose pages are never written to a disk; set TMPDIR to a disk-backed directory", path)
	}
	unsynced := func() uint64 {
		t.Helper()
		var st unix.Cachestat_t
		if err := unix.Cachestat(uint(wal.Fd()), &unix.CachestatRange{}, &st, 0); err != nil {
			t.Fatalf("cachestat (Linux 6.5 or later): %v", err)
		}
		return st.Dirty + st.Writeback
	}

	for i := range 50 {
		mustAppend(t, s, appendReq("seq", eventstore.AnyVersion, newEvent("A", `{"n":1}`)))
		if n := unsynced(); n != 0 {
			t.Fatalf("append %d answered with %d WAL pages not yet on the disk", i+1, n)
		}
	}

	// Concurrent appenders: every answered append is covered by a
	// fdatasync; once all are answered, nothing is left unwritten.
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for range 20 {
				if _, err := s.Append(testCtx(t), appendReq("c", eventstore.AnyVersion, newEvent("A", `{"g":1}`))); err != nil {
					t.Errorf("appender %d: %v", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := unsynced(); n != 0 {
		t.Fatalf("%d WAL pages not on the disk after every append was answered", n)
	}
	st := s.Stats()
	t.Logf("%d commits, %d fdatasyncs", st.Commits, st.Syncs)
}
