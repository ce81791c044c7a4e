package domain

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// A queue's state can be written as compact bytes and read back, so that
// the command side can start from a snapshot instead of folding the whole
// log. The encoding holds everything the aggregate decides with: the
// queue's own fields, every live message (without body), the receipt hash
// of every lease and the dedup memory, in the order pruning needs. The
// heaps and maps are not written: decoding rebuilds them. Their order is
// total — (due or expiry, then the stream version of the publish, unique
// per live message) — so a rebuilt heap leases, expires and redrives the
// same message next as the original, whatever its internal layout.
//
// Layout (version 1), integers as encoding/binary varints:
//
//	byte     codec version
//	string   name (uvarint length, bytes)
//	uvarint  stream version
//	byte     flags: 1 = exists
//	varint   visibility_timeout_ms, delay_ms, retention_ms, max_message_bytes
//	string   dead_letter_queue
//	varint   max_receive_count
//	varint   created at, updated at (unix ms)
//	uvarint  live messages, then each, in publish order:
//	  [16]byte  message id
//	  uvarint   stream version of its MessagePublished − the previous one's (≥ 1)
//	  varint    global position − the previous one's
//	  varint    due − the previous one's
//	  varint    expires at − the previous one's
//	  uvarint   receive count
//	  byte      flags: 1 = leased, 2 = arrived by dead-lettering
//	  [32]byte  receipt hash, only when leased
//	uvarint  dedup log entries still in the window, oldest first, each:
//	  string    dedup id
//	  varint    published at − the previous entry's
//	  byte      1 when this entry is the one the dedup map holds for its id
//	  [16]byte  that message's id, only then
//	uvarint  dedup map entries with no log entry of their own, each:
//	  string    dedup id, [16]byte message id, varint published at

// QueueCodecVersion is the version of the binary encoding of a Queue.
const QueueCodecVersion = 1

const (
	codecExists = 1 << iota
)

const (
	codecLeased = 1 << iota
	codecDeadLetterOrigin
)

// QueueImage is a copy of a queue's state, taken to be encoded later
// without holding whatever guards the queue. Taking one copies the
// message slots wholesale (a memory copy, no per-message work); encoding
// it does the rest.
type QueueImage struct {
	name      string
	version   int64
	exists    bool
	attrs     Attributes
	createdAt int64
	updatedAt int64
	slots     []slot
	leases    map[uint32][sha256.Size]byte
	dedup     map[string]dedupEntry
	dedupLog  []dedupRef
	// unplaced indexes the live slots without a position, built on the
	// first NotePosition.
	unplaced map[messageID]uint32
}

// Image copies the queue's state for AppendBinary.
func (q *Queue) Image() *QueueImage { return q.ImageInto(nil) }

// ImageCapacity is the room an image of the queue as it is now needs, for
// ReserveImage.
func (q *Queue) ImageCapacity() int { return len(q.msgs.slots) }

// ReserveImage allocates an image's memory for a queue of the given
// capacity, so that ImageInto, under the queue's lock, only copies: a
// large allocation may have to help the garbage collector first.
func ReserveImage(capacity int) *QueueImage {
	return &QueueImage{slots: make([]slot, 0, capacity)}
}

// ImageInto copies the queue's state for AppendBinary into the memory of
// im (from ReserveImage; a new image when nil or too small).
func (q *Queue) ImageInto(im *QueueImage) *QueueImage {
	var buf []slot
	if im != nil {
		buf = im.slots[:0]
	}
	out := q.view()
	out.slots = append(buf, out.slots...)
	out.leases = maps.Clone(out.leases)
	out.dedup = maps.Clone(out.dedup)
	out.dedupLog = slices.Clone(out.dedupLog)
	return out
}

// view is an image that shares the queue's memory.
func (q *Queue) view() *QueueImage {
	return &QueueImage{
		name: q.name, version: q.version, exists: q.exists, attrs: q.attrs,
		createdAt: q.createdAt, updatedAt: q.updatedAt,
		slots: q.msgs.slots, leases: q.leases,
		dedup: q.dedup, dedupLog: q.dedupLog[q.dedupHead:],
	}
}

// NotePosition records in the image the global position of a message whose
// MessagePublished had none when the image was taken (its append had not
// committed yet), as Queue.NotePosition does in the queue. Call it only on
// an image from Image, which owns its memory.
func (im *QueueImage) NotePosition(message string, position int64) {
	id, ok := parseMessageID(message)
	if !ok {
		return
	}
	if im.unplaced == nil {
		im.unplaced = make(map[messageID]uint32)
		for i := range im.slots {
			if sl := &im.slots[i]; sl.flag&flagLive != 0 && sl.pos == 0 {
				im.unplaced[sl.id] = uint32(i)
			}
		}
	}
	if i, ok := im.unplaced[id]; ok {
		im.slots[i].pos = position
		delete(im.unplaced, id)
	}
}

