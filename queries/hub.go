package queries

import (
	"errors"
	"sync"
	"time"
)

// Reasons a Subscription ended, returned by (*Subscription).Err.
var (
	// ErrSlowSubscriber: the subscriber's buffer was full when an update
	// came; it was dropped so that Publish never waits for it.
	ErrSlowSubscriber = errors.New("queries: subscriber too slow, dropped")
	// ErrHubClosed: the hub was closed (the server is shutting down).
	ErrHubClosed = errors.New("queries: hub closed")
	// ErrSubscriptionClosed: the subscriber closed its own subscription.
	ErrSubscriptionClosed = errors.New("queries: subscription closed")
)

// HubConfig sizes a Hub.
type HubConfig struct {
	// Ring is how many recent updates are kept for subscribers that resume
	// after a position (SSE Last-Event-ID). Default 10000.
	Ring int
	// Buffer is how many publishes each subscriber may leave unread (each
	// is one transaction's updates, however many); a subscriber that falls
	// further behind is dropped. Default 256.
	Buffer int
	// Render, when set, turns an update into the bytes subscribers are sent
	// (Update.Frame). It runs at most once per update, under the hub's
	// lock, and only for updates someone takes (live or from the ring), so a
	// thousand subscribers share one encoding. It must be quick and must
	// not call the hub.
	Render func(Update) []byte
	// Linger is how long after the last subscriber that could take a
	// queue's queue.updated left WantQueueUpdate still says yes, so that a
	// client reconnecting within it resumes complete. Default 5 minutes.
	Linger time.Duration
	// Now is the clock of Linger. Default time.Now.
	Now func() time.Time
}

