package relay

import (
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ledgerq/ledgerq/eventstore"
)

// A pack record is the text the relay's query builds for a pack: for each
// event, in position order, ten decimal integers each followed by a comma,
//
//	position,version,schema_version,recorded_at,len(stream_id),len(type),len(prev_hash),len(hash),len(metadata),len(data),
//
// (lengths in bytes) and then stream_id, type, prev_hash, hash, metadata
// (the JSON object the store keeps) and data, as stored. SQLite only
// concatenates; packFromRecord reads it in one pass.
const recordInts = 10

// packFromRecord builds the pack message of the n events from position
// first out of their record, checking that the record holds exactly those
// positions.
func packFromRecord(first int64, n int, rec []byte) (*message.Message, error) {
	if n < 1 {
		return nil, fmt.Errorf("%d events", n)
	}
	events := make([]packEvent[[]byte], n)
	off := 0
	for i := range events {
		var v [recordInts]int64
		for k := range v {
			x, end, ok := parseDecimal(rec, off)
			if !ok || end >= len(rec) || rec[end] != ',' {
				return nil, fmt.Errorf("event %d: no integer %d at byte %d of the record", i, k, off)
			}
			v[k], off = x, end+1
		}
		if v[0] != first+int64(i) {
			return nil, fmt.Errorf("event %d has position %d, want %d", i, v[0], first+int64(i))
		}
		var fields [6][]byte
		for k := range fields {
			l := v[4+k]
			if l < 0 || l > int64(len(rec)-off) {
				return nil, fmt.Errorf("event %d: length %d overruns the record", i, l)
			}
			fields[k] = rec[off : off+int(l) : off+int(l)]
			off += int(l)
		}
		md, err := parseMetadata(fields[4])
		if err != nil {
			return nil, fmt.Errorf("event %d: metadata: %w", i, err)
		}
		events[i] = packEvent[[]byte]{
			version: v[1], schema: v[2], recordedAt: v[3],
			strs: [binStrings][]byte{fields[0], fields[1], fields[2], fields[3], md[0], md[1], md[2], md[3]},
			data: fields[5],
		}
	}
	if off != len(rec) {
		return nil, fmt.Errorf("%d bytes after the last event of the record", len(rec)-off)
	}
	last := first + int64(n) - 1
	msg := message.NewMessage(packUUID(first, last), packPayload(first, events))
	e := &events[n-1]
	setPackMetadata(msg, first, last, n, string(e.strs[0]), e.version, string(e.strs[1]))
	return msg, nil
}

// parseDecimal parses the optionally negative decimal integer at b[i:],
// returning its value and the index after it.
func parseDecimal(b []byte, i int) (v int64, end int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var u uint64
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		if u > (math.MaxUint64-9)/10 {
			return 0, i, false
		}
		u = u*10 + uint64(b[i]-'0')
	}
	switch {
	case i == start:
		return 0, i, false
	case neg && u <= 1<<63:
		return int64(-u), i, true
	case !neg && u <= math.MaxInt64:
		return int64(u), i, true
	}
	return 0, i, false
}

// metadataKeys are the JSON names of eventstore.Metadata's fields, in the
// order of a PackFormat entry.
var metadataKeys = [4]string{"subject", "request_id", "correlation_id", "causation_id"}

// parseMetadata returns the fields of the metadata JSON the store keeps,
// in the order of metadataKeys. The store writes it with encoding/json, so
// it is almost always a flat object of known keys and plain string values;
// those are sliced out of b without a copy. Anything else (escapes,
// spaces, other keys) goes through encoding/json, whose result the fast
// path equals wherever it applies.
func parseMetadata(b []byte) ([4][]byte, error) {
	if out, ok := parseMetadataFast(b); ok {
		return out, nil
	}
	var md eventstore.Metadata
	if err := json.Unmarshal(b, &md); err != nil {
		return [4][]byte{}, err
	}
	return [4][]byte{[]byte(md.Subject), []byte(md.RequestID), []byte(md.CorrelationID), []byte(md.CausationID)}, nil
}

// parseMetadataFast reads b if it is exactly '{' then zero or more
// "key":"value" pairs separated by commas then '}', every key one of
// metadataKeys, every value valid UTF-8 without a backslash, a quote or a
// control character. Otherwise ok is false.
func parseMetadataFast(b []byte) (out [4][]byte, ok bool) {
	if len(b) < 2 || b[0] != '{' {
		return out, false
	}
	if len(b) == 2 && b[1] == '}' {
		return out, true
	}
	for i := 1; ; {
		key, end, ok := quotedPlain(b, i)
		if !ok || end >= len(b) || b[end] != ':' {
			return out, false
		}
		val, end, ok := quotedPlain(b, end+1)
		if !ok || end >= len(b) {
			return out, false
		}
		k := 0
		for k < len(metadataKeys) && string(key) != metadataKeys[k] {
			k++
		}
		if k == len(metadataKeys) {
			return out, false
		}
		out[k] = val
		switch {
		case b[end] == ',':
			i = end + 1
		case b[end] == '}' && end == len(b)-1:
			return out, true
		default:
			return out, false
		}
	}
}

// quotedPlain returns the bytes between b[i] == '"' and the next quote if
// they are valid UTF-8 without a backslash or a control character, and the
// index after the closing quote.
func quotedPlain(b []byte, i int) (s []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s = b[i+1 : j : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, j, false
		}
	}
	return nil, len(b), false
}
