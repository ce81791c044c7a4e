package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// errStoreConflict marks an append the store refused for a stream version
// conflict. The command side is the only writer of queue streams and
// decides under the queue's lock, so this only happens after another
// append failed and left the state ahead of the log; the command is then
// retried once against the rebuilt state.
var errStoreConflict = errors.New("commands: stream version conflict")

// appendHandle is one submitted append and where its events went.
type appendHandle struct {
	pending *eventstore.Pending
	spans   []span
}

// span is the part of an append that goes to one queue's stream.
type span struct {
	qs     *queueState
	stream string
	first  int64 // stream version of the first event
	events []domain.Event
}

func (h *appendHandle) covers(queue string, ver int64) bool {
	for _, s := range h.spans {
		if s.qs.name == queue && ver >= s.first && ver < s.first+int64(len(s.events)) {
			return true
		}
	}
	return false
}

// wait blocks until the append is durable or failed. It never gives up on
// the caller's behalf: whatever the caller's context says, the command
// side must learn the outcome to keep its state equal to the log. Waiting
// is safe from several goroutines.
func (h *appendHandle) wait() (eventstore.AppendResult, error) {
	return h.pending.Wait(context.Background())
}

// positionIn returns the global position given to the event at version ver
// of queue's stream by a committed append.
//
// The store appends a stream's events one after the other with versions
// rising by one, so the event is found by arithmetic from the stream's
// first event: a batch of n publishes looks up n positions, and a scan per
// lookup made that quadratic (2 µs per message at 100 per batch).
func positionIn(res eventstore.AppendResult, queue string, ver int64) (int64, bool) {
	stream := domain.StreamID(queue)
	for i, e := range res.Events {
		if e.StreamID != stream {
			continue
		}
		if ver >= e.Version && ver-e.Version < int64(len(res.Events)-i) {
			if f := res.Events[i+int(ver-e.Version)]; f.StreamID == stream && f.Version == ver {
				return f.Position, true
			}
		}
		break
	}
	for _, e := range res.Events { // not laid out as expected: look at each
		if e.StreamID == stream && e.Version == ver {
			return e.Position, true
		}
	}
	return 0, false
}

// metadataFrom turns the caller of ctx into event metadata; the request is
// the cause of the events.
func metadataFrom(ctx context.Context) eventstore.Metadata {
	c := CallerFrom(ctx)
	md := eventstore.Metadata{
		Subject:       c.Subject,
		RequestID:     c.RequestID,
		CorrelationID: c.CorrelationID,
		CausationID:   c.RequestID,
	}
	if md.CorrelationID == "" {
		md.CorrelationID = c.RequestID
	}
	return md
}

// submit appends the events a decision recorded (already applied to the
// aggregates of qss, which the caller holds locked) with expected versions
// derived from those aggregates, and returns at once. The caller unlocks,
// then calls a.settle.
func (a *App) submit(md eventstore.Metadata, events []domain.Event, qss ...*queueState) (*appendHandle, error) {
	byName := make(map[string]*queueState, len(qss))
	for _, qs := range qss {
		byName[qs.name] = qs
	}
	h := &appendHandle{}
	index := make(map[string]int, 2)
	for _, e := range events {
		name := e.QueueName()
		k, ok := index[name]
		if !ok {
			qs, known := byName[name]
			if !known {
				a.breakAll(qss)
				return nil, fmt.Errorf("commands: an event for queue %q that the command did not lock", name)
			}
			k = len(h.spans)
			index[name] = k
			h.spans = append(h.spans, span{qs: qs, stream: domain.StreamID(name)})
		}
		h.spans[k].events = append(h.spans[k].events, e)
	}
	req := eventstore.AppendRequest{Metadata: md, Streams: make([]eventstore.StreamAppend, len(h.spans))}
	for k := range h.spans {
		s := &h.spans[k]
		// The decision applied its events: the stream stood before them.
		expected := s.qs.agg.Version() - int64(len(s.events))
		s.first = expected + 1
		sa := eventstore.StreamAppend{StreamID: s.stream, ExpectedVersion: expected, Events: make([]eventstore.NewEvent, len(s.events))}
		for i, e := range s.events {
			data, err := json.Marshal(e)
			if err != nil {
				a.breakAll(qss)
				return nil, fmt.Errorf("commands: encode %s: %w", e.EventType(), err)
			}
			sa.Events[i] = eventstore.NewEvent{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Data: data}
		}
		req.Streams[k] = sa
	}
	h.pending = a.store.Submit(req)
	for _, s := range h.spans {
		s.qs.pending[h] = struct{}{}
	}
	return h, nil
}

// breakAll marks queues whose aggregates can no longer be trusted (a
// decision failed half-way, or its events could not be submitted).
func (a *App) breakAll(qss []*queueState) {
	for _, qs := range qss {
		qs.broken = true
	}
}

// settle waits for an append and brings the queues it touched up to date:
// on success each published message learns its position; on failure the
// queues are marked broken, to be rebuilt from the log by whoever locks
// them next. A nil h (nothing was appended) settles at once. It returns
// the append's outcome with the store error classified (errStoreConflict,
// ErrUnavailable).
func (a *App) settle(h *appendHandle) (eventstore.AppendResult, error) {
	if h == nil {
		return eventstore.AppendResult{}, nil
	}
	res, err := h.wait()
	for _, s := range h.spans {
		s.qs.mu.Lock()
		if _, ok := s.qs.pending[h]; ok {
			// Not there means a rebuild already read this append's
			// outcome from the log.
			delete(s.qs.pending, h)
			if err != nil {
				s.qs.broken = true
			} else {
				s.notePositions(res)
			}
		}
		s.qs.mu.Unlock()
	}
	if err != nil {
		return res, classify(err)
	}
	return res, nil
}

// notePositions tells the span's queue, which the caller holds locked,
// where the messages it published went. Noting twice is harmless.
func (s span) notePositions(res eventstore.AppendResult) {
	for i, e := range s.events {
		if p, ok := e.(domain.MessagePublished); ok {
			if pos, found := positionIn(res, s.qs.name, s.first+int64(i)); found {
				s.qs.agg.NotePosition(p.MessageID, pos)
			}
		}
	}
}

func classify(err error) error {
	if errors.Is(err, eventstore.ErrConcurrency) {
		return fmt.Errorf("%w: %w", errStoreConflict, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// retry runs a command once more when its append hit a version conflict:
// the first attempt marked the queue broken, so the second decides against
// state rebuilt from the log. A second conflict is reported as
// domain.ErrConflict.
func retry[T any](f func() (T, error)) (T, error) {
	r, err := f()
	if errors.Is(err, errStoreConflict) {
		r, err = f()
		if errors.Is(err, errStoreConflict) {
			var zero T
			return zero, domain.WithMessage(domain.ErrConflict, "the queue changed concurrently; try again")
		}
	}
	return r, err
}

// decisionFailed handles an error from a domain decision. A *domain.Error
// is the caller's fault and changed nothing; anything else means the
// aggregate may hold half a decision, so the queues are marked broken.
func (a *App) decisionFailed(err error, qss ...*queueState) error {
	var de *domain.Error
	if errors.As(err, &de) {
		return err
	}
	a.breakAll(qss)
	return fmt.Errorf("commands: %w", err)
}
