package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/tests/evidence/oldlog"
)

// upcastBase is the moment the old history leads up to; the command side
// runs at upcastBase plus one second, with a fixed clock.
var upcastBase = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func upcastQuiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// upcastStore opens a log written by oldlog, with or without upcasters.
func upcastStore(t *testing.T, path string, up eventstore.Upcasters) *eventstore.Store {
	t.Helper()
	s, err := eventstore.Open(path, eventstore.Options{Logger: upcastQuiet(), Upcasters: up})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// upcastApp starts the command side over store with the clock fixed at
// upcastBase + 1s.
func upcastApp(t *testing.T, store *eventstore.Store) (*commands.App, error) {
	t.Helper()
	now := upcastBase.Add(time.Second)
	a, err := commands.New(store, commands.Options{Logger: upcastQuiet(), Clock: func() time.Time { return now }})
	if err == nil {
		t.Cleanup(func() { _ = a.Close() })
	}
	return a, err
}

// waitHead waits until the store's head reaches pos: the scheduler appends
// on its own goroutine.
func waitHead(t *testing.T, s *eventstore.Store, pos int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Head() < pos {
		if time.Now().After(deadline) {
			t.Fatalf("head stayed at %d, want %d", s.Head(), pos)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLeasedV1ReplaysToTheV2State: a log whose MessageLeased events were
// written in schema version 1 (visibility_timeout_ms from leased_at) gives,
// through the domain's upcasters, the same command state as the same history
// written in version 2, and the leases' deadlines are the ones version 1
// meant: the overdue lease is expired by the scheduler, the held one is
// still honoured.
func TestLeasedV1ReplaysToTheV2State(t *testing.T) {
	ctx := commands.WithCaller(context.Background(), commands.Caller{Subject: "upcast-test"})
	dir := t.TempDir()
	v1, err := oldlog.Write(filepath.Join(dir, "v1.db"), oldlog.LeasedV1, upcastBase)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := oldlog.Write(filepath.Join(dir, "v2.db"), oldlog.LeasedV2, upcastBase)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Head != v1.Head || !reflect.DeepEqual(v2.IDs, v1.IDs) {
		t.Fatalf("the two logs tell different histories: heads %d and %d", v1.Head, v2.Head)
	}
	held := v1.Leases[oldlog.Held]
	var stored map[string]any
	if err := json.Unmarshal(held.Data, &stored); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored["lease_expires_at"]; ok || held.SchemaVersion != 1 || stored["visibility_timeout_ms"] == nil {
		t.Fatalf("the v1 log does not hold the v1 shape: version %d, %s", held.SchemaVersion, held.Data)
	}

	s1 := upcastStore(t, filepath.Join(dir, "v1.db"), eventstore.UpcastersOf(domain.Upcasters()))
	s2 := upcastStore(t, filepath.Join(dir, "v2.db"), eventstore.UpcastersOf(domain.Upcasters()))
	a1, err := upcastApp(t, s1)
	if err != nil {
		t.Fatalf("command side over the v1 log: %v", err)
	}
	a2, err := upcastApp(t, s2)
	if err != nil {
		t.Fatalf("command side over the v2 log: %v", err)
	}

	// The overdue lease's deadline (leased_at + 30 s) passed before the
	// clock: each scheduler logs its expiry, and nothing else is due.
	for _, s := range []*eventstore.Store{s1, s2} {
		waitHead(t, s, v1.Head+1)
		var last eventstore.Event
		if err := s.ReadAll(ctx, v1.Head, func(e eventstore.Event) error { last = e; return nil }); err != nil {
			t.Fatal(err)
		}
		var exp domain.MessageLeaseExpired
		if err := json.Unmarshal(last.Data, &exp); err != nil || last.Type != domain.TypeMessageLeaseExpired ||
			exp.MessageID != v1.IDs[oldlog.Overdue] {
			t.Fatalf("%s: event after the history = %s %s, want the overdue lease's expiry", s.Path(), last.Type, last.Data)
		}
	}

	snap1, err := a1.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap2, err := a2.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(snap1, snap2) {
		t.Fatalf("command state over the v1 log differs from the v2 one:\nv1 %+v\nv2 %+v", snap1, snap2)
	}
	q := snap1[oldlog.Queue]
	if got, want := len(q.Messages), v1.Published-v1.AckedCount; got != want {
		t.Fatalf("%d live messages, want %d", got, want)
	}
	for _, m := range q.Messages {
		if m.ID != v1.IDs[oldlog.Held] {
			if m.Leased {
				t.Errorf("message %s is leased; only %s should be", m.ID, oldlog.Held)
			}
			continue
		}
		if !m.Leased || !m.Due.Equal(held.ExpiresAt) {
			t.Errorf("held message: leased %v until %s, want leased until %s", m.Leased, m.Due, held.ExpiresAt)
		}
	}

	// Both command sides judge receipts alike: the held lease is valid, the
	// overdue one was lost to the expiry.
	for name, a := range map[string]*commands.App{"v1": a1, "v2": a2} {
		if _, err := a.Ack(ctx, commands.Ack{Queue: oldlog.Queue, Receipt: v1.Leases[oldlog.Overdue].Receipt}); !errors.Is(err, domain.ErrLeaseMismatch) {
			t.Errorf("%s: ack of the overdue receipt: %v, want lease_mismatch", name, err)
		}
		r, err := a.Ack(ctx, commands.Ack{Queue: oldlog.Queue, Receipt: held.Receipt})
		if err != nil || r.ID != v1.IDs[oldlog.Held] {
			t.Errorf("%s: ack of the held receipt: %+v, %v", name, r, err)
		}
	}
}

// TestLeasedV1WithoutUpcasterIsNotTheV2State is the control of the test
// above: read without the upcaster, the v1 log does not give the v2 state,
// so the equality there is the upcaster's doing.
func TestLeasedV1WithoutUpcasterIsNotTheV2State(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := oldlog.Write(filepath.Join(dir, "v1.db"), oldlog.LeasedV1, upcastBase); err != nil {
		t.Fatal(err)
	}
	v2, err := oldlog.Write(filepath.Join(dir, "v2.db"), oldlog.LeasedV2, upcastBase)
	if err != nil {
		t.Fatal(err)
	}
	// The v2 state once its scheduler expired the overdue lease: whether or
	// not the bare reader's scheduler acted yet, its held lease cannot
	// match it (no deadline, or expired at once).
	s2 := upcastStore(t, filepath.Join(dir, "v2.db"), eventstore.UpcastersOf(domain.Upcasters()))
	a2, err := upcastApp(t, s2)
	if err != nil {
		t.Fatal(err)
	}
	waitHead(t, s2, v2.Head+1)
	want, err := a2.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}

	bare := upcastStore(t, filepath.Join(dir, "v1.db"), nil)
	a1, err := upcastApp(t, bare)
	if err != nil {
		return // refusing the old shape outright is a difference too
	}
	got, err := a1.Snapshot(ctx)
	if err != nil {
		return
	}
	if reflect.DeepEqual(got, want) {
		t.Fatal("the v1 log read without upcasters gives the v2 state: the upcast test above proves nothing")
	}
}
