package domain

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPublishRecordsTheMessage(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{DelayMS: i64(250), RetentionMS: i64(60000)})
	ev, out, err := w.q("orders").Publish(NewMessage{
		ID: mid(1), Body: "héllo", ContentType: "text/plain", Headers: map[string]string{"trace": "abc"}, DedupID: "d-1",
	}, at(1000))
	got := w.recorded(ev, err)
	thenEvents(t, got, MessagePublished{
		Queue: "orders", MessageID: mid(1), Body: "héllo", BodyEncoding: EncodingUTF8, BodySize: 6,
		ContentType: "text/plain", Headers: map[string]string{"trace": "abc"},
		PublishedAt: at(1000), AvailableAt: at(1250), ExpiresAt: at(61000), DedupID: "d-1",
	})
	if out != (PublishOutcome{ID: mid(1), Event: 0}) {
		t.Fatalf("outcome = %+v", out)
	}
}

func TestPublishDelayOverride(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{DelayMS: i64(250)})
	ev, _, err := w.q("orders").Publish(NewMessage{ID: mid(1), DelayMS: i64(0)}, at(0))
	got := w.recorded(ev, err)
	if p := got[0].(MessagePublished); !p.AvailableAt.Equal(at(0)) {
		t.Fatalf("available_at = %v, want now (delay_ms 0 overrides the queue's)", p.AvailableAt)
	}
	_, _, err = w.q("orders").Publish(NewMessage{ID: mid(2), DelayMS: i64(900001)}, at(0))
	thenError(t, err, ErrInvalidArgument, "delay_ms")
	_, _, err = w.q("orders").Publish(NewMessage{ID: mid(2), DelayMS: i64(-1)}, at(0))
	thenError(t, err, ErrInvalidArgument, "delay_ms")
}

func TestPublishBase64BodyIsMeasuredDecoded(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{MaxMessageBytes: i64(1024)})
	raw := make([]byte, 1024)
	for i := range raw {
		raw[i] = byte(i)
	}
	enc := base64.StdEncoding.EncodeToString(raw) // 1368 characters, 1024 bytes
	ev, _, err := w.q("orders").Publish(NewMessage{ID: mid(1), Body: enc, BodyEncoding: EncodingBase64}, at(0))
	got := w.recorded(ev, err)
	if p := got[0].(MessagePublished); p.BodySize != 1024 || p.BodyEncoding != EncodingBase64 || p.Body != enc {
		t.Fatalf("published %+v", p)
	}
	over := base64.StdEncoding.EncodeToString(append(raw, 0))
	_, _, err = w.q("orders").Publish(NewMessage{ID: mid(2), Body: over, BodyEncoding: EncodingBase64}, at(0))
	thenError(t, err, ErrPayloadTooLarge, "body")
	_, _, err = w.q("orders").Publish(NewMessage{ID: mid(2), Body: strings.Repeat("x", 1025)}, at(0))
	thenError(t, err, ErrPayloadTooLarge, "body")
	_, _, err = w.q("orders").Publish(NewMessage{ID: mid(2), Body: "not base64!", BodyEncoding: EncodingBase64}, at(0))
	thenError(t, err, ErrInvalidArgument, "body")
	_, _, err = w.q("orders").Publish(NewMessage{ID: mid(2), Body: "x", BodyEncoding: "hex"}, at(0))
	thenError(t, err, ErrInvalidArgument, "body_encoding")
	_, _, err = w.q("orders").Publish(NewMessage{ID: mid(2), Body: "\xff"}, at(0))
	thenError(t, err, ErrInvalidArgument, "body")
}

func TestPublishValidatesHeadersAndFields(t *testing.T) {
	many := map[string]string{}
	for i := 0; i < 33; i++ {
		many[fmt.Sprintf("h%d", i)] = "v"
	}
	cases := []struct {
		field string
		m     NewMessage
	}{
		{"headers", NewMessage{Headers: many}},
		{`headers[""]`, NewMessage{Headers: map[string]string{"": "v"}}},
		{`headers["a b"]`, NewMessage{Headers: map[string]string{"a b": "v"}}},
		{`headers["k"]`, NewMessage{Headers: map[string]string{"k": "line\nbreak"}}},
		{`headers["k"]`, NewMessage{Headers: map[string]string{"k": strings.Repeat("v", MaxHeaderValueBytes+1)}}},
		{"content_type", NewMessage{ContentType: strings.Repeat("c", MaxContentTypeBytes+1)}},
		{"content_type", NewMessage{ContentType: "text/plain\r\nX: y"}},
		{"dedup_id", NewMessage{DedupID: strings.Repeat("d", MaxDedupIDLen+1)}},
		{"id", NewMessage{ID: "not-a-ulid"}},
	}
	for _, c := range cases {
		w := newWorld(t)
		w.create("orders", AttributesPatch{})
		if c.m.ID == "" {
			c.m.ID = mid(1)
		}
		ev, _, err := w.q("orders").Publish(c.m, at(0))
		thenError(t, err, ErrInvalidArgument, c.field)
		thenEvents(t, ev)
	}
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	thirtyTwo := map[string]string{}
	for i := 0; i < 32; i++ {
		thirtyTwo[fmt.Sprintf("h%d", i)] = "v"
	}
	ev, _, err := w.q("orders").Publish(NewMessage{ID: mid(1), Headers: thirtyTwo, DedupID: strings.Repeat("é", MaxDedupIDLen)}, at(0))
	w.recorded(ev, err)
}

