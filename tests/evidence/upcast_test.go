package evidence

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/evidence/oldlog"
	"github.com/ledgerq/ledgerq/tests/harness"
)

// writeLogDir writes the oldlog story into a data directory of its own.
func writeLogDir(t *testing.T, leased int, base time.Time) (string, *oldlog.Story) {
	t.Helper()
	dir := t.TempDir()
	st, err := oldlog.Write(filepath.Join(dir, "events.db"), leased, base)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st
}

// TestBinaryOnAVersion1Log: a data directory written when MessageLeased
// was schema version 1 replays to the same state as the same history in
// version 2, at every position; the server starts on it and treats the
// leases by their version 1 deadlines (leased_at + visibility_timeout_ms);
// the audit log shows the stored events untouched; and the hash chain
// still verifies, offline and over HTTP.
func TestBinaryOnAVersion1Log(t *testing.T) {
	// The server runs on the real clock: the story leads up to now, with
	// one lease an hour from its end and one long overdue.
	base := time.Now()
	v1Dir, story := writeLogDir(t, oldlog.LeasedV1, base)
	v2Dir, _ := writeLogDir(t, oldlog.LeasedV2, base)

	for pos := int64(1); pos <= story.Head; pos++ {
		at := strconv.FormatInt(pos, 10)
		// At the head the state is as of now: the age of the oldest
		// ready message is left out of the comparison.
		got := harness.Replay(t, v1Dir, "--at-position", at)
		want := harness.Replay(t, v2Dir, "--at-position", at)
		if !reflect.DeepEqual(queuesByName(t, got), queuesByName(t, want)) {
			t.Fatalf("replay to %d: v1 log\n%s\nv2 log\n%s", pos, got, want)
		}
	}
	head := queuesByName(t, harness.Replay(t, v1Dir))[oldlog.Queue]
	if harness.Stat(head, "in_flight") != int64(len(story.InFlight)) || harness.Stat(head, "ready") != int64(len(story.Ready)) ||
		harness.Stat(head, "acked_total") != int64(story.AckedCount) {
		t.Fatalf("replay of the v1 log at its head: %v; want %d in flight, %d ready, %d acked",
			head, len(story.InFlight), len(story.Ready), story.AckedCount)
	}
	if rep := harness.VerifyOffline(t, v1Dir); rep.Checked != story.Head {
		t.Fatalf("ledgerq audit verify on the v1 log: checked %d events, want %d", rep.Checked, story.Head)
	}

	s := startServer(t, v1Dir)
	tok := adminToken(s)
	held, overdue := story.Leases[oldlog.Held], story.Leases[oldlog.Overdue]

	// The read model knows the held lease's deadline as version 1 meant it:
	// the message's history gives its lease in today's shape.
	m := s.GetAt("/v1/messages/"+story.IDs[oldlog.Held], tok, story.Head)
	var leasedUntil string
	for _, h := range m.JSON["history"].([]any) {
		if e := h.(map[string]any); e["type"] == "MessageLeased" {
			leasedUntil, _ = e["data"].(map[string]any)["lease_expires_at"].(string)
		}
	}
	exp, err := time.Parse(time.RFC3339Nano, leasedUntil)
	if m.Str("state") != "in_flight" || err != nil || !exp.Equal(held.ExpiresAt) {
		t.Fatalf("held message on the server: state %q, leased until %q; want in_flight until %s\n%s",
			m.Str("state"), leasedUntil, held.ExpiresAt.Format(time.RFC3339Nano), m.Body)
	}

	// The overdue lease ran out long ago by its v1 deadline: the scheduler
	// logs its expiry once the server is up. The held one stays.
	var expired []string
	deadline := time.Now().Add(20 * time.Second)
	for len(expired) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server never expired the overdue v1 lease")
		}
		time.Sleep(20 * time.Millisecond)
		r := harness.MustStatus(t, s.Call("GET", "/v1/events?type=MessageLeaseExpired&after="+strconv.FormatInt(story.Head, 10), tok, nil), http.StatusOK, "expiries")
		for _, x := range r.JSON["events"].([]any) {
			expired = append(expired, x.(map[string]any)["data"].(map[string]any)["message_id"].(string))
		}
	}
	if !slices.Equal(expired, []string{story.IDs[oldlog.Overdue]}) {
		t.Fatalf("the server expired %v, want only the overdue message %s", expired, story.IDs[oldlog.Overdue])
	}

	// Receiving gets the ready messages and the overdue one, never the held
	// one.
	r := harness.MustStatus(t, s.Call("POST", "/v1/queues/"+oldlog.Queue+"/receive", tok,
		map[string]any{"max_messages": 10, "visibility_timeout_ms": 60000}), http.StatusOK, "receive")
	var got []string
	counts := map[string]float64{}
	for _, x := range r.JSON["messages"].([]any) {
		mm := x.(map[string]any)
		got = append(got, mm["id"].(string))
		counts[mm["id"].(string)] = mm["receive_count"].(float64)
	}
	var want []string
	for _, name := range append(slices.Clone(story.Ready), oldlog.Overdue) {
		want = append(want, story.IDs[name])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("received %v, want %v (ready: %v, and %s)", got, want, story.Ready, oldlog.Overdue)
	}
	if c := counts[story.IDs[oldlog.Overdue]]; c != float64(overdue.ReceiveCount+1) {
		t.Errorf("overdue message received for the %vth time, want %d", c, overdue.ReceiveCount+1)
	}
	// The held receipt is still good; the overdue one lost its lease.
	r = harness.MustStatus(t, s.Call("POST", "/v1/queues/"+oldlog.Queue+"/ack", tok, map[string]any{"receipt": held.Receipt}), http.StatusOK, "ack held")
	if r.Str("id") != story.IDs[oldlog.Held] {
		t.Fatalf("ack of the held receipt acknowledged %q", r.Str("id"))
	}
	r = s.Call("POST", "/v1/queues/"+oldlog.Queue+"/ack", tok, map[string]any{"receipt": overdue.Receipt})
	if r.Status != http.StatusConflict || r.Str("code") != "lease_mismatch" {
		t.Fatalf("ack of the overdue receipt: %d %s, want 409 lease_mismatch", r.Status, r.Body)
	}

	// The audit log shows every stored event as written: the old leases in
	// version 1, the server's new ones in version 2.
	r = harness.MustStatus(t, s.Call("GET", "/v1/events?type=MessageLeased&limit=1000", tok, nil), http.StatusOK, "events")
	byPos := map[int64]map[string]any{}
	for _, x := range r.JSON["events"].([]any) {
		e := x.(map[string]any)
		byPos[int64(e["position"].(float64))] = e
	}
	old := 0
	for name, l := range story.Leases {
		e, ok := byPos[l.Position]
		if !ok {
			t.Fatalf("lease of %s at %d missing from the audit log", name, l.Position)
		}
		var stored, shown any
		_ = json.Unmarshal(l.Data, &stored)
		raw, _ := json.Marshal(e["data"])
		_ = json.Unmarshal(raw, &shown)
		if e["schema_version"] != float64(1) || !reflect.DeepEqual(shown, stored) {
			t.Errorf("audit log shows the v1 lease of %s as version %v %s; stored %s", name, e["schema_version"], raw, l.Data)
		}
		old++
	}
	if newer := len(byPos) - old; newer != len(want) {
		t.Errorf("%d leases after the old ones, want %d", newer, len(want))
	}
	for pos, e := range byPos {
		if pos > story.Head && e["schema_version"] != float64(2) {
			t.Errorf("lease written by the server at %d has schema version %v", pos, e["schema_version"])
		}
	}
	if r = harness.MustStatus(t, s.Call("GET", "/v1/audit/verify", tok, nil), http.StatusOK, "verify"); r.JSON["ok"] != true {
		t.Fatalf("verify over HTTP: %s", r.Body)
	}
	s.Stop()
	if rep := harness.VerifyOffline(t, v1Dir); rep.Checked <= story.Head {
		t.Fatalf("ledgerq audit verify after the server wrote to the v1 log: checked %d events, want more than %d", rep.Checked, story.Head)
	}
	if _, err := os.Stat(filepath.Join(v2Dir, "readmodel.db")); err == nil {
		t.Fatal("the v2 directory was served: it is only the reference")
	}
}
