package domain

import "time"

// Event is a domain event: a past-tense fact about one queue. Every event
// type below has a stable name (EventType) and a schema version; its JSON
// encoding never changes meaning. A new shape is a new schema version with an
// upcaster in the event store.
type Event interface {
	// EventType is the stable name stored in the log's type column.
	EventType() string
	// SchemaVersion is the version of the JSON shape written today.
	SchemaVersion() int
	// QueueName is the queue whose stream the event belongs to.
	QueueName() string
}

// StreamID is the event-store stream of a queue: "queue-{name}".
func StreamID(queue string) string { return "queue-" + queue }

// Event type names, as stored in the log. They are part of the public
// contract (audit readers filter on them) and must never be renamed.
const (
	TypeQueueCreated         = "QueueCreated"
	TypeQueueConfigured      = "QueueConfigured"
	TypeQueuePurged          = "QueuePurged"
	TypeQueueDeleted         = "QueueDeleted"
	TypeMessagePublished     = "MessagePublished"
	TypeMessageLeased        = "MessageLeased"
	TypeMessageLeaseExtended = "MessageLeaseExtended"
	TypeMessageAcked         = "MessageAcked"
	TypeMessageReleased      = "MessageReleased"
	TypeMessageLeaseExpired  = "MessageLeaseExpired"
	TypeMessageDeadLettered  = "MessageDeadLettered"
	TypeMessageExpired       = "MessageExpired"
	TypeMessageRedriven      = "MessageRedriven"
)

// EventTypes lists every event type name, in catalogue order.
var EventTypes = []string{
	TypeQueueCreated, TypeQueueConfigured, TypeQueuePurged, TypeQueueDeleted,
	TypeMessagePublished, TypeMessageLeased, TypeMessageLeaseExtended,
	TypeMessageAcked, TypeMessageReleased, TypeMessageLeaseExpired,
	TypeMessageDeadLettered, TypeMessageExpired, TypeMessageRedriven,
}

// Attributes are a queue's settings. Durations are integer milliseconds, as
// in the HTTP API. DeadLetterQueue is "" when the queue has none.
type Attributes struct {
	VisibilityTimeoutMS int64  `json:"visibility_timeout_ms"`
	DelayMS             int64  `json:"delay_ms"`
	RetentionMS         int64  `json:"retention_ms"`
	MaxMessageBytes     int64  `json:"max_message_bytes"`
	DeadLetterQueue     string `json:"dead_letter_queue"`
	MaxReceiveCount     int    `json:"max_receive_count"`
}

// Origin says where a message copy came from: a dead-lettered message's copy
// in the dead-letter queue, or a redriven message's copy in its target queue.
type Origin struct {
	Queue     string `json:"queue"`
	MessageID string `json:"message_id"`
	// Reason is OriginDeadLetter or OriginRedrive.
	Reason string `json:"reason"`
}

// Origin reasons.
const (
	OriginDeadLetter = "dead_letter"
	OriginRedrive    = "redrive"
)

// Body encodings: how the producer sent the body, and how it is returned.
const (
	EncodingUTF8   = "utf8"
	EncodingBase64 = "base64"
)

// QueueCreated: a queue was created with its attributes. A queue that was
// deleted may be created again; its stream then continues.
type QueueCreated struct {
	Queue      string     `json:"queue"`
	Attributes Attributes `json:"attributes"`
	CreatedAt  time.Time  `json:"created_at"`
}

// QueueConfigured: the queue's attributes changed; Attributes is the whole
// new set, Changed names the fields that differ from before.
type QueueConfigured struct {
	Queue        string     `json:"queue"`
	Attributes   Attributes `json:"attributes"`
	Changed      []string   `json:"changed"`
	ConfiguredAt time.Time  `json:"configured_at"`
}

// QueuePurged: every ready and delayed message was dropped.
type QueuePurged struct {
	Queue    string    `json:"queue"`
	Purged   int       `json:"purged"`
	PurgedAt time.Time `json:"purged_at"`
}

// QueueDeleted: the queue was deleted with whatever it held.
type QueueDeleted struct {
	Queue     string    `json:"queue"`
	DeletedAt time.Time `json:"deleted_at"`
}

// MessagePublished: a message was accepted. Body is kept exactly as the
// producer sent it (UTF-8 text, or base64 text when BodyEncoding is base64).
type MessagePublished struct {
	Queue        string            `json:"queue"`
	MessageID    string            `json:"message_id"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding"`
	BodySize     int64             `json:"body_size"`
	ContentType  string            `json:"content_type,omitempty"`
	Headers      map[string]string `json:"headers,omitempty"`
	PublishedAt  time.Time         `json:"published_at"`
	AvailableAt  time.Time         `json:"available_at"`
	ExpiresAt    time.Time         `json:"expires_at"`
	DedupID      string            `json:"dedup_id,omitempty"`
	Origin       *Origin           `json:"origin,omitempty"`
}

// MessageLeased (schema version 2; see upcast.go for version 1): a consumer
// received the message. The receipt itself is a
// bearer secret and is never written to the log; ReceiptHash (hex SHA-256 of
// the receipt) identifies the lease.
type MessageLeased struct {
	Queue          string    `json:"queue"`
	MessageID      string    `json:"message_id"`
	ReceiptHash    string    `json:"receipt_hash"`
	Consumer       string    `json:"consumer,omitempty"`
	LeasedAt       time.Time `json:"leased_at"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	ReceiveCount   int       `json:"receive_count"`
}

// MessageLeaseExtended: the lease holder moved the lease deadline.
type MessageLeaseExtended struct {
	Queue          string    `json:"queue"`
	MessageID      string    `json:"message_id"`
	ReceiptHash    string    `json:"receipt_hash"`
	ExtendedAt     time.Time `json:"extended_at"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
}

