package projections

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
)

// QueueState is the queues' state folded from events in memory: a pure
// reducer with the same rules as the SQLite projections (it shares their
// lifecycle code), used for the audit's point-in-time state and as the
// reference the live read models are tested against. Messages in a final
// state are forgotten (only counters remember them), so memory follows the
// live messages. Not safe for concurrent use.
type QueueState struct {
	position   int64
	recordedAt time.Time
	queues     map[string]*queueAgg
	messages   map[string]*msgFacts
}

type queueAgg struct {
	attrs                domain.Attributes
	createdAt, updatedAt int64
	stats                queries.Stats // the *_total counters
	live                 map[string]*msgFacts
}

// NewQueueState returns the state before any event.
func NewQueueState() *QueueState {
	return &QueueState{queues: make(map[string]*queueAgg), messages: make(map[string]*msgFacts)}
}

// Position is the position of the last event applied.
func (s *QueueState) Position() int64 { return s.position }

// RecordedAt is when the last event applied was recorded.
func (s *QueueState) RecordedAt() time.Time { return s.recordedAt }

// Apply folds one event into the state. Events must come in increasing
// position order. An unknown type, or an event that does not fit the state
// (see ErrInconsistent), is an error and leaves the state unchanged.
func (s *QueueState) Apply(e eventstore.Event) error {
	if e.Position <= s.position {
		return fmt.Errorf("%w: position %d after %d", ErrInconsistent, e.Position, s.position)
	}
	d, err := decodeForStats(e)
	if err != nil {
		return err
	}
	if err := s.apply(d); err != nil {
		return err
	}
	s.position, s.recordedAt = e.Position, e.RecordedAt
	return nil
}

func (s *QueueState) apply(ev decoded) error {
	name := ev.data.QueueName()
	q := s.queues[name]
	if created, ok := ev.data.(domain.QueueCreated); ok {
		if q != nil {
			return fmt.Errorf("%w: QueueCreated at %d for existing queue %q", ErrInconsistent, ev.Position, name)
		}
		s.queues[name] = &queueAgg{attrs: created.Attributes, createdAt: ms(created.CreatedAt),
			updatedAt: ms(created.CreatedAt), live: make(map[string]*msgFacts)}
		return nil
	}
	if q == nil {
		return fmt.Errorf("%w: %s at %d for unknown queue %q", ErrInconsistent, ev.Type, ev.Position, name)
	}
	switch d := ev.data.(type) {
	case domain.QueueConfigured:
		q.attrs, q.updatedAt = d.Attributes, ms(d.ConfiguredAt)
	case domain.QueuePurged:
		for id, m := range q.live {
			if m.state == stAvailable {
				delete(q.live, id)
				delete(s.messages, id)
			}
		}
	case domain.QueueDeleted:
		for id := range q.live {
			delete(s.messages, id)
		}
		delete(s.queues, name)
	case domain.MessagePublished:
		if _, ok := s.messages[d.MessageID]; ok {
			return fmt.Errorf("%w: message %s published again at %d", ErrInconsistent, d.MessageID, ev.Position)
		}
		m := &msgFacts{queue: name, state: stAvailable, availableAt: ms(d.AvailableAt)}
		s.messages[d.MessageID], q.live[d.MessageID] = m, m
		q.stats.PublishedTotal++
	default:
		id := messageID(ev.data)
		m, ok := s.messages[id]
		if !ok {
			return fmt.Errorf("%w: %s at %d for unknown message %s", ErrInconsistent, ev.Type, ev.Position, id)
		}
		// Validate on a copy so that a refused event changes nothing.
		next := *m
		if _, err := applyMessageEvent(&next, ev.data, id, ev.Position); err != nil {
			return err
		}
		*m = next
		switch ev.data.(type) {
		case domain.MessageAcked:
			q.stats.AckedTotal++
		case domain.MessageReleased:
			q.stats.ReleasedTotal++
		case domain.MessageExpired:
			q.stats.ExpiredTotal++
		case domain.MessageDeadLettered:
			q.stats.DeadLetteredTotal++
		}
		if final(m.state) {
			delete(q.live, id)
			delete(s.messages, id)
		}
	}
	return nil
}

// Queues returns every existing queue, in name order, with attributes and
// stats as of now (which decides ready vs delayed), exactly as the read
// model's GetQueue would answer at the same position.
func (s *QueueState) Queues(now time.Time) []queries.Queue {
	nowMS := ms(now)
	out := make([]queries.Queue, 0, len(s.queues))
	for name, q := range s.queues {
		v := queries.Queue{
			Name: name, Attributes: attrsView(q.attrs),
			CreatedAt: fromMS(q.createdAt), UpdatedAt: fromMS(q.updatedAt), Stats: q.stats,
		}
		oldest, found := int64(0), false
		for _, m := range q.live {
			switch {
			case m.state == stInFlight:
				v.Stats.InFlight++
			case m.availableAt > nowMS:
				v.Stats.Delayed++
			default:
				v.Stats.Ready++
				if !found || m.availableAt < oldest {
					oldest, found = m.availableAt, true
				}
			}
		}
		if found {
			v.Stats.OldestReadyAgeMS = max(0, nowMS-oldest)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// StateAt replays the log from the start up to position upTo (0 or less: no
// limit) and, when at is not zero, no further than the last event recorded
// at or before at. It returns every queue that existed then, with stats as
// of then: at when given, otherwise the time the last replayed event was
// recorded.
func StateAt(ctx context.Context, src Source, upTo int64, at time.Time) (queries.StateView, error) {
	s := NewQueueState()
	err := src.ReadAll(ctx, 0, func(e eventstore.Event) error {
		if (upTo > 0 && e.Position > upTo) || (!at.IsZero() && e.RecordedAt.After(at)) {
			return errStop
		}
		return s.Apply(e)
	})
	if err != nil && !errors.Is(err, errStop) {
		return queries.StateView{}, fmt.Errorf("state at position %d: %w", upTo, err)
	}
	now := at
	if now.IsZero() {
		now = s.RecordedAt()
	}
	return queries.StateView{Position: s.Position(), Queues: s.Queues(now)}, nil
}
