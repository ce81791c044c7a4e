package relay

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
)

// EncodeJSONPack is encodeJSONPack for the package's external tests.
var EncodeJSONPack = encodeJSONPack

// encodeJSONPack builds a PackFormatJSON pack the way EncodePack did
// before PackFormat: the packs a write node of an earlier version leaves in
// a Redis stream.
func encodeJSONPack(events []eventstore.Event) (*message.Message, error) {
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
	msg.Metadata.Set(MetaFormat, PackFormatJSON)
	return msg, nil
}

// Pacer drives a readPacer for the package's external tests.
type Pacer struct{ p readPacer }

func (t *Pacer) Packed(head int64, at time.Time)              { t.p.packed(head, at) }
func (t *Pacer) Reset()                                       { t.p.reset() }
func (t *Pacer) Linger(c Config, now time.Time) time.Duration { return t.p.linger(c, now) }

// WithDefaults is c with New's defaults filled in.
func WithDefaults(c Config, s Store) Config {
	c.setDefaults(s)
	return c
}
