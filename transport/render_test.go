package transport

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/queries"
)

// renderCases are updates as the projections build them: Data and the Value
// it encodes.
func renderCases(t testing.TB) []queries.Update {
	t.Helper()
	at := time.Date(2026, 12, 1, 1, 2, 3, 456789000, time.UTC)
	m := queries.MessageSummary{ID: "01JDQ0000000000000000000AB", Queue: "orders", State: "available",
		PublishedAt: at, ReceiveCount: 2, Headers: map[string]string{"trace": "x1", "kind": "order"}}
	q := queries.Queue{Name: "orders", CreatedAt: at, UpdatedAt: at.Add(time.Second)}
	q.Stats.Ready, q.Stats.PublishedTotal = 3, 5
	var out []queries.Update
	for _, u := range []queries.Update{
		{Position: 7, Event: queries.EventMessageUpdated, Queue: "orders", Value: m},
		{Position: 8, Event: queries.EventQueueUpdated, Queue: "orders", Value: q},
	} {
		data, err := json.Marshal(u.Value)
		if err != nil {
			t.Fatal(err)
		}
		u.Data = data
		out = append(out, u)
	}
	return out
}

// A frame rendered from the update's Value is the frame rendered from its
// Data: the shortcut changes nothing a subscriber sees.
func TestRenderSSEFromValueEqualsFromData(t *testing.T) {
	for _, u := range renderCases(t) {
		fromValue := string(RenderSSE(u))
		u.Value = nil
		fromData := string(RenderSSE(u))
		if fromValue != fromData {
			t.Errorf("%s: from Value %s, from Data %s", u.Event, fromValue, fromData)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(fromValue), &v); err != nil {
			t.Fatalf("%s: frame is not JSON: %v", u.Event, err)
		}
		for _, k := range []string{"published_at", "created_at"} {
			if s, ok := v[k].(string); ok && s != "2026-12-01T01:02:03.456Z" {
				t.Errorf("%s: %s = %q, want API.md's millisecond UTC form", u.Event, k, s)
			}
		}
	}
}

// BenchmarkRenderSSE: the hub renders each update once for all its
// subscribers; fromData is what it cost before updates carried a Value.
func BenchmarkRenderSSE(b *testing.B) {
	u := renderCases(b)[0]
	b.Run("fromValue", func(b *testing.B) {
		for b.Loop() {
			RenderSSE(u)
		}
	})
	b.Run("fromData", func(b *testing.B) {
		d := u
		d.Value = nil
		for b.Loop() {
			RenderSSE(d)
		}
	})
}
