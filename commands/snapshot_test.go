package commands

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// openStoreAt opens a real event store on path, closed at the end of the
// test (closing twice is fine).
func openStoreAt(t testing.TB, path string) *eventstore.Store {
	t.Helper()
	s, err := eventstore.Open(path, eventstore.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// copyLog copies a closed store's files (a backup, or a second universe
// with the same history) to a new directory and returns the copy's path.
func copyLog(t testing.TB, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "events.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(path + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// startApp starts an App on store with a snapshot path ("" for none).
func startApp(t testing.TB, store EventStore, c *clock, snapshot string) *App {
	t.Helper()
	opts := Options{Logger: quietLogger(), SnapshotPath: snapshot}
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

// idle reports that the scheduler has nothing due at the App's now: a
// restart at the same time then starts without scheduler work.
func idle(a *App) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	now := a.now()
	for _, qs := range a.queues {
		qs.mu.Lock()
		due, ok := qs.agg.NextDue(now)
		qs.mu.Unlock()
		if ok && !due.After(now) {
			return false
		}
	}
	return true
}

func snapshotOf(t testing.TB, a *App) map[string]domain.Snapshot {
	t.Helper()
	s, err := a.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sameState(t testing.TB, what string, got, want map[string]domain.Snapshot) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d queues, want %d", what, len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("%s: queue %q is missing", what, name)
		}
		if reflect.DeepEqual(g, w) {
			continue
		}
		// Say where, not just that: the states are large.
		gm, wm := g.Messages, w.Messages
		g.Messages, w.Messages = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: queue %q differs\ngot  %+v\nwant %+v", what, name, g, w)
		}
		for i := range max(len(gm), len(wm)) {
			var x, y domain.MessageState
			if i < len(gm) {
				x = gm[i]
			}
			if i < len(wm) {
				y = wm[i]
			}
			if x != y {
				t.Fatalf("%s: queue %q: message %d of %d/%d differs\ngot  %+v\nwant %+v", what, name, i, len(gm), len(wm), x, y)
			}
		}
	}
}

// workloadBefore runs a bit of everything: queues created and configured,
// delayed and deduplicated publishes, receive, ack, nack, extend, lease
// expiry and dead-lettering by the scheduler, redrive, purge, and a queue
// deleted and created again.
func workloadBefore(t *testing.T, a *App, c *clock, s EventStore) {
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	mustCreate(t, a, "orders", domain.AttributesPatch{VisibilityTimeoutMS: i64(1000), DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(2)})
	mustCreate(t, a, "tmp", domain.AttributesPatch{})
	mustCreate(t, a, "retry", domain.AttributesPatch{DelayMS: i64(2000)})
	if _, err := a.ConfigureQueue(ctxT(), ConfigureQueue{Name: "retry", Attributes: domain.AttributesPatch{RetentionMS: i64(600000)}}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		m := Message{Body: fmt.Sprint("m", i), Headers: map[string]string{"i": fmt.Sprint(i)}}
		if i%3 == 0 {
			m.DedupID = fmt.Sprint("d", i%7) // some are duplicates
		}
		if i%5 == 0 {
			m.DelayMS = i64(5000)
		}
		if _, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: m}); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Duration(i%2) * time.Millisecond) // ties and steps
	}
	if _, err := a.PublishBatch(ctxT(), PublishBatch{Queue: "retry", Messages: []Message{{Body: "r1"}, {Body: "r2", DedupID: "x"}, {Body: "r3"}}}); err != nil {
		t.Fatal(err)
	}
	ms := mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 12})
	if len(ms) != 12 {
		t.Fatalf("received %d messages", len(ms))
	}
	for i, m := range ms {
		var err error
		switch i % 4 {
		case 0:
			_, err = a.Ack(ctxT(), Ack{Queue: "orders", Receipt: m.Receipt})
		case 1:
			_, err = a.Nack(ctxT(), Nack{Queue: "orders", Receipt: m.Receipt, DelayMS: 100})
		case 2:
			_, err = a.Extend(ctxT(), Extend{Queue: "orders", Receipt: m.Receipt, VisibilityTimeoutMS: 3000})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 5})
	advance(a, c, 1500*time.Millisecond)
	// Everything ready now, some of it for the second time: those are
	// dead-lettered when their lease expires, the others become ready.
	waitUntil(t, "the leases expired", func() bool {
		return len(eventsOfType(logged(t, s), domain.TypeMessageLeaseExpired)) >= 8
	})
	ms = mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 100})
	for _, m := range ms[:3] {
		if _, err := a.Ack(ctxT(), Ack{Queue: "orders", Receipt: m.Receipt}); err != nil {
			t.Fatal(err)
		}
	}
	advance(a, c, 1500*time.Millisecond)
	waitUntil(t, "something was dead-lettered", func() bool {
		return len(eventsOfType(logged(t, s), domain.TypeMessageDeadLettered)) > 0
	})
	if _, err := a.Redrive(ctxT(), Redrive{Queue: "dlq", MaxMessages: 1}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, a, "tmp", "gone")
	if _, err := a.DeleteQueue(ctxT(), DeleteQueue{Name: "tmp"}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, a, "tmp", domain.AttributesPatch{VisibilityTimeoutMS: i64(500)})
	mustPublish(t, a, "tmp", "reborn")
	mustReceive(t, a, Receive{Queue: "tmp"}) // leased at the snapshot
	mustPublish(t, a, "dlq", "straight to the dlq")
	if _, err := a.PurgeQueue(ctxT(), PurgeQueue{Name: "retry"}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, a, "retry", "delayed after the purge")
	mustReceive(t, a, Receive{Queue: "dlq"}) // a leased dead-letter copy
}

