package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// recorder collects the events of one decision, applying each to its
// queue as it is recorded, so that later steps of the same decision (the
// second message of a batch with the first one's dedup id, the next lease
// of a receive) see the earlier ones.
type recorder struct {
	events []Event
	err    error
}

func (r *recorder) record(q *Queue, e Event) {
	if r.err != nil {
		return
	}
	if err := q.apply(e, 0); err != nil {
		// A decision only records events its own checks allowed; failing
		// here is a bug, and the caller must rebuild the aggregate.
		r.err = fmt.Errorf("domain: a decision produced an event its state rejects: %w", err)
		return
	}
	r.events = append(r.events, e)
}

func (r *recorder) result() ([]Event, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.events, nil
}

func (q *Queue) mustExist() error {
	if !q.exists {
		return WithMessage(ErrQueueNotFound, "queue %q not found", q.name)
	}
	return nil
}

// Create decides the creation of the queue with the given attributes (nil
// ones take their defaults). If the queue exists with the same attributes
// it returns no event and no error; with different ones, ErrQueueExists.
func (q *Queue) Create(attrs AttributesPatch, now time.Time, exists QueueExists) ([]Event, error) {
	if err := ValidateQueueName("name", q.name); err != nil {
		return nil, err
	}
	a := patched(DefaultAttributes(), attrs)
	if err := validateAttributes(q.name, a, a.DeadLetterQueue != "", exists); err != nil {
		return nil, err
	}
	if q.exists {
		if a == q.attrs {
			return nil, nil
		}
		return nil, WithMessage(ErrQueueExists, "queue %q exists with different attributes (%s)", q.name, strings.Join(changedAttributes(q.attrs, a), ", "))
	}
	var r recorder
	r.record(q, QueueCreated{Queue: q.name, Attributes: a, CreatedAt: msTime(now.UnixMilli())})
	return r.result()
}

// Configure decides a change of attributes. Nothing changing is no event.
func (q *Queue) Configure(attrs AttributesPatch, now time.Time, exists QueueExists) ([]Event, error) {
	if err := q.mustExist(); err != nil {
		return nil, err
	}
	a := patched(q.attrs, attrs)
	if err := validateAttributes(q.name, a, a.DeadLetterQueue != q.attrs.DeadLetterQueue, exists); err != nil {
		return nil, err
	}
	changed := changedAttributes(q.attrs, a)
	if len(changed) == 0 {
		return nil, nil
	}
	var r recorder
	r.record(q, QueueConfigured{Queue: q.name, Attributes: a, Changed: changed, ConfiguredAt: msTime(now.UnixMilli())})
	return r.result()
}

// Delete decides the deletion of the queue. usedBy lists the existing
// queues that have this one as their dead-letter queue; the deletion is
// refused with ErrConflict while there are any, or their dead-lettered
// messages would have nowhere to go.
func (q *Queue) Delete(now time.Time, usedBy []string) ([]Event, error) {
	if err := q.mustExist(); err != nil {
		return nil, err
	}
	if len(usedBy) > 0 {
		return nil, WithMessage(ErrConflict, "queue %q is the dead-letter queue of %s; change their dead_letter_queue first", q.name, strings.Join(usedBy, ", "))
	}
	var r recorder
	r.record(q, QueueDeleted{Queue: q.name, DeletedAt: msTime(now.UnixMilli())})
	return r.result()
}

// Purge decides dropping every message that is not leased (ready and
// delayed). It records a QueuePurged even when there is nothing to drop:
// the purge was asked for, and the audit trail should say so.
func (q *Queue) Purge(now time.Time) ([]Event, int, error) {
	if err := q.mustExist(); err != nil {
		return nil, 0, err
	}
	n := q.ready.len()
	var r recorder
	r.record(q, QueuePurged{Queue: q.name, Purged: n, PurgedAt: msTime(now.UnixMilli())})
	ev, err := r.result()
	return ev, n, err
}

