package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
)

// memLog is an event log in memory and a Source over it.
type memLog struct {
	mu       sync.Mutex
	events   []eventstore.Event
	versions map[string]int64
	clock    time.Time
	reads    int // ReadAll calls, to see whether catch-up happened
}

func newMemLog() *memLog {
	return &memLog{versions: make(map[string]int64), clock: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// add appends domain events, each recorded one millisecond after the last.
func (l *memLog) add(t testing.TB, evs ...domain.Event) []eventstore.Event {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []eventstore.Event
	for _, ev := range evs {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		stream := domain.StreamID(ev.QueueName())
		l.versions[stream]++
		l.clock = l.clock.Add(time.Millisecond)
		e := eventstore.Event{
			Position: int64(len(l.events)) + 1, StreamID: stream, Version: l.versions[stream],
			Type: ev.EventType(), SchemaVersion: ev.SchemaVersion(), Data: data, RecordedAt: l.clock,
		}
		l.events = append(l.events, e)
		out = append(out, e)
	}
	return out
}

func (l *memLog) all() []eventstore.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *memLog) readCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reads
}

func (l *memLog) ReadAll(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	l.mu.Lock()
	l.reads++
	evs := slices.Clone(l.events)
	l.mu.Unlock()
	for _, e := range evs {
		if e.Position <= after {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// truncatedSource serves only the first n events of a log: a source that
// cannot fill a gap.
type truncatedSource struct {
	log *memLog
	n   int64
}

func (s truncatedSource) ReadAll(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	return s.log.ReadAll(ctx, after, func(e eventstore.Event) error {
		if e.Position > s.n {
			return nil
		}
		return fn(e)
	})
}

// recordingHub collects updates.
type recordingHub struct {
	mu      sync.Mutex
	updates []queries.Update
	floor   int64
}

func (h *recordingHub) Publish(us ...queries.Update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.updates = append(h.updates, us...)
}

func (h *recordingHub) SetFloor(p int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.floor = p
}

func (h *recordingHub) all() []queries.Update {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.updates)
}

var testNow = time.Date(2025, 1, 2, 4, 0, 0, 0, time.UTC)

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "read.db")
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// dump returns every row of every table of the projection, in key order,
// as strings: what rebuild-equals-live compares.
func dump(t testing.TB, e *Engine, p projection) map[string][]string {
	t.Helper()
	out := make(map[string][]string)
	for _, table := range p.tables() {
		rows, err := e.r.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				if b2, ok := v.([]byte); ok {
					v = string(b2)
				}
				fmt.Fprintf(&b, "%s=%v|", cols[i], v)
			}
			lines = append(lines, b.String())
		}
		rows.Close()
		sort.Strings(lines)
		out[table] = lines
	}
	return out
}

func queryRows(t testing.TB, db *sql.DB, q string, args ...any) [][]any {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		out = append(out, vals)
	}
	return out
}

func mustEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// sim produces a valid random history of queues and messages, the way the
// command side would: every lifecycle path (delay, lease, extend, ack, nack,
// lease expiry, dead-lettering with a copy, expiry, redrive, purge, delete,
// re-create) shows up.
type sim struct {
	t     testing.TB
	log   *memLog
	rng   *rand.Rand
	now   time.Time
	seq   int
	queue map[string]*simQueue
	msgs  map[string]*simMsg
}

type simQueue struct {
	attrs domain.Attributes
	live  []string // available or in-flight message ids
}

type simMsg struct {
	queue    string
	inFlight bool
	receives int
	origin   *domain.Origin
}

// simulatedLog runs the simulated broker for steps steps from seed and
// returns the log it wrote with its events.
func simulatedLog(t testing.TB, seed uint64, steps int) (*memLog, []eventstore.Event) {
	t.Helper()
	log := newMemLog()
	s := newSim(t, log, seed)
	for range steps {
		s.step()
	}
	return log, log.all()
}

func newSim(t testing.TB, log *memLog, seed uint64) *sim {
	return &sim{t: t, log: log, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC), queue: map[string]*simQueue{}, msgs: map[string]*simMsg{}}
}