func (c *HubConfig) setDefaults() {
	if c.Ring <= 0 {
		c.Ring = 10000
	}
	if c.Buffer <= 0 {
		c.Buffer = 256
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Hub fans projection updates out to SSE subscribers and keeps a ring of the
// most recent ones so that a reconnecting subscriber resumes with nothing
// missed and nothing repeated. Publish never blocks: a subscriber that cannot
// keep up is dropped, never allowed to slow the projections. All methods are
// safe for concurrent use.
//
// Updates must be published in non-decreasing position order; several
// updates may share a position (one event changes a message and its queue),
// and they are delivered consecutively. An SSE writer that sets `id:` only
// on the last update of a position it sends makes a client cut off inside a
// group resume before the group (a repeat of state, never a loss).
type Hub struct {
	cfg HubConfig

	mu sync.Mutex
	// ring is a circular buffer of the last len ≤ cfg.Ring updates; head is
	// the index of the oldest.
	ring []Update
	head int
	// floor is the highest position the ring can no longer replay: evicted
	// updates and whatever happened before the hub learnt of the read side
	// (SetFloor). A resume after floor is complete.
	floor int64
	// last is the highest position published.
	last int64
	// subs are all live subscriptions; byQueue indexes those limited to a
	// set of queues, wildcard holds the others, so that Publish looks only
	// at the subscribers an update can concern: with a thousand streams
	// on different queues, one update costs a handful of filter calls, not
	// a thousand.
	subs     map[*Subscription]struct{}
	byQueue  map[string]map[*Subscription]struct{}
	wildcard map[*Subscription]struct{}
	closed   bool
	dropped  uint64

	// Updates are built only when someone may take them (see WantUpdate).
	// left is when the last subscriber that could take an event kind of a
	// queue left (anyLeft: of every queue); skipped is the last position
	// whose update of that kind and queue was not built.
	left    map[wantKey]time.Time
	anyLeft map[string]time.Time
	skipped map[wantKey]int64
}

// NewHub returns an empty hub.
func NewHub(cfg HubConfig) *Hub {
	cfg.setDefaults()
	return &Hub{cfg: cfg, ring: make([]Update, 0, cfg.Ring), subs: make(map[*Subscription]struct{}),
		byQueue: make(map[string]map[*Subscription]struct{}), wildcard: make(map[*Subscription]struct{}),
		left: make(map[wantKey]time.Time), anyLeft: make(map[string]time.Time), skipped: make(map[wantKey]int64)}
}

// SetFloor tells the hub that the read side has already applied position
// without this hub having seen the updates (the projections call it at start
// with their checkpoint). A subscriber resuming from before it cannot be
// replayed and gets complete=false. The floor only moves up.
func (h *Hub) SetFloor(position int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.floor = max(h.floor, position)
	h.last = max(h.last, position)
}

// Publish records updates in the ring and hands every subscriber the ones
// its filter accepts, in one receive on its C. It never blocks: a subscriber
// with Buffer publishes still unread is dropped (its Done channel closes) and
// counted in Dropped. A burst (a read side catching up applies hundreds of
// events per transaction) costs a subscriber one slot, not one per update,
// so a subscriber that keeps reading is never dropped for a burst's size.
func (h *Hub) Publish(updates ...Update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	// Each interested subscriber's accepted updates, in order; subscribers
	// in the order they were first touched (any order would do: each one's
	// own updates stay in order).
	var order []*Subscription
	accepted := make(map[*Subscription][]Update)
	var takers []*Subscription
	for _, u := range updates { // u is a copy: the caller's slice is not ours to change
		takers = takers[:0]
		for s := range h.byQueue[u.Queue] {
			if s.filter == nil || s.filter(u) {
				takers = append(takers, s)
			}
		}
		for s := range h.wildcard {
			if s.filter == nil || s.filter(u) {
				takers = append(takers, s)
			}
		}
		// Rendered once for all its takers; one nobody takes now is
		// rendered if a resume ever takes it from the ring.
		if len(takers) > 0 && h.cfg.Render != nil && u.Frame == nil {
			u.Frame = h.cfg.Render(u)
		}
		h.record(u)
		for _, s := range takers {
			got, seen := accepted[s]
			if !seen {
				order = append(order, s)
			}
			accepted[s] = append(got, u)
		}
	}
	for _, s := range order {
		us := accepted[s]
		markGroups(us)
		select {
		case s.ch <- us:
		default:
			h.dropped++
			h.endLocked(s, ErrSlowSubscriber)
		}
	}
}

// wantKey is an update kind (Update.Event) of one queue.
type wantKey struct{ event, queue string }

// WantUpdate reports whether an update of kind event (Update.Event) about
// queue at position would reach a live subscriber, or one that left less
// than Linger ago and may come back to resume. Building an update costs the
// read side (a stats query for queue.updated, a summary and its JSON for
// message.updated), so the projections ask first. When the answer is no,
// the hub remembers the skip: a later resume from before position by a
// subscriber that could have taken it is incomplete (Subscribe says so, and
// the SSE handler sends the current state instead).
func (h *Hub) WantUpdate(event, queue string, position int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	probe := Update{Position: position, Event: event, Queue: queue}
	for s := range h.byQueue[queue] {
		if s.filter == nil || s.filter(probe) {
			return true
		}
	}
	for s := range h.wildcard {
		if s.filter == nil || s.filter(probe) {
			return true
		}
	}
	now := h.cfg.Now()
	if now.Sub(h.anyLeft[event]) < h.cfg.Linger {
		return true
	}
	k := wantKey{event, queue}
	if left, ok := h.left[k]; ok {
		if now.Sub(left) < h.cfg.Linger {
			return true
		}
		delete(h.left, k)
	}
	h.skipped[k] = max(h.skipped[k], position)
	return false
}

// skippedSince reports whether an update that sub could take was skipped
// after position after.
func (h *Hub) skippedSince(after int64, sub *Subscription) bool {
	for k, pos := range h.skipped {
		if pos <= after {
			continue
		}
		if sub.filter == nil || sub.filter(Update{Position: pos, Event: k.event, Queue: k.queue}) {
			return true
		}
	}
	return false
}

// markGroups sets More on every update followed by one of the same
// position. Publish is called with whole transactions, so a position's
// updates always arrive in one call and the last of them is known.
func markGroups(us []Update) {
	for i := range us {
		us[i].More = i+1 < len(us) && us[i+1].Position == us[i].Position
	}
}

func (h *Hub) record(u Update) {
	if len(h.ring) < h.cfg.Ring {
		h.ring = append(h.ring, u)
	} else {
		h.floor = max(h.floor, h.ring[h.head].Position)
		h.ring[h.head] = u
		h.head = (h.head + 1) % len(h.ring)
	}
	h.last = max(h.last, u.Position)
}

// Subscribe returns, atomically, the updates after position `after` still in
// the ring (those filter accepts, oldest first) and a live subscription that
// continues right after them: no gap, no duplicate. complete is false when
// the ring no longer holds everything after `after` (or `after` is beyond
// anything this hub knows); the caller should then send snapshots of the
// current state instead. filter may be nil; it runs under the hub's lock and
// must be quick and must not call the hub.
func (h *Hub) Subscribe(after int64, filter func(Update) bool) (backlog []Update, sub *Subscription, complete bool) {
	return h.SubscribeTo(after, Interest{}, filter)
}

// Interest narrows a subscription in ways the hub can index; its zero
// value takes everything the filter accepts.
type Interest struct {
	// Queues limits the subscription to these queues (nil: every queue).
	Queues []string
	// NoQueueUpdates: the subscription never takes queue.updated (nor
	// queue.deleted) updates.
	NoQueueUpdates bool
	// NoMessageUpdates: the subscription never takes message.updated.
	NoMessageUpdates bool
}

// SubscribeTo is Subscribe narrowed by in, which the filter then narrows
// further. A subscription limited to queues is indexed by them, so updates
// of other queues cost it nothing.
func (h *Hub) SubscribeTo(after int64, in Interest, filter func(Update) bool) (backlog []Update, sub *Subscription, complete bool) {
	sub = &Subscription{hub: h, filter: filter, ch: make(chan []Update, h.cfg.Buffer), done: make(chan struct{}),
		noQueueUpdates: in.NoQueueUpdates, noMessageUpdates: in.NoMessageUpdates}
	if in.Queues != nil || in.NoQueueUpdates || in.NoMessageUpdates {
		if in.Queues != nil {
			sub.queues = make(map[string]struct{}, len(in.Queues))
			for _, q := range in.Queues {
				sub.queues[q] = struct{}{}
			}
		}
		inner := filter
		sub.filter = func(u Update) bool {
			if sub.queues != nil {
				if _, ok := sub.queues[u.Queue]; !ok {
					return false
				}
			}
			if u.Event == EventMessageUpdated && sub.noMessageUpdates ||
				u.Event != EventMessageUpdated && sub.noQueueUpdates {
				return false
			}
			return inner == nil || inner(u)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		sub.err = ErrHubClosed
		close(sub.done)
		return nil, sub, false
	}
	complete = after >= h.floor && after <= h.last && !h.skippedSince(after, sub)
	for i := range h.ring {
		at := (h.head + i) % len(h.ring)
		u := h.ring[at]
		if u.Position > after && (sub.filter == nil || sub.filter(u)) {
			if u.Frame == nil && h.cfg.Render != nil {
				u.Frame = h.cfg.Render(u)
				h.ring[at].Frame = u.Frame
			}
			backlog = append(backlog, u)
		}
	}
	markGroups(backlog)
	h.subs[sub] = struct{}{}
	if sub.queues == nil {
		h.wildcard[sub] = struct{}{}
	}
	for q := range sub.queues {
		set := h.byQueue[q]
		if set == nil {
			set = make(map[*Subscription]struct{})
			h.byQueue[q] = set
		}
		set[sub] = struct{}{}
	}
	return backlog, sub, complete
}

// Subscribers is the number of live subscriptions (for metrics).
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Dropped is how many subscribers were dropped for being too slow since the
// hub started (for metrics).
func (h *Hub) Dropped() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped
}

// Position is the highest position the hub has seen published (or set as
// floor).
func (h *Hub) Position() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Close ends every subscription (Err returns ErrHubClosed); later Publish
// calls do nothing and later Subscribe calls return an ended subscription.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		h.endLocked(s, ErrHubClosed)
	}
}

