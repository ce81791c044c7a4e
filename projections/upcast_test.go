package projections_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/projections"
	"github.com/ledgerq/ledgerq/queries"
	"github.com/ledgerq/ledgerq/tests/evidence/oldlog"
)

var upcastBase = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func upcastStore(t *testing.T, path string, up eventstore.Upcasters) *eventstore.Store {
	t.Helper()
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	s, err := eventstore.Open(path, eventstore.Options{Logger: quiet, Upcasters: up})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// upcastEngine builds a read model from the whole of store, upcasting as
// `ledgerq serve` does (Upcast nil: events are taken as the store gives
// them).
func upcastEngine(t *testing.T, store *eventstore.Store, upcast bool) (*projections.Engine, error) {
	t.Helper()
	cfg := projections.Config{Path: filepath.Join(t.TempDir(), "readmodel.db"), Source: store,
		Now: func() time.Time { return upcastBase }}
	if upcast {
		cfg.Upcast = store.Upcast
	}
	e, err := projections.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, e.CatchUp(context.Background())
}

// readModelOf is everything the read model answers about the story's queue
// and messages at upcastBase.
type readModelOf struct {
	Queue    queries.Queue
	Listed   []queries.ListedMessage
	Messages []queries.MessageDetail
}

func readModel(t *testing.T, e *projections.Engine, st *oldlog.Story) readModelOf {
	t.Helper()
	ctx := context.Background()
	var out readModelOf
	var err error
	if out.Queue, err = e.Queue(ctx, oldlog.Queue, upcastBase); err != nil {
		t.Fatal(err)
	}
	if out.Listed, err = e.Messages(ctx, queries.MessageFilter{Queue: oldlog.Queue, Limit: 100, IncludeBody: true, Now: upcastBase}); err != nil {
		t.Fatal(err)
	}
	for _, name := range oldlog.Names {
		m, err := e.Message(ctx, st.IDs[name], upcastBase)
		if err != nil {
			t.Fatalf("message %s: %v", name, err)
		}
		out.Messages = append(out.Messages, m)
	}
	return out
}

// TestLeasedV1ProjectsLikeV2: a log whose MessageLeased events were written
// in schema version 1 gives, through the upcasters, the same point-in-time
// state at every position and the same read models as the same history
// written in version 2; the read model shows the deadline version 1 meant.
func TestLeasedV1ProjectsLikeV2(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v1, err := oldlog.Write(filepath.Join(dir, "v1.db"), oldlog.LeasedV1, upcastBase)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := oldlog.Write(filepath.Join(dir, "v2.db"), oldlog.LeasedV2, upcastBase)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Head != v2.Head {
		t.Fatalf("heads %d and %d: the logs tell different histories", v1.Head, v2.Head)
	}
	s1 := upcastStore(t, filepath.Join(dir, "v1.db"), eventstore.UpcastersOf(domain.Upcasters()))
	s2 := upcastStore(t, filepath.Join(dir, "v2.db"), eventstore.UpcastersOf(domain.Upcasters()))

	for pos := int64(1); pos <= v1.Head; pos++ {
		got, err := projections.StateAt(ctx, s1, pos, time.Time{})
		if err != nil {
			t.Fatalf("v1 state at %d: %v", pos, err)
		}
		want, err := projections.StateAt(ctx, s2, pos, time.Time{})
		if err != nil {
			t.Fatalf("v2 state at %d: %v", pos, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("state at %d differs:\nv1 %+v\nv2 %+v", pos, got, want)
		}
	}
	head, err := projections.StateAt(ctx, s1, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(head.Queues) != 1 || head.Queues[0].Stats.InFlight != int64(len(v1.InFlight)) ||
		head.Queues[0].Stats.Ready != int64(len(v1.Ready)) {
		t.Fatalf("state at the head = %+v, want %d in flight and %d ready", head, len(v1.InFlight), len(v1.Ready))
	}

	e1, err := upcastEngine(t, s1, true)
	if err != nil {
		t.Fatalf("read model of the v1 log: %v", err)
	}
	e2, err := upcastEngine(t, s2, true)
	if err != nil {
		t.Fatalf("read model of the v2 log: %v", err)
	}
	got, want := readModel(t, e1, v1), readModel(t, e2, v2)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read models differ:\nv1 %+v\nv2 %+v", got, want)
	}
	for i, name := range oldlog.Names {
		m := got.Messages[i]
		l, leased := v1.Leases[name]
		inFlight := name == oldlog.Held || name == oldlog.Overdue
		switch {
		case inFlight && (m.LeaseExpiresAt == nil || !m.LeaseExpiresAt.Equal(l.ExpiresAt)):
			t.Errorf("%s: lease_expires_at %v, want %s (leased_at + visibility_timeout_ms)", name, m.LeaseExpiresAt, l.ExpiresAt)
		case !inFlight && m.LeaseExpiresAt != nil:
			t.Errorf("%s: lease_expires_at %v on a message not in flight", name, m.LeaseExpiresAt)
		case leased && m.ReceiveCount != l.ReceiveCount:
			t.Errorf("%s: receive_count %d, want %d", name, m.ReceiveCount, l.ReceiveCount)
		}
	}
}

// TestLeasedV1WithoutUpcasterIsRefused is the control: without the
// upcaster the v1 events are refused by the projections rather than
// misread, so the equality above is the upcaster's doing.
func TestLeasedV1WithoutUpcasterIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	if _, err := oldlog.Write(path, oldlog.LeasedV1, upcastBase); err != nil {
		t.Fatal(err)
	}
	bare := upcastStore(t, path, nil)
	if _, err := projections.StateAt(context.Background(), bare, 0, time.Time{}); !errors.Is(err, projections.ErrUnsupportedEvent) {
		t.Errorf("StateAt over v1 events without upcaster: %v, want ErrUnsupportedEvent", err)
	}
	if _, err := upcastEngine(t, bare, false); !errors.Is(err, projections.ErrUnsupportedEvent) {
		t.Errorf("read model of v1 events without upcaster: %v, want ErrUnsupportedEvent", err)
	}
}