func (s *sim) tick() time.Time {
	s.now = s.now.Add(time.Duration(s.rng.IntN(40)) * time.Millisecond)
	return s.now
}

func (s *sim) id(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%06d", prefix, s.seq)
}

func (s *sim) emit(evs ...domain.Event) { s.log.add(s.t, evs...) }

func defaultAttrs() domain.Attributes {
	return domain.Attributes{VisibilityTimeoutMS: 30000, RetentionMS: 345600000, MaxMessageBytes: 262144}
}

func (s *sim) createQueue(name string, attrs domain.Attributes) {
	s.queue[name] = &simQueue{attrs: attrs}
	s.emit(domain.QueueCreated{Queue: name, Attributes: attrs, CreatedAt: s.tick()})
}

func (s *sim) publish(queue string, delay time.Duration, origin *domain.Origin) string {
	id := s.id("m")
	now := s.tick()
	s.publishID(queue, id, now, delay, origin)
	return id
}

func (s *sim) publishID(queue, id string, now time.Time, delay time.Duration, origin *domain.Origin) {
	q := s.queue[queue]
	q.live = append(q.live, id)
	s.msgs[id] = &simMsg{queue: queue, origin: origin}
	body := fmt.Sprintf("body of %s", id)
	s.emit(domain.MessagePublished{
		Queue: queue, MessageID: id, Body: body, BodyEncoding: domain.EncodingUTF8, BodySize: int64(len(body)),
		ContentType: "text/plain", Headers: map[string]string{"k": id}, PublishedAt: now,
		AvailableAt: now.Add(delay), ExpiresAt: now.Add(96 * time.Hour), Origin: origin,
	})
}

