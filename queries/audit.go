package queries

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

// EventLog is what the audit routes read: the event store itself. The log
// is the evidence, so audit answers come from it, not from a read model.
type EventLog interface {
	// Scan returns stored events (as written, not upcast) matching f.
	Scan(ctx context.Context, f eventstore.Filter, fn func(eventstore.Event) error) error
	// Verify walks the hash chain over [from, to] (0: the whole log).
	Verify(ctx context.Context, from, to int64) (eventstore.VerifyReport, error)
	// PositionAt is the last position recorded at or before t.
	PositionAt(ctx context.Context, t time.Time) (int64, error)
	// Head is the last committed position.
	Head() int64
}

var _ EventLog = (*eventstore.Store)(nil)

// Replayer rebuilds the state of every queue from the log up to a position,
// with time-dependent stats (ready vs delayed) computed as of at.
type Replayer func(ctx context.Context, upTo int64, at time.Time) (StateView, error)

// Audit answers the audit routes: the log with filters and paging, hash
// chain verification, and the state as it was at a position or a time.
type Audit struct {
	log    EventLog
	replay Replayer
}

// NewAudit returns the audit queries over the log; replay reconstructs
// point-in-time state (projections.StateAt over the same log).
func NewAudit(log EventLog, replay Replayer) *Audit {
	return &Audit{log: log, replay: replay}
}

// errPageFull stops a scan once a page is complete.
var errPageFull = errors.New("page full")

// Events returns one page of the log. NextAfter is set when more events
// may follow the page.
func (a *Audit) Events(ctx context.Context, f EventFilter) (EventPage, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return EventPage{}, err
	}
	sf, err := storeFilter(f)
	if err != nil {
		return EventPage{}, err
	}
	page := EventPage{Events: []EventView{}}
	var last int64
	err = a.log.Scan(ctx, sf, func(e eventstore.Event) error {
		if len(page.Events) == limit {
			// One more matching event exists beyond the page.
			page.NextAfter = last
			return errPageFull
		}
		last = e.Position
		if !visible(f.Allowed, e.StreamID) {
			return nil
		}
		v, err := eventView(e)
		if err != nil {
			return err
		}
		page.Events = append(page.Events, v)
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return EventPage{}, err
	}
	return page, nil
}

// StreamEvents calls fn for every matching event in position order without
// holding the range in memory (the store reads it page by page).
func (a *Audit) StreamEvents(ctx context.Context, f EventFilter, fn func(EventView) error) error {
	sf, err := storeFilter(f)
	if err != nil {
		return err
	}
	sf.Limit = 0
	if f.Limit > 0 {
		sf.Limit = f.Limit
	}
	return a.log.Scan(ctx, sf, func(e eventstore.Event) error {
		if !visible(f.Allowed, e.StreamID) {
			return nil
		}
		v, err := eventView(e)
		if err != nil {
			return err
		}
		return fn(v)
	})
}

// Verify walks the hash chain over [from, to] (to 0: the head).
func (a *Audit) Verify(ctx context.Context, from, to int64) (VerifyResult, error) {
	if from < 0 || to < 0 || (to != 0 && to < from) {
		return VerifyResult{}, domain.Invalid("from", "from and to must be positions with from ≤ to")
	}
	if a.log.Head() == 0 {
		return VerifyResult{OK: true}, nil
	}
	r, err := a.log.Verify(ctx, from, to)
	if err != nil {
		return VerifyResult{}, err
	}
	return VerifyResult{OK: r.OK, Checked: r.Checked, HeadPosition: r.HeadPosition, HeadHash: r.HeadHash, FirstBadPosition: r.FirstBadPosition}, nil
}

// StateAt reconstructs every queue as it was at a position or a time.
func (a *Audit) StateAt(ctx context.Context, q StateAt) (StateView, error) {
	switch {
	case q.Position < 0:
		return StateView{}, domain.Invalid("at_position", "must not be negative")
	case q.Position > 0 && !q.Time.IsZero():
		return StateView{}, domain.Invalid("at_position", "give at_position or at_time, not both")
	}
	head := a.log.Head()
	upTo, at := q.Position, q.Time
	switch {
	case !at.IsZero():
		p, err := a.log.PositionAt(ctx, at)
		if err != nil {
			return StateView{}, err
		}
		upTo = p
	case upTo == 0:
		upTo = head
	}
	if upTo > head {
		return StateView{}, domain.Invalid("at_position", "position %d is beyond the head of the log (%d)", upTo, head)
	}
	if at.IsZero() && upTo == head {
		at = time.Now()
	}
	// With a position and no time, stats that depend on the clock (ready
	// vs delayed) are computed as of the moment that position was recorded.
	return a.replay(ctx, upTo, at)
}

func storeFilter(f EventFilter) (eventstore.Filter, error) {
	if f.After < 0 {
		return eventstore.Filter{}, domain.Invalid("after", "must not be negative")
	}
	if f.Type != "" && !knownType(f.Type) {
		return eventstore.Filter{}, domain.Invalid("type", "unknown event type %q", f.Type)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return eventstore.Filter{}, domain.Invalid("until", "until must be after since")
	}
	return eventstore.Filter{After: f.After, Stream: f.Stream, Type: f.Type, Since: f.Since, Before: f.Until}, nil
}

func knownType(t string) bool {
	for _, k := range domain.EventTypes {
		if k == t {
			return true
		}
	}
	return false
}

// visible hides the events of queues the caller may not see.
func visible(allowed func(string) bool, stream string) bool {
	if allowed == nil {
		return true
	}
	name, ok := strings.CutPrefix(stream, "queue-")
	return ok && allowed(name)
}

func eventView(e eventstore.Event) (EventView, error) {
	md, err := json.Marshal(e.Metadata)
	if err != nil {
		return EventView{}, err
	}
	return EventView{
		Position: e.Position, Stream: e.StreamID, Version: e.Version, Type: e.Type,
		SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: md,
		RecordedAt: e.RecordedAt, Hash: e.Hash, PrevHash: e.PrevHash,
	}, nil
}
