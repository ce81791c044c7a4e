package projections

import "errors"

var (
	// ErrUnsupportedEvent: an event the projections cannot apply as it is (a
	// schema version the store did not upcast, or an event filed in another
	// queue's stream). Unknown event types match domain.ErrUnknownEventType.
	ErrUnsupportedEvent = errors.New("projections: unsupported event")
	// ErrInconsistent: an event does not fit the read model it is applied to
	// (a message that does not exist or already reached a final state, a
	// queue created twice). The read model and the log disagree; applying
	// stops rather than guessing.
	ErrInconsistent = errors.New("projections: event inconsistent with the read model")
	// ErrGap: positions were missing from a pack and the Source could not
	// supply them; nothing after the gap was applied.
	ErrGap = errors.New("projections: gap in the event sequence")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("projections: engine closed")
)
