package eventstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// The hash chain.
//
// Every stored event carries hash = hex(SHA-256(E)), where E is the canonical
// encoding below, and prev_hash = the hash of the event at position-1
// (GenesisHash, 64 zeros, for position 1). Changing any field of any event
// therefore changes its hash and breaks the link of the event after it.
//
// Canonical encoding E (format 1), fields in this order, integers big-endian:
//
//	tag             the 16 bytes "ledgerq/event/v1"
//	prev_hash       32 bytes: the previous hash, hex-decoded
//	position        8 bytes, unsigned
//	stream_id       8-byte length, then the UTF-8 bytes
//	version         8 bytes, unsigned
//	type            8-byte length, then the bytes
//	schema_version  8 bytes, two's complement
//	data            8-byte length, then the payload bytes exactly as stored
//	metadata        8-byte length, then the metadata JSON bytes exactly as stored
//	recorded_at     8 bytes, two's complement, Unix milliseconds UTC
//
// Every variable-length field is length-prefixed and every number has a fixed
// width, so the encoding is injective: two events that differ in any field
// never produce the same byte string (moving a byte from stream_id to type,
// for example, changes both length prefixes). The tag names the format so a
// future encoding can never collide with this one. Data and metadata are
// hashed as the bytes stored in the table, never re-encoded, so Verify needs
// no JSON canonicalisation and an upcaster never affects the chain.
//
// docs/hash-chain.md describes the same encoding for auditors.

// GenesisHash is the prev_hash of the event at position 1.
var GenesisHash = strings.Repeat("0", 64)

// hashTag prefixes every encoding; it is exactly 16 bytes.
const hashTag = "ledgerq/event/v1"

// hashInput is what the chain hash covers, as stored in one row.
type hashInput struct {
	prevHash      string
	position      int64
	streamID      string
	version       int64
	eventType     string
	schemaVersion int64
	data          []byte
	metadata      []byte
	recordedAtMS  int64
}

// chainHasher computes event hashes. It builds each encoding in one buffer
// that it keeps, and hashes it in one call: writing the fields one by one
// into a hash.Hash made each fixed-width field escape to the heap (4 % of
// the allocations of a publish). One allocation is left: the hex string.
type chainHasher struct {
	buf []byte
}

func newChainHasher() *chainHasher { return &chainHasher{} }

// sum returns the hex hash of in. ok is false when prevHash is not 64 hex
// digits, which only a tampered or corrupt row can produce.
func (c *chainHasher) sum(in hashInput) (string, bool) {
	if len(in.prevHash) != 2*sha256.Size {
		return "", false
	}
	b := append(c.buf[:0], hashTag...)
	var prev [sha256.Size]byte
	if _, err := hex.Decode(prev[:], []byte(in.prevHash)); err != nil {
		return "", false
	}
	b = append(b, prev[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(in.position))
	b = appendField(b, in.streamID)
	b = binary.BigEndian.AppendUint64(b, uint64(in.version))
	b = appendField(b, in.eventType)
	b = binary.BigEndian.AppendUint64(b, uint64(in.schemaVersion))
	b = appendField(b, in.data)
	b = appendField(b, in.metadata)
	b = binary.BigEndian.AppendUint64(b, uint64(in.recordedAtMS))
	sum := sha256.Sum256(b)
	if cap(b) <= maxKeptHashBuffer {
		c.buf = b
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:]), true
}

// maxKeptHashBuffer bounds the buffer a chainHasher keeps between events: a
// rare large payload is not held for the life of the writer.
const maxKeptHashBuffer = 64 << 10

// appendField appends p with its 8-byte length prefix.
func appendField[T string | []byte](b []byte, p T) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
	return append(b, p...)
}

// HashEvent returns the chain hash of e as the store computes it, hashing
// e.Data and the compact JSON of e.Metadata. It matches the stored hash for
// events read with Scan or ReadPositions (stored bytes); an upcasted event's
// Data no longer hashes to its Hash. It returns "" when e.PrevHash is not
// 64 hex digits.
func HashEvent(e Event) string {
	meta, err := encodeMetadata(e.Metadata)
	if err != nil {
		return ""
	}
	sum, ok := newChainHasher().sum(hashInput{
		prevHash:      e.PrevHash,
		position:      e.Position,
		streamID:      e.StreamID,
		version:       e.Version,
		eventType:     e.Type,
		schemaVersion: int64(e.SchemaVersion),
		data:          e.Data,
		metadata:      meta,
		recordedAtMS:  e.RecordedAt.UnixMilli(),
	})
	if !ok {
		return ""
	}
	return sum
}
