package projections

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/queries"
)

// Source supplies events in global-position order for catch-up and gap
// filling: the event store on a write node, a Redis-backed source on a query
// node. ReadAll calls fn for each event after position `after`, up to the
// head it sees, and must stop and return fn's error (wrapped or not) as soon
// as fn returns one.
type Source interface {
	ReadAll(ctx context.Context, after int64, fn func(eventstore.Event) error) error
}

// UpdatePublisher receives the projections' updates after each commit; the
// SSE hub (*queries.Hub) implements it. Publish must not block.
type UpdatePublisher interface {
	Publish(updates ...queries.Update)
	// SetFloor tells it the position the read side had reached before it
	// saw any update, so resumes from before that are known to be partial.
	SetFloor(position int64)
}

// updateWanter is an optional capability of an UpdatePublisher (the hub
// has it): it says whether an update of kind event (queries.EventQueueUpdated,
// queries.EventMessageUpdated) about queue at position would reach anyone.
// Building one costs a stats query or a summary and its JSON, so when the
// answer is no it is not built.
type updateWanter interface {
	WantUpdate(event, queue string, position int64) bool
}

// DefaultTopic is the bus topic the relay publishes packs on (relay.Topic).
const DefaultTopic = "ledgerq.events"

// Config configures an Engine.
type Config struct {
	// Path is the read-model SQLite file, created when missing. Required.
	Path string
	// Source fills gaps and catches up at start. Required.
	Source Source
	// Subscriber delivers packs of events from the bus
	// ((*relay.Bus).Subscriber). Nil runs the engine on catch-up from the
	// Source alone.
	Subscriber message.Subscriber
	// Topic is the bus topic of the packs. Default DefaultTopic.
	Topic string
	// DecodePack turns a bus message into its events, in position order
	// (relay.DecodePack). Required with Subscriber.
	DecodePack func(*message.Message) ([]eventstore.Event, error)
	// Upcast brings an event's data to the current schema version
	// ((*eventstore.Store).Upcast). Packs carry events as stored, so it is
	// applied to every event, whichever way it came (upcasting is
	// idempotent). Nil: events are taken as they are.
	Upcast func(eventstore.Event) (eventstore.Event, error)
	// Hub is told about every committed change. Optional.
	Hub UpdatePublisher
	// HandlerName names the router handler. Default "ledgerq-projections".
	HandlerName string
	// CatchUpBatch is how many events one transaction applies when catching
	// up or rebuilding. Default 1000.
	CatchUpBatch int
	// PollInterval is how often Run asks the Source for events the bus did
	// not bring, when no pack arrived since the last look: a safety net for a
	// bus that dropped messages (the in-process bus drops what is published
	// while nobody subscribes). Default 1 s; negative disables it.
	PollInterval time.Duration
	// ReadConns is the size of the reader pool. Default 4.
	ReadConns int
	// Logger logs the router's and the engine's events. Default: none.
	Logger watermill.LoggerAdapter
	// Now is the clock for stats in updates (ready vs delayed). Default
	// time.Now.
	Now func() time.Time
	// ObserveTransaction, if set, is told of every read-model transaction
	// that applied events of a pack from the bus: how many, and how long it
	// took from its BEGIN to the end of its COMMIT (the hub told). Catch-up
	// and rebuild transactions are not reported. It must not block.
	ObserveTransaction func(events int, took time.Duration)
	// ObserveDelay, if set, is told for each event such a transaction
	// applied how long after the event's recording in the log (RecordedAt,
	// millisecond precision, this machine's clock) the transaction
	// committed: append → read model. It must not block.
	ObserveDelay func(time.Duration)
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.HandlerName == "" {
		c.HandlerName = "ledgerq-projections"
	}
	if c.CatchUpBatch <= 0 {
		c.CatchUpBatch = 1000
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.ReadConns <= 0 {
		c.ReadConns = 4
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("projections: Path is required"))
	}
	if c.Source == nil {
		errs = append(errs, errors.New("projections: Source is required"))
	}
	if c.Subscriber != nil && c.DecodePack == nil {
		errs = append(errs, errors.New("projections: DecodePack is required with a Subscriber"))
	}
	return errors.Join(errs...)
}

// RangeSource adapts a reader of event ranges, such as (*relay.Bus).ReadRange
// on a query node, to a Source.
type RangeSource struct {
	// Read returns events after position after, in position order, at most
	// limit of them (limit <= 0: all it has).
	Read func(ctx context.Context, after int64, limit int) ([]eventstore.Event, error)
	// PageSize is the limit of each Read; 0 reads everything in one call
	// (ReadRange scans its stream from the newest entry back on every call,
	// so one call is cheaper than many pages).
	PageSize int
}

// ReadAll implements Source.
func (s RangeSource) ReadAll(ctx context.Context, after int64, fn func(eventstore.Event) error) error {
	for {
		events, err := s.Read(ctx, after, s.PageSize)
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Position
		}
		if len(events) == 0 || s.PageSize <= 0 || len(events) < s.PageSize {
			return nil
		}
	}
}