func TestPublishToMissingQueue(t *testing.T) {
	_, _, err := NewQueue("orders").Publish(NewMessage{ID: mid(1)}, t0)
	thenError(t, err, ErrQueueNotFound, "")
}

func TestDedupWithinWindowAnswersTheFirstID(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(1), DedupID: "x"}, at(0)))

	ev, out, err := w.q("orders").Publish(NewMessage{ID: mid(2), DedupID: "x"}, at(DedupWindow.Milliseconds()-1))
	thenEvents(t, w.recorded(ev, err))
	if out != (PublishOutcome{ID: mid(1), Duplicate: true, Event: -1}) {
		t.Fatalf("outcome = %+v, want a duplicate of the first id", out)
	}
	// After the window the same dedup id publishes again.
	ev, out, err = w.q("orders").Publish(NewMessage{ID: mid(3), DedupID: "x"}, at(DedupWindow.Milliseconds()))
	if got := w.recorded(ev, err); len(got) != 1 || out.Duplicate || out.ID != mid(3) {
		t.Fatalf("after the window: events %v, outcome %+v", got, out)
	}
	// Other dedup ids and acked messages keep their window too.
	ev, out, err = w.q("orders").Publish(NewMessage{ID: mid(4), DedupID: "x"}, at(DedupWindow.Milliseconds()+10))
	thenEvents(t, w.recorded(ev, err))
	if out.ID != mid(3) {
		t.Fatalf("duplicate answers %s, want %s", out.ID, mid(3))
	}
}

func TestDedupIsForgottenWithTheQueue(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	w.recorded(pub(w.q("orders"), NewMessage{ID: mid(1), DedupID: "x"}, at(0)))
	w.recorded(w.q("orders").Delete(at(1), nil))
	w.recorded(w.q("orders").Create(AttributesPatch{}, at(2), w.exists))
	ev, out, err := w.q("orders").Publish(NewMessage{ID: mid(2), DedupID: "x"}, at(3))
	if got := w.recorded(ev, err); len(got) != 1 || out.Duplicate {
		t.Fatal("a dedup id survived the deletion of its queue")
	}
}

func pub(q *Queue, m NewMessage, now time.Time) ([]Event, error) {
	ev, _, err := q.Publish(m, now)
	return ev, err
}

func TestPublishBatchIsAllOrNothing(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{MaxMessageBytes: i64(1024)})
	ms := []NewMessage{
		{ID: mid(1), Body: "a"},
		{ID: mid(2), Body: strings.Repeat("b", 2000)},
	}
	ev, _, err := w.q("orders").PublishBatch(ms, at(0))
	thenError(t, err, ErrPayloadTooLarge, "messages[1].body")
	thenEvents(t, ev)
	if w.q("orders").Len() != 0 || w.q("orders").Version() != 1 {
		t.Fatal("a refused batch changed the state")
	}
	_, _, err = w.q("orders").PublishBatch([]NewMessage{{ID: mid(1)}, {ID: mid(2), Headers: map[string]string{"": ""}}}, at(0))
	thenError(t, err, ErrInvalidArgument, `messages[1].headers[""]`)
	_, _, err = w.q("orders").PublishBatch([]NewMessage{{ID: mid(1)}, {ID: mid(1)}}, at(0))
	thenError(t, err, ErrInvalidArgument, "messages[1].id")
	_, _, err = w.q("orders").PublishBatch(nil, at(0))
	thenError(t, err, ErrInvalidArgument, "messages")
	_, _, err = w.q("orders").PublishBatch(make([]NewMessage, 101), at(0))
	thenError(t, err, ErrInvalidArgument, "messages")
}

func TestPublishBatchDedupsWithinTheBatch(t *testing.T) {
	w := newWorld(t)
	w.create("orders", AttributesPatch{})
	ev, out, err := w.q("orders").PublishBatch([]NewMessage{
		{ID: mid(1), Body: "a", DedupID: "k"},
		{ID: mid(2), Body: "b"},
		{ID: mid(3), Body: "c", DedupID: "k"},
	}, at(0))
	got := w.recorded(ev, err)
	if len(got) != 2 || got[0].(MessagePublished).MessageID != mid(1) || got[1].(MessagePublished).MessageID != mid(2) {
		t.Fatalf("events = %+v", got)
	}
	want := []PublishOutcome{{ID: mid(1), Event: 0}, {ID: mid(2), Event: 1}, {ID: mid(1), Duplicate: true, Event: -1}}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("outcome[%d] = %+v, want %+v", i, out[i], want[i])
		}
	}
}
