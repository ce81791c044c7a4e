package commands

import (
	"context"
	"fmt"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// bodyRef says where to read a message's MessagePublished: at pos, or —
// when its publish had not committed yet at decision time — in the result
// of the pending append h, at stream version ver.
type bodyRef struct {
	queue string
	id    string
	pos   int64
	ver   int64
	h     *appendHandle
}

// refFor builds the bodyRef of a message; qs is locked.
func refFor(qs *queueState, id string, pos, ver int64) bodyRef {
	r := bodyRef{queue: qs.name, id: id, pos: pos, ver: ver}
	if pos == 0 {
		r.h = qs.pendingPublish(ver)
	}
	return r
}

func refsOf(qs *queueState, leases []domain.LeaseInfo) []bodyRef {
	if len(leases) == 0 {
		return nil
	}
	out := make([]bodyRef, len(leases))
	for i, l := range leases {
		out[i] = refFor(qs, l.MessageID, l.PublishedPosition, l.PublishedVersion)
	}
	return out
}

// readPublished reads the MessagePublished events of refs, by message id.
// Call it without locks: it may wait for a pending publish and reads the
// store.
func (a *App) readPublished(ctx context.Context, refs []bodyRef) (map[string]domain.MessagePublished, error) {
	positions := make([]int64, 0, len(refs))
	for _, r := range refs {
		pos := r.pos
		if pos == 0 && r.h != nil {
			res, err := r.h.wait()
			if err != nil {
				return nil, classify(err)
			}
			pos, _ = positionIn(res, r.queue, r.ver)
		}
		if pos == 0 {
			return nil, fmt.Errorf("commands: no log position for message %s of queue %q", r.id, r.queue)
		}
		positions = append(positions, pos)
	}
	var (
		events []eventstore.Event
		err    error
	)
	if pr, ok := a.store.(payloadReader); ok {
		events, err = pr.ReadPayloads(ctx, positions)
	} else {
		events, err = a.store.ReadPositions(ctx, positions)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read message bodies: %w", ErrUnavailable, err)
	}
	out := make(map[string]domain.MessagePublished, len(events))
	for _, e := range events {
		// The store returns events as stored; bring older shapes up to
		// date when the store knows how.
		if up, ok := a.store.(upcaster); ok {
			if e, err = up.Upcast(e); err != nil {
				return nil, fmt.Errorf("commands: position %d: %w", e.Position, err)
			}
		}
		ev, err := domain.DecodeEvent(e.Type, e.Data)
		if err != nil {
			return nil, fmt.Errorf("commands: position %d: %w", e.Position, err)
		}
		p, ok := ev.(domain.MessagePublished)
		if !ok {
			return nil, fmt.Errorf("commands: position %d holds a %s, not a MessagePublished", e.Position, e.Type)
		}
		out[p.MessageID] = p
	}
	return out, nil
}

// payloadReader is an optional capability of the store: reading events
// without the metadata and hashes a body read does not need.
type payloadReader interface {
	ReadPayloads(ctx context.Context, positions []int64) ([]eventstore.Event, error)
}

var _ payloadReader = (*eventstore.Store)(nil)

// upcaster is an optional capability of the store: converting an event read
// as stored to the current schema version.
type upcaster interface {
	Upcast(e eventstore.Event) (eventstore.Event, error)
}
