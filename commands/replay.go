package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

const streamPrefix = "queue-"

// rebuildAll replays the whole log into fresh queue states.
func (a *App) rebuildAll(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.store.ReadAll(ctx, 0, func(e eventstore.Event) error {
		name, ok := strings.CutPrefix(e.StreamID, streamPrefix)
		if !ok {
			// Not a queue stream: nothing the command side keeps.
			return nil
		}
		return replayInto(a.stateFor(name).agg, e)
	})
	if err != nil {
		return fmt.Errorf("commands: rebuild from the log: %w", err)
	}
	return nil
}

// rebuildQueue replaces a broken queue's aggregate with a replay of its
// stream. qs is locked; every append still pending on it is waited for
// first, so the stream read is final.
func (a *App) rebuildQueue(ctx context.Context, qs *queueState) error {
	for h := range qs.pending {
		<-h.pending.Done()
	}
	fresh := domain.NewQueue(qs.name)
	stream := domain.StreamID(qs.name)
	apply := func(e eventstore.Event) error { return replayInto(fresh, e) }
	var err error
	if sr, ok := a.store.(streamReader); ok {
		err = sr.ReadStream(ctx, stream, 0, apply)
	} else {
		err = a.store.ReadAll(ctx, 0, func(e eventstore.Event) error {
			if e.StreamID != stream {
				return nil
			}
			return apply(e)
		})
	}
	if err != nil {
		return fmt.Errorf("%w: rebuild queue %q: %w", ErrUnavailable, qs.name, err)
	}
	qs.agg = fresh
	clear(qs.pending)
	qs.broken = false
	qs.scheduled = 0
	now := a.now()
	a.reschedule(qs, now)
	// Whatever a waiting receive saw may have changed.
	qs.signal()
	a.log.WithField("queue", qs.name).Warn("commands: queue state rebuilt from the log after a failed append")
	return nil
}

// replayInto applies one logged event to an aggregate, checking that the
// aggregate's version follows the stream's.
func replayInto(q *domain.Queue, e eventstore.Event) error {
	ev, err := decodeForState(e.Type, e.Data)
	if err != nil {
		return fmt.Errorf("position %d: %w", e.Position, err)
	}
	if err := q.ApplyAt(ev, e.Position); err != nil {
		return fmt.Errorf("position %d: %w", e.Position, err)
	}
	if q.Version() != e.Version {
		return fmt.Errorf("position %d: stream %s is at version %d, the log says %d", e.Position, e.StreamID, q.Version(), e.Version)
	}
	return nil
}

// leanPublished is a MessagePublished without what the command state does
// not keep (body, headers, content type): decoding skips those bytes
// instead of copying them, which is most of a large log.
type leanPublished struct {
	Queue       string         `json:"queue"`
	MessageID   string         `json:"message_id"`
	PublishedAt time.Time      `json:"published_at"`
	AvailableAt time.Time      `json:"available_at"`
	ExpiresAt   time.Time      `json:"expires_at"`
	DedupID     string         `json:"dedup_id"`
	Origin      *domain.Origin `json:"origin"`
}

// decodeForState decodes what the command state needs of an event.
func decodeForState(eventType string, data []byte) (domain.Event, error) {
	if eventType != domain.TypeMessagePublished {
		return domain.DecodeEvent(eventType, data)
	}
	var p leanPublished
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return domain.MessagePublished{
		Queue:       p.Queue,
		MessageID:   p.MessageID,
		PublishedAt: p.PublishedAt,
		AvailableAt: p.AvailableAt,
		ExpiresAt:   p.ExpiresAt,
		DedupID:     p.DedupID,
		Origin:      p.Origin,
	}, nil
}
