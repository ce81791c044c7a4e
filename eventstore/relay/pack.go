package relay

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
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
	// MetaFormat names the payload's encoding: PackFormat or
	// PackFormatJSON.
	MetaFormat = "pack_format"
)

// Values of MetaFormat. The relay and EncodePack write PackFormat;
// DecodePack and PackRange read both, so packs that a write node of an
// earlier version left in a Redis stream still decode. A node that knows
// only PackFormatJSON refuses PackFormat packs: upgrade the query nodes
// before the write node.
const (
	// PackFormat is a binary payload (all integers in encoding/binary
	// varint form; u: unsigned, s: signed zig-zag):
	//
	//	payload = header strings bodies
	//	header  = u(n) u(first position) u(len(strings)) u(len(bodies)) event{n}
	//	event   = s(version) s(schema_version) s(recorded_at, unix ms)
	//	          u(len) for each of stream_id, type, prev_hash, hash,
	//	          metadata subject, request_id, correlation_id, causation_id,
	//	          and data
	//	strings = the eight strings of each event, in that order, event after event
	//	bodies  = the data of each event, event after event
	//
	// Event i is at position first+i. A decoder reads the header once and
	// slices every string out of one copy of the strings section and
	// every Data out of one copy of the bodies section; nothing of the
	// bodies is scanned.
	PackFormat = "2"
	// PackFormatJSON is the format of earlier versions: a JSON array of
	// events, each {"position","stream_id","version","type",
	// "schema_version","data","metadata","recorded_at" (unix ms),
	// "prev_hash","hash"}, in position order without gaps.
	PackFormatJSON = "1"
)

// ErrInvalidPack is returned for a message that is not a well-formed pack.
var ErrInvalidPack = errors.New("relay: invalid pack")

// wireEvent is one event of a PackFormatJSON pack.
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

// Layout of a PackFormat header.
const (
	// binStrings is the number of strings of an event, data aside.
	binStrings = 8
	// binFields is the number of integers of an event's header entry:
	// three, then the lengths of its strings and of its data. Each takes
	// a byte at least.
	binFields = 3 + binStrings + 1
)

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

// packEvent is an event as a PackFormat payload holds it: its integers, its
// strings in payload order and its data. S is string for events of the
// store and []byte for the fields cut out of a pack row.
type packEvent[S string | []byte] struct {
	version, schema, recordedAt int64
	strs                        [binStrings]S
	data                        []byte
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func varintLen(x int64) int { return uvarintLen(uint64(x<<1) ^ uint64(x>>63)) }

// packPayload writes the PackFormat payload of events from position
// first, allocating it once and exactly.
func packPayload[S string | []byte](first int64, events []packEvent[S]) []byte {
	var strLen, bodyLen, headLen int
	for i := range events {
		e := &events[i]
		headLen += varintLen(e.version) + varintLen(e.schema) + varintLen(e.recordedAt)
		for _, s := range e.strs {
			strLen += len(s)
			headLen += uvarintLen(uint64(len(s)))
		}
		bodyLen += len(e.data)
		headLen += uvarintLen(uint64(len(e.data)))
	}
	headLen += uvarintLen(uint64(len(events))) + uvarintLen(uint64(first)) +
		uvarintLen(uint64(strLen)) + uvarintLen(uint64(bodyLen))
	p := make([]byte, 0, headLen+strLen+bodyLen)
	p = binary.AppendUvarint(p, uint64(len(events)))
	p = binary.AppendUvarint(p, uint64(first))
	p = binary.AppendUvarint(p, uint64(strLen))
	p = binary.AppendUvarint(p, uint64(bodyLen))
	for i := range events {
		e := &events[i]
		p = binary.AppendVarint(p, e.version)
		p = binary.AppendVarint(p, e.schema)
		p = binary.AppendVarint(p, e.recordedAt)
		for _, s := range e.strs {
			p = binary.AppendUvarint(p, uint64(len(s)))
		}
		p = binary.AppendUvarint(p, uint64(len(e.data)))
	}
	for i := range events {
		for _, s := range events[i].strs {
			p = append(p, s...)
		}
	}
	for i := range events {
		p = append(p, events[i].data...)
	}
	return p
}

// EncodePack builds the message carrying events, which must be consecutive
// positions in ascending order: the message the relay publishes for them,
// in PackFormat. Data is carried as it is, without a check that it is
// JSON.
func EncodePack(events []eventstore.Event) (*message.Message, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrInvalidPack)
	}
	first, last := events[0], events[len(events)-1]
	if first.Position < 1 {
		return nil, fmt.Errorf("%w: position %d", ErrInvalidPack, first.Position)
	}
	pe := make([]packEvent[string], len(events))
	for i := range events {
		e := &events[i]
		if i > 0 && e.Position != events[i-1].Position+1 {
			return nil, fmt.Errorf("%w: position %d follows %d", ErrInvalidPack, e.Position, events[i-1].Position)
		}
		pe[i] = packEvent[string]{
			version: e.Version, schema: int64(e.SchemaVersion), recordedAt: e.RecordedAt.UnixMilli(),
			strs: [binStrings]string{e.StreamID, e.Type, e.PrevHash, e.Hash,
				e.Metadata.Subject, e.Metadata.RequestID, e.Metadata.CorrelationID, e.Metadata.CausationID},
			data: e.Data,
		}
	}
	msg := message.NewMessage(packUUID(first.Position, last.Position), packPayload(first.Position, pe))
	setPackMetadata(msg, first.Position, last.Position, len(events), last.StreamID, last.Version, last.Type)
	return msg, nil
}

