package projections

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// dlqStory: a message fails twice into the dead-letter queue and is redriven
// back; another is delayed; a third is in flight.
func dlqStory(t *testing.T) (*memLog, *queries.Service) {
	t.Helper()
	log := newMemLog()
	t0 := time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC) // testNow is 04:00
	attrs := defaultAttrs()
	attrs.DeadLetterQueue, attrs.MaxReceiveCount = "orders.dlq", 1
	pub := func(q, id string, at, avail time.Time, origin *domain.Origin) domain.MessagePublished {
		return domain.MessagePublished{Queue: q, MessageID: id, Body: "b-" + id, BodyEncoding: "utf8", BodySize: 3,
			ContentType: "text/plain", Headers: map[string]string{"trace": id}, PublishedAt: at, AvailableAt: avail,
			ExpiresAt: at.Add(96 * time.Hour), Origin: origin}
	}
	log.add(t,
		domain.QueueCreated{Queue: "orders.dlq", Attributes: defaultAttrs(), CreatedAt: t0},
		domain.QueueCreated{Queue: "orders", Attributes: attrs, CreatedAt: t0},
		pub("orders", "m1", t0, t0, nil),
		domain.MessageLeased{Queue: "orders", MessageID: "m1", ReceiptHash: "h1", LeasedAt: t0.Add(time.Second),
			LeaseExpiresAt: t0.Add(31 * time.Second), ReceiveCount: 1},
		domain.MessageDeadLettered{Queue: "orders", MessageID: "m1", DeadLetterQueue: "orders.dlq",
			DeadLetterMessageID: "d1", ReceiveCount: 1, DeadLetteredAt: t0.Add(31 * time.Second)},
		pub("orders.dlq", "d1", t0.Add(31*time.Second), t0.Add(31*time.Second),
			&domain.Origin{Queue: "orders", MessageID: "m1", Reason: domain.OriginDeadLetter}),
		domain.MessageRedriven{Queue: "orders.dlq", MessageID: "d1", ToQueue: "orders", NewMessageID: "r1",
			RedrivenAt: t0.Add(time.Minute)},
		pub("orders", "r1", t0.Add(time.Minute), t0.Add(time.Minute),
			&domain.Origin{Queue: "orders.dlq", MessageID: "d1", Reason: domain.OriginRedrive}),
		pub("orders", "m2", t0.Add(2*time.Minute), t0.Add(3*time.Hour), nil), // delayed until 06:02
		pub("orders", "m3", t0.Add(3*time.Minute), t0.Add(3*time.Minute), nil),
		domain.MessageLeased{Queue: "orders", MessageID: "m3", ReceiptHash: "h3", LeasedAt: t0.Add(4 * time.Minute),
			LeaseExpiresAt: t0.Add(5 * time.Minute), ReceiveCount: 1},
	)
	e := newEngine(t, Config{Source: log})
	if err := e.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	return log, queries.New(e, e, queries.WithClock(func() time.Time { return testNow }))
}

