package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// Upcaster brings a stored payload of one event type to the shape written
// today: it gets the stored schema version and data and returns the current
// version and data. It returns current payloads unchanged, so applying it
// twice is harmless. It has the shape of eventstore.Upcaster.
type Upcaster = func(schemaVersion int, data json.RawMessage) (int, json.RawMessage, error)

// Upcasters lists the upcaster of every event type that has had more than
// one schema version. Readers that replay the log (the command state, the
// projections, point-in-time state) see only current shapes; the audit log
// shows events exactly as stored.
func Upcasters() map[string]Upcaster {
	return map[string]Upcaster{
		TypeMessageLeased: upcastMessageLeased,
	}
}

// messageLeasedV1 is MessageLeased as schema version 1 wrote it: the lease
// was given as a visibility timeout from leased_at. Version 2 records the
// deadline itself (lease_expires_at), so readers need no arithmetic and the
// extend and expiry events speak of the same instant.
type messageLeasedV1 struct {
	Queue               string    `json:"queue"`
	MessageID           string    `json:"message_id"`
	ReceiptHash         string    `json:"receipt_hash"`
	Consumer            string    `json:"consumer,omitempty"`
	LeasedAt            time.Time `json:"leased_at"`
	VisibilityTimeoutMS int64     `json:"visibility_timeout_ms"`
	ReceiveCount        int       `json:"receive_count"`
}

// upcastMessageLeased turns a version 1 MessageLeased into version 2.
func upcastMessageLeased(v int, data json.RawMessage) (int, json.RawMessage, error) {
	switch v {
	case 2:
		return v, data, nil
	case 1:
	default:
		return v, nil, fmt.Errorf("MessageLeased: unknown schema version %d", v)
	}
	var old messageLeasedV1
	if err := json.Unmarshal(data, &old); err != nil {
		return v, nil, fmt.Errorf("MessageLeased v1: %w", err)
	}
	cur := MessageLeased{
		Queue:          old.Queue,
		MessageID:      old.MessageID,
		ReceiptHash:    old.ReceiptHash,
		Consumer:       old.Consumer,
		LeasedAt:       old.LeasedAt,
		LeaseExpiresAt: old.LeasedAt.Add(time.Duration(old.VisibilityTimeoutMS) * time.Millisecond),
		ReceiveCount:   old.ReceiveCount,
	}
	out, err := json.Marshal(cur)
	if err != nil {
		return v, nil, err
	}
	return cur.SchemaVersion(), out, nil
}
