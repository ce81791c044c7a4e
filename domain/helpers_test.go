package domain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func at(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// mid returns a deterministic message id for n.
func mid(n int) string {
	var id messageID
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	id[0] = 0x01
	return id.String()
}

func nonce(n int) [ReceiptNonceSize]byte {
	var b [ReceiptNonceSize]byte
	binary.BigEndian.PutUint64(b[8:], uint64(n)+0xabcdef)
	return b
}

func nonces(from, n int) [][ReceiptNonceSize]byte {
	out := make([][ReceiptNonceSize]byte, n)
	for i := range out {
		out[i] = nonce(from + i)
	}
	return out
}

func i64(v int64) *int64   { return &v }
func str(v string) *string { return &v }
func num(v int) *int       { return &v }

// world holds a few queues and every event they have recorded, so that a
// test can check at the end that replaying the log yields the same state.
type world struct {
	t      *testing.T
	queues map[string]*Queue
	log    []Event
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, queues: map[string]*Queue{}}
	t.Cleanup(w.checkReplay)
	return w
}

func (w *world) q(name string) *Queue {
	q, ok := w.queues[name]
	if !ok {
		q = NewQueue(name)
		w.queues[name] = q
	}
	return q
}

func (w *world) exists(name string) bool {
	q, ok := w.queues[name]
	return ok && q.Exists()
}

// given applies events as history.
func (w *world) given(events ...Event) {
	w.t.Helper()
	for _, e := range events {
		if err := w.q(e.QueueName()).Apply(e); err != nil {
			w.t.Fatalf("given %T: %v", e, err)
		}
		w.log = append(w.log, e)
	}
}

// recorded adds a decision's events to the log after checking it did not fail.
func (w *world) recorded(events []Event, err error) []Event {
	w.t.Helper()
	if err != nil {
		w.t.Fatalf("decision failed: %v", err)
	}
	w.log = append(w.log, events...)
	return events
}

// create creates a queue with default attributes at t0.
func (w *world) create(name string, p AttributesPatch) {
	w.t.Helper()
	w.recorded(w.q(name).Create(p, t0, w.exists))
}

func (w *world) publish(name string, n int, ms int64) {
	w.t.Helper()
	ev, _, err := w.q(name).Publish(NewMessage{ID: mid(n), Body: fmt.Sprintf("m%d", n)}, at(ms))
	w.recorded(ev, err)
}

func (w *world) receive(name string, max int, ms int64, nonceFrom int) []Lease {
	w.t.Helper()
	ev, leases, err := w.q(name).Receive(ReceiveRequest{MaxMessages: max, Nonces: nonces(nonceFrom, max)}, at(ms))
	w.recorded(ev, err)
	return leases
}

// checkReplay replays the log into fresh aggregates and compares snapshots.
func (w *world) checkReplay() {
	fresh := map[string]*Queue{}
	for _, e := range w.log {
		q, ok := fresh[e.QueueName()]
		if !ok {
			q = NewQueue(e.QueueName())
			fresh[e.QueueName()] = q
		}
		if err := q.Apply(e); err != nil {
			w.t.Errorf("replay %T: %v", e, err)
			return
		}
	}
	for name, live := range w.queues {
		if live.Version() == 0 {
			continue
		}
		got, want := fresh[name].Snapshot(), live.Snapshot()
		if !reflect.DeepEqual(got, want) {
			w.t.Errorf("replay of queue %q differs from the live state:\nreplayed %+v\nlive     %+v", name, got, want)
		}
	}
}

// thenEvents asserts the exact events.
func thenEvents(t *testing.T, got []Event, want ...Event) {
	t.Helper()
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		var b strings.Builder
		fmt.Fprintf(&b, "events differ\ngot:\n")
		for _, e := range got {
			fmt.Fprintf(&b, "  %T %+v\n", e, e)
		}
		fmt.Fprintf(&b, "want:\n")
		for _, e := range want {
			fmt.Fprintf(&b, "  %T %+v\n", e, e)
		}
		t.Fatal(b.String())
	}
}

// thenError asserts an error matching sentinel and, if field != "", its field.
func thenError(t *testing.T, err error, sentinel *Error, field string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %s", err, sentinel.Code)
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *domain.Error", err)
	}
	if field != "" && de.Field != field {
		t.Fatalf("error field = %q, want %q (%v)", de.Field, field, err)
	}
}

func created(name string, a Attributes) QueueCreated {
	return QueueCreated{Queue: name, Attributes: a, CreatedAt: t0}
}

func published(name string, n int, ms int64) MessagePublished {
	return MessagePublished{
		Queue: name, MessageID: mid(n), Body: fmt.Sprintf("m%d", n), BodyEncoding: EncodingUTF8,
		BodySize: int64(len(fmt.Sprintf("m%d", n))), PublishedAt: at(ms), AvailableAt: at(ms),
		ExpiresAt: at(ms + DefaultRetentionMS),
	}
}