func TestGetMessageShowsHistoryAndLinks(t *testing.T) {
	log, s := dlqStory(t)
	ctx := context.Background()

	m1, err := s.GetMessage(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if m1.State != queries.StateDeadLettered || m1.Body != "b-m1" || m1.Headers["trace"] != "m1" || m1.ReceiveCount != 1 {
		t.Fatalf("m1: %+v", m1)
	}
	mustEqual(t, "m1 moved to", m1.MovedTo, &queries.MessageLink{Queue: "orders.dlq", MessageID: "d1", Reason: "dead_letter"})
	mustEqual(t, "m1 history", historyTypes(m1), "3:MessagePublished 4:MessageLeased 5:MessageDeadLettered")
	// Every entry is its event as logged: the MessagePublished (kept in
	// the message's row) like those after it.
	logged := log.all()
	for _, h := range m1.History {
		ev := logged[h.Position-1]
		if h.Type != ev.Type || string(h.Data) != string(ev.Data) || !h.RecordedAt.Equal(ev.RecordedAt) {
			t.Fatalf("history entry %d: %s %s at %v; logged %s %s at %v",
				h.Position, h.Type, h.Data, h.RecordedAt, ev.Type, ev.Data, ev.RecordedAt)
		}
	}
	var dl domain.MessageDeadLettered
	if err := json.Unmarshal(m1.History[2].Data, &dl); err != nil || dl.DeadLetterMessageID != "d1" {
		t.Fatalf("dead-letter event data %s: %v", m1.History[2].Data, err)
	}

	d1, err := s.GetMessage(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if d1.Queue != "orders.dlq" || d1.State != queries.StateRedriven {
		t.Fatalf("d1: %+v", d1)
	}
	mustEqual(t, "d1 origin", d1.Origin, &queries.MessageLink{Queue: "orders", MessageID: "m1", Reason: "dead_letter"})
	mustEqual(t, "d1 moved to", d1.MovedTo, &queries.MessageLink{Queue: "orders", MessageID: "r1", Reason: "redrive"})
	mustEqual(t, "d1 history", historyTypes(d1), "6:MessagePublished 7:MessageRedriven")

	r1, err := s.GetMessage(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "r1 origin", r1.Origin, &queries.MessageLink{Queue: "orders.dlq", MessageID: "d1", Reason: "redrive"})
	if r1.State != queries.StateReady || r1.MovedTo != nil {
		t.Fatalf("r1: %+v", r1)
	}

	m3, err := s.GetMessage(ctx, "m3")
	if err != nil {
		t.Fatal(err)
	}
	if m3.State != queries.StateInFlight || m3.LeaseExpiresAt == nil ||
		!m3.LeaseExpiresAt.Equal(time.Date(2025, 1, 2, 3, 5, 0, 0, time.UTC)) {
		t.Fatalf("m3: %+v", m3)
	}

	if _, err := s.GetMessage(ctx, "nope"); !errors.Is(err, domain.ErrMessageNotFound) {
		t.Fatalf("unknown message: %v", err)
	}
}

func historyTypes(m queries.MessageDetail) string {
	var parts []string
	for _, h := range m.History {
		parts = append(parts, strconv.FormatInt(h.Position, 10)+":"+h.Type)
	}
	return strings.Join(parts, " ")
}

func TestListMessagesByState(t *testing.T) {
	_, s := dlqStory(t)
	ctx := context.Background()
	ids := func(state string) string {
		t.Helper()
		page, err := s.ListMessages(ctx, queries.ListMessages{Queue: "orders", State: state})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range page.Messages {
			out = append(out, m.ID+"="+m.State)
		}
		return strings.Join(out, " ")
	}
	for state, want := range map[string]string{
		"":                        "m1=dead_lettered r1=ready m2=delayed m3=in_flight",
		queries.StateReady:        "r1=ready",
		queries.StateDelayed:      "m2=delayed",
		queries.StateInFlight:     "m3=in_flight",
		queries.StateDeadLettered: "m1=dead_lettered",
		queries.StateAcked:        "",
		queries.StatePurged:       "",
	} {
		if got := ids(state); got != want {
			t.Errorf("state %q: got %q, want %q", state, got, want)
		}
	}

	page, err := s.ListMessages(ctx, queries.ListMessages{Queue: "orders", Limit: 1, IncludeBody: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 || page.Messages[0].Body == nil || *page.Messages[0].Body != "b-m1" || page.NextCursor == "" {
		t.Fatalf("page with body: %+v", page)
	}
	rest, err := s.ListMessages(ctx, queries.ListMessages{Queue: "orders", Limit: 10, Cursor: page.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.Messages) != 3 || rest.Messages[0].ID != "r1" || rest.Messages[0].Body != nil || rest.NextCursor != "" {
		t.Fatalf("second page: %+v", rest)
	}
	if _, err := s.ListMessages(ctx, queries.ListMessages{Queue: "nope"}); !errors.Is(err, domain.ErrQueueNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
}

func TestGetQueueStats(t *testing.T) {
	_, s := dlqStory(t)
	ctx := context.Background()
	q, err := s.GetQueue(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "orders stats", q.Stats, queries.Stats{
		Ready: 1, Delayed: 1, InFlight: 1, PublishedTotal: 4, DeadLetteredTotal: 1,
		OldestReadyAgeMS: (59 * time.Minute).Milliseconds(), // r1 ready since 03:01
	})
	if q.Attributes.DeadLetterQueue == nil || *q.Attributes.DeadLetterQueue != "orders.dlq" || q.Attributes.MaxReceiveCount != 1 {
		t.Fatalf("attributes %+v", q.Attributes)
	}
	dlq, err := s.GetQueue(ctx, "orders.dlq")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "dlq stats", dlq.Stats, queries.Stats{PublishedTotal: 1})
	if dlq.Attributes.DeadLetterQueue != nil {
		t.Fatalf("dlq has a dead-letter queue: %v", *dlq.Attributes.DeadLetterQueue)
	}
	if _, err := s.GetQueue(ctx, "nope"); !errors.Is(err, domain.ErrQueueNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
}

func TestStateAtReplaysToAPoint(t *testing.T) {
	log, _ := dlqStory(t)
	ctx := context.Background()
	// Up to position 5: m1 was just dead-lettered, its copy not yet
	// published; nothing is ready in orders.
	v, err := StateAt(ctx, log, 5, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Position != 5 || len(v.Queues) != 2 || v.Queues[0].Name != "orders" {
		t.Fatalf("state at 5: %+v", v)
	}
	mustEqual(t, "orders at 5", v.Queues[0].Stats, queries.Stats{PublishedTotal: 1, DeadLetteredTotal: 1})
	mustEqual(t, "dlq at 5", v.Queues[1].Stats, queries.Stats{})

	// The whole log, judged at testNow: the same as the live read model.
	all, err := StateAt(ctx, log, 0, testNow)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Config{Source: log})
	if err := e.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	live, err := e.Queues(ctx, queries.QueueFilter{Limit: 100, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "state at head vs read model", all.Queues, live)
	if all.Position != 11 {
		t.Fatalf("position %d, want 11", all.Position)
	}

	// By time: events are recorded 1 ms apart from the log's clock.
	at := log.all()[1].RecordedAt
	byTime, err := StateAt(ctx, log, 0, at)
	if err != nil {
		t.Fatal(err)
	}
	if byTime.Position != 2 || len(byTime.Queues) != 2 {
		t.Fatalf("state at %s: %+v", at, byTime)
	}
}

// The stats and listing queries must run on indexes, not scans of the
// messages table, or a large queue makes every update slow.
func TestQueryPlansUseIndexes(t *testing.T) {
	e := newEngine(t, Config{Source: newMemLog()})
	for _, c := range []struct{ query, want string }{
		{selectQueueWithStats, "messages_available"},
		{`SELECT position FROM messages INDEXED BY messages_queue_state WHERE queue = 'q' AND state = 'available'
			AND available_at <= 5 AND position > 0 ORDER BY position LIMIT 10`, "messages_queue_state"},
		{selectMessageRow, "messages_id"},
	} {
		rows := queryRows(t, e.r, "EXPLAIN QUERY PLAN "+c.query, 0, "q")
		var plan []string
		for _, r := range rows {
			plan = append(plan, r[len(r)-1].(string))
		}
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, c.want) || strings.Contains(joined, "SCAN m") || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("plan for %.60q…: %s (want %s, no scan, no sort)", c.query, joined, c.want)
		}
	}
}

// Listing a queue's messages of every state merges one index range per
// stored state: over a workload that reaches every state, paging through
// each queue yields exactly its rows in publish order.
func TestListingEveryStateCoversEveryMessage(t *testing.T) {
	log, events := simulatedLog(t, 23, 2500)
	e := newEngine(t, Config{Source: log})
	ctx := context.Background()
	if err := e.ApplyPack(ctx, events); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range queryRows(t, e.r, "SELECT DISTINCT state FROM messages") {
		seen[r[0].(string)] = true
	}
	for _, st := range storedStates {
		if !seen[st] {
			t.Errorf("the workload leaves no message %s: the listing of that state is not tested", st)
		}
		delete(seen, st)
	}
	if len(seen) != 0 {
		t.Fatalf("states %v are stored but not in storedStates: listings would miss them", seen)
	}
	queues := queryRows(t, e.r, "SELECT name FROM queues ORDER BY name")
	for _, q := range queues {
		queue := q[0].(string)
		var want []string
		for _, r := range queryRows(t, e.r, "SELECT id FROM messages NOT INDEXED WHERE queue = ? ORDER BY position", queue) {
			want = append(want, r[0].(string))
		}
		var got []string
		after := int64(0)
		for {
			page, err := e.Messages(ctx, queries.MessageFilter{Queue: queue, AfterPosition: after, Limit: 7, Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page {
				got = append(got, m.ID)
				after = m.Position
			}
			if len(page) < 7 {
				break
			}
		}
		mustEqual(t, "messages of "+queue, got, want)
	}
}