// workloadAfter continues after a snapshot: duplicates of dedup ids seen
// before it, leases taken before it acked and expired, more of everything.
func workloadAfter(t *testing.T, a *App, c *clock, s EventStore) {
	for i := range 20 {
		m := Message{Body: fmt.Sprint("n", i)}
		if i%2 == 0 {
			m.DedupID = fmt.Sprint("d", i%9)
		}
		r, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: m})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && !r.Duplicate {
			t.Fatal("a dedup id remembered by the snapshot was forgotten")
		}
	}
	advance(a, c, 600*time.Millisecond) // the tmp lease taken before the snapshot expires
	if again := mustReceive(t, a, Receive{Queue: "tmp", WaitMS: 5000}); len(again) != 1 || again[0].ReceiveCount != 2 {
		t.Fatalf("after the lease expiry: %+v", again)
	}
	ms := mustReceive(t, a, Receive{Queue: "orders", MaxMessages: 8})
	for i, m := range ms {
		if i%2 == 0 {
			if _, err := a.Ack(ctxT(), Ack{Queue: "orders", Receipt: m.Receipt}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := a.ConfigureQueue(ctxT(), ConfigureQueue{Name: "orders", Attributes: domain.AttributesPatch{MaxReceiveCount: intp(3)}}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, a, "dlq", "after")
	if _, err := a.DeleteQueue(ctxT(), DeleteQueue{Name: "tmp"}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, a, "fresh", domain.AttributesPatch{})
	mustPublish(t, a, "fresh", "new queue after the snapshot")
}

// TestSnapshotStartEqualsFullReplay: a start from a snapshot plus the log
// after it gives exactly the state of a full replay and of the live App,
// and both decide the same from there on.
func TestSnapshotStartEqualsFullReplay(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "events.db")
	snap := filepath.Join(dir, "commands.snapshot")
	s := openStoreAt(t, logPath)
	c := newClock()
	a := startApp(t, s, c, snap)
	if a.Startup().SnapshotUsed || a.Startup().SnapshotProblem != "no snapshot file yet" {
		t.Fatalf("first start: %+v", a.Startup())
	}
	workloadBefore(t, a, c, s)
	pos, err := a.WriteSnapshot(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if pos != s.Head() {
		t.Fatalf("snapshot at %d, head %d", pos, s.Head())
	}
	workloadAfter(t, a, c, s)
	waitUntil(t, "the scheduler is idle", func() bool { return idle(a) })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	live := snapshotOf(t, a)
	head := s.Head()

	fromSnap := startApp(t, s, c, snap)
	st := fromSnap.Startup()
	if !st.SnapshotUsed || st.SnapshotPosition != pos || st.SnapshotQueues != 4 || st.Replayed != head-pos || st.SnapshotProblem != "" {
		t.Fatalf("start from the snapshot: %+v (snapshot at %d, head %d)", st, pos, head)
	}
	full := startApp(t, s, c, "")
	if full.Startup().SnapshotUsed || full.Startup().Replayed != head {
		t.Fatalf("full replay: %+v", full.Startup())
	}
	sameState(t, "from the snapshot vs live", snapshotOf(t, fromSnap), live)
	sameState(t, "full replay vs live", snapshotOf(t, full), live)
	fromSnap.Close()
	full.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Two universes with the same log: one starts from the snapshot, the
	// other from the whole log; the same commands must get the same
	// messages and leave the same state.
	s1, s2 := openStoreAt(t, copyLog(t, logPath)), openStoreAt(t, copyLog(t, logPath))
	c1, c2 := newClock(), newClock()
	c1.t, c2.t = c.Now(), c.Now()
	b1 := startApp(t, s1, c1, snap)
	b2 := startApp(t, s2, c2, "")
	if !b1.Startup().SnapshotUsed {
		t.Fatalf("the copy did not use the snapshot: %+v", b1.Startup())
	}
	got := 0
	receive := func(queue string, max int) {
		t.Helper()
		r1 := mustReceive(t, b1, Receive{Queue: queue, MaxMessages: max})
		r2 := mustReceive(t, b2, Receive{Queue: queue, MaxMessages: max})
		if len(r1) != len(r2) {
			t.Fatalf("%s: %d messages from the snapshot's App, %d from the full replay's", queue, len(r1), len(r2))
		}
		for i := range r1 {
			// Copies made by dead-lettering or redrive in each universe
			// get ids of their own; everything else must agree.
			x, y := r1[i], r2[i]
			sameID := x.ID == y.ID || queue == "dlq" || x.ReceiveCount == 1 && strings.HasPrefix(x.Body, "m")
			if !sameID || x.Body != y.Body || x.ReceiveCount != y.ReceiveCount || !x.LeaseExpiresAt.Equal(y.LeaseExpiresAt) {
				t.Fatalf("%s message %d: %+v from the snapshot's App, %+v from the full replay's", queue, i, x, y)
			}
		}
		got += len(r1)
	}
	for _, q := range []string{"orders", "dlq", "retry", "fresh"} {
		receive(q, 3)
	}
	sameState(t, "the two universes", normalized(snapshotOf(t, b1)), normalized(snapshotOf(t, b2)))
	// Let leases expire, delays pass and dead-lettering happen in both.
	for range 3 {
		advance(b1, c1, 4*time.Second)
		advance(b2, c2, 4*time.Second)
		waitUntil(t, "both schedulers caught up", func() bool {
			return b1.Head() == b2.Head() && reflect.DeepEqual(normalized(snapshotOf(t, b1)), normalized(snapshotOf(t, b2)))
		})
		for _, q := range []string{"orders", "dlq", "retry", "fresh"} {
			receive(q, 4)
		}
	}
	if got < 10 || b1.Head() <= head {
		t.Fatalf("the universes decided little: %d messages received", got)
	}
	t.Logf("%d messages received in each universe; the log grew from %d to %d events", got, head, b1.Head())
}

// normalized leaves out of a state what two universes with the same
// history draw at random (receipts, the ids of dead-letter and redrive
// copies) and what depends on the order the scheduler visits queues in
// (global positions).
func normalized(m map[string]domain.Snapshot) map[string]domain.Snapshot {
	out := make(map[string]domain.Snapshot, len(m))
	for name, s := range m {
		s.Messages = slices.Clone(s.Messages)
		for i := range s.Messages {
			s.Messages[i].ID, s.Messages[i].ReceiptHash, s.Messages[i].PublishedPosition = "", "", 0
		}
		out[name] = s
	}
	return out
}

// TestSnapshotFallsBack: a snapshot that is damaged, of another log, or
// ahead of the log (an older backup of the log restored) is not used: New
// says why in a warning and rebuilds from the whole log.
func TestSnapshotFallsBack(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "events.db")
	s := openStoreAt(t, logPath)
	c := newClock()
	a := startApp(t, s, c, "")
	workloadBefore(t, a, c, s)
	waitUntil(t, "the scheduler is idle", func() bool { return idle(a) })
	a.Close()
	backupHead := s.Head()
	s.Close()
	backup := copyLog(t, logPath)
	// Apps on the backup run at the time it was taken, when their
	// schedulers have nothing to do.
	cb := newClock()
	cb.t = c.Now()

	s = openStoreAt(t, logPath)
	a = startApp(t, s, c, "")
	workloadAfter(t, a, c, s)
	waitUntil(t, "the scheduler is idle", func() bool { return idle(a) })
	good := filepath.Join(dir, "good.snapshot")
	pos, err := a.WriteSnapshot(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	// Another log, about as long, with its own history.
	other := openStoreAt(t, filepath.Join(t.TempDir(), "events.db"))
	oa := startApp(t, other, newClock(), "")
	mustCreate(t, oa, "orders", domain.AttributesPatch{})
	for other.Head() < pos {
		mustPublish(t, oa, "orders", "elsewhere")
	}
	otherSnap := filepath.Join(dir, "other.snapshot")
	if _, err := oa.WriteSnapshot(context.Background(), otherSnap); err != nil {
		t.Fatal(err)
	}
	oa.Close()

	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := slices.Clone(goodBytes)
	flipped[len(flipped)/2] ^= 0x40
	future := slices.Clone(goodBytes)
	future[len(snapshotMagic)+3]++

	cases := []struct {
		name, path, why string
		log             string // "" is the log the snapshot was taken of
	}{
		{"flipped byte", write("flipped", flipped), "checksum mismatch", ""},
		{"truncated", write("truncated", goodBytes[:len(goodBytes)-100]), "checksum mismatch", ""},
		{"cut to the header", write("header", goodBytes[:10]), "too short", ""},
		{"empty", write("empty", nil), "too short", ""},
		{"not a snapshot", write("text", []byte(strings.Repeat("not a snapshot at all ", 10))), "not a ledgerq command-state snapshot", ""},
		{"future format", write("future", future), "format version 2", ""},
		{"another log", otherSnap, "another log", ""},
		{"older backup", good, "the log ends at", backup},
	}
	full := startApp(t, s, c, "")
	want := snapshotOf(t, full)
	full.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := EventStore(s)
			expect := want
			if tc.log != "" {
				bs := openStoreAt(t, copyLog(t, tc.log))
				fb := startApp(t, bs, cb, "")
				expect = snapshotOf(t, fb)
				fb.Close()
				store = bs
			}
			logger, hook := logtest.NewNullLogger()
			clk := c
			if tc.log != "" {
				clk = cb
			}
			b, err := New(store, Options{Logger: logger, Clock: clk.Now, SnapshotPath: tc.path})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			st := b.Startup()
			if st.SnapshotUsed || !strings.Contains(st.SnapshotProblem, tc.why) || st.Replayed != store.Head() {
				t.Fatalf("startup %+v, want a full replay because %q", st, tc.why)
			}
			warned := false
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "snapshot not used") {
					if err, _ := e.Data[logrus.ErrorKey].(error); err != nil && strings.Contains(err.Error(), tc.why) {
						warned = true
					}
				}
			}
			if !warned {
				t.Fatalf("no warning saying %q; log: %+v", tc.why, hook.AllEntries())
			}
			sameState(t, "after the fallback", snapshotOf(t, b), expect)
		})
	}

	// The backup, once it has grown past the snapshot's position with a
	// history of its own, is told apart by the hash of the event there.
	t.Run("diverged backup", func(t *testing.T) {
		bs := openStoreAt(t, copyLog(t, backup))
		ba := startApp(t, bs, cb, "")
		for bs.Head() < pos+5 {
			mustPublish(t, ba, "orders", "written after the restore")
		}
		wantB := snapshotOf(t, ba)
		ba.Close()
		b := startApp(t, bs, cb, good)
		if st := b.Startup(); st.SnapshotUsed || !strings.Contains(st.SnapshotProblem, "another log") {
			t.Fatalf("startup %+v", st)
		}
		sameState(t, "after the fallback", snapshotOf(t, b), wantB)
	})

	// And the good snapshot is used on its own log.
	b := startApp(t, s, c, good)
	if !b.Startup().SnapshotUsed {
		t.Fatalf("the good snapshot was not used: %+v", b.Startup())
	}
	sameState(t, "from the good snapshot", snapshotOf(t, b), want)
	b.Close()

	// A snapshot whose copies hold events after the position its replay
	// starts from (as one taken under load does): on its own log the
	// replay skips what the copies hold; a backup that ends before the
	// copies do is refused, even though it holds the start position.
	early := write("early", withStart(t, goodBytes, backupHead))
	b = startApp(t, s, c, early)
	if st := b.Startup(); !st.SnapshotUsed || st.SnapshotPosition != backupHead || st.Replayed != s.Head()-backupHead {
		t.Fatalf("startup from a snapshot starting at %d: %+v", backupHead, st)
	}
	sameState(t, "from the early-starting snapshot", snapshotOf(t, b), want)
	b.Close()
	bs := openStoreAt(t, copyLog(t, backup))
	b = startApp(t, bs, cb, early)
	if st := b.Startup(); st.SnapshotUsed || !strings.Contains(st.SnapshotProblem, "the log ends at") {
		t.Fatalf("startup on the backup: %+v", st)
	}
}

