package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Queue is the aggregate of one queue stream ("queue-{name}"): the queue's
// attributes and every live message, without bodies. Its state changes only
// by applying events; the decision methods (Create, Publish, Receive, …)
// check the rules against that state, record the resulting events — which
// applies them — and return them for the caller to append. Because a
// decision has already applied its events when it returns, the caller must
// throw the aggregate away (rebuild it from the log) if the append fails.
//
// A Queue is not safe for concurrent use.
type Queue struct {
	name      string
	version   int64
	exists    bool
	attrs     Attributes
	createdAt int64
	updatedAt int64

	msgs      slab
	ready     slotHeap
	leased    slotHeap
	retention slotHeap
	// leases holds the receipt hash of every leased slot. It is a map so
	// that ready messages, usually the vast majority, pay nothing for it.
	leases map[uint32][sha256.Size]byte

	// dedup maps a dedup id to the first message published with it; dedupLog
	// lists the same entries in publish order so that the ones older than the
	// window can be dropped as time moves on.
	dedup     map[string]dedupEntry
	dedupLog  []dedupRef
	dedupHead int
}

type dedupEntry struct {
	id messageID
	at int64
}

type dedupRef struct {
	key string
	at  int64
}

// NewQueue returns the aggregate of a queue stream that has no events yet.
func NewQueue(name string) *Queue {
	return &Queue{
		name:      name,
		ready:     slotHeap{kind: byDue},
		leased:    slotHeap{kind: byDue},
		retention: slotHeap{kind: byExp},
	}
}

// Name is the queue's name.
func (q *Queue) Name() string { return q.name }

// Exists reports whether the queue is created and not deleted.
func (q *Queue) Exists() bool { return q.exists }

// Version is the number of events in the queue's stream: the expected
// version of the next append.
func (q *Queue) Version() int64 { return q.version }

// Attributes are the queue's current attributes.
func (q *Queue) Attributes() Attributes { return q.attrs }

// CreatedAt is when the queue was (last) created.
func (q *Queue) CreatedAt() time.Time { return msTime(q.createdAt) }

// UpdatedAt is when the queue was last created or configured.
func (q *Queue) UpdatedAt() time.Time { return msTime(q.updatedAt) }

// Len is the number of live messages: ready, delayed and leased.
func (q *Queue) Len() int { return q.msgs.len() }

// InFlight is the number of leased messages.
func (q *Queue) InFlight() int { return q.leased.len() }

// Available reports whether a message can be leased at now.
func (q *Queue) Available(now time.Time) bool {
	i, ok := q.ready.top()
	return ok && q.msgs.slots[i].due <= now.UnixMilli()
}

// NextDue is the earliest time after which something happens by itself:
// a lease deadline, a retention deadline, or a delayed message coming due.
// ok is false when nothing is pending.
func (q *Queue) NextDue(now time.Time) (due time.Time, ok bool) {
	n := now.UnixMilli()
	best := int64(0)
	consider := func(t int64) {
		if !ok || t < best {
			best, ok = t, true
		}
	}
	s := q.msgs.slots
	if i, has := q.leased.top(); has {
		consider(s[i].due)
	}
	if i, has := q.retention.top(); has {
		consider(s[i].exp)
	}
	if i, has := q.ready.top(); has && s[i].due > n {
		consider(s[i].due)
	}
	if !ok {
		return time.Time{}, false
	}
	return msTime(best), true
}

// NotePosition records the global position at which a message's
// MessagePublished was committed, for reading its body later. Decisions
// apply events before the store has given them positions.
func (q *Queue) NotePosition(messageID string, position int64) {
	id, ok := parseMessageID(messageID)
	if !ok {
		return
	}
	if i, ok := q.msgs.lookup(id); ok && q.msgs.slots[i].pos == 0 {
		q.msgs.slots[i].pos = position
	}
}

// Apply applies an event of this queue's stream, as when replaying the log
// without positions. It fails if the event does not fit the state, which
// means the log and the rules disagree.
func (q *Queue) Apply(e Event) error { return q.apply(e, 0) }

// ApplyAt applies an event read from the log at a global position, which
// a MessagePublished keeps so that a lease can fetch the body.
func (q *Queue) ApplyAt(e Event, position int64) error { return q.apply(e, position) }