func (s *sim) pick(queue string, inFlight bool) string {
	var ids []string
	for _, id := range s.queue[queue].live {
		if s.msgs[id].inFlight == inFlight {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	return ids[s.rng.IntN(len(ids))]
}

func (s *sim) finish(id string) {
	m := s.msgs[id]
	q := s.queue[m.queue]
	q.live = slices.DeleteFunc(q.live, func(x string) bool { return x == id })
	delete(s.msgs, id)
}

func (s *sim) lease(queue string) string {
	id := s.pick(queue, false)
	if id == "" {
		return ""
	}
	m := s.msgs[id]
	m.inFlight = true
	m.receives++
	now := s.tick()
	s.emit(domain.MessageLeased{Queue: queue, MessageID: id, ReceiptHash: "h-" + id, Consumer: "c1",
		LeasedAt: now, LeaseExpiresAt: now.Add(30 * time.Second), ReceiveCount: m.receives})
	return id
}

// comeBack handles a lease that ends without ack: dead-letter when the
// receive count is used up, else ready again.
func (s *sim) comeBack(id string, release bool) {
	m := s.msgs[id]
	q := s.queue[m.queue]
	now := s.tick()
	if q.attrs.DeadLetterQueue != "" && m.receives >= q.attrs.MaxReceiveCount {
		copyID := s.id("dl")
		queue := m.queue
		s.emit(domain.MessageDeadLettered{Queue: queue, MessageID: id, DeadLetterQueue: q.attrs.DeadLetterQueue,
			DeadLetterMessageID: copyID, ReceiveCount: m.receives, DeadLetteredAt: now})
		s.finish(id)
		s.publishID(q.attrs.DeadLetterQueue, copyID, now, 0,
			&domain.Origin{Queue: queue, MessageID: id, Reason: domain.OriginDeadLetter})
		return
	}
	m.inFlight = false
	if release {
		delay := time.Duration(s.rng.IntN(3)) * time.Hour
		s.emit(domain.MessageReleased{Queue: m.queue, MessageID: id, ReceiptHash: "h-" + id,
			DelayMS: delay.Milliseconds(), ReleasedAt: now, AvailableAt: now.Add(delay)})
	} else {
		s.emit(domain.MessageLeaseExpired{Queue: m.queue, MessageID: id, ReceiptHash: "h-" + id, ExpiredAt: now})
	}
}

// step performs one random valid operation on the world.
func (s *sim) step() {
	names := make([]string, 0, len(s.queue))
	for n := range s.queue {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		s.createQueue("dlq", defaultAttrs())
		return
	}
	q := names[s.rng.IntN(len(names))]
	switch r := s.rng.IntN(100); {
	case r < 3 && len(names) < 6:
		attrs := defaultAttrs()
		if s.rng.IntN(2) == 0 {
			attrs.DeadLetterQueue, attrs.MaxReceiveCount = "dlq", 1+s.rng.IntN(2)
		}
		s.createQueue(s.id("q"), attrs)
	case r < 5:
		a := s.queue[q].attrs
		a.DelayMS = int64(s.rng.IntN(3)) * 1000
		s.queue[q].attrs = a
		s.emit(domain.QueueConfigured{Queue: q, Attributes: a, Changed: []string{"delay_ms"}, ConfiguredAt: s.tick()})
	case r < 6:
		n := 0
		for _, id := range slices.Clone(s.queue[q].live) {
			if !s.msgs[id].inFlight {
				s.finish(id)
				n++
			}
		}
		s.emit(domain.QueuePurged{Queue: q, Purged: n, PurgedAt: s.tick()})
	case r < 7 && q != "dlq":
		for _, id := range slices.Clone(s.queue[q].live) {
			s.finish(id)
		}
		delete(s.queue, q)
		s.emit(domain.QueueDeleted{Queue: q, DeletedAt: s.tick()})
		if s.rng.IntN(2) == 0 { // a queue may be created again under its name
			s.createQueue(q, defaultAttrs())
		}
	case r < 40:
		delay := time.Duration(0)
		if s.rng.IntN(4) == 0 {
			delay = time.Duration(1+s.rng.IntN(4)) * time.Hour
		}
		s.publish(q, delay, nil)
	case r < 60:
		s.lease(q)
	case r < 63:
		if id := s.pick(q, true); id != "" {
			now := s.tick()
			s.emit(domain.MessageLeaseExtended{Queue: q, MessageID: id, ReceiptHash: "h-" + id,
				ExtendedAt: now, LeaseExpiresAt: now.Add(time.Minute)})
		}
	case r < 80:
		if id := s.pick(q, true); id != "" {
			s.emit(domain.MessageAcked{Queue: q, MessageID: id, ReceiptHash: "h-" + id, AckedAt: s.tick()})
			s.finish(id)
		}
	case r < 88:
		if id := s.pick(q, true); id != "" {
			s.comeBack(id, true)
		}
	case r < 94:
		if id := s.pick(q, true); id != "" {
			s.comeBack(id, false)
		}
	case r < 97:
		if id := s.pick(q, s.rng.IntN(2) == 0); id != "" {
			s.emit(domain.MessageExpired{Queue: q, MessageID: id, ExpiredAt: s.tick()})
			s.finish(id)
		}
	default:
		if id := s.pick("dlq", false); id != "" && s.msgs[id].origin != nil {
			to := s.msgs[id].origin.Queue
			if _, ok := s.queue[to]; !ok {
				return
			}
			newID := s.id("rd")
			now := s.tick()
			s.emit(domain.MessageRedriven{Queue: "dlq", MessageID: id, ToQueue: to, NewMessageID: newID, RedrivenAt: now})
			s.finish(id)
			s.publishID(to, newID, now, 0, &domain.Origin{Queue: "dlq", MessageID: id, Reason: domain.OriginRedrive})
		}
	}
}

// applied is e's AppliedPosition once its notifier has handled every
// transaction committed so far (the position signal moves after the hub
// got the updates, on the notifier's goroutine).
func applied(e *Engine) int64 {
	e.flushNotices()
	return e.AppliedPosition()
}

// workloadLog is a log of the benchmarks' workload for the given number of
// messages (publishes, leases, acks over several queues), with its events.
func workloadLog(t testing.TB, messages int) (*memLog, []eventstore.Event) {
	t.Helper()
	log := newMemLog()
	benchWorkload(messages, func(ev domain.Event) { log.add(t, ev) })
	return log, log.all()
}

// applyInPacks applies events as the bus would deliver them, size at a time.
func applyInPacks(t testing.TB, e *Engine, events []eventstore.Event, size int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(events); i += size {
		if err := e.ApplyPack(ctx, events[i:min(i+size, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
}
