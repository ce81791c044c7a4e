package projections

import (
	"encoding/json"
	"fmt"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// decoded is a recorded event with its payload decoded into a domain event.
type decoded struct {
	eventstore.Event
	data domain.Event
}

func unmarshalAs[T domain.Event](raw json.RawMessage) (domain.Event, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// decode turns a recorded event into its domain type. An event type the
// catalogue does not know is an error (matching domain.ErrUnknownEventType):
// a projection that silently skipped it would drift from the log. So is a
// schema version other than today's (the store upcasts older ones) and an
// event whose queue does not own its stream.
func decode(e eventstore.Event) (decoded, error) {
	return decodeWith(nil, e)
}

// decodeWith upcasts the event first when upcast is set.
func decodeWith(upcast func(eventstore.Event) (eventstore.Event, error), e eventstore.Event) (decoded, error) {
	if upcast != nil {
		var err error
		if e, err = upcast(e); err != nil {
			return decoded{}, fmt.Errorf("event at position %d: %w", e.Position, err)
		}
	}
	var (
		ev  domain.Event
		err error
	)
	switch e.Type {
	case domain.TypeQueueCreated:
		ev, err = unmarshalAs[domain.QueueCreated](e.Data)
	case domain.TypeQueueConfigured:
		ev, err = unmarshalAs[domain.QueueConfigured](e.Data)
	case domain.TypeQueuePurged:
		ev, err = unmarshalAs[domain.QueuePurged](e.Data)
	case domain.TypeQueueDeleted:
		ev, err = unmarshalAs[domain.QueueDeleted](e.Data)
	case domain.TypeMessagePublished:
		ev, err = unmarshalAs[domain.MessagePublished](e.Data)
	case domain.TypeMessageLeased:
		ev, err = unmarshalAs[domain.MessageLeased](e.Data)
	case domain.TypeMessageLeaseExtended:
		ev, err = unmarshalAs[domain.MessageLeaseExtended](e.Data)
	case domain.TypeMessageAcked:
		ev, err = unmarshalAs[domain.MessageAcked](e.Data)
	case domain.TypeMessageReleased:
		ev, err = unmarshalAs[domain.MessageReleased](e.Data)
	case domain.TypeMessageLeaseExpired:
		ev, err = unmarshalAs[domain.MessageLeaseExpired](e.Data)
	case domain.TypeMessageDeadLettered:
		ev, err = unmarshalAs[domain.MessageDeadLettered](e.Data)
	case domain.TypeMessageExpired:
		ev, err = unmarshalAs[domain.MessageExpired](e.Data)
	case domain.TypeMessageRedriven:
		ev, err = unmarshalAs[domain.MessageRedriven](e.Data)
	default:
		return decoded{}, fmt.Errorf("event at position %d: %w: %q", e.Position, domain.ErrUnknownEventType, e.Type)
	}
	if err != nil {
		return decoded{}, fmt.Errorf("event at position %d: decode %s: %w", e.Position, e.Type, err)
	}
	if e.SchemaVersion != ev.SchemaVersion() {
		return decoded{}, fmt.Errorf("event at position %d: %s schema version %d, want %d: %w",
			e.Position, e.Type, e.SchemaVersion, ev.SchemaVersion(), ErrUnsupportedEvent)
	}
	if want := domain.StreamID(ev.QueueName()); e.StreamID != want {
		return decoded{}, fmt.Errorf("event at position %d: %s of queue %q in stream %q: %w",
			e.Position, e.Type, ev.QueueName(), e.StreamID, ErrUnsupportedEvent)
	}
	return decoded{Event: e, data: ev}, nil
}
