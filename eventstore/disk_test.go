package eventstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore"
)

// bigEvent is an event whose payload needs many new pages.
func bigEvent(size int) eventstore.NewEvent {
	return newEvent("Big", `{"blob":"`+strings.Repeat("x", size)+`"}`)
}

type headState struct {
	head    int64
	hash    string
	version int64
}

func headOf(s *eventstore.Store, stream string) headState {
	return headState{s.Head(), s.HeadHash(), s.StreamVersion(stream)}
}

// waitQueueEmpty waits until the writer has taken every queued request.
func waitQueueEmpty(t *testing.T, s *eventstore.Store) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.Stats().Queued > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writer never took the queued request")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDiskFullFailsTheBatch makes the database unable to grow (PRAGMA
// max_page_count, which fails an INSERT with SQLITE_FULL exactly like a full
// disk) and checks that the whole batch fails with ErrUnavailable, nothing
// is written, the heads stay at the last commit, and the store works again
// once there is room.
func TestDiskFullFailsTheBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openWith(t, path, eventstore.Options{BusyTimeout: time.Minute, Logger: quietLogger()})
	for range 10 {
		mustAppend(t, s, appendReq("d", eventstore.AnyVersion, newEvent("D", `{}`)))
	}
	pages, err := eventstore.QueryWriterInt(s, "PRAGMA page_count")
	if err != nil {
		t.Fatal(err)
	}
	if err := eventstore.ExecWriter(s, "PRAGMA max_page_count = "+itoa(pages)); err != nil {
		t.Fatal(err)
	}
	before := headOf(s, "d")

	// Line up three requests in one batch: the writer is kept busy with a
	// first one while the write lock is held elsewhere.
	release := holdWriteLock(t, path)
	first := s.Submit(appendReq("d", before.version, newEvent("D", `{"first":true}`)))
	waitQueueEmpty(t, s)
	batch := []*eventstore.Pending{
		s.Submit(appendReq("d", eventstore.AnyVersion, newEvent("D", `{"small":1}`))),
		s.Submit(appendReq("big", eventstore.NoStream, bigEvent(64<<10))),
		s.Submit(appendReq("d", eventstore.AnyVersion, newEvent("D", `{"small":2}`))),
	}
	release()
	if _, err := first.Wait(testCtx(t)); err != nil {
		t.Fatalf("first request (no new page needed): %v", err)
	}
	afterFirst := headOf(s, "d")
	for i, p := range batch {
		_, err := p.Wait(testCtx(t))
		if !errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, eventstore.ErrConcurrency) {
			t.Fatalf("request %d of the failed batch: %v, want ErrUnavailable", i, err)
		}
	}
	if got := headOf(s, "d"); got != afterFirst || s.StreamVersion("big") != 0 {
		t.Fatalf("heads moved by a failed batch: %+v, want %+v", got, afterFirst)
	}
	if n := countEvents(t, s); n != afterFirst.head {
		t.Fatalf("log holds %d events, want %d", n, afterFirst.head)
	}

	if err := eventstore.ExecWriter(s, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	res := mustAppend(t, s, appendReq("big", eventstore.NoStream, bigEvent(64<<10)))
	if e := res.Events[0]; e.Position != afterFirst.head+1 || e.PrevHash != afterFirst.hash {
		t.Errorf("append after the failure got position %d prev %s, want %d %s", e.Position, e.PrevHash, afterFirst.head+1, afterFirst.hash)
	}
	if rep, err := s.Verify(testCtx(t), 0, 0); err != nil || !rep.OK {
		t.Errorf("Verify: %+v, %v", rep, err)
	}
	if st := s.Stats(); st.FailedCommits != 1 {
		t.Errorf("FailedCommits = %d, want 1", st.FailedCommits)
	}
}

func countEvents(t *testing.T, s *eventstore.Store) int64 {
	t.Helper()
	var n int64
	if err := s.ReadAll(testCtx(t), 0, func(eventstore.Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestRealDiskFull runs the store on a tiny tmpfs, fills it, and checks
// that an append that needs space fails with ErrUnavailable, changes
// nothing, and that the store recovers when space is freed. It needs root
// (mount); elsewhere it is skipped.
func TestRealDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs; TestDiskFullFailsTheBatch covers the same path with max_page_count")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); TestDiskFullFailsTheBatch covers the same path", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	path := filepath.Join(dir, "events.db")
	s := openWith(t, path, eventstore.Options{Logger: quietLogger()})
	for range 20 {
		mustAppend(t, s, appendReq("d", eventstore.AnyVersion, newEvent("D", `{}`)))
	}
	before := headOf(s, "d")

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	_, err := s.Append(testCtx(t), appendReq("d", before.version, bigEvent(1<<20)))
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append on a full disk: %v, want ErrUnavailable", err)
	}
	t.Logf("append on a full disk: %v", err)
	if got := headOf(s, "d"); got != before {
		t.Fatalf("heads moved by a failed append: %+v, want %+v", got, before)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	res := mustAppend(t, s, appendReq("d", before.version, bigEvent(1<<20)))
	if e := res.Events[0]; e.Position != before.head+1 || e.PrevHash != before.hash || e.Version != before.version+1 {
		t.Errorf("append after freeing space got v%d at %d, want v%d at %d", e.Version, e.Position, before.version+1, before.head+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := eventstore.VerifyFile(testCtx(t), path, 0, 0)
	if err != nil || !rep.OK || rep.HeadPosition != before.head+1 {
		t.Errorf("VerifyFile after recovery: %+v, %v", rep, err)
	}
}

// fillDisk writes to name until the file system is full.
func fillDisk(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	// Use up the last partial chunk too.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			break
		}
	}
}
