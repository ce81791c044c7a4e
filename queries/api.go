package queries

import (
	"encoding/json"
	"errors"
	"time"
)

// ErrConsistencyTimeout: the read side did not reach the asked position in
// time (503 consistency_timeout).
var ErrConsistencyTimeout = errors.New("queries: read side did not reach the requested position in time")

// Attributes are a queue's settings as queries answer them.
// DeadLetterQueue is null when the queue has none.
type Attributes struct {
	VisibilityTimeoutMS int64   `json:"visibility_timeout_ms"`
	DelayMS             int64   `json:"delay_ms"`
	RetentionMS         int64   `json:"retention_ms"`
	MaxMessageBytes     int64   `json:"max_message_bytes"`
	DeadLetterQueue     *string `json:"dead_letter_queue"`
	MaxReceiveCount     int     `json:"max_receive_count"`
}

// Stats are a queue's message counts, as API.md names them.
type Stats struct {
	Ready             int64 `json:"ready"`
	Delayed           int64 `json:"delayed"`
	InFlight          int64 `json:"in_flight"`
	PublishedTotal    int64 `json:"published_total"`
	AckedTotal        int64 `json:"acked_total"`
	ReleasedTotal     int64 `json:"released_total"`
	ExpiredTotal      int64 `json:"expired_total"`
	DeadLetteredTotal int64 `json:"dead_lettered_total"`
	OldestReadyAgeMS  int64 `json:"oldest_ready_age_ms"`
}

