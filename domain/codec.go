package domain

import (
	"encoding/json"
	"fmt"
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

func decodeAs[T Event](data []byte) (Event, error) {
	var e T
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("domain: decode %s: %w", e.EventType(), err)
	}
	return e, nil
}
