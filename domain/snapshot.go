package domain

import (
	"slices"
	"strings"
	"time"
)

// Snapshot is a plain, comparable picture of a Queue's state, independent
// of how the aggregate lays it out in memory: two aggregates that went
// through the same events have equal snapshots (reflect.DeepEqual). Tests
// use it to prove that the live command state equals a replay of the log.
type Snapshot struct {
	Name       string
	Exists     bool
	Version    int64
	Attributes Attributes
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// Messages are the live messages in publish order.
	Messages []MessageState
	// Dedup are the remembered dedup ids, sorted.
	Dedup []DedupState
}

// MessageState is one live message in a Snapshot.
type MessageState struct {
	ID                string
	PublishedVersion  int64
	PublishedPosition int64
	Leased            bool
	// Due is when the message is (or was) available, or the lease deadline
	// when Leased.
	Due              time.Time
	ExpiresAt        time.Time
	ReceiveCount     int
	ReceiptHash      string
	DeadLetterOrigin bool
}

// DedupState is one remembered dedup id.
type DedupState struct {
	DedupID     string
	MessageID   string
	PublishedAt time.Time
}

// Snapshot returns the state as a Snapshot.
func (q *Queue) Snapshot() Snapshot {
	s := Snapshot{
		Name:       q.name,
		Exists:     q.exists,
		Version:    q.version,
		Attributes: q.attrs,
	}
	if q.exists {
		s.CreatedAt, s.UpdatedAt = msTime(q.createdAt), msTime(q.updatedAt)
	}
	for _, i := range q.msgs.byID {
		sl := q.msgs.slots[i]
		m := MessageState{
			ID:                sl.id.String(),
			PublishedVersion:  sl.ver,
			PublishedPosition: sl.pos,
			Leased:            sl.flag&flagLeased != 0,
			Due:               msTime(sl.due),
			ExpiresAt:         msTime(sl.exp),
			ReceiveCount:      int(sl.recv),
			DeadLetterOrigin:  sl.flag&flagDeadLetterOrigin != 0,
		}
		if m.Leased {
			m.ReceiptHash = hashHex(q.leases[i])
		}
		s.Messages = append(s.Messages, m)
	}
	slices.SortFunc(s.Messages, func(a, b MessageState) int {
		switch {
		case a.PublishedVersion < b.PublishedVersion:
			return -1
		case a.PublishedVersion > b.PublishedVersion:
			return 1
		}
		return 0
	})
	for k, e := range q.dedup {
		s.Dedup = append(s.Dedup, DedupState{DedupID: k, MessageID: e.id.String(), PublishedAt: msTime(e.at)})
	}
	slices.SortFunc(s.Dedup, func(a, b DedupState) int { return strings.Compare(a.DedupID, b.DedupID) })
	return s
}