// PublishOutcome is the fate of one message of a publish: published, or a
// duplicate of ID (the first message with its dedup id) with no event.
type PublishOutcome struct {
	ID        string
	Duplicate bool
	// Event is the index of the message's MessagePublished in the returned
	// events, or -1 for a duplicate.
	Event int
}

// Publish decides the publication of one message.
func (q *Queue) Publish(m NewMessage, now time.Time) ([]Event, PublishOutcome, error) {
	ev, out, err := q.publish([]NewMessage{m}, now, false)
	if err != nil {
		return nil, PublishOutcome{}, err
	}
	return ev, out[0], nil
}

// PublishBatch decides the publication of 1…MaxBatchMessages messages, all
// or nothing: an invalid entry fails the batch with an error whose Field
// starts with "messages[i]".
func (q *Queue) PublishBatch(ms []NewMessage, now time.Time) ([]Event, []PublishOutcome, error) {
	if len(ms) == 0 {
		return nil, nil, Invalid("messages", "at least one message is required")
	}
	if len(ms) > MaxBatchMessages {
		return nil, nil, Invalid("messages", "at most %d messages per batch, got %d", MaxBatchMessages, len(ms))
	}
	return q.publish(ms, now, true)
}

func (q *Queue) publish(ms []NewMessage, now time.Time, batch bool) ([]Event, []PublishOutcome, error) {
	if err := q.mustExist(); err != nil {
		return nil, nil, err
	}
	type checked struct {
		size int64
		enc  string
	}
	ok := make([]checked, len(ms))
	seen := make(map[messageID]struct{}, len(ms))
	for i, m := range ms {
		prefix := ""
		if batch {
			prefix = fmt.Sprintf("messages[%d].", i)
		}
		size, enc, err := validateMessage(prefix, m, q.attrs)
		if err != nil {
			return nil, nil, err
		}
		id, _ := parseMessageID(m.ID)
		_, taken := q.msgs.lookup(id)
		if _, twice := seen[id]; taken || twice {
			return nil, nil, Invalid(prefix+"id", "message id %s is already used", m.ID)
		}
		seen[id] = struct{}{}
		ok[i] = checked{size, enc}
	}
	n := now.UnixMilli()
	var r recorder
	out := make([]PublishOutcome, len(ms))
	for i, m := range ms {
		if m.DedupID != "" {
			if first, dup := q.dedup[m.DedupID]; dup && n-first.at < dedupWindowMS {
				out[i] = PublishOutcome{ID: first.id.String(), Duplicate: true, Event: -1}
				continue
			}
		}
		delay := q.attrs.DelayMS
		if m.DelayMS != nil {
			delay = *m.DelayMS
		}
		out[i] = PublishOutcome{ID: m.ID, Event: len(r.events)}
		r.record(q, MessagePublished{
			Queue:        q.name,
			MessageID:    m.ID,
			Body:         m.Body,
			BodyEncoding: ok[i].enc,
			BodySize:     ok[i].size,
			ContentType:  m.ContentType,
			Headers:      cloneHeaders(m.Headers),
			PublishedAt:  msTime(n),
			AvailableAt:  msTime(n + delay),
			ExpiresAt:    msTime(n + q.attrs.RetentionMS),
			DedupID:      m.DedupID,
		})
	}
	ev, err := r.result()
	if err != nil {
		return nil, nil, err
	}
	return ev, out, nil
}

func cloneHeaders(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	c := make(map[string]string, len(h))
	for k, v := range h {
		c[k] = v
	}
	return c
}

// ReceiveRequest asks for leases on ready messages.
type ReceiveRequest struct {
	// MaxMessages is 1…MaxReceiveMessages; 0 means 1.
	MaxMessages int
	// VisibilityTimeoutMS overrides the queue's visibility_timeout_ms.
	VisibilityTimeoutMS *int64
	Consumer            string
	// Nonces are the random parts of the receipts, one per possible lease
	// (at least MaxMessages), drawn by the caller from a cryptographic
	// source.
	Nonces [][ReceiptNonceSize]byte
}

