package domain

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets of the domain's decoders and rules. `make test` runs each for
// a few seconds; a crash the fuzzer finds is kept in testdata/fuzz/<Name>
// and replayed by every plain `go test` from then on.

var fzNow = time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)

// fzID is a valid message id made from n.
func fzID(n uint64) string {
	var id messageID
	id[0] = 0x01
	binary.BigEndian.PutUint64(id[8:], n)
	return id.String()
}

func fzNonce(n byte) [ReceiptNonceSize]byte {
	var b [ReceiptNonceSize]byte
	for i := range b {
		b[i] = n + byte(i)
	}
	return b
}

// fzQueue is a queue with some of everything in it: ready, delayed and
// leased messages and a dedup entry, so that a fuzzed event meets real state.
func fzQueue(tb testing.TB) (*Queue, string) {
	tb.Helper()
	q := NewQueue("orders")
	dlq := NewQueue("orders.dlq")
	if _, err := dlq.Create(AttributesPatch{}, fzNow, func(string) bool { return false }); err != nil {
		tb.Fatal(err)
	}
	exists := func(name string) bool { return name == "orders.dlq" }
	dl, mrc := "orders.dlq", 3
	if _, err := q.Create(AttributesPatch{DeadLetterQueue: &dl, MaxReceiveCount: &mrc}, fzNow, exists); err != nil {
		tb.Fatal(err)
	}
	delay := int64(60000)
	msgs := []NewMessage{
		{ID: fzID(1), Body: "one", DedupID: "d-1"},
		{ID: fzID(2), Body: "dHdv", BodyEncoding: EncodingBase64, Headers: map[string]string{"k": "v"}},
		{ID: fzID(3), Body: "three", DelayMS: &delay},
	}
	if _, _, err := q.PublishBatch(msgs, fzNow); err != nil {
		tb.Fatal(err)
	}
	_, leases, err := q.Receive(ReceiveRequest{MaxMessages: 1, Consumer: "c", Nonces: [][ReceiptNonceSize]byte{fzNonce(7)}}, fzNow.Add(time.Second))
	if err != nil || len(leases) != 1 {
		tb.Fatalf("receive: %v, %d leases", err, len(leases))
	}
	return q, leases[0].Receipt
}

// FuzzDecodeEvent feeds arbitrary payloads to the event decoder, as a
// corrupt or hostile log row would: it must never panic, a decoded event
// must be of the type asked for and re-encode stably, and applying it to a
// live queue must not panic nor leave the queue unusable.
func FuzzDecodeEvent(f *testing.F) {
	_, receipt := fzQueue(f)
	seeds := []Event{
		QueueCreated{Queue: "orders", Attributes: DefaultAttributes(), CreatedAt: fzNow},
		QueueConfigured{Queue: "orders", Attributes: DefaultAttributes(), Changed: []string{AttrDelayMS}, ConfiguredAt: fzNow},
		QueuePurged{Queue: "orders", Purged: 2, PurgedAt: fzNow},
		QueueDeleted{Queue: "orders", DeletedAt: fzNow},
		MessagePublished{Queue: "orders", MessageID: fzID(9), Body: "x", BodyEncoding: EncodingUTF8, BodySize: 1, PublishedAt: fzNow, AvailableAt: fzNow, ExpiresAt: fzNow.Add(time.Hour)},
		MessageLeased{Queue: "orders", MessageID: fzID(2), ReceiptHash: ReceiptHash("r"), LeasedAt: fzNow, LeaseExpiresAt: fzNow.Add(time.Minute), ReceiveCount: 1},
		MessageLeaseExtended{Queue: "orders", MessageID: fzID(1), ReceiptHash: ReceiptHash(receipt)},
		MessageAcked{Queue: "orders", MessageID: fzID(1), ReceiptHash: ReceiptHash(receipt)},
		MessageReleased{Queue: "orders", MessageID: fzID(1), ReceiptHash: ReceiptHash(receipt)},
		MessageLeaseExpired{Queue: "orders", MessageID: fzID(1)},
		MessageDeadLettered{Queue: "orders", MessageID: fzID(1)},
		MessageExpired{Queue: "orders", MessageID: fzID(2)},
		MessageRedriven{Queue: "orders", MessageID: fzID(3)},
	}
	for _, e := range seeds {
		data, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.EventType(), data)
	}
	f.Add(TypeMessagePublished, []byte(`{"queue":"orders","message_id":"not-an-id","published_at":"0000-01-01T00:00:00Z"}`))
	f.Add(TypeMessageLeased, []byte(`{"queue":"orders","message_id":"`+fzID(2)+`","lease_expires_at":"9999-12-31T23:59:59Z","receive_count":-1}`))
	f.Add("NoSuchEvent", []byte(`{}`))

	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e, err := DecodeEvent(typ, data)
		if err != nil {
			if e != nil {
				t.Fatalf("DecodeEvent returned an event and an error: %v", err)
			}
			if !isKnownType(typ) && !errors.Is(err, ErrUnknownEventType) {
				t.Fatalf("unknown type %q: error %v does not match ErrUnknownEventType", typ, err)
			}
			return
		}
		if e.EventType() != typ {
			t.Fatalf("decoded %q as %T (%s)", typ, e, e.EventType())
		}
		// Re-encoding is stable: the second round trip changes nothing.
		once, err := json.Marshal(e)
		if err != nil {
			// Times outside year 0…9999 decode but do not encode; such
			// an event can only come from a corrupt row, never from us.
			return
		}
		e2, err := DecodeEvent(typ, once)
		if err != nil {
			t.Fatalf("re-decoding our own encoding %s: %v", once, err)
		}
		twice, err := json.Marshal(e2)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("unstable encoding:\n%s\n%s (%v)", once, twice, err)
		}
		// Applying it must not panic, whatever it says; the queue must
		// still answer decisions afterwards. Each input gets a fresh queue.
		qq, _ := fzQueue(t)
		_ = qq.Apply(e)
		_, _, _ = qq.Receive(ReceiveRequest{MaxMessages: 2, Nonces: [][ReceiptNonceSize]byte{fzNonce(1), fzNonce(2)}}, fzNow.Add(2*time.Second))
		_, _, _ = qq.Expire(fzNow.Add(48*time.Hour), 10)
		_, _ = qq.NextDue(fzNow)
		_ = qq.RedriveCandidates(10)
	})
}