// PackRange returns the first and last position of a pack message from its
// metadata, without decoding the payload.
func PackRange(msg *message.Message) (first, last int64, err error) {
	if f := msg.Metadata.Get(MetaFormat); f != PackFormat && f != PackFormatJSON {
		return 0, 0, fmt.Errorf("%w: message %s has pack format %q, want %q or %q", ErrInvalidPack, msg.UUID, f, PackFormat, PackFormatJSON)
	}
	first, err1 := strconv.ParseInt(msg.Metadata.Get(MetaFirstPosition), 10, 64)
	last, err2 := strconv.ParseInt(msg.Metadata.Get(MetaPosition), 10, 64)
	if err1 != nil || err2 != nil || first < 1 || last < first {
		return 0, 0, fmt.Errorf("%w: message %s has positions %q..%q", ErrInvalidPack, msg.UUID,
			msg.Metadata.Get(MetaFirstPosition), msg.Metadata.Get(MetaPosition))
	}
	return first, last, nil
}

// DecodePack returns the events of a pack message in either format,
// checking that they are the consecutive positions its metadata announces.
// Data and schema version are as stored: apply upcasters before
// interpreting Data. The events share no memory with the message; of a
// PackFormat pack, the strings of all its events share one allocation (so
// one string kept keeps them all, some 250 bytes an event) and so do the
// Data of all its events.
func DecodePack(msg *message.Message) ([]eventstore.Event, error) {
	first, last, err := PackRange(msg)
	if err != nil {
		return nil, err
	}
	if msg.Metadata.Get(MetaFormat) == PackFormatJSON {
		return decodeJSONPack(msg, first, last)
	}
	events, err := decodeBinaryPack(msg.Payload, first, last)
	if err != nil {
		return nil, fmt.Errorf("%w: message %s: %w", ErrInvalidPack, msg.UUID, err)
	}
	return events, nil
}

// Errors of a PackFormat payload; DecodePack wraps them in ErrInvalidPack.
var (
	errTruncated = errors.New("truncated or malformed header")
	errOverrun   = errors.New("lengths overrun the payload")
)

// binReader reads a PackFormat header and takes the strings it announces
// from the strings section; after the first failure it returns zeros and
// keeps err.
type binReader struct {
	b    []byte // the header
	off  int
	strs string // the strings section
	so   int    // offset in strs
	err  error
}

func (r *binReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.off += n
	return v
}

func (r *binReader) varint() int64 {
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.off += n
	return v
}

func (r *binReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.off = len(r.b)
}

// str reads a length and returns that many bytes of the strings section,
// sharing its memory.
func (r *binReader) str() string {
	l := r.uvarint()
	if l > uint64(len(r.strs)-r.so) {
		r.fail(errOverrun)
		return ""
	}
	if l == 0 {
		return ""
	}
	s := r.strs[r.so : r.so+int(l)]
	r.so += int(l)
	return s
}

// decodeBinaryPack decodes a PackFormat payload in one pass over its
// header. It allocates the events, one string for the strings section and
// one slice for the bodies, whatever the number of events.
func decodeBinaryPack(p []byte, first, last int64) ([]eventstore.Event, error) {
	r := binReader{b: p}
	n, pfirst, strLen, bodyLen := r.uvarint(), r.uvarint(), r.uvarint(), r.uvarint()
	if r.err != nil {
		return nil, r.err
	}
	if want := uint64(last - first + 1); n != want || pfirst != uint64(first) {
		return nil, fmt.Errorf("metadata announces %d..%d but the payload holds %d events from %d", first, last, n, pfirst)
	}
	rest := uint64(len(p) - r.off)
	if strLen > rest || bodyLen > rest-strLen {
		return nil, errOverrun
	}
	headEnd := len(p) - int(strLen) - int(bodyLen)
	if n > uint64(headEnd-r.off)/binFields {
		return nil, errTruncated
	}
	r.b = p[:headEnd]
	r.strs = string(p[headEnd : headEnd+int(strLen)])
	var bodies []byte
	if bodyLen > 0 {
		bodies = make([]byte, bodyLen)
		copy(bodies, p[headEnd+int(strLen):])
	}
	events := make([]eventstore.Event, n)
	bo := 0 // offset in bodies
	for i := range events {
		e := &events[i]
		e.Position = first + int64(i)
		e.Version = r.varint()
		schema := r.varint()
		e.SchemaVersion = int(schema)
		e.RecordedAt = time.UnixMilli(r.varint()).UTC()
		e.StreamID, e.Type, e.PrevHash, e.Hash = r.str(), r.str(), r.str(), r.str()
		e.Metadata = eventstore.Metadata{Subject: r.str(), RequestID: r.str(), CorrelationID: r.str(), CausationID: r.str()}
		l := r.uvarint()
		if r.err != nil {
			return nil, fmt.Errorf("event %d: %w", i, r.err)
		}
		if int64(e.SchemaVersion) != schema {
			return nil, fmt.Errorf("event %d: schema version %d out of range", i, schema)
		}
		if l > uint64(len(bodies)-bo) {
			return nil, fmt.Errorf("event %d: %w", i, errOverrun)
		}
		if l > 0 {
			e.Data = json.RawMessage(bodies[bo : bo+int(l) : bo+int(l)])
			bo += int(l)
		}
	}
	if r.off != headEnd || r.so != len(r.strs) || bo != len(bodies) {
		return nil, fmt.Errorf("header ends at %d of %d, strings used %d of %d, bodies %d of %d",
			r.off, headEnd, r.so, len(r.strs), bo, len(bodies))
	}
	return events, nil
}

// decodeJSONPack decodes a PackFormatJSON payload.
func decodeJSONPack(msg *message.Message, first, last int64) ([]eventstore.Event, error) {
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
