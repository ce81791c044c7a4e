package eventstore

import (
	"encoding/json"
	"errors"
	"time"
)

// Metadata travels with every event: who caused it and in answer to what.
type Metadata struct {
	Subject       string `json:"subject,omitempty"`
	RequestID     string `json:"request_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
}

// Event is one recorded event as stored in the log.
type Event struct {
	// Position is the global position: 1, 2, 3 … gap-free in commit order.
	Position int64
	// StreamID is the stream, e.g. "queue-orders".
	StreamID string
	// Version is the event's version within its stream: 1, 2, 3 …
	Version int64
	// Type is the stable event type name, e.g. "MessagePublished".
	Type string
	// SchemaVersion is the version of Data's shape as stored.
	SchemaVersion int
	// Data is the JSON payload.
	Data json.RawMessage
	// Metadata is who and why.
	Metadata Metadata
	// RecordedAt is when the store committed it (UTC, millisecond precision).
	RecordedAt time.Time
	// Hash is the hex SHA-256 chaining this event to PrevHash.
	Hash string
	// PrevHash is the previous event's Hash ("" before position 1 is the
	// all-zero genesis value, see the README).
	PrevHash string
}

// NewEvent is an event to append.
type NewEvent struct {
	Type          string
	SchemaVersion int
	Data          json.RawMessage
}

// Expected stream versions with a special meaning.
const (
	// AnyVersion skips the concurrency check for that stream.
	AnyVersion int64 = -1
	// NoStream expects the stream not to exist yet (version 0).
	NoStream int64 = 0
)

// StreamAppend is the part of an append that goes to one stream: the events
// follow ExpectedVersion, so the first gets ExpectedVersion+1.
type StreamAppend struct {
	StreamID        string
	ExpectedVersion int64
	Events          []NewEvent
}

// AppendRequest is one atomic append: all of its streams' events are
// committed together, or none are.
type AppendRequest struct {
	Metadata Metadata
	Streams  []StreamAppend
}

// AppendResult is what a committed append got: its events with positions,
// versions, times and hashes, in append order.
type AppendResult struct {
	Events []Event
}

// LastPosition is the position of the last event appended (0 if none).
func (r AppendResult) LastPosition() int64 {
	if len(r.Events) == 0 {
		return 0
	}
	return r.Events[len(r.Events)-1].Position
}

// Errors of the store. A *ConflictError also matches ErrConcurrency.
var (
	// ErrConcurrency: a stream's version was not the expected one.
	ErrConcurrency = errors.New("eventstore: concurrency conflict")
	// ErrUnavailable: the store could not write (disk full, read-only,
	// I/O error, closed). Nothing of the append was committed.
	ErrUnavailable = errors.New("eventstore: unavailable")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("eventstore: closed")
)

// ConflictError names the stream whose version was not the expected one.
type ConflictError struct {
	StreamID        string
	ExpectedVersion int64
	ActualVersion   int64
}

func (e *ConflictError) Error() string {
	return "eventstore: stream " + e.StreamID + " is not at the expected version"
}

// Unwrap makes errors.Is(err, ErrConcurrency) true.
func (e *ConflictError) Unwrap() error { return ErrConcurrency }
