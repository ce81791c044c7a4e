package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

const streamPrefix = "queue-"

// replayFrom applies the log after position after to the queue states
// (fresh ones for a full rebuild, the ones a snapshot at after gave
// otherwise) and returns how many events it read. skip holds the stream
// version of each queue a snapshot gave: its events up to that version
// are in the state already (a snapshot copies queues one after the other,
// so a copy may hold events after its position). Reading the log
// (SQLite, on the store's side) and decoding and applying it (here) cost
// about the same, so they run in two goroutines, handing over pages of
// events: start-up takes about as long as the slower of the two rather
// than their sum. a.mu is held exclusively.
func (a *App) replayFrom(ctx context.Context, after int64, skip map[string]int64) (int64, error) {
	var read int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const page = 512
	pages := make(chan []eventstore.Event, 16)
	done := make(chan struct{})
	var applyErr error
	go func() {
		defer close(done)
		for events := range pages {
			if applyErr != nil {
				continue // drain until the reader stops
			}
			for _, e := range events {
				name, ok := strings.CutPrefix(e.StreamID, streamPrefix)
				if !ok {
					// Not a queue stream: nothing the command side keeps.
					continue
				}
				if v, ok := skip[name]; ok && e.Version <= v {
					continue
				}
				if err := replayInto(a.stateFor(name).agg, e); err != nil {
					applyErr = err
					cancel()
					break
				}
			}
		}
	}()
	send := func(events []eventstore.Event) error {
		select {
		case pages <- events:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	buf := make([]eventstore.Event, 0, page)
	readErr := a.store.ReadAll(ctx, after, func(e eventstore.Event) error {
		read++
		buf = append(buf, e)
		if len(buf) < page {
			return nil
		}
		full := buf
		buf = make([]eventstore.Event, 0, page)
		return send(full)
	})
	if readErr == nil && len(buf) > 0 {
		readErr = send(buf)
	}
	close(pages)
	<-done
	if applyErr != nil {
		return read, fmt.Errorf("commands: rebuild from the log: %w", applyErr)
	}
	if readErr != nil {
		return read, fmt.Errorf("commands: rebuild from the log: %w", readErr)
	}
	return read, nil
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
	ev, err := domain.DecodeForReplay(e.Type, e.Data)
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
