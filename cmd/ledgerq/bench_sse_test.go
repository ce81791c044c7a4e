package main

import (
	"io"
	"strings"
	"testing"
)

func TestReadSSE(t *testing.T) {
	stream := ": heartbeat\n\n" +
		"id: 7\nevent: message.updated\ndata: {\"a\":1}\n\n" +
		"id:8\r\nevent: queue.updated\r\ndata: line one\r\ndata: line two\r\n\r\n" +
		"id: 9\nevent: nothing\n\n" + // no data: not dispatched
		"data\n\n" + // a field with no colon: empty data, still data
		"id: 10\ndata: " + strings.Repeat("x", 100<<10) + "\n\n" +
		"id: 11\ndata: cut off"
	var got []sseEvent
	err := readSSE(strings.NewReader(stream), func(ev sseEvent) {
		ev.Data = append([]byte(nil), ev.Data...)
		got = append(got, ev)
	})
	if err != io.EOF {
		t.Fatalf("err %v, want io.EOF at the end of the stream", err)
	}
	want := []sseEvent{
		{ID: "7", Event: "message.updated", Data: []byte(`{"a":1}`)},
		{ID: "8", Event: "queue.updated", Data: []byte("line one\nline two")},
		{Data: []byte{}},
		{ID: "10", Data: []byte(strings.Repeat("x", 100<<10))},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Event != want[i].Event || string(got[i].Data) != string(want[i].Data) {
			t.Errorf("event %d: got id %q event %q data %.40q; want id %q event %q data %.40q",
				i, got[i].ID, got[i].Event, got[i].Data, want[i].ID, want[i].Event, want[i].Data)
		}
	}
}
