package eventstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerq/ledgerq/eventstore"
)

// A fake event type whose shape changed: v1 {"n": 3}, v2 {"count": 3, "unit": "item"}.
func upcastThing(schemaVersion int, data json.RawMessage) (int, json.RawMessage, error) {
	if schemaVersion >= 2 {
		return schemaVersion, data, nil
	}
	var v1 struct {
		N *int `json:"n"`
	}
	if err := json.Unmarshal(data, &v1); err != nil {
		return 0, nil, err
	}
	if v1.N == nil {
		return 0, nil, errors.New("v1 Thing without n")
	}
	out, err := json.Marshal(struct {
		Count int    `json:"count"`
		Unit  string `json:"unit"`
	}{*v1.N, "item"})
	return 2, out, err
}

func TestUpcasters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openWith(t, path, eventstore.Options{Upcasters: eventstore.Upcasters{"Thing": upcastThing}})
	v1 := eventstore.NewEvent{Type: "Thing", SchemaVersion: 1, Data: json.RawMessage(`{"n": 3}`)}
	v2 := eventstore.NewEvent{Type: "Thing", SchemaVersion: 2, Data: json.RawMessage(`{"count":4,"unit":"box"}`)}
	other := eventstore.NewEvent{Type: "Other", SchemaVersion: 1, Data: json.RawMessage(`{"n": 5}`)}
	mustAppend(t, s, appendReq("things", eventstore.NoStream, v1, v2, other))

	type shape struct {
		version int
		data    string
	}
	upcasted := []shape{{2, `{"count":3,"unit":"item"}`}, {2, `{"count":4,"unit":"box"}`}, {1, `{"n": 5}`}}
	stored := []shape{{1, `{"n": 3}`}, {2, `{"count":4,"unit":"box"}`}, {1, `{"n": 5}`}}
	collect := func(read func(func(eventstore.Event) error) error) []shape {
		t.Helper()
		var out []shape
		if err := read(func(e eventstore.Event) error {
			out = append(out, shape{e.SchemaVersion, string(e.Data)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(name string, got, want []shape) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("ReadAll", collect(func(fn func(eventstore.Event) error) error { return s.ReadAll(testCtx(t), 0, fn) }), upcasted)
	check("ReadStream", collect(func(fn func(eventstore.Event) error) error { return s.ReadStream(testCtx(t), "things", 0, fn) }), upcasted)
	check("Scan", collect(func(fn func(eventstore.Event) error) error { return s.Scan(testCtx(t), eventstore.Filter{}, fn) }), stored)

	raw, err := s.ReadPositions(testCtx(t), []int64{1})
	if err != nil || len(raw) != 1 || raw[0].SchemaVersion != 1 {
		t.Fatalf("ReadPositions = %+v, %v; want the stored v1", raw, err)
	}
	up, err := s.Upcast(raw[0])
	if err != nil || up.SchemaVersion != 2 || string(up.Data) != upcasted[0].data || up.Hash != raw[0].Hash {
		t.Errorf("Upcast = %+v, %v", up, err)
	}
	if string(raw[0].Data) != `{"n": 3}` {
		t.Errorf("Upcast modified its input: %s", raw[0].Data)
	}
	// The chain covers the stored bytes, whatever readers see.
	if rep, err := s.Verify(testCtx(t), 0, 0); err != nil || !rep.OK {
		t.Errorf("Verify: %+v, %v", rep, err)
	}

	// An upcaster error stops the read and names the event.
	mustAppend(t, s, appendReq("things", 3, eventstore.NewEvent{Type: "Thing", SchemaVersion: 1, Data: json.RawMessage(`{}`)}))
	err = s.ReadAll(testCtx(t), 0, func(eventstore.Event) error { return nil })
	if err == nil || !containsAll(err.Error(), "Thing", "position 4", "without n") {
		t.Errorf("ReadAll over an event the upcaster refuses: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