// Lease is one message leased by Receive. The body is not in the
// aggregate: read the MessagePublished at PublishedPosition, or — while
// that is still 0 because the publish has not committed yet — the one with
// stream version PublishedVersion once it has.
type Lease struct {
	MessageID         string
	Receipt           string
	ReceiveCount      int
	LeaseExpiresAt    time.Time
	PublishedVersion  int64
	PublishedPosition int64
}

// Receive decides leases on up to MaxMessages ready messages, oldest first
// (available time, then publish order). Messages past their retention are
// skipped: the scheduler is about to expire them. No ready message is no
// event and no error.
func (q *Queue) Receive(req ReceiveRequest, now time.Time) ([]Event, []Lease, error) {
	if err := q.mustExist(); err != nil {
		return nil, nil, err
	}
	max := req.MaxMessages
	if max == 0 {
		max = 1
	}
	if max < 1 || max > MaxReceiveMessages {
		return nil, nil, Invalid("max_messages", "must be 1…%d, got %d", MaxReceiveMessages, req.MaxMessages)
	}
	vt := q.attrs.VisibilityTimeoutMS
	if req.VisibilityTimeoutMS != nil {
		vt = *req.VisibilityTimeoutMS
		if err := inRange("visibility_timeout_ms", vt, MinVisibilityTimeoutMS, MaxVisibilityTimeoutMS); err != nil {
			return nil, nil, err
		}
	}
	if err := validateConsumer(req.Consumer); err != nil {
		return nil, nil, err
	}
	if len(req.Nonces) < max {
		return nil, nil, fmt.Errorf("domain: receive: %d nonces for up to %d leases", len(req.Nonces), max)
	}
	n := now.UnixMilli()
	var chosen []uint32
	// Messages past retention are skipped, not leased; widen the search
	// while they crowd the front, but only so far: behind a large backlog
	// of them (the scheduler is working through it) a receive answers with
	// fewer messages rather than get slow.
	for limit := max; ; limit *= 2 {
		cands := q.ready.dueBefore(q.msgs.slots, n, limit)
		chosen = chosen[:0]
		for _, i := range cands {
			if q.msgs.slots[i].exp > n && len(chosen) < max {
				chosen = append(chosen, i)
			}
		}
		if len(chosen) == max || len(cands) < limit || limit >= maxReceiveScan {
			break
		}
	}
	var r recorder
	leases := make([]Lease, 0, len(chosen))
	for k, i := range chosen {
		sl := q.msgs.slots[i]
		receipt := newReceipt(sl.id, req.Nonces[k])
		l := Lease{
			MessageID:         sl.id.String(),
			Receipt:           receipt,
			ReceiveCount:      int(sl.recv) + 1,
			LeaseExpiresAt:    msTime(n + vt),
			PublishedVersion:  sl.ver,
			PublishedPosition: sl.pos,
		}
		r.record(q, MessageLeased{
			Queue:          q.name,
			MessageID:      l.MessageID,
			ReceiptHash:    ReceiptHash(receipt),
			Consumer:       req.Consumer,
			LeasedAt:       msTime(n),
			LeaseExpiresAt: l.LeaseExpiresAt,
			ReceiveCount:   l.ReceiveCount,
		})
		leases = append(leases, l)
	}
	ev, err := r.result()
	if err != nil {
		return nil, nil, err
	}
	return ev, leases, nil
}

// maxReceiveScan bounds how many ready messages one receive looks at.
const maxReceiveScan = 4096

// LeaseInfo describes a live lease (or one the scheduler found due).
type LeaseInfo struct {
	MessageID    string
	ReceiveCount int
	// DeadLetterQueue is set when the message must move to that queue
	// instead of becoming ready again (receive count ≥ max_receive_count
	// and a dead-letter queue configured): a nack or expiry then needs a
	// DeadLetter with the message's content.
	DeadLetterQueue   string
	PublishedVersion  int64
	PublishedPosition int64
}