// Name is the queue's name.
func (im *QueueImage) Name() string { return im.name }

// Version is the queue's stream version.
func (im *QueueImage) Version() int64 { return im.version }

// Messages is the number of live messages.
func (im *QueueImage) Messages() int {
	n := 0
	for i := range im.slots {
		if im.slots[i].flag&flagLive != 0 {
			n++
		}
	}
	return n
}

// Unplaced is the number of live messages whose position is not known
// (their publish had not committed when the image was taken, and no
// NotePosition told it since).
func (im *QueueImage) Unplaced() int {
	n := 0
	for i := range im.slots {
		if sl := &im.slots[i]; sl.flag&flagLive != 0 && sl.pos == 0 {
			n++
		}
	}
	return n
}

// AppendBinary appends the queue's encoding to b.
func (q *Queue) AppendBinary(b []byte) ([]byte, error) { return q.view().AppendBinary(b) }

// MarshalBinary encodes the queue's state.
func (q *Queue) MarshalBinary() ([]byte, error) { return q.AppendBinary(nil) }

// AppendBinary appends the image's encoding to b. It never fails; the
// error is there for encoding.BinaryAppender.
func (im *QueueImage) AppendBinary(b []byte) ([]byte, error) {
	s := im.slots
	live := make([]uint32, 0, len(s))
	for i := range s {
		if s[i].flag&flagLive != 0 {
			live = append(live, uint32(i))
		}
	}
	// Publish order. The slab is mostly in that order already, which the
	// sort notices.
	slices.SortFunc(live, func(a, b uint32) int { return cmp.Compare(s[a].ver, s[b].ver) })

	b = append(b, QueueCodecVersion)
	b = appendString(b, im.name)
	b = binary.AppendUvarint(b, uint64(im.version))
	var flags byte
	if im.exists {
		flags |= codecExists
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, im.attrs.VisibilityTimeoutMS)
	b = binary.AppendVarint(b, im.attrs.DelayMS)
	b = binary.AppendVarint(b, im.attrs.RetentionMS)
	b = binary.AppendVarint(b, im.attrs.MaxMessageBytes)
	b = appendString(b, im.attrs.DeadLetterQueue)
	b = binary.AppendVarint(b, int64(im.attrs.MaxReceiveCount))
	b = binary.AppendVarint(b, im.createdAt)
	b = binary.AppendVarint(b, im.updatedAt)

	b = binary.AppendUvarint(b, uint64(len(live)))
	var prev slot
	for _, i := range live {
		sl := &s[i]
		b = append(b, sl.id[:]...)
		b = binary.AppendUvarint(b, uint64(sl.ver-prev.ver))
		b = binary.AppendVarint(b, sl.pos-prev.pos)
		b = binary.AppendVarint(b, sl.due-prev.due)
		b = binary.AppendVarint(b, sl.exp-prev.exp)
		b = binary.AppendUvarint(b, uint64(sl.recv))
		var f byte
		if sl.flag&flagLeased != 0 {
			f |= codecLeased
		}
		if sl.flag&flagDeadLetterOrigin != 0 {
			f |= codecDeadLetterOrigin
		}
		b = append(b, f)
		if sl.flag&flagLeased != 0 {
			h := im.leases[i]
			b = append(b, h[:]...)
		}
		prev = *sl
	}

	// The dedup map entry of an id belongs to the last log entry with that
	// id and the same time; anything else in the map goes after the log.
	last := make(map[string]int, len(im.dedupLog))
	for j, r := range im.dedupLog {
		last[r.key] = j
	}
	owned := make(map[string]bool, len(im.dedup))
	b = binary.AppendUvarint(b, uint64(len(im.dedupLog)))
	prevAt := int64(0)
	for j, r := range im.dedupLog {
		b = appendString(b, r.key)
		b = binary.AppendVarint(b, r.at-prevAt)
		prevAt = r.at
		if e, ok := im.dedup[r.key]; ok && e.at == r.at && last[r.key] == j {
			owned[r.key] = true
			b = append(b, 1)
			b = append(b, e.id[:]...)
		} else {
			b = append(b, 0)
		}
	}
	var rest []string
	for k := range im.dedup {
		if !owned[k] {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	b = binary.AppendUvarint(b, uint64(len(rest)))
	for _, k := range rest {
		e := im.dedup[k]
		b = appendString(b, k)
		b = append(b, e.id[:]...)
		b = binary.AppendVarint(b, e.at)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// errCodec is the error of every malformed encoding.
var errCodec = errors.New("domain: decode queue state")

// DecodeQueue rebuilds a queue from AppendBinary's encoding. Malformed
// bytes, whatever they are, give an error, never a panic nor an aggregate
// that breaks its own invariants.
func DecodeQueue(data []byte) (*Queue, error) {
	d := decoder{b: data}
	q, err := d.queue()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCodec, err)
	}
	return q, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) rest() int { return len(d.b) - d.off }

func (d *decoder) byte1() (byte, error) {
	if d.off >= len(d.b) {
		return 0, errTruncated
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

var (
	errTruncated = errors.New("truncated")
	errVarint    = errors.New("malformed varint")
)

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	if n == 0 {
		return 0, errTruncated
	}
	if n < 0 {
		return 0, errVarint
	}
	d.off += n
	return v, nil
}

func (d *decoder) varint() (int64, error) {
	v, n := binary.Varint(d.b[d.off:])
	if n == 0 {
		return 0, errTruncated
	}
	if n < 0 {
		return 0, errVarint
	}
	d.off += n
	return v, nil
}

// count reads a number of items each at least minSize bytes long, which
// bounds it by what is left to read.
func (d *decoder) count(what string, minSize int) (int, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if v > uint64(d.rest()/minSize) {
		return 0, fmt.Errorf("%d %s do not fit in %d bytes", v, what, d.rest())
	}
	return int(v), nil
}

func (d *decoder) bytes(n int) ([]byte, error) {
	if n < 0 || n > d.rest() {
		return nil, errTruncated
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) string() (string, error) {
	n, err := d.uvarint()
	if err != nil {
		return "", err
	}
	if n > uint64(d.rest()) {
		return "", errTruncated
	}
	p, err := d.bytes(int(n))
	return string(p), err
}

func (d *decoder) id() (messageID, error) {
	var id messageID
	p, err := d.bytes(idLen)
	if err != nil {
		return id, err
	}
	copy(id[:], p)
	return id, nil
}

// minMessageSize and minDedupSize are the smallest encodings of a message
// and of a dedup log entry.
const (
	minMessageSize = idLen + 6
	minDedupSize   = 3
)

func (d *decoder) queue() (*Queue, error) {
	v, err := d.byte1()
	if err != nil {
		return nil, err
	}
	if v != QueueCodecVersion {
		return nil, fmt.Errorf("codec version %d, want %d", v, QueueCodecVersion)
	}
	name, err := d.string()
	if err != nil {
		return nil, err
	}
	q := NewQueue(name)
	ver, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if ver > math.MaxInt64 {
		return nil, fmt.Errorf("stream version %d out of range", ver)
	}
	q.version = int64(ver)
	flags, err := d.byte1()
	if err != nil {
		return nil, err
	}
	if flags&^codecExists != 0 {
		return nil, fmt.Errorf("unknown queue flags %#x", flags)
	}
	q.exists = flags&codecExists != 0
	if err := d.attributes(&q.attrs); err != nil {
		return nil, err
	}
	if q.createdAt, err = d.varint(); err != nil {
		return nil, err
	}
	if q.updatedAt, err = d.varint(); err != nil {
		return nil, err
	}
	if err := d.messages(q); err != nil {
		return nil, err
	}
	if err := d.dedupState(q); err != nil {
		return nil, err
	}
	if d.rest() != 0 {
		return nil, fmt.Errorf("%d bytes after the end", d.rest())
	}
	if !q.exists && (q.msgs.len() > 0 || len(q.dedup) > 0 || len(q.dedupLog) > 0) {
		return nil, errors.New("a queue that does not exist holds messages")
	}
	return q, nil
}

func (d *decoder) attributes(a *Attributes) error {
	for _, p := range []*int64{&a.VisibilityTimeoutMS, &a.DelayMS, &a.RetentionMS, &a.MaxMessageBytes} {
		v, err := d.varint()
		if err != nil {
			return err
		}
		*p = v
	}
	dlq, err := d.string()
	if err != nil {
		return err
	}
	a.DeadLetterQueue = dlq
	mrc, err := d.varint()
	if err != nil {
		return err
	}
	if mrc < math.MinInt32 || mrc > math.MaxInt32 {
		return fmt.Errorf("max_receive_count %d out of range", mrc)
	}
	a.MaxReceiveCount = int(mrc)
	return nil
}

func (d *decoder) messages(q *Queue) error {
	n, err := d.count("messages", minMessageSize)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	slots := make([]slot, n)
	byID := make(map[messageID]uint32, n)
	var ready, leased []uint32
	retention := make([]uint32, n)
	var prev slot
	for i := range slots {
		sl := &slots[i]
		if sl.id, err = d.id(); err != nil {
			return err
		}
		dv, err := d.uvarint()
		if err != nil {
			return err
		}
		// Versions strictly increase and stay within the stream's: the
		// heaps' order is then total, as it is in a replayed aggregate.
		if dv == 0 || dv > uint64(q.version-prev.ver) {
			return fmt.Errorf("message %d: stream version out of order or beyond %d", i, q.version)
		}
		sl.ver = prev.ver + int64(dv)
		var dp, dd, de int64
		for _, p := range []*int64{&dp, &dd, &de} {
			if *p, err = d.varint(); err != nil {
				return err
			}
		}
		// Wrapping arithmetic is fine for times (any int64 is a time);
		// a position must not go negative (nor wrap, which makes it so:
		// the previous one is not negative).
		sl.pos = prev.pos + dp
		if sl.pos < 0 {
			return fmt.Errorf("message %d: position out of range", i)
		}
		sl.due = prev.due + dd
		sl.exp = prev.exp + de
		recv, err := d.uvarint()
		if err != nil {
			return err
		}
		if recv > math.MaxInt32 {
			return fmt.Errorf("message %d: receive count %d out of range", i, recv)
		}
		sl.recv = int32(recv)
		f, err := d.byte1()
		if err != nil {
			return err
		}
		if f&^(codecLeased|codecDeadLetterOrigin) != 0 {
			return fmt.Errorf("message %d: unknown flags %#x", i, f)
		}
		sl.flag = flagLive
		if f&codecDeadLetterOrigin != 0 {
			sl.flag |= flagDeadLetterOrigin
		}
		if _, dup := byID[sl.id]; dup {
			return fmt.Errorf("message %s appears twice", sl.id)
		}
		byID[sl.id] = uint32(i)
		retention[i] = uint32(i)
		if f&codecLeased != 0 {
			sl.flag |= flagLeased
			p, err := d.bytes(sha256.Size)
			if err != nil {
				return err
			}
			if q.leases == nil {
				q.leases = make(map[uint32][sha256.Size]byte)
			}
			q.leases[uint32(i)] = [sha256.Size]byte(p)
			leased = append(leased, uint32(i))
		} else {
			ready = append(ready, uint32(i))
		}
		prev = *sl
	}
	q.msgs = slab{slots: slots, byID: byID}
	q.ready.build(slots, ready)
	q.leased.build(slots, leased)
	q.retention.build(slots, retention)
	return nil
}

func (d *decoder) dedupState(q *Queue) error {
	n, err := d.count("dedup entries", minDedupSize)
	if err != nil {
		return err
	}
	if n > 0 {
		q.dedupLog = make([]dedupRef, n)
		q.dedup = make(map[string]dedupEntry, n)
	}
	at := int64(0)
	for j := range n {
		key, err := d.string()
		if err != nil {
			return err
		}
		da, err := d.varint()
		if err != nil {
			return err
		}
		at += da
		q.dedupLog[j] = dedupRef{key: key, at: at}
		owns, err := d.byte1()
		if err != nil {
			return err
		}
		switch owns {
		case 0:
		case 1:
			id, err := d.id()
			if err != nil {
				return err
			}
			if _, dup := q.dedup[key]; dup {
				return fmt.Errorf("dedup id %q is mapped twice", key)
			}
			q.dedup[key] = dedupEntry{id: id, at: at}
		default:
			return fmt.Errorf("dedup entry %d: bad marker %d", j, owns)
		}
	}
	m, err := d.count("dedup map entries", 1+idLen+1)
	if err != nil {
		return err
	}
	for range m {
		key, err := d.string()
		if err != nil {
			return err
		}
		id, err := d.id()
		if err != nil {
			return err
		}
		at, err := d.varint()
		if err != nil {
			return err
		}
		if q.dedup == nil {
			q.dedup = make(map[string]dedupEntry, m)
		}
		if _, dup := q.dedup[key]; dup {
			return fmt.Errorf("dedup id %q is mapped twice", key)
		}
		q.dedup[key] = dedupEntry{id: id, at: at}
	}
	return nil
}

// build makes the heap of items (whose slots are filled in) in linear time.
func (h *slotHeap) build(s []slot, items []uint32) {
	h.items = items
	for j, i := range items {
		h.setIndex(s, i, j)
	}
	for j := len(items)/2 - 1; j >= 0; j-- {
		h.down(s, j)
	}
}
