package transport

import (
	"context"
	"time"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/queries"
)

// Commands is the write side as the command routes use it: one method per
// command of commands/api.go. Every method appends synchronously, so a nil
// error means the events are on disk.
type Commands interface {
	CreateQueue(ctx context.Context, cmd commands.CreateQueue) (commands.QueueResult, error)
	ConfigureQueue(ctx context.Context, cmd commands.ConfigureQueue) (commands.QueueResult, error)
	DeleteQueue(ctx context.Context, cmd commands.DeleteQueue) (commands.PositionResult, error)
	PurgeQueue(ctx context.Context, cmd commands.PurgeQueue) (commands.PurgeResult, error)
	Redrive(ctx context.Context, cmd commands.Redrive) (commands.RedriveResult, error)
	Publish(ctx context.Context, cmd commands.Publish) (commands.PublishResult, error)
	PublishBatch(ctx context.Context, cmd commands.PublishBatch) (commands.BatchResult, error)
	Receive(ctx context.Context, cmd commands.Receive) (commands.ReceiveResult, error)
	Ack(ctx context.Context, cmd commands.Ack) (commands.AckResult, error)
	AckBatch(ctx context.Context, cmd commands.AckBatch) (commands.AckBatchResult, error)
	Nack(ctx context.Context, cmd commands.Nack) (commands.AckResult, error)
	Extend(ctx context.Context, cmd commands.Extend) (commands.ExtendResult, error)
	// Head is the global position of the last event in the log.
	Head() int64
}

// Queries is the read side as the query routes use it.
type Queries interface {
	ListQueues(ctx context.Context, q queries.ListQueues) (queries.QueuePage, error)
	GetQueue(ctx context.Context, name string) (queries.Queue, error)
	ListMessages(ctx context.Context, q queries.ListMessages) (queries.MessagePage, error)
	GetMessage(ctx context.Context, id string) (queries.MessageDetail, error)
	// WaitFor returns once the read side has applied position, or
	// queries.ErrConsistencyTimeout after timeout.
	WaitFor(ctx context.Context, position int64, timeout time.Duration) error
	// Position is the global position the read side has applied.
	Position() int64
}

// Audit reads the event log itself for the audit routes.
type Audit interface {
	Events(ctx context.Context, f queries.EventFilter) (queries.EventPage, error)
	// StreamEvents calls fn for every event of the range in order, without
	// holding the range in memory; an error from fn stops it and is returned.
	StreamEvents(ctx context.Context, f queries.EventFilter, fn func(queries.EventView) error) error
	Verify(ctx context.Context, from, to int64) (queries.VerifyResult, error)
	StateAt(ctx context.Context, q queries.StateAt) (queries.StateView, error)
}

// Check is one readiness check, as /readyz reports it.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// ReadyReport is the outcome of the readiness checks (event store, bus,
// projection lag …). The node is ready when every check is OK.
type ReadyReport struct {
	Checks []Check `json:"checks"`
}

// Ready reports whether every check passed.
func (r ReadyReport) Ready() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}