// MessageAcked: the lease holder acknowledged the message; it is done.
type MessageAcked struct {
	Queue       string    `json:"queue"`
	MessageID   string    `json:"message_id"`
	ReceiptHash string    `json:"receipt_hash"`
	AckedAt     time.Time `json:"acked_at"`
}

// MessageReleased: the lease holder nacked the message; it is ready again at
// AvailableAt.
type MessageReleased struct {
	Queue       string    `json:"queue"`
	MessageID   string    `json:"message_id"`
	ReceiptHash string    `json:"receipt_hash"`
	DelayMS     int64     `json:"delay_ms"`
	ReleasedAt  time.Time `json:"released_at"`
	AvailableAt time.Time `json:"available_at"`
}

// MessageLeaseExpired: the lease deadline passed without an ack; the message
// is ready again.
type MessageLeaseExpired struct {
	Queue       string    `json:"queue"`
	MessageID   string    `json:"message_id"`
	ReceiptHash string    `json:"receipt_hash"`
	ExpiredAt   time.Time `json:"expired_at"`
}

// MessageDeadLettered: the message came back after max_receive_count
// receives and moved to the dead-letter queue, where the same transaction
// appends a MessagePublished of DeadLetterMessageID with an Origin.
type MessageDeadLettered struct {
	Queue               string    `json:"queue"`
	MessageID           string    `json:"message_id"`
	DeadLetterQueue     string    `json:"dead_letter_queue"`
	DeadLetterMessageID string    `json:"dead_letter_message_id"`
	ReceiveCount        int       `json:"receive_count"`
	DeadLetteredAt      time.Time `json:"dead_lettered_at"`
}

// MessageExpired: retention passed before the message was acked.
type MessageExpired struct {
	Queue     string    `json:"queue"`
	MessageID string    `json:"message_id"`
	ExpiredAt time.Time `json:"expired_at"`
}

// MessageRedriven: a message left a dead-letter queue for ToQueue, where the
// same transaction appends a MessagePublished of NewMessageID with an Origin.
type MessageRedriven struct {
	Queue        string    `json:"queue"`
	MessageID    string    `json:"message_id"`
	ToQueue      string    `json:"to_queue"`
	NewMessageID string    `json:"new_message_id"`
	RedrivenAt   time.Time `json:"redriven_at"`
}

func (QueueCreated) EventType() string         { return TypeQueueCreated }
func (QueueConfigured) EventType() string      { return TypeQueueConfigured }
func (QueuePurged) EventType() string          { return TypeQueuePurged }
func (QueueDeleted) EventType() string         { return TypeQueueDeleted }
func (MessagePublished) EventType() string     { return TypeMessagePublished }
func (MessageLeased) EventType() string        { return TypeMessageLeased }
func (MessageLeaseExtended) EventType() string { return TypeMessageLeaseExtended }
func (MessageAcked) EventType() string         { return TypeMessageAcked }
func (MessageReleased) EventType() string      { return TypeMessageReleased }
func (MessageLeaseExpired) EventType() string  { return TypeMessageLeaseExpired }
func (MessageDeadLettered) EventType() string  { return TypeMessageDeadLettered }
func (MessageExpired) EventType() string       { return TypeMessageExpired }
func (MessageRedriven) EventType() string      { return TypeMessageRedriven }

func (QueueCreated) SchemaVersion() int         { return 1 }
func (QueueConfigured) SchemaVersion() int      { return 1 }
func (QueuePurged) SchemaVersion() int          { return 1 }
func (QueueDeleted) SchemaVersion() int         { return 1 }
func (MessagePublished) SchemaVersion() int     { return 1 }
func (MessageLeased) SchemaVersion() int        { return 2 }
func (MessageLeaseExtended) SchemaVersion() int { return 1 }
func (MessageAcked) SchemaVersion() int         { return 1 }
func (MessageReleased) SchemaVersion() int      { return 1 }
func (MessageLeaseExpired) SchemaVersion() int  { return 1 }
func (MessageDeadLettered) SchemaVersion() int  { return 1 }
func (MessageExpired) SchemaVersion() int       { return 1 }
func (MessageRedriven) SchemaVersion() int      { return 1 }

func (e QueueCreated) QueueName() string         { return e.Queue }
func (e QueueConfigured) QueueName() string      { return e.Queue }
func (e QueuePurged) QueueName() string          { return e.Queue }
func (e QueueDeleted) QueueName() string         { return e.Queue }
func (e MessagePublished) QueueName() string     { return e.Queue }
func (e MessageLeased) QueueName() string        { return e.Queue }
func (e MessageLeaseExtended) QueueName() string { return e.Queue }
func (e MessageAcked) QueueName() string         { return e.Queue }
func (e MessageReleased) QueueName() string      { return e.Queue }
func (e MessageLeaseExpired) QueueName() string  { return e.Queue }
func (e MessageDeadLettered) QueueName() string  { return e.Queue }
func (e MessageExpired) QueueName() string       { return e.Queue }
func (e MessageRedriven) QueueName() string      { return e.Queue }

// AttributesPatch is a partial set of attributes, as given on create or on
// configure: nil fields are left as they are (or take their default on
// create). DeadLetterQueue pointing at "" removes the dead-letter queue.
type AttributesPatch struct {
	VisibilityTimeoutMS *int64
	DelayMS             *int64
	RetentionMS         *int64
	MaxMessageBytes     *int64
	DeadLetterQueue     *string
	MaxReceiveCount     *int
}