// LeaseOf checks a receipt at now and describes its lease: an unknown
// receipt is ErrReceiptNotFound; a receipt whose lease expired (even if no
// MessageLeaseExpired is recorded yet) or was replaced is ErrLeaseMismatch.
func (q *Queue) LeaseOf(receipt string, now time.Time) (LeaseInfo, error) {
	i, err := q.checkReceipt(receipt, now.UnixMilli())
	if err != nil {
		return LeaseInfo{}, err
	}
	return q.leaseInfo(i), nil
}

func (q *Queue) leaseInfo(i uint32) LeaseInfo {
	sl := q.msgs.slots[i]
	li := LeaseInfo{
		MessageID:         sl.id.String(),
		ReceiveCount:      int(sl.recv),
		PublishedVersion:  sl.ver,
		PublishedPosition: sl.pos,
	}
	if q.mustDeadLetter(i) {
		li.DeadLetterQueue = q.attrs.DeadLetterQueue
	}
	return li
}

func (q *Queue) mustDeadLetter(i uint32) bool {
	a := q.attrs
	return a.DeadLetterQueue != "" && a.MaxReceiveCount > 0 && int(q.msgs.slots[i].recv) >= a.MaxReceiveCount
}

func (q *Queue) checkReceipt(receipt string, now int64) (uint32, error) {
	if err := q.mustExist(); err != nil {
		return 0, err
	}
	if receipt == "" {
		return 0, Invalid("receipt", "is required")
	}
	id, ok := parseReceipt(receipt)
	if !ok {
		return 0, WithMessage(ErrReceiptNotFound, "receipt not found")
	}
	i, ok := q.msgs.lookup(id)
	if !ok {
		return 0, WithMessage(ErrReceiptNotFound, "receipt not found: its message is no longer in queue %q", q.name)
	}
	sl := q.msgs.slots[i]
	if sl.flag&flagLeased == 0 || q.leases[i] != receiptDigest(receipt) {
		return 0, WithMessage(ErrLeaseMismatch, "the lease of this receipt was replaced or has expired")
	}
	if sl.due <= now {
		return 0, WithMessage(ErrLeaseMismatch, "the lease of this receipt expired at %s", msTime(sl.due).Format(time.RFC3339Nano))
	}
	return i, nil
}

// Ack decides the acknowledgement of a leased message.
func (q *Queue) Ack(receipt string, now time.Time) ([]Event, string, error) {
	n := now.UnixMilli()
	i, err := q.checkReceipt(receipt, n)
	if err != nil {
		return nil, "", err
	}
	id := q.msgs.slots[i].id.String()
	var r recorder
	r.record(q, MessageAcked{Queue: q.name, MessageID: id, ReceiptHash: ReceiptHash(receipt), AckedAt: msTime(n)})
	ev, err := r.result()
	return ev, id, err
}

// DeadLetter is what moving a message to its dead-letter queue needs: the
// dead-letter queue's aggregate (changed by the decision too), the id of
// the copy, and the content read from the original's MessagePublished.
type DeadLetter struct {
	Queue     *Queue
	MessageID string
	Content   Content
}

// Nack decides the release of a leased message, ready again after delayMS.
// If LeaseOf says the message must be dead-lettered, dl must be given and
// the message moves to the dead-letter queue instead; with a nil dl it is
// released (the dead-letter queue is gone, which deletion rules prevent).
func (q *Queue) Nack(receipt string, delayMS int64, now time.Time, dl *DeadLetter) ([]Event, string, error) {
	if err := inRange("delay_ms", delayMS, 0, MaxDelayMS); err != nil {
		return nil, "", err
	}
	n := now.UnixMilli()
	i, err := q.checkReceipt(receipt, n)
	if err != nil {
		return nil, "", err
	}
	id := q.msgs.slots[i].id.String()
	if q.mustDeadLetter(i) && dl != nil {
		ev, err := q.deadLetter(i, dl, n)
		return ev, id, err
	}
	var r recorder
	r.record(q, MessageReleased{
		Queue:       q.name,
		MessageID:   id,
		ReceiptHash: ReceiptHash(receipt),
		DelayMS:     delayMS,
		ReleasedAt:  msTime(n),
		AvailableAt: msTime(n + delayMS),
	})
	ev, err := r.result()
	return ev, id, err
}