func (h *Hub) endLocked(s *Subscription, reason error) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	delete(h.wildcard, s)
	for q := range s.queues {
		if set := h.byQueue[q]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(h.byQueue, q)
			}
		}
	}
	now := h.cfg.Now()
	for _, event := range s.events() {
		if s.queues == nil {
			h.anyLeft[event] = now
		}
		for q := range s.queues {
			h.left[wantKey{event, q}] = now
		}
	}
	s.err = reason
	close(s.done)
}

// Subscription is one subscriber's live feed from a Hub.
type Subscription struct {
	hub    *Hub
	filter func(Update) bool
	queues map[string]struct{} // nil: every queue
	// noQueueUpdates, noMessageUpdates: as in Interest.
	noQueueUpdates, noMessageUpdates bool
	ch                               chan []Update
	done                             chan struct{}
	err                              error // guarded by hub.mu; set before done closes
}

// events are the kinds of update (Update.Event) WantUpdate is asked about
// that s may take.
func (s *Subscription) events() []string {
	var out []string
	if !s.noQueueUpdates {
		out = append(out, EventQueueUpdated)
	}
	if !s.noMessageUpdates {
		out = append(out, EventMessageUpdated)
	}
	return out
}

// C delivers the updates published after the subscription began, in order:
// each receive is the updates of one Publish this subscriber takes, never
// empty. It is never closed; stop reading when Done is closed (updates still
// buffered in C may be drained first).
func (s *Subscription) C() <-chan []Update { return s.ch }

// Done is closed when the subscription ends: dropped for slowness, the hub
// closed, or Close called.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err says why the subscription ended (ErrSlowSubscriber, ErrHubClosed or
// ErrSubscriptionClosed), or nil while it is live.
func (s *Subscription) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.endLocked(s, ErrSubscriptionClosed)
}