func (q *Queue) apply(e Event, position int64) error {
	if e == nil {
		return fmt.Errorf("domain: apply: nil event")
	}
	if e.QueueName() != q.name {
		return fmt.Errorf("domain: apply %s of queue %q to queue %q", e.EventType(), e.QueueName(), q.name)
	}
	if _, created := e.(QueueCreated); !created && !q.exists {
		return fmt.Errorf("domain: apply %s: queue %q does not exist", e.EventType(), q.name)
	}
	q.version++
	switch e := e.(type) {
	case QueueCreated:
		if q.exists {
			return fmt.Errorf("domain: apply QueueCreated: queue %q already exists", q.name)
		}
		q.exists = true
		q.attrs = e.Attributes
		q.createdAt = e.CreatedAt.UnixMilli()
		q.updatedAt = q.createdAt
	case QueueConfigured:
		q.attrs = e.Attributes
		q.updatedAt = e.ConfiguredAt.UnixMilli()
	case QueuePurged:
		if n := q.ready.len(); n != e.Purged {
			return fmt.Errorf("domain: apply QueuePurged: %d messages to purge, event says %d", n, e.Purged)
		}
		for q.ready.len() > 0 {
			i, _ := q.ready.top()
			q.drop(i)
		}
	case QueueDeleted:
		name, version := q.name, q.version
		*q = *NewQueue(name)
		q.version = version
	case MessagePublished:
		return q.applyPublished(e, position)
	case MessageLeased:
		i, err := q.slotOf(e)
		if err != nil {
			return err
		}
		h, ok := parseReceiptHash(e.ReceiptHash)
		if !ok || q.msgs.slots[i].flag&flagLeased != 0 {
			return fmt.Errorf("domain: apply MessageLeased: message %s is already leased or its hash is malformed", e.MessageID)
		}
		q.ready.remove(q.msgs.slots, i)
		sl := &q.msgs.slots[i]
		sl.flag |= flagLeased
		sl.due = e.LeaseExpiresAt.UnixMilli()
		sl.recv = int32(e.ReceiveCount)
		q.leased.push(q.msgs.slots, i)
		if q.leases == nil {
			q.leases = make(map[uint32][sha256.Size]byte)
		}
		q.leases[i] = h
	case MessageLeaseExtended:
		i, err := q.leasedSlot(e, e.ReceiptHash)
		if err != nil {
			return err
		}
		q.leased.remove(q.msgs.slots, i)
		q.msgs.slots[i].due = e.LeaseExpiresAt.UnixMilli()
		q.leased.push(q.msgs.slots, i)
	case MessageAcked:
		i, err := q.leasedSlot(e, e.ReceiptHash)
		if err != nil {
			return err
		}
		q.drop(i)
	case MessageReleased:
		i, err := q.leasedSlot(e, e.ReceiptHash)
		if err != nil {
			return err
		}
		q.unlease(i, e.AvailableAt.UnixMilli())
	case MessageLeaseExpired:
		i, err := q.leasedSlot(e, e.ReceiptHash)
		if err != nil {
			return err
		}
		q.unlease(i, e.ExpiredAt.UnixMilli())
	case MessageDeadLettered:
		i, err := q.slotOf(e)
		if err != nil {
			return err
		}
		q.drop(i)
	case MessageExpired:
		i, err := q.slotOf(e)
		if err != nil {
			return err
		}
		q.drop(i)
	case MessageRedriven:
		i, err := q.slotOf(e)
		if err != nil {
			return err
		}
		if q.msgs.slots[i].flag&flagLeased != 0 {
			return fmt.Errorf("domain: apply MessageRedriven: message %s is leased", e.MessageID)
		}
		q.drop(i)
	default:
		return fmt.Errorf("domain: apply %T: %w", e, ErrUnknownEventType)
	}
	return nil
}

