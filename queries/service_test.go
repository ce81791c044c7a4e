package queries

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// fakeReadModel serves fixed queues and messages, honouring the filters.
type fakeReadModel struct {
	queues   []string
	messages map[string][]ListedMessage
	lastMsgF MessageFilter
}

func (f *fakeReadModel) Queues(_ context.Context, q QueueFilter) ([]Queue, error) {
	var out []Queue
	for _, name := range f.queues {
		if name <= q.After || !strings.HasPrefix(name, q.Prefix) || (q.Allowed != nil && !q.Allowed(name)) {
			continue
		}
		if len(out) == q.Limit {
			break
		}
		out = append(out, Queue{Name: name})
	}
	return out, nil
}

func (f *fakeReadModel) Queue(_ context.Context, name string, _ time.Time) (Queue, error) {
	if !slices.Contains(f.queues, name) {
		return Queue{}, domain.ErrQueueNotFound
	}
	return Queue{Name: name}, nil
}

func (f *fakeReadModel) Messages(_ context.Context, q MessageFilter) ([]ListedMessage, error) {
	f.lastMsgF = q
	msgs, ok := f.messages[q.Queue]
	if !ok {
		return nil, domain.ErrQueueNotFound
	}
	var out []ListedMessage
	for _, m := range msgs {
		if m.Position > q.AfterPosition && len(out) < q.Limit {
			out = append(out, m)
		}
	}
	return out, nil
}

func (f *fakeReadModel) Message(context.Context, string, time.Time) (MessageDetail, error) {
	return MessageDetail{}, domain.ErrMessageNotFound
}

// fakeWaiter is a position that tests move; waiters wake on each move.
type fakeWaiter struct {
	mu      sync.Mutex
	pos     int64
	changed chan struct{}
	waiting chan struct{} // receives when someone starts waiting
}

func newFakeWaiter() *fakeWaiter {
	return &fakeWaiter{changed: make(chan struct{}), waiting: make(chan struct{}, 16)}
}

func (w *fakeWaiter) AppliedPosition() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pos
}

