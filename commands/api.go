package commands

import (
	"context"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// Caller says who sends a command and in answer to which request; it becomes
// the metadata of every event the command appends. Put it in the context
// with WithCaller.
type Caller struct {
	Subject       string
	RequestID     string
	CorrelationID string
}

type callerKey struct{}

// WithCaller returns a context carrying the caller.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller carried by ctx (zero if none).
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// QueueInfo is a queue as the command side answers it.
type QueueInfo struct {
	Name       string
	Attributes domain.Attributes
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// CreateQueue creates a queue; attributes left nil take their defaults.
type CreateQueue struct {
	Name       string
	Attributes domain.AttributesPatch
}

// ConfigureQueue changes some attributes of a queue.
type ConfigureQueue struct {
	Name       string
	Attributes domain.AttributesPatch
}

// QueueResult answers CreateQueue and ConfigureQueue. Created is false when
// CreateQueue found the queue already there with the same attributes (200).
type QueueResult struct {
	Queue    QueueInfo
	Created  bool
	Position int64
}

// DeleteQueue deletes a queue.
type DeleteQueue struct{ Name string }

// PurgeQueue drops a queue's ready and delayed messages.
type PurgeQueue struct{ Name string }

// PurgeResult answers PurgeQueue.
type PurgeResult struct {
	Purged   int
	Position int64
}

// Redrive moves dead-lettered messages out of a dead-letter queue: to To, or
// when To is "" back to the queue each came from. MaxMessages 0 means all.
type Redrive struct {
	Queue       string
	To          string
	MaxMessages int
}

// RedriveResult answers Redrive.
type RedriveResult struct {
	Moved    int
	Position int64
}

// PositionResult answers commands that return only a position.
type PositionResult struct{ Position int64 }

// Message is one message to publish.
type Message struct {
	Body         string
	BodyEncoding string // "utf8" (default when "") or "base64"
	ContentType  string
	Headers      map[string]string
	DelayMS      *int64 // nil: the queue's delay_ms
	DedupID      string
}

// Publish publishes one message.
type Publish struct {
	Queue   string
	Message Message
}

// PublishResult answers Publish. Duplicate is true when the dedup id was
// seen within the window: nothing was appended and ID is the first message's.
type PublishResult struct {
	ID        string
	Queue     string
	Duplicate bool
	Position  int64
}

// PublishBatch publishes up to 100 messages, all or nothing. A bad entry is
// an invalid_argument error whose Field starts with "messages[i]".
type PublishBatch struct {
	Queue    string
	Messages []Message
}

// BatchResult answers PublishBatch, one result per message in order.
type BatchResult struct {
	Results  []PublishResult
	Position int64
}

// Receive leases up to MaxMessages ready messages, oldest first, waiting up
// to WaitMS for one to arrive.
type Receive struct {
	Queue               string
	MaxMessages         int    // 1…100; 0 means 1
	VisibilityTimeoutMS *int64 // nil: the queue's visibility_timeout_ms
	WaitMS              int64  // 0…20000
	Consumer            string
}

// ReceivedMessage is a leased message with its receipt.
type ReceivedMessage struct {
	ID             string
	Queue          string
	Body           string
	BodyEncoding   string
	ContentType    string
	Headers        map[string]string
	Receipt        string
	ReceiveCount   int
	PublishedAt    time.Time
	LeaseExpiresAt time.Time
}

// ReceiveResult answers Receive; Messages is empty when none arrived.
type ReceiveResult struct {
	Messages []ReceivedMessage
	Position int64
}

// Ack acknowledges one leased message.
type Ack struct {
	Queue   string
	Receipt string
}

// AckResult answers Ack and Nack.
type AckResult struct {
	ID       string
	Position int64
}

// AckBatch acknowledges up to 100 receipts; each succeeds or fails alone.
type AckBatch struct {
	Queue    string
	Receipts []string
}

// AckItem is the outcome of one receipt of an AckBatch; Code is the error
// code when OK is false.
type AckItem struct {
	Receipt string
	OK      bool
	Code    string
}

// AckBatchResult answers AckBatch.
type AckBatchResult struct {
	Results  []AckItem
	Position int64
}

// Nack releases a leased message, ready again after DelayMS.
type Nack struct {
	Queue   string
	Receipt string
	DelayMS int64
}

// Extend moves a lease's deadline to now + VisibilityTimeoutMS.
type Extend struct {
	Queue               string
	Receipt             string
	VisibilityTimeoutMS int64
}

// ExtendResult answers Extend.
type ExtendResult struct {
	ID             string
	LeaseExpiresAt time.Time
	Position       int64
}