func (q *Queue) applyPublished(e MessagePublished, position int64) error {
	id, ok := parseMessageID(e.MessageID)
	if !ok {
		return fmt.Errorf("domain: apply MessagePublished: %q is not a message id", e.MessageID)
	}
	if _, dup := q.msgs.lookup(id); dup {
		return fmt.Errorf("domain: apply MessagePublished: message %s is already in queue %q", e.MessageID, q.name)
	}
	sl := slot{
		id:   id,
		ver:  q.version,
		pos:  position,
		due:  e.AvailableAt.UnixMilli(),
		exp:  e.ExpiresAt.UnixMilli(),
		flag: flagLive,
		hi:   -1,
		ri:   -1,
	}
	if e.Origin != nil && e.Origin.Reason == OriginDeadLetter {
		sl.flag |= flagDeadLetterOrigin
	}
	i := q.msgs.alloc(sl)
	q.ready.push(q.msgs.slots, i)
	q.retention.push(q.msgs.slots, i)
	at := e.PublishedAt.UnixMilli()
	q.pruneDedup(at)
	if e.DedupID != "" {
		if q.dedup == nil {
			q.dedup = make(map[string]dedupEntry)
		}
		q.dedup[e.DedupID] = dedupEntry{id: id, at: at}
		q.dedupLog = append(q.dedupLog, dedupRef{key: e.DedupID, at: at})
	}
	return nil
}

// pruneDedup forgets dedup ids published at or before now minus the
// window. It runs when a MessagePublished is applied, with that event's
// time, so that live state and a replay of the log prune alike.
func (q *Queue) pruneDedup(now int64) {
	for q.dedupHead < len(q.dedupLog) {
		r := q.dedupLog[q.dedupHead]
		if now-r.at < dedupWindowMS {
			break
		}
		if e, ok := q.dedup[r.key]; ok && e.at == r.at {
			delete(q.dedup, r.key)
		}
		q.dedupLog[q.dedupHead] = dedupRef{}
		q.dedupHead++
	}
	if q.dedupHead > 64 && q.dedupHead*2 > len(q.dedupLog) {
		q.dedupLog = append([]dedupRef(nil), q.dedupLog[q.dedupHead:]...)
		q.dedupHead = 0
	}
}

// messageEvent is an event about one message.
type messageEvent interface {
	Event
	messageID() string
}

func (e MessagePublished) messageID() string     { return e.MessageID }
func (e MessageLeased) messageID() string        { return e.MessageID }
func (e MessageLeaseExtended) messageID() string { return e.MessageID }
func (e MessageAcked) messageID() string         { return e.MessageID }
func (e MessageReleased) messageID() string      { return e.MessageID }
func (e MessageLeaseExpired) messageID() string  { return e.MessageID }
func (e MessageDeadLettered) messageID() string  { return e.MessageID }
func (e MessageExpired) messageID() string       { return e.MessageID }
func (e MessageRedriven) messageID() string      { return e.MessageID }

func (q *Queue) slotOf(e messageEvent) (uint32, error) {
	id, ok := parseMessageID(e.messageID())
	if !ok {
		return 0, fmt.Errorf("domain: apply %s: %q is not a message id", e.EventType(), e.messageID())
	}
	i, ok := q.msgs.lookup(id)
	if !ok {
		return 0, fmt.Errorf("domain: apply %s: message %s is not in queue %q", e.EventType(), e.messageID(), q.name)
	}
	return i, nil
}

// leasedSlot finds the slot of a lease event and checks that the event is
// about the current lease.
func (q *Queue) leasedSlot(e messageEvent, receiptHash string) (uint32, error) {
	i, err := q.slotOf(e)
	if err != nil {
		return 0, err
	}
	h, ok := parseReceiptHash(receiptHash)
	if !ok || q.msgs.slots[i].flag&flagLeased == 0 || q.leases[i] != h {
		return 0, fmt.Errorf("domain: apply %s: message %s is not leased with that receipt", e.EventType(), e.messageID())
	}
	return i, nil
}

// unlease makes a leased message ready again at due.
func (q *Queue) unlease(i uint32, due int64) {
	q.leased.remove(q.msgs.slots, i)
	delete(q.leases, i)
	sl := &q.msgs.slots[i]
	sl.flag &^= flagLeased
	sl.due = due
	q.ready.push(q.msgs.slots, i)
}

// drop removes a message from the queue for good.
func (q *Queue) drop(i uint32) {
	if q.msgs.slots[i].flag&flagLeased != 0 {
		q.leased.remove(q.msgs.slots, i)
		delete(q.leases, i)
	} else {
		q.ready.remove(q.msgs.slots, i)
	}
	q.retention.remove(q.msgs.slots, i)
	q.msgs.release(i)
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func hashHex(h [sha256.Size]byte) string { return hex.EncodeToString(h[:]) }
