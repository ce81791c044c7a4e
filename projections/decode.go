package projections

import (
	"fmt"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// decoded is a recorded event with its payload decoded into a domain event.
type decoded struct {
	eventstore.Event
	data domain.Event
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
	return decodeUsing(domain.DecodeEvent, upcast, e)
}

// decodeForStats decodes only what the stats reducer (QueueState) reads,
// skipping bodies and headers: point-in-time replay reads the whole log.
func decodeForStats(e eventstore.Event) (decoded, error) {
	return decodeUsing(domain.DecodeForReplay, nil, e)
}

func decodeUsing(dec func(string, []byte) (domain.Event, error), upcast func(eventstore.Event) (eventstore.Event, error), e eventstore.Event) (decoded, error) {
	if upcast != nil {
		var err error
		if e, err = upcast(e); err != nil {
			return decoded{}, fmt.Errorf("event at position %d: %w", e.Position, err)
		}
	}
	ev, err := dec(e.Type, e.Data)
	if err != nil {
		return decoded{}, fmt.Errorf("event at position %d: %w", e.Position, err)
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
