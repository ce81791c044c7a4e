package projections

import (
	"fmt"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// stored message states. "available" covers both ready and delayed: which of
// the two a message is depends on the clock (available_at ≤ now), not on an
// event, so it is decided at query time.
const (
	stAvailable    = "available"
	stInFlight     = queries.StateInFlight
	stAcked        = queries.StateAcked
	stDeadLettered = queries.StateDeadLettered
	stExpired      = queries.StateExpired
	stPurged       = queries.StatePurged
	stRedriven     = queries.StateRedriven
)

// storedStates are all the values of messages.state.
var storedStates = []string{stAvailable, stInFlight, stAcked, stDeadLettered, stExpired, stPurged, stRedriven}

// final reports whether no further event may change a message in state st.
func final(st string) bool {
	switch st {
	case stAvailable, stInFlight:
		return false
	}
	return true
}

// msgFacts is what both the SQLite projection and QueueState know of a live
// message; lifecycle rules are written once against it.
type msgFacts struct {
	queue          string
	state          string
	availableAt    int64 // unix ms
	receiveCount   int
	leaseExpiresAt int64 // unix ms, 0 when not leased
	movedTo        *domain.Origin
}

// applyMessageEvent moves a live message through its lifecycle. The event
// decides the new state whatever the previous (non-final) one was: the
// command side decided, the read side follows. It returns the previous state.
func applyMessageEvent(m *msgFacts, ev domain.Event, id string, position int64) (prev string, err error) {
	if m.queue != ev.QueueName() {
		return "", fmt.Errorf("%w: %s at position %d names queue %q, message %s is in %q",
			ErrInconsistent, ev.EventType(), position, ev.QueueName(), id, m.queue)
	}
	if final(m.state) {
		return "", fmt.Errorf("%w: %s at position %d for message %s, already %s",
			ErrInconsistent, ev.EventType(), position, id, m.state)
	}
	prev = m.state
	switch d := ev.(type) {
	case domain.MessageLeased:
		m.state, m.receiveCount, m.leaseExpiresAt = stInFlight, d.ReceiveCount, ms(d.LeaseExpiresAt)
	case domain.MessageLeaseExtended:
		m.leaseExpiresAt = ms(d.LeaseExpiresAt)
	case domain.MessageAcked:
		m.state, m.leaseExpiresAt = stAcked, 0
	case domain.MessageReleased:
		m.state, m.availableAt, m.leaseExpiresAt = stAvailable, ms(d.AvailableAt), 0
	case domain.MessageLeaseExpired:
		m.state, m.availableAt, m.leaseExpiresAt = stAvailable, ms(d.ExpiredAt), 0
	case domain.MessageDeadLettered:
		m.state, m.receiveCount, m.leaseExpiresAt = stDeadLettered, d.ReceiveCount, 0
		m.movedTo = &domain.Origin{Queue: d.DeadLetterQueue, MessageID: d.DeadLetterMessageID, Reason: domain.OriginDeadLetter}
	case domain.MessageExpired:
		m.state, m.leaseExpiresAt = stExpired, 0
	case domain.MessageRedriven:
		m.state, m.leaseExpiresAt = stRedriven, 0
		m.movedTo = &domain.Origin{Queue: d.ToQueue, MessageID: d.NewMessageID, Reason: domain.OriginRedrive}
	default:
		return "", fmt.Errorf("%w: %s is not a message event", ErrUnsupportedEvent, ev.EventType())
	}
	return prev, nil
}

// messageID returns the message a message event is about ("" for queue
// events).
func messageID(ev domain.Event) string {
	switch d := ev.(type) {
	case domain.MessagePublished:
		return d.MessageID
	case domain.MessageLeased:
		return d.MessageID
	case domain.MessageLeaseExtended:
		return d.MessageID
	case domain.MessageAcked:
		return d.MessageID
	case domain.MessageReleased:
		return d.MessageID
	case domain.MessageLeaseExpired:
		return d.MessageID
	case domain.MessageDeadLettered:
		return d.MessageID
	case domain.MessageExpired:
		return d.MessageID
	case domain.MessageRedriven:
		return d.MessageID
	}
	return ""
}

// liveCounts are a queue's non-final messages, as stats need them.
type liveCounts struct {
	available int64
	inFlight  int64
}

// move accounts a message leaving state from and entering state to.
func (c *liveCounts) move(from, to string) {
	switch from {
	case stAvailable:
		c.available--
	case stInFlight:
		c.inFlight--
	}
	switch to {
	case stAvailable:
		c.available++
	case stInFlight:
		c.inFlight++
	}
}

// publicState is the state queries show: available becomes ready or delayed
// by the clock.
func publicState(st string, availableAt, now int64) string {
	if st != stAvailable {
		return st
	}
	if availableAt <= now {
		return queries.StateReady
	}
	return queries.StateDelayed
}

// Read models keep times as unix milliseconds: API.md's precision, and
// integers index and compare cheaply.
func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// attrsView converts domain attributes to the query shape (a dead-letter
// queue of "" is null).
func attrsView(a domain.Attributes) queries.Attributes {
	v := queries.Attributes{
		VisibilityTimeoutMS: a.VisibilityTimeoutMS,
		DelayMS:             a.DelayMS,
		RetentionMS:         a.RetentionMS,
		MaxMessageBytes:     a.MaxMessageBytes,
		MaxReceiveCount:     a.MaxReceiveCount,
	}
	if a.DeadLetterQueue != "" {
		dlq := a.DeadLetterQueue
		v.DeadLetterQueue = &dlq
	}
	return v
}
