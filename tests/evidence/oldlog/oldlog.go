package oldlog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// LeasedV1 and LeasedV2 are the MessageLeased schema versions Write can use.
const (
	LeasedV1 = 1
	LeasedV2 = 2
)

// Queue is the queue the history is about.
const Queue = "orders"

// Names of the messages of the history, by what happened to them.
const (
	// Acked was leased and acknowledged.
	Acked = "acked"
	// Returned was leased, its lease expired (logged), and it is ready again.
	Returned = "returned"
	// Overdue is leased with a deadline before base; nothing logged its
	// expiry yet, so a command side starting at base expires it.
	Overdue = "overdue"
	// Held is leased with a deadline an hour after base.
	Held = "held"
	// Untouched was published and never received.
	Untouched = "untouched"
)

// Names lists the messages in publish order.
var Names = []string{Acked, Returned, Overdue, Held, Untouched}

// Lease timeouts of the history, as version 1 recorded them.
const (
	ShortTimeout = 30 * time.Second
	HeldTimeout  = time.Hour
)

// Lease is one MessageLeased of the history.
type Lease struct {
	// Receipt is the receipt the consumer got; its hash is in the log.
	Receipt  string
	LeasedAt time.Time
	// ExpiresAt is the deadline: LeasedAt plus the timeout.
	ExpiresAt    time.Time
	ReceiveCount int
	// Position is where the event sits in the log.
	Position int64
	// SchemaVersion and Data are the event exactly as stored.
	SchemaVersion int
	Data          json.RawMessage
}

// Story is what Write recorded.
type Story struct {
	// Base is the time the history leads up to: Overdue's deadline is before
	// it, Held's after it.
	Base time.Time
	// IDs maps a message name (Acked, Returned, …) to its message id.
	IDs map[string]string
	// Leases maps a message name to its last lease.
	Leases map[string]Lease
	// Head is the position of the last event written.
	Head int64
	// Ready names the messages ready at Base (Overdue not counted: its lease
	// is still logged as held), InFlight those logged as leased.
	Ready, InFlight []string
	// Published and Acked count those events.
	Published, AckedCount int
}

// Write creates a log at path (which must not exist yet) holding the story
// leading up to base, with MessageLeased in schema version leased (LeasedV1
// or LeasedV2). Each event is recorded at the time it tells of.
func Write(path string, leased int, base time.Time) (*Story, error) {
	if leased != LeasedV1 && leased != LeasedV2 {
		return nil, fmt.Errorf("oldlog: MessageLeased schema version %d: want 1 or 2", leased)
	}
	base = base.UTC().Truncate(time.Millisecond)
	w := &writer{leased: leased, now: base}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	store, err := eventstore.Open(path, eventstore.Options{Logger: quiet, Now: func() time.Time { return w.now }})
	if err != nil {
		return nil, fmt.Errorf("oldlog: open %s: %w", path, err)
	}
	w.store = store
	st := &Story{Base: base, IDs: map[string]string{}, Leases: map[string]Lease{}}
	if err := w.story(st); err != nil {
		_ = store.Close()
		return nil, err
	}
	st.Head = store.Head()
	if err := store.Close(); err != nil {
		return nil, fmt.Errorf("oldlog: close: %w", err)
	}
	return st, nil
}

type writer struct {
	store   *eventstore.Store
	leased  int
	now     time.Time
	version int64
}

// story records the history; times are relative to the base.
func (w *writer) story(st *Story) error {
	b := st.Base
	attrs := domain.DefaultAttributes()
	attrs.VisibilityTimeoutMS = ShortTimeout.Milliseconds()
	if err := w.append(b.Add(-time.Hour), domain.QueueCreated{Queue: Queue, Attributes: attrs, CreatedAt: b.Add(-time.Hour)}); err != nil {
		return err
	}
	for i, name := range Names {
		at := b.Add(-50*time.Minute + time.Duration(i)*time.Second)
		id := messageID(at, uint64(i))
		st.IDs[name] = id
		body := "order " + name
		ev := domain.MessagePublished{
			Queue: Queue, MessageID: id, Body: body, BodyEncoding: domain.EncodingUTF8,
			BodySize: int64(len(body)), ContentType: "text/plain",
			Headers:     map[string]string{"story": name},
			PublishedAt: at, AvailableAt: at, ExpiresAt: at.Add(time.Duration(attrs.RetentionMS) * time.Millisecond),
		}
		if err := w.append(at, ev); err != nil {
			return err
		}
		st.Published++
	}
	lease := func(name string, at time.Time, timeout time.Duration, count int) error {
		l, err := w.lease(st.IDs[name], at, timeout, count)
		if err == nil {
			st.Leases[name] = l
		}
		return err
	}
	// Acked: leased, then acknowledged within its lease.
	if err := lease(Acked, b.Add(-40*time.Minute), ShortTimeout, 1); err != nil {
		return err
	}
	ackAt := b.Add(-40*time.Minute + 5*time.Second)
	if err := w.append(ackAt, domain.MessageAcked{Queue: Queue, MessageID: st.IDs[Acked],
		ReceiptHash: domain.ReceiptHash(st.Leases[Acked].Receipt), AckedAt: ackAt}); err != nil {
		return err
	}
	st.AckedCount++
	// Returned: leased, the lease ran out and the scheduler logged it.
	if err := lease(Returned, b.Add(-30*time.Minute), ShortTimeout, 1); err != nil {
		return err
	}
	expAt := st.Leases[Returned].ExpiresAt
	if err := w.append(expAt, domain.MessageLeaseExpired{Queue: Queue, MessageID: st.IDs[Returned],
		ReceiptHash: domain.ReceiptHash(st.Leases[Returned].Receipt), ExpiredAt: expAt}); err != nil {
		return err
	}
	// Overdue: its deadline passed before base, unlogged.
	if err := lease(Overdue, b.Add(-10*time.Minute), ShortTimeout, 1); err != nil {
		return err
	}
	// Held: leased at base for an hour.
	if err := lease(Held, b, HeldTimeout, 1); err != nil {
		return err
	}
	st.Ready = []string{Returned, Untouched}
	st.InFlight = []string{Overdue, Held}
	return nil
}

