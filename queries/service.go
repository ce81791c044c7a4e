package queries

import (
	"context"
	"time"
)

// ReadModel is the storage the queries answer from: the projections' SQLite
// read models. It is declared here, where it is used; the projections
// package implements it. Every method reads one consistent snapshot.
type ReadModel interface {
	// Queues lists queues in name order, after f.After, whose names start
	// with f.Prefix and pass f.Allowed, at most f.Limit of them, with stats
	// computed as of f.Now.
	Queues(ctx context.Context, f QueueFilter) ([]Queue, error)
	// Queue returns one queue with its stats as of now, or an error
	// matching domain.ErrQueueNotFound.
	Queue(ctx context.Context, name string, now time.Time) (Queue, error)
	// Messages lists a queue's messages in publish order, after
	// f.AfterPosition, at most f.Limit of them, or an error matching
	// domain.ErrQueueNotFound when the queue does not exist.
	Messages(ctx context.Context, f MessageFilter) ([]ListedMessage, error)
	// Message returns a message with its history, or an error matching
	// domain.ErrMessageNotFound.
	Message(ctx context.Context, id string, now time.Time) (MessageDetail, error)
}

// QueueFilter selects queues for ReadModel.Queues.
type QueueFilter struct {
	Prefix  string
	After   string // exclusive; "" from the start
	Limit   int
	Allowed func(queue string) bool // nil allows all
	Now     time.Time
}

// MessageFilter selects messages for ReadModel.Messages. State is one of
// MessageStates or "" for all.
type MessageFilter struct {
	Queue         string
	State         string
	AfterPosition int64 // exclusive; 0 from the start
	Limit         int
	IncludeBody   bool
	Now           time.Time
}

// ListedMessage is a listed message and its paging key: the global position
// of its MessagePublished event.
type ListedMessage struct {
	MessageSummary
	Position int64
}

// Waiter tells how far the read side has applied the event log and lets a
// caller wait for it; the projection engine implements it.
type Waiter interface {
	// AppliedPosition is the global position the read models have reached.
	AppliedPosition() int64
	// WaitForPosition returns nil once AppliedPosition() >= position, or
	// ctx's error if ctx ends first. It must be woken by commits, not poll.
	WaitForPosition(ctx context.Context, position int64) error
}

// Paging limits of API.md.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// DefaultWaitTimeout is how long WaitFor waits when the caller gives no
// timeout (API.md: "up to 5 s by default").
const DefaultWaitTimeout = 5 * time.Second

// Service answers the query routes. Its methods are safe for concurrent use.
type Service struct {
	rm     ReadModel
	waiter Waiter
	now    func() time.Time
}

// Option changes a Service.
type Option func(*Service)

// WithClock makes the service read time from now instead of time.Now: ready
// and delayed depend on the clock, and tests need to fix it.
func WithClock(now func() time.Time) Option {
	return func(s *Service) { s.now = now }
}

// New returns the query service over a read model and the waiter that tracks
// how far that read model got.
func New(rm ReadModel, waiter Waiter, opts ...Option) *Service {
	s := &Service{rm: rm, waiter: waiter, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Position is the global position the read side has applied: the value of
// every query response's X-Ledgerq-Position.
func (s *Service) Position() int64 { return s.waiter.AppliedPosition() }
