package relay_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
)

// FuzzDecodePack feeds the projections' entry point arbitrary messages, as
// a hostile or corrupt Redis stream would, in both pack formats (the seeds
// hold both): DecodePack must never panic, must refuse with ErrInvalidPack
// anything that is not exactly the consecutive positions the metadata
// announces, and what it accepts must survive EncodePack/DecodePack
// unchanged.
func FuzzDecodePack(f *testing.F) {
	now := time.Date(2025, 6, 7, 8, 9, 10, 123e6, time.UTC)
	events := []eventstore.Event{
		{Position: 7, StreamID: "queue-orders", Version: 1, Type: "QueueCreated", SchemaVersion: 1,
			Data: json.RawMessage(`{"queue":"orders"}`), Metadata: eventstore.Metadata{Subject: "s", RequestID: "r"},
			RecordedAt: now, PrevHash: eventstore.GenesisHash, Hash: "ab"},
		{Position: 8, StreamID: "queue-orders", Version: 2, Type: "MessagePublished", SchemaVersion: 1,
			Data: json.RawMessage(`{"body":"'; DROP TABLE events; --"}`), RecordedAt: now, PrevHash: "ab", Hash: "cd"},
	}
	binary, err := relay.EncodePack(events)
	if err != nil {
		f.Fatal(err)
	}
	legacy, err := relay.EncodeJSONPack(events)
	if err != nil {
		f.Fatal(err)
	}
	for _, good := range []*message.Message{binary, legacy} {
		format := good.Metadata.Get(relay.MetaFormat)
		f.Add([]byte(good.Payload), good.Metadata.Get(relay.MetaFirstPosition), good.Metadata.Get(relay.MetaPosition), format)
		f.Add([]byte(good.Payload), "7", "9", format)
		f.Add([]byte(good.Payload), "8", "7", format)
		f.Add([]byte(good.Payload), "7", "8", "3")
		f.Add([]byte(good.Payload[:len(good.Payload)/2]), "7", "8", format)
	}
	// Each format's payload under the other's name.
	f.Add([]byte(binary.Payload), "7", "8", relay.PackFormatJSON)
	f.Add([]byte(legacy.Payload), "7", "8", relay.PackFormat)
	// Binary headers that claim more than they hold.
	f.Add([]byte{2, 7, 0, 0}, "7", "8", relay.PackFormat)
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1, 0, 0}, "1", "4611686018427387904", relay.PackFormat)
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, "1", "1", relay.PackFormat)
	f.Add([]byte(`[{"position":1},{"position":1}]`), "1", "2", relay.PackFormatJSON)
	f.Add([]byte(`[{"position":1,"data":null,"recorded_at":-62135596800001}]`), "1", "1", relay.PackFormatJSON)
	f.Add([]byte(`[]`), "0", "-1", relay.PackFormatJSON)
	f.Add([]byte(`{"position":1}`), "1", "1", relay.PackFormatJSON)
	f.Add([]byte(`[{"position":9223372036854775807}]`), "9223372036854775807", "9223372036854775807", relay.PackFormatJSON)

	f.Fuzz(func(t *testing.T, payload []byte, first, last, format string) {
		msg := message.NewMessage("fuzz", payload)
		msg.Metadata.Set(relay.MetaFormat, format)
		msg.Metadata.Set(relay.MetaFirstPosition, first)
		msg.Metadata.Set(relay.MetaPosition, last)
		events, err := relay.DecodePack(msg)
		if err != nil {
			if !errors.Is(err, relay.ErrInvalidPack) {
				t.Fatalf("DecodePack error %v does not match ErrInvalidPack", err)
			}
			return
		}
		lo, _ := strconv.ParseInt(first, 10, 64)
		hi, _ := strconv.ParseInt(last, 10, 64)
		if format != relay.PackFormat && format != relay.PackFormatJSON || lo < 1 || hi < lo || int64(len(events)) != hi-lo+1 {
			t.Fatalf("accepted %d events for format %q positions %q..%q", len(events), format, first, last)
		}
		for i, e := range events {
			if e.Position != lo+int64(i) {
				t.Fatalf("event %d has position %d, want %d", i, e.Position, lo+int64(i))
			}
		}
		// What was accepted re-encodes to a pack that decodes to the
		// same events.
		if again := roundTrip(t, events); !reflect.DeepEqual(again, events) {
			t.Fatalf("pack round trip changed the events:\n%+v\n%+v", events, again)
		}
	})
}

func roundTrip(t *testing.T, events []eventstore.Event) []eventstore.Event {
	t.Helper()
	msg, err := relay.EncodePack(events)
	if err != nil {
		t.Fatalf("EncodePack of decoded events: %v", err)
	}
	first, last, err := relay.PackRange(msg)
	if err != nil || first != events[0].Position || last != events[len(events)-1].Position {
		t.Fatalf("PackRange = %d..%d, %v; want %d..%d", first, last, err, events[0].Position, events[len(events)-1].Position)
	}
	out, err := relay.DecodePack(msg)
	if err != nil {
		t.Fatalf("DecodePack of our own pack: %v", err)
	}
	return out
}
