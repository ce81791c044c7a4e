package relay

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgerq/ledgerq/eventstore"
)

// The pack format and the relay's query carry the fields of
// eventstore.Metadata by their JSON names: a field added there must be
// added to both.
func TestMetadataFieldsCarried(t *testing.T) {
	typ := reflect.TypeFor[eventstore.Metadata]()
	if typ.NumField() != len(metadataKeys) {
		t.Fatalf("eventstore.Metadata has %d fields; packs carry %d (%v)", typ.NumField(), len(metadataKeys), metadataKeys)
	}
	for i := range typ.NumField() {
		if tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); tag != metadataKeys[i] {
			t.Errorf("eventstore.Metadata field %d is %q in JSON; packs carry %q there", i, tag, metadataKeys[i])
		}
	}
}

// The relay's query reads the log into packs that decode to the events
// the store returns, cut where MaxPackEvents and MaxPackBytes say.
func TestQueryPacks(t *testing.T) {
	s := benchStore(t, 2) // 64 MessagePublished events of about 700 bytes
	ctx := context.Background()
	for _, md := range []eventstore.Metadata{
		{},
		{Subject: "bob \"the <admin>\"\n\u2028", RequestID: "Ω-7", CausationID: `c\0`},
		{Subject: "alice", RequestID: "r", CorrelationID: "c", CausationID: "k"},
	} {
		_, err := s.Append(ctx, eventstore.AppendRequest{Metadata: md, Streams: []eventstore.StreamAppend{{
			StreamID: "queue-zürich-東京-🚀", ExpectedVersion: eventstore.AnyVersion,
			Events: []eventstore.NewEvent{
				{Type: "Big", SchemaVersion: 3, Data: json.RawMessage(`{"b":"` + strings.Repeat("é", 3000) + `"}`)},
				{Type: "Small", SchemaVersion: 1, Data: json.RawMessage(`[]`)},
			},
		}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var want []eventstore.Event
	if err := s.ReadAll(ctx, 0, func(e eventstore.Event) error { want = append(want, e); return nil }); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+s.Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	for _, c := range []struct {
		maxEvents, maxBytes int
		sizes               []int // of the packs
	}{
		{256, DefaultMaxPackBytes, []int{70}},
		{30, DefaultMaxPackBytes, []int{30, 30, 10}},
		// An event counts as its data, its metadata and 200 bytes
		// (about 900 for the published ones); a pack closes once the
		// events before the next reach 5000. So a 6000-byte event ends
		// its pack.
		{256, 5000, []int{6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 5, 2, 2, 1}},
	} {
		var after int64
		schema := eventsSchema{maxEvents: c.maxEvents, maxBytes: c.maxBytes}
		q := schema.SelectQuery(eventsTopic, "test", argOffset{})
		var sizes []int
		var got []eventstore.Event
		for {
			if len(got) > len(want) {
				t.Fatalf("%d events relayed of %d", len(got), len(want))
			}
			rows, err := db.Query(q.Query, append([]any{after}, q.Args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !rows.Next() {
				if err := rows.Close(); err != nil {
					t.Fatal(err)
				}
				break
			}
			row, err := schema.UnmarshalMessage(rows)
			if err != nil {
				t.Fatal(err)
			}
			if rows.Next() {
				t.Fatal("the query returned a second row")
			}
			_ = rows.Close()
			msg := row.Msg
			if f := msg.Metadata.Get(MetaFormat); f != PackFormat {
				t.Fatalf("pack format %q, want %q", f, PackFormat)
			}
			events, err := DecodePack(msg)
			if err != nil {
				t.Fatal(err)
			}
			last := events[len(events)-1]
			if row.Offset != last.Position || msg.UUID != packUUID(events[0].Position, last.Position) ||
				msg.Metadata.Get(MetaStream) != last.StreamID || msg.Metadata.Get(MetaType) != last.Type ||
				msg.Metadata.Get(MetaVersion) != strconv.FormatInt(last.Version, 10) || msg.Metadata.Get(MetaCount) != strconv.Itoa(len(events)) {
				t.Fatalf("pack of %d..%d: offset %d, uuid %s, metadata %v", events[0].Position, last.Position, row.Offset, msg.UUID, msg.Metadata)
			}
			sizes = append(sizes, len(events))
			got = append(got, events...)
			after = last.Position
		}
		if !reflect.DeepEqual(sizes, c.sizes) {
			t.Errorf("max %d events, %d bytes: packs of %v, want %v", c.maxEvents, c.maxBytes, sizes, c.sizes)
		}
		if !reflect.DeepEqual(got, want) {
			for i := range min(len(got), len(want)) {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
					break
				}
			}
			t.Fatalf("max %d events, %d bytes: %d events relayed, want %d", c.maxEvents, c.maxBytes, len(got), len(want))
		}
	}
}

func TestPackFromRecordRejects(t *testing.T) {
	good := "7,1,1,0,1,1,0,0,2,2,ab{}{}"
	if msg, err := packFromRecord(7, 1, []byte(good)); err != nil {
		t.Fatalf("good record: %v", err)
	} else if evs, err := DecodePack(msg); err != nil || len(evs) != 1 || evs[0].StreamID != "a" || string(evs[0].Data) != "{}" {
		t.Fatalf("good record decodes to %+v, %v", evs, err)
	}
	for name, rec := range map[string]string{
		"empty":            "",
		"wrong position":   "8,1,1,0,1,1,0,0,2,2,ab{}{}",
		"two events":       good + "8,1,1,0,1,1,0,0,2,2,ab{}{}",
		"trailing bytes":   good + "x",
		"cut":              good[:len(good)-1],
		"negative length":  "7,1,1,0,-1,1,0,0,2,2,ab{}{}",
		"length overrun":   "7,1,1,0,1,1,0,0,2,99,ab{}{}",
		"not a number":     "7,1,x,0,1,1,0,0,2,2,ab{}{}",
		"number too big":   "7,1,1,99999999999999999999,1,1,0,0,2,2,ab{}{}",
		"missing integer":  "7,1,1,0,1,1,0,0,2,ab{}{}",
		"metadata no JSON": "7,1,1,0,1,1,0,0,2,2,ab{x{}",
	} {
		if _, err := packFromRecord(7, 1, []byte(rec)); err == nil {
			t.Errorf("%s record %q accepted", name, rec)
		}
	}
	if _, err := packFromRecord(7, 2, []byte(good)); err == nil {
		t.Error("a record of one event accepted for two")
	}
}

// The sizes packPayload allocates are those encoding/binary writes.
func TestVarintLen(t *testing.T) {
	for _, x := range []int64{0, 1, -1, 63, -64, 64, -65, 127, 128, 1 << 20, -1 << 20, math.MaxInt64, math.MinInt64, 1<<62 + 5} {
		if got, want := varintLen(x), len(binary.AppendVarint(nil, x)); got != want {
			t.Errorf("varintLen(%d) = %d, want %d", x, got, want)
		}
		u := uint64(x)
		if got, want := uvarintLen(u), len(binary.AppendUvarint(nil, u)); got != want {
			t.Errorf("uvarintLen(%d) = %d, want %d", u, got, want)
		}
	}
	events := []packEvent[string]{{version: 1 << 40, schema: -3, recordedAt: 1767225600000,
		strs: [binStrings]string{"queue-a", "T", strings.Repeat("0", 64), strings.Repeat("1", 200)}, data: make([]byte, 300)}}
	if p := packPayload(1<<50, events); len(p) != cap(p) {
		t.Errorf("payload of %d bytes allocated with %d", len(p), cap(p))
	}
}

func TestParseDecimal(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"42,", 42, true}, {"-1", -1, true},
		{"9223372036854775807", math.MaxInt64, true}, {"-9223372036854775808", math.MinInt64, true},
		{"9223372036854775808", 0, false}, {"-9223372036854775809", 0, false},
		{"18446744073709551616", 0, false}, {"99999999999999999999999", 0, false},
		{"", 0, false}, {"-", 0, false}, {",", 0, false}, {"+1", 0, false},
	} {
		v, _, ok := parseDecimal([]byte(c.in), 0)
		if ok != c.ok || ok && v != c.want {
			t.Errorf("parseDecimal(%q) = %d, %v; want %d, %v", c.in, v, ok, c.want, c.ok)
		}
	}
}

// The fast path of parseMetadata reads what encoding/json reads, where it
// reads anything, and the metadata the store writes takes it.
func FuzzParseMetadata(f *testing.F) {
	for _, md := range []eventstore.Metadata{
		{}, {Subject: "alice"}, {Subject: "s", RequestID: "r", CorrelationID: "c", CausationID: "k"},
		{Subject: "é東🚀", CausationID: "x y"},
	} {
		b, err := json.Marshal(md)
		if err != nil {
			f.Fatal(err)
		}
		if _, ok := parseMetadataFast(b); !ok {
			f.Errorf("fast path refuses %s", b)
		}
		f.Add(b)
	}
	for _, s := range []string{`{"subject":"a\"b"}`, `{"Subject":"a"}`, `{ "subject":"a"}`, `{"subject":"a","subject":"b"}`,
		`{"subject":1}`, `{"subject":null}`, `{"other":"x"}`, "{\"subject\":\"\xff\"}", `{"subject":"a",}`, `{}x`, `{`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseMetadataFast(b)
		if !ok {
			return
		}
		var md eventstore.Metadata
		if err := json.Unmarshal(b, &md); err != nil {
			t.Fatalf("fast path accepts %q, encoding/json refuses it: %v", b, err)
		}
		if got := (eventstore.Metadata{Subject: string(fast[0]), RequestID: string(fast[1]), CorrelationID: string(fast[2]), CausationID: string(fast[3])}); got != md {
			t.Fatalf("%q: fast path reads %+v, encoding/json %+v", b, got, md)
		}
	})
}

// The relay reads no further than the store's durable head: the WAL may
// hold commits beyond it whose fdatasync has not returned.
func TestQueryPacksStopsAtTheDurableHead(t *testing.T) {
	s := benchStore(t, 1) // 32 events
	db, err := sql.Open("sqlite3", "file:"+s.Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	head := int64(20)
	schema := eventsSchema{maxEvents: 256, maxBytes: DefaultMaxPackBytes, head: func() int64 { return head }}
	pack := func(after int64) (last int64, ok bool) {
		t.Helper()
		q := schema.SelectQuery(eventsTopic, "test", argOffset{})
		rows, err := db.Query(q.Query, append([]any{after}, q.Args...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if !rows.Next() {
			return 0, false
		}
		row, err := schema.UnmarshalMessage(rows)
		if err != nil {
			t.Fatal(err)
		}
		return row.Offset, true
	}
	if last, ok := pack(0); !ok || last != 20 {
		t.Fatalf("pack after 0 with head 20 ends at %d (%v), want 20", last, ok)
	}
	if _, ok := pack(20); ok {
		t.Fatal("a pack after the head")
	}
	head = 32
	if last, ok := pack(20); !ok || last != 32 {
		t.Fatalf("pack after 20 with head 32 ends at %d (%v), want 32", last, ok)
	}
}
