package reliability

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestSnapshotAcrossRestarts: a clean stop writes a command-state snapshot
// and the next start uses it, replaying nothing; after SIGKILL the start
// uses the last periodic snapshot and replays the log after it. Either
// way the server carries on exactly where it was: leases taken before
// still ack, a dedup id stays a duplicate, and receives hand out exactly
// the messages never leased, oldest first. A deleted snapshot file only
// means a full replay.
func TestSnapshotAcrossRestarts(t *testing.T) {
	s := startServer(t, "", "--snapshot-every", "100")
	tok := s.token()
	const q, later = "work", "later"
	s.createQueue(tok, q)
	s.Must("POST", "/v1/queues", tok, map[string]any{"name": later, "delay_ms": 900_000, "visibility_timeout_ms": 3_600_000}, http.StatusCreated)

	var ready []string // never leased, in publish order
	publish := func(n int, tag string) {
		t.Helper()
		msgs := make([]map[string]any, n)
		for i := range msgs {
			msgs[i] = map[string]any{"body": fmt.Sprintf("%s-%d", tag, i)}
		}
		var r struct {
			Results []struct {
				ID string `json:"id"`
			} `json:"results"`
		}
		if err := s.Must("POST", "/v1/queues/"+q+"/messages:batch", tok, map[string]any{"messages": msgs}, http.StatusCreated).Decode(&r); err != nil {
			t.Fatal(err)
		}
		for _, m := range r.Results {
			ready = append(ready, m.ID)
		}
	}
	var held []leasedMessage
	receive := func(n int) {
		t.Helper()
		var r struct {
			Messages []leasedMessage `json:"messages"`
		}
		if err := s.Must("POST", "/v1/queues/"+q+"/receive", tok, map[string]any{"max_messages": n}, http.StatusOK).Decode(&r); err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) != n {
			t.Fatalf("received %d messages, want %d", len(r.Messages), n)
		}
		for i, m := range r.Messages {
			if m.ID != ready[i] {
				t.Fatalf("receive %d: got %s, want %s (the oldest never leased)", i, m.ID, ready[i])
			}
		}
		ready = ready[n:]
		held = append(held, r.Messages...)
	}
	ack := func(n int) {
		t.Helper()
		for _, m := range held[:n] {
			s.Must("POST", "/v1/queues/"+q+"/ack", tok, map[string]any{"receipt": m.Receipt}, http.StatusOK)
		}
		held = held[n:]
	}
	first := s.Must("POST", "/v1/queues/"+q+"/messages", tok, map[string]any{"body": "dedup", "dedup_id": "once"}, http.StatusCreated).Str("id")
	ready = append(ready, first)
	publish(100, "a")
	s.Must("POST", "/v1/queues/"+later+"/messages", tok, map[string]any{"body": "in a quarter of an hour"}, http.StatusCreated)
	receive(40)
	ack(15)

	// The same server state, told apart only through its behaviour.
	checkCarriesOn := func(when string) {
		t.Helper()
		a := s.Must("POST", "/v1/queues/"+q+"/messages", tok, map[string]any{"body": "again", "dedup_id": "once"}, http.StatusOK)
		if a.Str("id") != first {
			t.Fatalf("%s: the dedup id now answers %s, want the first message %s", when, a.Str("id"), first)
		}
		ack(5) // leases taken before still hold
		a = s.Must("POST", "/v1/queues/"+later+"/receive", tok, map[string]any{"max_messages": 10}, http.StatusOK)
		var r struct {
			Messages []leasedMessage `json:"messages"`
		}
		if err := a.Decode(&r); err != nil || len(r.Messages) != 0 {
			t.Fatalf("%s: the delayed message was handed out: %s", when, a.Body)
		}
		receive(10)
	}

	// A clean stop writes the snapshot; the start uses it and replays nothing.
	head := s.head(tok)
	s.Stop()
	fin := lastRecord(t, s, "final command-state snapshot written")
	if pos := int64(fin["position"].(float64)); pos != head {
		t.Fatalf("final snapshot at %d, head %d", pos, head)
	}
	used, rebuilt := restart(t, s)
	if used == nil || int64(used["position"].(float64)) != head || used["queues"].(float64) != 2 || rebuilt["replayed"].(float64) != 0 {
		t.Fatalf("start after SIGTERM: %v / %v, head %d", used, rebuilt, head)
	}
	checkCarriesOn("after SIGTERM")

	// Enough events for a periodic snapshot, then more, then SIGKILL.
	written := len(s.LogRecords("commands: snapshot written"))
	publish(100, "b")
	harness.WaitFor(t, "a periodic snapshot", 30*time.Second, func() bool {
		return len(s.LogRecords("commands: snapshot written")) > written
	})
	periodic := lastRecord(t, s, "commands: snapshot written")
	receive(20)
	ack(5)
	publish(10, "c")
	head = s.head(tok)
	s.Kill()
	used, rebuilt = restart(t, s)
	if used == nil {
		t.Fatalf("start after SIGKILL did not use the periodic snapshot: %v", rebuilt)
	}
	pos := int64(used["position"].(float64))
	if pos != int64(periodic["position"].(float64)) || pos >= head || int64(rebuilt["replayed"].(float64)) != head-pos {
		t.Fatalf("start after SIGKILL: %v / %v; periodic snapshot %v, head %d", used, rebuilt, periodic, head)
	}
	checkCarriesOn("after SIGKILL")

	// Without the file, the start replays the whole log, to the same end.
	head = s.head(tok)
	s.Stop()
	if err := os.Remove(filepath.Join(s.Data, "commands.snapshot")); err != nil {
		t.Fatal(err)
	}
	used, rebuilt = restart(t, s)
	if used != nil || rebuilt["from_snapshot"] != false || int64(rebuilt["replayed"].(float64)) != head {
		t.Fatalf("start without the snapshot: %v, head %d", rebuilt, head)
	}
	checkCarriesOn("after deleting the snapshot")

	// Drain: exactly the messages never leased, oldest first; the held
	// leases still ack.
	var drained []string
	for {
		var r struct {
			Messages []leasedMessage `json:"messages"`
		}
		if err := s.Must("POST", "/v1/queues/"+q+"/receive", tok, map[string]any{"max_messages": 100}, http.StatusOK).Decode(&r); err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) == 0 {
			break
		}
		for _, m := range r.Messages {
			drained = append(drained, m.ID)
		}
	}
	if !slices.Equal(drained, ready) {
		t.Fatalf("drained %d messages, want the %d never leased", len(drained), len(ready))
	}
	ack(len(held))
}

// lastRecord is the server's latest JSON log record with that message.
func lastRecord(t *testing.T, s *server, msg string) map[string]any {
	t.Helper()
	recs := s.LogRecords(msg)
	if len(recs) == 0 {
		t.Fatalf("the server never logged %q", msg)
	}
	return recs[len(recs)-1]
}

// restart starts the server again and returns its start-up's log records
// about the snapshot ("command state: snapshot used", nil if it did not
// use one) and the rebuild.
func restart(t *testing.T, s *server) (used, rebuilt map[string]any) {
	t.Helper()
	before := len(s.LogRecords("command state rebuilt from the log"))
	usedBefore := len(s.LogRecords("command state: snapshot used"))
	s.Restart()
	if n := len(s.LogRecords("command state rebuilt from the log")); n != before+1 {
		t.Fatalf("%d start-up records after one restart", n-before)
	}
	if len(s.LogRecords("command state: snapshot used")) > usedBefore {
		used = lastRecord(t, s, "command state: snapshot used")
	}
	return used, lastRecord(t, s, "command state rebuilt from the log")
}