func (w *fakeWaiter) set(p int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pos = p
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *fakeWaiter) WaitForPosition(ctx context.Context, p int64) error {
	w.waiting <- struct{}{}
	for {
		w.mu.Lock()
		cur, ch := w.pos, w.changed
		w.mu.Unlock()
		if cur >= p {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestListQueuesPages(t *testing.T) {
	rm := &fakeReadModel{queues: []string{"a.1", "a.2", "a.3", "b.1", "b.2"}}
	s := New(rm, newFakeWaiter())
	ctx := context.Background()
	var names []string
	cursor := ""
	pages := 0
	for {
		page, err := s.ListQueues(ctx, ListQueues{Limit: 2, Cursor: cursor, Allowed: func(q string) bool { return q != "a.2" }})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, q := range page.Queues {
			names = append(names, q.Name)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if got := strings.Join(names, " "); got != "a.1 a.3 b.1 b.2" || pages != 2 {
		t.Fatalf("got %q in %d pages, want \"a.1 a.3 b.1 b.2\" in 2", got, pages)
	}
	page, err := s.ListQueues(ctx, ListQueues{Prefix: "b."})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Queues) != 2 || page.NextCursor != "" {
		t.Fatalf("prefix b.: %+v", page)
	}
	empty, err := s.ListQueues(ctx, ListQueues{Prefix: "zzz"})
	if err != nil || empty.Queues == nil || len(empty.Queues) != 0 {
		t.Fatalf("no match: %+v, %v (want an empty, non-nil list)", empty, err)
	}
}

func TestBadInputIsInvalidArgument(t *testing.T) {
	rm := &fakeReadModel{queues: []string{"q"}, messages: map[string][]ListedMessage{"q": nil}}
	s := New(rm, newFakeWaiter())
	ctx := context.Background()
	messageCursor := encodeMessageCursor(5)
	for name, call := range map[string]func() error{
		"state":          func() error { _, err := s.ListMessages(ctx, ListMessages{Queue: "q", State: "sleeping"}); return err },
		"limit too big":  func() error { _, err := s.ListMessages(ctx, ListMessages{Queue: "q", Limit: 1001}); return err },
		"negative limit": func() error { _, err := s.ListQueues(ctx, ListQueues{Limit: -1}); return err },
		"garbage cursor": func() error { _, err := s.ListQueues(ctx, ListQueues{Cursor: "%%%"}); return err },
		"queue cursor as msg": func() error {
			_, err := s.ListMessages(ctx, ListMessages{Queue: "q", Cursor: encodeQueueCursor("x")})
			return err
		},
		"message cursor as q": func() error { _, err := s.ListQueues(ctx, ListQueues{Cursor: messageCursor}); return err },
		"non-numeric msg key": func() error {
			_, err := s.ListMessages(ctx, ListMessages{Queue: "q", Cursor: encodeCursor(messageCursorTag, "x")})
			return err
		},
		"empty queue cursor": func() error {
			_, err := s.ListQueues(ctx, ListQueues{Cursor: encodeCursor(queueCursorTag, "")})
			return err
		},
		"negative message key": func() error {
			_, err := s.ListMessages(ctx, ListMessages{Queue: "q", Cursor: encodeCursor(messageCursorTag, "-4")})
			return err
		},
		"padded base64 garbage": func() error { _, err := s.ListMessages(ctx, ListMessages{Queue: "q", Cursor: "bTE6NQ=="}); return err },
	} {
		err := call()
		if !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want invalid_argument", name, err)
		}
	}
}

func TestListMessagesPagesAndValidStates(t *testing.T) {
	var msgs []ListedMessage
	for i := int64(1); i <= 5; i++ {
		msgs = append(msgs, ListedMessage{MessageSummary: MessageSummary{ID: string(rune('a' + i))}, Position: i * 10})
	}
	rm := &fakeReadModel{queues: []string{"q"}, messages: map[string][]ListedMessage{"q": msgs}}
	s := New(rm, newFakeWaiter(), WithClock(func() time.Time { return time.Unix(42, 0) }))
	ctx := context.Background()
	first, err := s.ListMessages(ctx, ListMessages{Queue: "q", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.ListMessages(ctx, ListMessages{Queue: "q", Limit: 3, Cursor: first.NextCursor, State: StateReady})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Messages) != 3 || first.NextCursor == "" || len(second.Messages) != 2 || second.NextCursor != "" {
		t.Fatalf("pages: %d (%q) then %d (%q)", len(first.Messages), first.NextCursor, len(second.Messages), second.NextCursor)
	}
	if rm.lastMsgF.AfterPosition != 30 || !rm.lastMsgF.Now.Equal(time.Unix(42, 0)) || rm.lastMsgF.State != StateReady {
		t.Fatalf("read model asked %+v, want after 30, the service clock, state ready", rm.lastMsgF)
	}
	for _, st := range MessageStates {
		if _, err := s.ListMessages(ctx, ListMessages{Queue: "q", State: st}); err != nil {
			t.Errorf("state %s: %v", st, err)
		}
	}
	if _, err := s.ListMessages(ctx, ListMessages{Queue: "nope"}); !errors.Is(err, domain.ErrQueueNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
	if _, err := s.GetQueue(ctx, "nope"); !errors.Is(err, domain.ErrQueueNotFound) {
		t.Fatalf("unknown queue: %v", err)
	}
	if _, err := s.GetMessage(ctx, "nope"); !errors.Is(err, domain.ErrMessageNotFound) {
		t.Fatalf("unknown message: %v", err)
	}
}

func TestWaitFor(t *testing.T) {
	w := newFakeWaiter()
	w.set(5)
	s := New(&fakeReadModel{}, w)
	ctx := context.Background()

	if err := s.WaitFor(ctx, 5, time.Millisecond); err != nil {
		t.Fatalf("already applied: %v", err)
	}
	if got := s.Position(); got != 5 {
		t.Fatalf("Position %d, want 5", got)
	}

	// Never reached: the timeout is the answer.
	if err := s.WaitFor(ctx, 6, 20*time.Millisecond); !errors.Is(err, ErrConsistencyTimeout) {
		t.Fatalf("got %v, want ErrConsistencyTimeout", err)
	}
	<-w.waiting

	// Reached while waiting: woken by the change, long before the timeout.
	done := make(chan error, 1)
	go func() { done <- s.WaitFor(ctx, 7, time.Minute) }()
	<-w.waiting
	w.set(6)
	w.set(7)
	if err := <-done; err != nil {
		t.Fatalf("woken wait: %v", err)
	}

	// The caller went away: its error, not a consistency timeout.
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- s.WaitFor(cctx, 100, time.Minute) }()
	<-w.waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, ErrConsistencyTimeout) {
		t.Fatalf("cancelled wait: %v", err)
	}
}