// withStart rewrites a snapshot file's start position (and checksum).
func withStart(t testing.TB, file []byte, pos int64) []byte {
	t.Helper()
	b := slices.Clone(file)
	binary.BigEndian.PutUint64(b[len(snapshotMagic)+4:], uint64(pos))
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	copy(b[len(b)-sha256.Size:], sum[:])
	if _, err := parseSnapshot(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSnapshotOfAnEmptyLog: position 0 is a valid snapshot.
func TestSnapshotOfAnEmptyLog(t *testing.T) {
	s, _ := openStore(t)
	snap := filepath.Join(t.TempDir(), "commands.snapshot")
	a := startApp(t, s, nil, "")
	pos, err := a.WriteSnapshot(context.Background(), snap)
	if err != nil || pos != 0 {
		t.Fatalf("snapshot of an empty log: %d, %v", pos, err)
	}
	a.Close()
	b := startApp(t, s, nil, snap)
	if st := b.Startup(); !st.SnapshotUsed || st.SnapshotPosition != 0 || st.SnapshotQueues != 0 {
		t.Fatalf("startup %+v", st)
	}
	mustCreate(t, b, "q", domain.AttributesPatch{})
	mustPublish(t, b, "q", "x")
	checkRestart(t, b, s)
}

// TestPeriodicSnapshot: with SnapshotEvery set, a snapshot is written in
// the background once that many events were appended since the last one.
func TestPeriodicSnapshot(t *testing.T) {
	s, _ := openStore(t)
	dir := t.TempDir()
	snap := filepath.Join(dir, "commands.snapshot")
	// A temporary file left by a crash during a write is cleared away.
	stale := snap + ".tmp-12345"
	if err := os.WriteFile(stale, []byte("half a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(s, Options{Logger: quietLogger(), SnapshotPath: snap, SnapshotEvery: 30, SnapshotInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stale temporary file is still there: %v", err)
	}
	mustCreate(t, a, "q", domain.AttributesPatch{})
	for range 20 {
		mustPublish(t, a, "q", "x")
	}
	time.Sleep(50 * time.Millisecond) // ten checks
	if _, err := os.Stat(snap); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a snapshot was written after %d events: %v", s.Head(), err)
	}
	for range 15 {
		mustPublish(t, a, "q", "y")
	}
	waitUntil(t, "a snapshot was written", func() bool { return a.snapPos.Load() >= 30 })
	first := a.snapPos.Load()
	if _, err := os.Stat(snap); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		mustPublish(t, a, "q", "z")
	}
	waitUntil(t, "a second snapshot was written", func() bool { return a.snapPos.Load() >= first+30 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := startApp(t, s, nil, snap)
	if st := b.Startup(); !st.SnapshotUsed || st.SnapshotPosition < first+30 || st.Replayed != s.Head()-st.SnapshotPosition {
		t.Fatalf("startup %+v, head %d", st, s.Head())
	}
	sameState(t, "from the periodic snapshot", snapshotOf(t, b), snapshotOf(t, a))
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the snapshot directory holds %d files, want only the snapshot", len(entries))
	}
}

// TestSnapshotUnderLoad takes snapshots while publishers, consumers and
// the scheduler run: each one, with the log after it, must give the state
// a full replay gives.
func TestSnapshotUnderLoad(t *testing.T) {
	dir := t.TempDir()
	s := openStoreAt(t, filepath.Join(dir, "events.db"))
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.InfoLevel)
	// The restarts below run at the time the test started, before any
	// lease could expire: their schedulers add nothing to the log.
	frozen := newClock()
	frozen.t = time.Now()
	a, err := New(s, Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	mustCreate(t, a, "dlq", domain.AttributesPatch{})
	for _, q := range []string{"a", "b"} {
		mustCreate(t, a, q, domain.AttributesPatch{VisibilityTimeoutMS: i64(200), DeadLetterQueue: strp("dlq"), MaxReceiveCount: intp(2)})
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := []string{"a", "b"}[w/2]
			for i := 0; !stop.Load(); i++ {
				switch w % 2 {
				case 0:
					msgs := []Message{{Body: "x", DedupID: fmt.Sprint(w, "-", i%50)}, {Body: "y", DelayMS: i64(int64(i % 300))}}
					if _, err := a.PublishBatch(ctxT(), PublishBatch{Queue: q, Messages: msgs}); err != nil {
						t.Error(err)
						return
					}
				default:
					r, err := a.Receive(ctxT(), Receive{Queue: q, MaxMessages: 3})
					if err != nil {
						t.Error(err)
						return
					}
					for k, m := range r.Messages {
						if k == 0 {
							continue // left to expire, and in time dead-lettered
						}
						if _, err := a.Ack(ctxT(), Ack{Queue: q, Receipt: m.Receipt}); err != nil &&
							!errors.Is(err, domain.ErrLeaseMismatch) && !errors.Is(err, domain.ErrReceiptNotFound) {
							t.Error(err)
							return
						}
					}
				}
			}
		}()
	}
	var snaps []string
	var positions []int64
	for i := range 5 {
		time.Sleep(60 * time.Millisecond)
		p := filepath.Join(dir, fmt.Sprintf("s%d", i))
		pos, err := a.WriteSnapshot(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		snaps, positions = append(snaps, p), append(positions, pos)
	}
	stop.Store(true)
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	live := snapshotOf(t, a)
	full := startApp(t, s, frozen, "")
	sameState(t, "full replay vs live", snapshotOf(t, full), live)
	for i, p := range snaps {
		b := startApp(t, s, frozen, p)
		if st := b.Startup(); !st.SnapshotUsed || st.SnapshotPosition != positions[i] {
			t.Fatalf("snapshot %d: %+v", i, st)
		}
		sameState(t, fmt.Sprintf("from snapshot %d at %d", i, positions[i]), snapshotOf(t, b), live)
		b.Close()
	}
	if positions[len(positions)-1] == positions[0] {
		t.Fatal("nothing was appended while the snapshots were taken")
	}
	// Each write says how long it held the queues.
	written := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "commands: snapshot written" {
			if _, ok := e.Data["locked_ms"].(float64); !ok {
				t.Fatalf("snapshot log without locked_ms: %+v", e.Data)
			}
			written++
		}
	}
	if written != len(snaps) {
		t.Fatalf("%d snapshot log lines, want %d", written, len(snaps))
	}
}