// Queue is a queue with its stats.
type Queue struct {
	Name       string     `json:"name"`
	Attributes Attributes `json:"attributes"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	Stats      Stats      `json:"stats"`
}

// QueuePage is one page of queues.
type QueuePage struct {
	Queues     []Queue `json:"queues"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// ListQueues asks for queues whose name starts with Prefix, in name order.
// Allowed, when set, hides queues the caller may not see (before paging).
type ListQueues struct {
	Prefix  string
	Limit   int // 1…1000; 0 means 100
	Cursor  string
	Allowed func(queue string) bool
}

// Message states.
const (
	StateReady        = "ready"
	StateDelayed      = "delayed"
	StateInFlight     = "in_flight"
	StateAcked        = "acked"
	StateDeadLettered = "dead_lettered"
	StateExpired      = "expired"
	// StatePurged: dropped by a queue purge before anyone received it.
	StatePurged = "purged"
	// StateRedriven: it left its (dead-letter) queue for a copy elsewhere.
	StateRedriven = "redriven"
)

// MessageStates lists every state a message can be in, as accepted by
// ListMessages.State.
var MessageStates = []string{
	StateReady, StateDelayed, StateInFlight, StateAcked, StateDeadLettered,
	StateExpired, StatePurged, StateRedriven,
}

// MessageSummary is a message in a listing.
type MessageSummary struct {
	ID           string            `json:"id"`
	Queue        string            `json:"queue"`
	State        string            `json:"state"`
	PublishedAt  time.Time         `json:"published_at"`
	ReceiveCount int               `json:"receive_count"`
	Headers      map[string]string `json:"headers"`
	Body         *string           `json:"body,omitempty"`
	BodyEncoding string            `json:"body_encoding,omitempty"`
}

// MessagePage is one page of messages.
type MessagePage struct {
	Messages   []MessageSummary `json:"messages"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

// ListMessages asks for a queue's messages, optionally in one state, in
// publish order.
type ListMessages struct {
	Queue       string
	State       string // "" for all states
	Limit       int
	Cursor      string
	IncludeBody bool
}

// HistoryEntry is one event about a message.
type HistoryEntry struct {
	Position   int64           `json:"position"`
	Type       string          `json:"type"`
	RecordedAt time.Time       `json:"recorded_at"`
	Data       json.RawMessage `json:"data"`
}

// MessageDetail is a message with its state and every event about it.
type MessageDetail struct {
	ID           string            `json:"id"`
	Queue        string            `json:"queue"`
	State        string            `json:"state"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding"`
	ContentType  string            `json:"content_type,omitempty"`
	Headers      map[string]string `json:"headers"`
	ReceiveCount int               `json:"receive_count"`
	PublishedAt  time.Time         `json:"published_at"`
	History      []HistoryEntry    `json:"history"`

	// AvailableAt is when the message is (or was last) due for delivery.
	AvailableAt time.Time `json:"available_at"`
	// LeaseExpiresAt is the lease deadline while the message is in flight.
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	// Origin names the message this one is a copy of (dead-lettered or
	// redriven), nil for a message a producer published.
	Origin *MessageLink `json:"origin,omitempty"`
	// MovedTo names the copy this message became when it was dead-lettered
	// or redriven, nil otherwise.
	MovedTo *MessageLink `json:"moved_to,omitempty"`
}

// MessageLink ties a message to its copy in another queue. Reason is
// "dead_letter" or "redrive" (domain.OriginDeadLetter, domain.OriginRedrive).
type MessageLink struct {
	Queue     string `json:"queue"`
	MessageID string `json:"message_id"`
	Reason    string `json:"reason"`
}

// Update is one projection update, pushed to SSE subscribers after the
// projection committed it. Event is "queue.updated", "queue.deleted" or
// "message.updated"; Data is its JSON (a Queue, {"name"}, or a
// MessageSummary without body). Snapshot marks the current state sent to a
// subscriber whose resume position was too old to replay.
type Update struct {
	Position int64           `json:"position"`
	Event    string          `json:"event"`
	Queue    string          `json:"queue"`
	Data     json.RawMessage `json:"data"`
	Snapshot bool            `json:"snapshot,omitempty"`
	// More is set by the Hub when the next update this subscriber gets has
	// the same position (one event changed a message and its queue). An SSE
	// writer puts `id:` only on the last update of a position, so a client
	// that resumes from its Last-Event-ID never skips the rest of a group.
	More bool `json:"-"`
	// Frame is Data as the SSE edge sends it, rendered once by the Hub
	// (HubConfig.Render) instead of once per subscriber; nil without a
	// renderer.
	Frame []byte `json:"-"`
	// Value, when set, is what Data encodes, as the read side built it (a
	// MessageSummary for message.updated, a Queue for queue.updated), so
	// that a renderer encodes it without decoding Data first.
	Value any `json:"-"`
}

// SSE event names.
const (
	EventQueueUpdated   = "queue.updated"
	EventQueueDeleted   = "queue.deleted"
	EventMessageUpdated = "message.updated"
)

// EventView is one event of the log as the audit routes answer it.
type EventView struct {
	Position      int64           `json:"position"`
	Stream        string          `json:"stream"`
	Version       int64           `json:"version"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Data          json.RawMessage `json:"data"`
	Metadata      json.RawMessage `json:"metadata"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Hash          string          `json:"hash"`
	PrevHash      string          `json:"prev_hash"`
}

// EventFilter selects events of the log: after a position, of one stream,
// of one type, within [Since, Until). Allowed, when set, hides the events of
// queues the caller may not see.
type EventFilter struct {
	After   int64
	Limit   int
	Stream  string
	Type    string
	Since   time.Time
	Until   time.Time
	Allowed func(queue string) bool
}

// EventPage is one page of events; NextAfter is 0 at the end.
type EventPage struct {
	Events    []EventView `json:"events"`
	NextAfter int64       `json:"next_after,omitempty"`
}

// VerifyResult is the outcome of walking the hash chain.
type VerifyResult struct {
	OK               bool   `json:"ok"`
	Checked          int64  `json:"checked"`
	HeadPosition     int64  `json:"head_position"`
	HeadHash         string `json:"head_hash"`
	FirstBadPosition int64  `json:"first_bad_position,omitempty"`
}

// StateAt asks for the state as it was at a position or a time (one of the
// two; zero means "not given").
type StateAt struct {
	Position int64
	Time     time.Time
}

// StateView is the state of every queue reconstructed from the log.
type StateView struct {
	Position int64   `json:"position"`
	Queues   []Queue `json:"queues"`
}