// Extend decides moving a lease's deadline to now + visibilityMS.
func (q *Queue) Extend(receipt string, visibilityMS int64, now time.Time) ([]Event, string, time.Time, error) {
	if err := inRange("visibility_timeout_ms", visibilityMS, MinVisibilityTimeoutMS, MaxVisibilityTimeoutMS); err != nil {
		return nil, "", time.Time{}, err
	}
	n := now.UnixMilli()
	i, err := q.checkReceipt(receipt, n)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	id := q.msgs.slots[i].id.String()
	deadline := msTime(n + visibilityMS)
	var r recorder
	r.record(q, MessageLeaseExtended{Queue: q.name, MessageID: id, ReceiptHash: ReceiptHash(receipt), ExtendedAt: msTime(n), LeaseExpiresAt: deadline})
	ev, err := r.result()
	return ev, id, deadline, err
}

func (q *Queue) deadLetter(i uint32, dl *DeadLetter, n int64) ([]Event, error) {
	d := dl.Queue
	if d == nil || !d.exists || d.name != q.attrs.DeadLetterQueue || d == q {
		return nil, fmt.Errorf("domain: dead-letter: %q is not the existing dead-letter queue of %q", nameOf(d), q.name)
	}
	if _, ok := parseMessageID(dl.MessageID); !ok {
		return nil, fmt.Errorf("domain: dead-letter: %q is not a message id", dl.MessageID)
	}
	sl := q.msgs.slots[i]
	orig := sl.id.String()
	var r recorder
	r.record(q, MessageDeadLettered{
		Queue:               q.name,
		MessageID:           orig,
		DeadLetterQueue:     d.name,
		DeadLetterMessageID: dl.MessageID,
		ReceiveCount:        int(sl.recv),
		DeadLetteredAt:      msTime(n),
	})
	r.record(d, copyOf(d, dl.MessageID, dl.Content, n, Origin{Queue: q.name, MessageID: orig, Reason: OriginDeadLetter}))
	return r.result()
}

// copyOf is the MessagePublished of a dead-lettered or redriven copy: ready
// at once (the original already waited), kept for the target's retention.
func copyOf(to *Queue, id string, c Content, n int64, origin Origin) MessagePublished {
	return MessagePublished{
		Queue:        to.name,
		MessageID:    id,
		Body:         c.Body,
		BodyEncoding: c.BodyEncoding,
		BodySize:     c.BodySize,
		ContentType:  c.ContentType,
		Headers:      cloneHeaders(c.Headers),
		PublishedAt:  msTime(n),
		AvailableAt:  msTime(n),
		ExpiresAt:    msTime(n + to.attrs.RetentionMS),
		Origin:       &origin,
	}
}

func nameOf(q *Queue) string {
	if q == nil {
		return ""
	}
	return q.name
}

// Expire decides what time has made due at now, at most limit items:
// MessageExpired for messages past retention, then MessageLeaseExpired for
// leases past their deadline. Leases that must be dead-lettered get no
// event here; they are returned for the caller to fetch their content and
// call ExpireLease with a DeadLetter.
func (q *Queue) Expire(now time.Time, limit int) ([]Event, []LeaseInfo, error) {
	if !q.exists || limit <= 0 {
		return nil, nil, nil
	}
	n := now.UnixMilli()
	var r recorder
	for _, i := range q.retention.dueBefore(q.msgs.slots, n, limit) {
		r.record(q, MessageExpired{Queue: q.name, MessageID: q.msgs.slots[i].id.String(), ExpiredAt: msTime(n)})
	}
	var dead []LeaseInfo
	for _, i := range q.leased.dueBefore(q.msgs.slots, n, limit-len(r.events)) {
		if q.mustDeadLetter(i) {
			dead = append(dead, q.leaseInfo(i))
			continue
		}
		r.record(q, MessageLeaseExpired{
			Queue:       q.name,
			MessageID:   q.msgs.slots[i].id.String(),
			ReceiptHash: hashHex(q.leases[i]),
			ExpiredAt:   msTime(n),
		})
	}
	ev, err := r.result()
	if err != nil {
		return nil, nil, err
	}
	return ev, dead, nil
}

