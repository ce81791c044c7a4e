package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
)

// Metadata keys of a pack message. Projections read MetaPosition to skip
// packs they have applied without decoding them.
const (
	// MetaPosition is the position of the pack's last event.
	MetaPosition = "position"
	// MetaFirstPosition is the position of the pack's first event.
	MetaFirstPosition = "first_position"
	// MetaCount is the number of events in the pack.
	MetaCount = "count"
	// MetaStream, MetaVersion and MetaType describe the pack's last event.
	MetaStream  = "stream"
	MetaVersion = "version"
	MetaType    = "type"
	// MetaFormat names the payload's encoding; PackFormat is the only one.
	MetaFormat = "pack_format"
)

// PackFormat is the value of MetaFormat: the payload is a JSON array of
// events, each {"position","stream_id","version","type","schema_version",
// "data","metadata","recorded_at" (unix ms),"prev_hash","hash"}, in position
// order without gaps.
const PackFormat = "1"

// ErrInvalidPack is returned for a message that is not a well-formed pack.
var ErrInvalidPack = errors.New("relay: invalid pack")

// wireEvent is one event of a pack. The events schema builds the same JSON
// in SQL (json_object in eventsSchema.SelectQuery); keep both in step.
type wireEvent struct {
	Position      int64               `json:"position"`
	StreamID      string              `json:"stream_id"`
	Version       int64               `json:"version"`
	Type          string              `json:"type"`
	SchemaVersion int                 `json:"schema_version"`
	Data          json.RawMessage     `json:"data"`
	Metadata      eventstore.Metadata `json:"metadata"`
	RecordedAt    int64               `json:"recorded_at"`
	PrevHash      string              `json:"prev_hash"`
	Hash          string              `json:"hash"`
}

// packUUID is deterministic so that a pack published twice (at-least-once)
// carries the same id both times.
func packUUID(first, last int64) string {
	return "pack-" + strconv.FormatInt(first, 10) + "-" + strconv.FormatInt(last, 10)
}

func setPackMetadata(msg *message.Message, first, last int64, count int, stream string, version int64, typ string) {
	msg.Metadata.Set(MetaFormat, PackFormat)
	msg.Metadata.Set(MetaPosition, strconv.FormatInt(last, 10))
	msg.Metadata.Set(MetaFirstPosition, strconv.FormatInt(first, 10))
	msg.Metadata.Set(MetaCount, strconv.Itoa(count))
	msg.Metadata.Set(MetaStream, stream)
	msg.Metadata.Set(MetaVersion, strconv.FormatInt(version, 10))
	msg.Metadata.Set(MetaType, typ)
}

// EncodePack builds the message carrying events, which must be consecutive
// positions in ascending order: the message the relay publishes for them.
func EncodePack(events []eventstore.Event) (*message.Message, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrInvalidPack)
	}
	wire := make([]wireEvent, len(events))
	for i, e := range events {
		if i > 0 && e.Position != events[i-1].Position+1 {
			return nil, fmt.Errorf("%w: position %d follows %d", ErrInvalidPack, e.Position, events[i-1].Position)
		}
		wire[i] = wireEvent{
			Position: e.Position, StreamID: e.StreamID, Version: e.Version, Type: e.Type,
			SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: e.Metadata,
			RecordedAt: e.RecordedAt.UnixMilli(), PrevHash: e.PrevHash, Hash: e.Hash,
		}
	}
	payload, err := json.Marshal(wire)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPack, err)
	}
	first, last := events[0], events[len(events)-1]
	msg := message.NewMessage(packUUID(first.Position, last.Position), payload)
	setPackMetadata(msg, first.Position, last.Position, len(events), last.StreamID, last.Version, last.Type)
	return msg, nil
}

// PackRange returns the first and last position of a pack message from its
// metadata, without decoding the payload.
func PackRange(msg *message.Message) (first, last int64, err error) {
	if f := msg.Metadata.Get(MetaFormat); f != PackFormat {
		return 0, 0, fmt.Errorf("%w: message %s has pack format %q, want %q", ErrInvalidPack, msg.UUID, f, PackFormat)
	}
	first, err1 := strconv.ParseInt(msg.Metadata.Get(MetaFirstPosition), 10, 64)
	last, err2 := strconv.ParseInt(msg.Metadata.Get(MetaPosition), 10, 64)
	if err1 != nil || err2 != nil || first < 1 || last < first {
		return 0, 0, fmt.Errorf("%w: message %s has positions %q..%q", ErrInvalidPack, msg.UUID,
			msg.Metadata.Get(MetaFirstPosition), msg.Metadata.Get(MetaPosition))
	}
	return first, last, nil
}

// DecodePack returns the events of a pack message, checking that they are
// the consecutive positions its metadata announces. Data and schema version
// are as stored: apply upcasters before interpreting Data.
func DecodePack(msg *message.Message) ([]eventstore.Event, error) {
	first, last, err := PackRange(msg)
	if err != nil {
		return nil, err
	}
	var wire []wireEvent
	if err := json.Unmarshal(msg.Payload, &wire); err != nil {
		return nil, fmt.Errorf("%w: message %s: %w", ErrInvalidPack, msg.UUID, err)
	}
	if int64(len(wire)) != last-first+1 {
		return nil, fmt.Errorf("%w: message %s announces %d..%d but holds %d events", ErrInvalidPack, msg.UUID, first, last, len(wire))
	}
	events := make([]eventstore.Event, len(wire))
	for i, w := range wire {
		if w.Position != first+int64(i) {
			return nil, fmt.Errorf("%w: message %s: event %d has position %d, want %d", ErrInvalidPack, msg.UUID, i, w.Position, first+int64(i))
		}
		events[i] = eventstore.Event{
			Position: w.Position, StreamID: w.StreamID, Version: w.Version, Type: w.Type,
			SchemaVersion: w.SchemaVersion, Data: w.Data, Metadata: w.Metadata,
			RecordedAt: time.UnixMilli(w.RecordedAt).UTC(), Hash: w.Hash, PrevHash: w.PrevHash,
		}
	}
	return events, nil
}