// lease appends a MessageLeased in the writer's shape.
func (w *writer) lease(id string, at time.Time, timeout time.Duration, count int) (Lease, error) {
	receipt, err := domain.NewReceipt(id, nonce(id, at))
	if err != nil {
		return Lease{}, fmt.Errorf("oldlog: receipt: %w", err)
	}
	l := Lease{Receipt: receipt, LeasedAt: at, ExpiresAt: at.Add(timeout), ReceiveCount: count, SchemaVersion: w.leased}
	var data any = domain.MessageLeased{Queue: Queue, MessageID: id, ReceiptHash: domain.ReceiptHash(receipt),
		Consumer: "worker-1", LeasedAt: at, LeaseExpiresAt: l.ExpiresAt, ReceiveCount: count}
	if w.leased == LeasedV1 {
		// The shape version 1 wrote, member for member.
		data = struct {
			Queue               string    `json:"queue"`
			MessageID           string    `json:"message_id"`
			ReceiptHash         string    `json:"receipt_hash"`
			Consumer            string    `json:"consumer,omitempty"`
			LeasedAt            time.Time `json:"leased_at"`
			VisibilityTimeoutMS int64     `json:"visibility_timeout_ms"`
			ReceiveCount        int       `json:"receive_count"`
		}{Queue, id, domain.ReceiptHash(receipt), "worker-1", at, timeout.Milliseconds(), count}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Lease{}, fmt.Errorf("oldlog: encode MessageLeased: %w", err)
	}
	pos, err := w.appendRaw(at, domain.TypeMessageLeased, w.leased, raw)
	if err != nil {
		return Lease{}, err
	}
	l.Position, l.Data = pos, raw
	return l, nil
}

func (w *writer) append(at time.Time, ev domain.Event) error {
	raw, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("oldlog: encode %s: %w", ev.EventType(), err)
	}
	_, err = w.appendRaw(at, ev.EventType(), ev.SchemaVersion(), raw)
	return err
}

func (w *writer) appendRaw(at time.Time, typ string, schema int, data json.RawMessage) (int64, error) {
	w.now = at
	res, err := w.store.Append(context.Background(), eventstore.AppendRequest{
		Metadata: eventstore.Metadata{Subject: "oldlog", RequestID: fmt.Sprintf("oldlog-%d", w.version+1)},
		Streams: []eventstore.StreamAppend{{
			StreamID: domain.StreamID(Queue), ExpectedVersion: w.version,
			Events: []eventstore.NewEvent{{Type: typ, SchemaVersion: schema, Data: data}},
		}},
	})
	if err != nil {
		return 0, fmt.Errorf("oldlog: append %s: %w", typ, err)
	}
	if len(res.Events) != 1 {
		return 0, errors.New("oldlog: append returned no event")
	}
	w.version++
	return res.LastPosition(), nil
}

// messageID is a canonical ULID for time at, deterministic in n, so that
// two logs written from the same base hold the same ids.
func messageID(at time.Time, n uint64) string {
	var raw [16]byte
	ms := uint64(at.UnixMilli())
	for i := 5; i >= 0; i-- {
		raw[i] = byte(ms)
		ms >>= 8
	}
	binary.BigEndian.PutUint64(raw[8:], 0x6f6c646c6f67+n) // "oldlog"
	return ulid.ULID(raw).String()
}

// nonce derives a receipt nonce from the message and the lease time, so
// receipts are the same in every shape of the log.
func nonce(id string, at time.Time) [domain.ReceiptNonceSize]byte {
	sum := sha256.Sum256([]byte(id + "|" + at.Format(time.RFC3339Nano)))
	var n [domain.ReceiptNonceSize]byte
	copy(n[:], sum[:])
	return n
}