// ExpireLease decides the expiry of one lease whose deadline passed: the
// message is dead-lettered when it must be and dl is given, else it is
// ready again. A lease that is no longer there or not yet due (acked or
// extended meanwhile) is no event.
func (q *Queue) ExpireLease(messageID string, now time.Time, dl *DeadLetter) ([]Event, error) {
	if !q.exists {
		return nil, nil
	}
	n := now.UnixMilli()
	id, ok := parseMessageID(messageID)
	if !ok {
		return nil, nil
	}
	i, ok := q.msgs.lookup(id)
	if !ok || q.msgs.slots[i].flag&flagLeased == 0 || q.msgs.slots[i].due > n {
		return nil, nil
	}
	if q.mustDeadLetter(i) && dl != nil {
		return q.deadLetter(i, dl, n)
	}
	var r recorder
	r.record(q, MessageLeaseExpired{Queue: q.name, MessageID: messageID, ReceiptHash: hashHex(q.leases[i]), ExpiredAt: msTime(n)})
	return r.result()
}

// RedriveCandidate is a dead-lettered message that Redrive can move.
type RedriveCandidate struct {
	MessageID         string
	PublishedVersion  int64
	PublishedPosition int64
}

// RedriveCandidates lists, oldest first, up to limit (≤ 0: all) messages
// of this queue that arrived by dead-lettering and are not leased.
func (q *Queue) RedriveCandidates(limit int) []RedriveCandidate {
	var idx []uint32
	for _, i := range q.ready.items {
		if q.msgs.slots[i].flag&flagDeadLetterOrigin != 0 {
			idx = append(idx, i)
		}
	}
	s := q.msgs.slots
	slices.SortFunc(idx, func(a, b uint32) int {
		switch {
		case s[a].ver < s[b].ver:
			return -1
		case s[a].ver > s[b].ver:
			return 1
		}
		return 0
	})
	if limit > 0 && len(idx) > limit {
		idx = idx[:limit]
	}
	out := make([]RedriveCandidate, len(idx))
	for k, i := range idx {
		out[k] = RedriveCandidate{MessageID: s[i].id.String(), PublishedVersion: s[i].ver, PublishedPosition: s[i].pos}
	}
	return out
}

// Redrive decides moving a dead-lettered message of this queue to the
// queue to, as a copy with id newID and the original's content. A message
// that is gone, leased, or did not arrive by dead-lettering is no event.
func (q *Queue) Redrive(messageID string, to *Queue, newID string, c Content, now time.Time) ([]Event, error) {
	if err := q.mustExist(); err != nil {
		return nil, err
	}
	if to == nil || !to.exists {
		return nil, WithMessage(ErrQueueNotFound, "redrive target queue %q not found", nameOf(to))
	}
	if to == q || to.name == q.name {
		return nil, Invalid("to", "must be a queue other than %q", q.name)
	}
	if _, ok := parseMessageID(newID); !ok {
		return nil, fmt.Errorf("domain: redrive: %q is not a message id", newID)
	}
	id, ok := parseMessageID(messageID)
	if !ok {
		return nil, nil
	}
	i, ok := q.msgs.lookup(id)
	if !ok || q.msgs.slots[i].flag&(flagLeased|flagDeadLetterOrigin) != flagDeadLetterOrigin {
		return nil, nil
	}
	n := now.UnixMilli()
	var r recorder
	r.record(q, MessageRedriven{Queue: q.name, MessageID: messageID, ToQueue: to.name, NewMessageID: newID, RedrivenAt: msTime(n)})
	r.record(to, copyOf(to, newID, c, n, Origin{Queue: q.name, MessageID: messageID, Reason: OriginRedrive}))
	return r.result()
}
