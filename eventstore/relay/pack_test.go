package relay_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
)

// packEvents are events with every field set, and the edges of each:
// empty data and metadata, a long body, stream names in several scripts,
// positions near the top of int64, times before 1970.
func packEvents(first int64) []eventstore.Event {
	at := time.Date(2026, 3, 4, 5, 6, 7, 891e6, time.UTC)
	long := `{"body":"` + strings.Repeat("0123456789abcdef", 1<<16) + `"}`
	hash := func(i int) string { return strings.Repeat(strconv.Itoa(i%10), 64) }
	return []eventstore.Event{
		{Position: first, StreamID: "queue-orders", Version: 1, Type: "QueueCreated", SchemaVersion: 1,
			Data:       json.RawMessage(`{"queue":"orders"}`),
			Metadata:   eventstore.Metadata{Subject: "alice", RequestID: "req-1", CorrelationID: "corr-1", CausationID: "cause-1"},
			RecordedAt: at, PrevHash: eventstore.GenesisHash, Hash: hash(1)},
		{Position: first + 1, StreamID: "queue-zürich-東京-🚀", Version: math.MaxInt64, Type: "MessagePublished", SchemaVersion: math.MaxInt32,
			Data: json.RawMessage(long), Metadata: eventstore.Metadata{Subject: "bob \"the\" <admin>\u2028"},
			RecordedAt: time.UnixMilli(-62135596800000).UTC(), PrevHash: hash(1), Hash: hash(2)},
		{Position: first + 2, StreamID: "", Version: 0, Type: "", SchemaVersion: 0,
			RecordedAt: time.UnixMilli(0).UTC()},
		{Position: first + 3, StreamID: "queue-\x00nul", Version: -1, Type: "T", SchemaVersion: -7,
			Data: json.RawMessage(`null`), Metadata: eventstore.Metadata{CausationID: "only"},
			RecordedAt: time.UnixMilli(math.MaxInt64 / 1000).UTC(), PrevHash: hash(2), Hash: hash(4)},
	}
}

func TestPackRoundTrip(t *testing.T) {
	for _, first := range []int64{1, 300, math.MaxInt64 - 3} {
		want := packEvents(first)
		msg, err := relay.EncodePack(want)
		if err != nil {
			t.Fatal(err)
		}
		if f := msg.Metadata.Get(relay.MetaFormat); f != relay.PackFormat {
			t.Fatalf("EncodePack wrote format %q, want %q", f, relay.PackFormat)
		}
		got, err := relay.DecodePack(msg)
		if err != nil {
			t.Fatalf("first %d: %v", first, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("first %d: round trip changed the events:\n got %+v\nwant %+v", first, got, want)
		}
		// The events own their memory: the message may be reused.
		clear(msg.Payload)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("first %d: decoded events share the payload", first)
		}
	}
}

// Packs of the JSON format, as a write node of an earlier version leaves
// them in the Redis stream, still decode.
func TestDecodePackJSONFormat(t *testing.T) {
	all := packEvents(41)
	all[3].Position = 43
	want := []eventstore.Event{all[0], all[1], all[3]} // JSON has no absent data
	msg, err := relay.EncodeJSONPack(want)
	if err != nil {
		t.Fatal(err)
	}
	if f := msg.Metadata.Get(relay.MetaFormat); f != relay.PackFormatJSON {
		t.Fatalf("format %q, want %q", f, relay.PackFormatJSON)
	}
	if first, last, err := relay.PackRange(msg); err != nil || first != 41 || last != 41+int64(len(want))-1 {
		t.Fatalf("PackRange of a JSON pack: %d..%d, %v", first, last, err)
	}
	got, err := relay.DecodePack(msg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !sameEvent(got[i], want[i]) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// Every payload that is not exactly a pack is ErrInvalidPack, however it
// was cut or what its lengths claim.
func TestDecodePackBinaryRejects(t *testing.T) {
	msg, err := relay.EncodePack(packEvents(5)[2:]) // short bodies
	if err != nil {
		t.Fatal(err)
	}
	with := func(payload []byte) *message.Message {
		m := msg.Copy()
		m.Payload = payload
		return m
	}
	reject := func(name string, m *message.Message) {
		t.Helper()
		if evs, err := relay.DecodePack(m); !errors.Is(err, relay.ErrInvalidPack) {
			t.Errorf("%s: %d events, %v; want ErrInvalidPack", name, len(evs), err)
		}
	}
	p := msg.Payload
	for n := range len(p) {
		reject("cut at "+strconv.Itoa(n), with(p[:n]))
	}
	reject("a byte too many", with(append(p[:len(p):len(p)], 0)))

	uv := binary.AppendUvarint
	header := func(n, first, strs, bodies uint64) []byte {
		return uv(uv(uv(uv(nil, n), first), strs), bodies)
	}
	two := msg.Copy() // positions 5..6
	two.Metadata.Set(relay.MetaFirstPosition, "5")
	two.Metadata.Set(relay.MetaPosition, "6")
	entry := make([]byte, 12) // all zero: lengths 0
	for name, payload := range map[string][]byte{
		"empty":                  nil,
		"count above metadata":   append(header(3, 5, 0, 0), slicesRepeat(entry, 3)...),
		"first below metadata":   append(header(2, 4, 0, 0), slicesRepeat(entry, 2)...),
		"strings beyond payload": append(header(2, 5, 1<<40, 0), slicesRepeat(entry, 2)...),
		"bodies beyond payload":  append(header(2, 5, 0, math.MaxUint64), slicesRepeat(entry, 2)...),
		"sections overflow":      append(header(2, 5, math.MaxUint64, 2), slicesRepeat(entry, 2)...),
		"entries missing":        header(2, 5, 0, 0),
		"one entry":              append(header(2, 5, 0, 0), entry...),
		"string beyond section":  append(header(2, 5, 1, 0), append(append([]byte{0, 0, 0, 5}, make([]byte, 8)...), append(entry, 'x')...)...),
		"data beyond section":    append(header(2, 5, 0, 1), append(append(make([]byte, 11), 9), append(entry, 'x')...)...),
		"section bytes unused":   append(header(2, 5, 1, 0), append(slicesRepeat(entry, 2), 'x')...),
		"varint overflow":        append(header(2, 5, 0, 0), append(slicesRepeat([]byte{0xff}, 11), slicesRepeat(entry, 2)...)...),
	} {
		m := two.Copy()
		m.Payload = payload
		reject(name, m)
	}
	// A count of 2^62 in a tiny payload is refused before anything of
	// that size is allocated.
	huge := msg.Copy()
	huge.Metadata.Set(relay.MetaFirstPosition, "1")
	huge.Metadata.Set(relay.MetaPosition, strconv.FormatInt(1<<62, 10))
	huge.Payload = append(header(1<<62, 1, 0, 0), entry...)
	allocs := testing.AllocsPerRun(10, func() { reject("count 2^62", huge) })
	if allocs > 20 {
		t.Errorf("refusing a count of 2^62 took %.0f allocations", allocs)
	}
}

func slicesRepeat(b []byte, n int) []byte { return []byte(strings.Repeat(string(b), n)) }
