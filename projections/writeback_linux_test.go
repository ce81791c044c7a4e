package projections

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// What the projections commit reaches the disk without waiting for a
// checkpoint: with the checkpointer stopped, nothing else writes the WAL's
// dirty pages back for the kernel's 30 s (dirty_expire_centisecs), yet they
// are clean within seconds. cachestat(2) (Linux 6.5) counts a file's dirty
// pages.
func TestWritebackCleansTheWALWithoutACheckpoint(t *testing.T) {
	log, events := workloadLog(t, 2000)
	e := newEngine(t, Config{Source: log, Now: time.Now})
	e.walCk.close() // only the writeback may write the WAL back now
	checkpoints := e.walCk.runs.Load()
	applyInPacks(t, e, events, 32)
	wal, err := os.Open(e.cfg.Path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()

	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(wal.Fd()), &fs); err != nil {
		t.Fatal(err)
	}
	dirty := func() (uint64, error) {
		var st unix.Cachestat_t
		err := unix.Cachestat(uint(wal.Fd()), &unix.CachestatRange{}, &st, 0)
		return st.Dirty, err
	}
	_, statErr := dirty()
	if fs.Type == unix.TMPFS_MAGIC || errors.Is(statErr, unix.ENOSYS) {
		// tmpfs has no disk to write to, and an older kernel cannot count
		// dirty pages: only the writebacks' count says they happened.
		for deadline := time.Now().Add(5 * time.Second); e.wb.runs.Load() == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no writeback started in 5 s; disabled: %v", e.wb.disabled.Load())
			}
		}
		t.Logf("file system %#x, cachestat: %v: %d writebacks started", fs.Type, statErr, e.wb.runs.Load())
		return
	}
	if statErr != nil {
		t.Fatal(statErr)
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := dirty()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the WAL still has %d dirty pages 5 s after the last commit; %d writebacks started, disabled: %v",
				n, e.wb.runs.Load(), e.wb.disabled.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e.walCk.runs.Load() != checkpoints {
		t.Fatal("a checkpoint ran: the test cannot tell who wrote the WAL back")
	}
	if e.wb.disabled.Load() || e.wb.runs.Load() == 0 {
		t.Fatalf("writeback disabled %v after %d runs", e.wb.disabled.Load(), e.wb.runs.Load())
	}
	t.Logf("%d events in %d commits; %d writebacks started; the WAL is clean", len(events), e.commits.Load(), e.wb.runs.Load())
}