// TestSnapshotOfABrokenQueue: a queue that a failed append left broken is
// rebuilt from the log before it goes into a snapshot.
func TestSnapshotOfABrokenQueue(t *testing.T) {
	s, _ := openStore(t)
	f := &faultyStore{Store: s}
	a := startApp(t, f, newClock(), "")
	mustCreate(t, a, "orders", domain.AttributesPatch{})
	mustPublish(t, a, "orders", "kept")
	f.failNext.Store(1)
	if _, err := a.Publish(ctxT(), Publish{Queue: "orders", Message: Message{Body: "lost"}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("failed append: %v", err)
	}
	snap := filepath.Join(t.TempDir(), "commands.snapshot")
	if _, err := a.WriteSnapshot(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	b := startApp(t, s, newClock(), snap)
	if !b.Startup().SnapshotUsed {
		t.Fatalf("startup %+v", b.Startup())
	}
	got := snapshotOf(t, b)["orders"]
	if len(got.Messages) != 1 || got.Version != 2 {
		t.Fatalf("the snapshot holds %+v, want only the kept message", got)
	}
	sameState(t, "from the snapshot", snapshotOf(t, b), snapshotOf(t, startApp(t, s, newClock(), "")))
}

// TestParseSnapshotNeverPanics: the file layer refuses damage at every
// length and every byte without panicking (the fuzz target below goes
// further).
func TestParseSnapshotNeverPanics(t *testing.T) {
	s, _ := openStore(t)
	a := startApp(t, s, newClock(), "")
	mustCreate(t, a, "q", domain.AttributesPatch{})
	mustPublish(t, a, "q", "x")
	p := filepath.Join(t.TempDir(), "s")
	if _, err := a.WriteSnapshot(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if _, err := parseSnapshot(b); err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		if _, err := parseSnapshot(b[:n]); err == nil {
			t.Fatalf("a cut to %d bytes parsed", n)
		}
	}
	for i := range b {
		c := slices.Clone(b)
		c[i] ^= 1
		if _, err := parseSnapshot(c); err == nil {
			t.Fatalf("a flipped bit at byte %d parsed", i)
		}
	}
}

// FuzzParseSnapshot feeds the file layer bodies that pass the checksum
// (the target appends it), so that the framing behind it is what gets
// fuzzed: it must refuse or parse, never panic, and what it parses goes
// through the queue decoder.
func FuzzParseSnapshot(f *testing.F) {
	s, _ := openStore(f)
	a := startApp(f, s, newClock(), "")
	mustCreate(f, a, "q", domain.AttributesPatch{})
	mustPublish(f, a, "q", "x")
	p := filepath.Join(f.TempDir(), "s")
	if _, err := a.WriteSnapshot(context.Background(), p); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	f.Add(b[:len(b)-sha256.Size])
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, body []byte) {
		sum := sha256.Sum256(body)
		sf, err := parseSnapshot(append(slices.Clone(body), sum[:]...))
		if err != nil {
			return
		}
		if sf.position < 0 || sf.end < sf.position {
			t.Fatalf("parsed positions %d, %d", sf.position, sf.end)
		}
		_, _ = decodeQueues(sf.queues)
	})
}