func isKnownType(typ string) bool {
	for _, k := range EventTypes {
		if k == typ {
			return true
		}
	}
	return false
}

// FuzzUpcasters feeds every upcaster arbitrary stored payloads: no panic;
// on success the result is at the current schema version, decodes as the
// current type, and upcasting it again changes nothing. A well-formed
// version 1 MessageLeased keeps its meaning (the deadline is leased_at plus
// the visibility timeout).
func FuzzUpcasters(f *testing.F) {
	v1 := `{"queue":"orders","message_id":"` + fzID(1) + `","receipt_hash":"` + ReceiptHash("r") +
		`","consumer":"c","leased_at":"2025-06-07T08:09:10.123Z","visibility_timeout_ms":30000,"receive_count":2}`
	f.Add(TypeMessageLeased, 1, []byte(v1))
	f.Add(TypeMessageLeased, 2, []byte(`{"queue":"orders","message_id":"x","lease_expires_at":"2025-06-07T08:09:10Z"}`))
	f.Add(TypeMessageLeased, 1, []byte(`{"leased_at":"2025-06-07T08:09:10Z","visibility_timeout_ms":9223372036854775807}`))
	f.Add(TypeMessageLeased, 1, []byte(`{"leased_at":"9999-12-31T23:59:59Z","visibility_timeout_ms":43200000}`))
	f.Add(TypeMessageLeased, 3, []byte(`{}`))
	f.Add(TypeMessageLeased, 1, []byte(`[`))

	ups := Upcasters()
	f.Fuzz(func(t *testing.T, typ string, version int, data []byte) {
		up, ok := ups[typ]
		if !ok {
			return
		}
		v, out, err := up(version, json.RawMessage(data))
		if err != nil {
			return
		}
		e, derr := DecodeEvent(typ, out)
		if version != v && derr != nil {
			t.Fatalf("upcast %s v%d → v%d gave undecodable %s: %v", typ, version, v, out, derr)
		}
		if derr == nil && v != e.SchemaVersion() {
			t.Fatalf("upcast %s v%d answered version %d, current is %d", typ, version, v, e.SchemaVersion())
		}
		v2, out2, err := up(v, out)
		if err != nil || v2 != v || !bytes.Equal(out2, out) {
			t.Fatalf("upcasting twice is not harmless: v%d %s → v%d %s (%v)", v, out, v2, out2, err)
		}
		if typ != TypeMessageLeased || version != 1 {
			return
		}
		var old messageLeasedV1
		if json.Unmarshal(data, &old) != nil || old.VisibilityTimeoutMS < 0 || old.VisibilityTimeoutMS > MaxVisibilityTimeoutMS {
			return
		}
		cur := e.(MessageLeased)
		if got := cur.LeaseExpiresAt.Sub(cur.LeasedAt); got != time.Duration(old.VisibilityTimeoutMS)*time.Millisecond {
			t.Fatalf("v1 lease of %d ms became a lease of %s", old.VisibilityTimeoutMS, got)
		}
		if cur.Queue != old.Queue || cur.MessageID != old.MessageID || cur.ReceiptHash != old.ReceiptHash ||
			cur.Consumer != old.Consumer || cur.ReceiveCount != old.ReceiveCount {
			t.Fatalf("v1 fields lost: %+v from %+v", cur, old)
		}
	})
}

