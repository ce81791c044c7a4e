package eventstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
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

// chainHasher computes event hashes, reusing one SHA-256 state.
type chainHasher struct {
	h   hash.Hash
	buf [32]byte
}

func newChainHasher() *chainHasher { return &chainHasher{h: sha256.New()} }

// sum returns the hex hash of in. ok is false when prevHash is not 64 hex
// digits, which only a tampered or corrupt row can produce.
func (c *chainHasher) sum(in hashInput) (string, bool) {
	prev, err := hex.DecodeString(in.prevHash)
	if err != nil || len(prev) != sha256.Size {
		return "", false
	}
	c.h.Reset()
	c.h.Write([]byte(hashTag))
	c.h.Write(prev)
	c.u64(uint64(in.position))
	c.bytes([]byte(in.streamID))
	c.u64(uint64(in.version))
	c.bytes([]byte(in.eventType))
	c.u64(uint64(in.schemaVersion))
	c.bytes(in.data)
	c.bytes(in.metadata)
	c.u64(uint64(in.recordedAtMS))
	return hex.EncodeToString(c.h.Sum(c.buf[:0])), true
}

func (c *chainHasher) u64(v uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	c.h.Write(b[:])
}

func (c *chainHasher) bytes(p []byte) {
	c.u64(uint64(len(p)))
	c.h.Write(p)
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