// FuzzReceipt: any string offered as a receipt parses without panic; a
// parsed one names a canonical message id, and a receipt in canonical form
// is exactly what NewReceipt builds from its parts, so no second spelling
// of a receipt can be issued.
func FuzzReceipt(f *testing.F) {
	r, err := NewReceipt(fzID(42), fzNonce(3))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(r)
	f.Add(r[:len(r)-1] + "B")
	f.Add("")
	f.Add("'; DROP TABLE events; --")
	f.Add(base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, receiptRawLen)))

	f.Fuzz(func(t *testing.T, receipt string) {
		h := ReceiptHash(receipt)
		if _, ok := parseReceiptHash(h); !ok || len(h) != 64 {
			t.Fatalf("ReceiptHash(%q) = %q is not 64 hex digits", receipt, h)
		}
		id, ok := ReceiptMessageID(receipt)
		if !ok {
			return
		}
		if !ValidMessageID(id) {
			t.Fatalf("receipt %q names %q, not a message id", receipt, id)
		}
		raw, err := base64.RawURLEncoding.DecodeString(receipt)
		if err != nil || len(raw) != receiptRawLen {
			t.Fatalf("accepted receipt %q is not %d bytes of base64url: %v", receipt, receiptRawLen, err)
		}
		var n [ReceiptNonceSize]byte
		copy(n[:], raw[idLen:])
		rebuilt, err := NewReceipt(id, n)
		if err != nil {
			t.Fatalf("NewReceipt(%q): %v", id, err)
		}
		if base64.RawURLEncoding.EncodeToString(raw) == receipt && rebuilt != receipt {
			t.Fatalf("canonical receipt %q rebuilt as %q", receipt, rebuilt)
		}
	})
}

// FuzzMessageID: only canonical ULIDs are message ids, formatting any 16
// bytes yields one, and parse and format are inverse.
func FuzzMessageID(f *testing.F) {
	f.Add(fzID(1), []byte("0123456789abcdef"))
	f.Add("7ZZZZZZZZZZZZZZZZZZZZZZZZZ", []byte{})
	f.Add("8ZZZZZZZZZZZZZZZZZZZZZZZZZ", bytes.Repeat([]byte{0xff}, 16))
	f.Add("01m8mv4t0z723mks7zy6bkc1ar", []byte(nil))
	f.Add("01M8MV4T0Z723MKS7ZY6BKC1AI", []byte(nil))

	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		if id, ok := parseMessageID(s); ok {
			if id.String() != s {
				t.Fatalf("id %q formats back as %q", s, id.String())
			}
		}
		if len(raw) >= idLen {
			var id messageID
			copy(id[:], raw)
			back, ok := parseMessageID(id.String())
			if !ok || back != id {
				t.Fatalf("bytes %x → %q → %x, %v", id, id.String(), back, ok)
			}
		}
	})
}

var fzNameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$`)

// FuzzQueueName: ValidateQueueName is exactly API.md's expression.
func FuzzQueueName(f *testing.F) {
	for _, s := range []string{"orders", "orders.eu-1_x", "", ".hidden", "a/b", "оrders", "orders\x00", "ＯRDERS",
		"..", "%2e%2e", "a'; DROP TABLE events; --", string(bytes.Repeat([]byte("a"), 81))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateQueueName("name", name)
		if want := fzNameRule.MatchString(name); (err == nil) != want {
			t.Fatalf("ValidateQueueName(%q) = %v, the name rule says %v", name, err, want)
		}
		if err != nil && (err.Kind != KindInvalid || err.Field != "name") {
			t.Fatalf("ValidateQueueName(%q) = %+v, want an invalid error on field name", name, err)
		}
	})
}

// FuzzPublish: whatever a producer sends, Publish answers an invalid or
// too-large error or accepts it; what it accepts survives the JSON of the
// log byte for byte (the log is JSON: a body that JSON cannot carry exactly
// must be refused, not mangled), and can be received.
func FuzzPublish(f *testing.F) {
	f.Add("hello", "", "text/plain", "k", "v", "d-1", int64(0), false)
	f.Add("'; DROP TABLE events; --", "utf8", "application/json'--", "x-sql", "1' OR '1'='1", "'; DELETE FROM events; --", int64(10), true)
	f.Add("aGVsbG8=", "base64", "", "", "", "", int64(-1), true)
	f.Add("not base64!", "base64", "", "k", "", "", int64(0), false)
	f.Add("\xff\xfe", "utf8", "", "k", "\u202eevil", "", int64(900001), true)
	f.Add("tab\tok", "", "a\x00b", "key with space", "v", "\u0085", int64(0), false)

	f.Fuzz(func(t *testing.T, body, enc, ctype, hk, hv, dedup string, delay int64, useDelay bool) {
		q, _ := fzQueue(t)
		m := NewMessage{ID: fzID(1000), Body: body, BodyEncoding: enc, ContentType: ctype, DedupID: dedup}
		if hk != "" || hv != "" {
			m.Headers = map[string]string{hk: hv}
		}
		if useDelay {
			m.DelayMS = &delay
		}
		events, out, err := q.Publish(m, fzNow.Add(3*time.Second))
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || (de.Kind != KindInvalid && de.Kind != KindTooLarge) {
				t.Fatalf("Publish refused with %T %v, want an invalid or too-large domain error", err, err)
			}
			return
		}
		if out.Duplicate {
			if dedup != "d-1" {
				t.Fatalf("dedup id %q was taken for d-1's duplicate", dedup)
			}
			return
		}
		if len(events) != 1 {
			t.Fatalf("Publish appended %d events", len(events))
		}
		data, err := json.Marshal(events[0])
		if err != nil {
			t.Fatalf("encode %+v: %v", events[0], err)
		}
		back, err := DecodeEvent(TypeMessagePublished, data)
		if err != nil {
			t.Fatalf("decode our own %s: %v", data, err)
		}
		p := back.(MessagePublished)
		if p.Body != body || p.ContentType != ctype || p.DedupID != dedup || (m.Headers != nil && p.Headers[hk] != hv) {
			t.Fatalf("the log does not keep the message verbatim:\nsent body %q type %q header %q=%q dedup %q\ngot  body %q type %q headers %q dedup %q",
				body, ctype, hk, hv, dedup, p.Body, p.ContentType, p.Headers, p.DedupID)
		}
		if p.BodyEncoding == EncodingUTF8 && !utf8.ValidString(p.Body) {
			t.Fatalf("accepted invalid UTF-8 as a utf8 body: %q", body)
		}
		if useDelay && (delay < 0 || delay > MaxDelayMS) {
			t.Fatalf("accepted delay_ms %d outside 0…%d", delay, MaxDelayMS)
		}
		// The new message can be leased once it is due, and its receipt
		// names it.
		_, leases, err := q.Receive(ReceiveRequest{MaxMessages: 10, Nonces: fzNonces(10)}, p.AvailableAt.Add(time.Second))
		if err != nil {
			t.Fatalf("receive after publish: %v", err)
		}
		found := false
		for _, l := range leases {
			if l.MessageID == out.ID {
				found = true
				if id, ok := ReceiptMessageID(l.Receipt); !ok || id != out.ID {
					t.Fatalf("receipt %q names %q, want %q", l.Receipt, id, out.ID)
				}
			}
		}
		if !found {
			t.Fatalf("published message %s was not leased once due", out.ID)
		}
	})
}

func fzNonces(n int) [][ReceiptNonceSize]byte {
	out := make([][ReceiptNonceSize]byte, n)
	for i := range out {
		out[i] = fzNonce(byte(i * 16))
	}
	return out
}
