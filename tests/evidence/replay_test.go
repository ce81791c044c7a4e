package evidence

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestReplayToTheHeadEqualsLiveState runs a mixed workload through the
// binary (creates, publishes single, batched, delayed and deduplicated,
// receives, acks, nacks, a dead-letter move, a redrive, lease expiries, a
// purge, a reconfiguration, a delete), then checks that three views of the
// head agree: the live read models (GET /v1/queues), the point-in-time
// state at the head (GET /v1/audit/state) and `ledgerq replay` on a copy of
// the data directory; and that the command state after a restart agrees
// too: receiving finds exactly the ready messages of each queue.
func TestReplayToTheHeadEqualsLiveState(t *testing.T) {
	s := startServer(t, t.TempDir())
	tok := adminToken(s)
	post := func(path string, body any, status int) harness.Response {
		t.Helper()
		return harness.MustStatus(t, s.Call("POST", path, tok, body), status, "POST "+path)
	}
	receipts := func(r harness.Response) []string {
		var out []string
		for _, m := range r.JSON["messages"].([]any) {
			out = append(out, m.(map[string]any)["receipt"].(string))
		}
		return out
	}
	const leaseForever = 600000 // ms: nothing the test leases on purpose expires

	post("/v1/queues", map[string]any{"name": "orders-dlq"}, http.StatusCreated)
	post("/v1/queues", map[string]any{"name": "orders", "dead_letter_queue": "orders-dlq", "max_receive_count": 1}, http.StatusCreated)
	post("/v1/queues", map[string]any{"name": "events-log"}, http.StatusCreated)
	post("/v1/queues", map[string]any{"name": "slow", "visibility_timeout_ms": 100}, http.StatusCreated)
	post("/v1/queues", map[string]any{"name": "temp"}, http.StatusCreated)

	// orders: 20 batched, 10 single, 3 delayed past the test, 1 deduplicated.
	var batch []map[string]any
	for i := 0; i < 20; i++ {
		batch = append(batch, map[string]any{"body": fmt.Sprintf("batch-%d", i), "headers": map[string]string{"i": strconv.Itoa(i)}})
	}
	post("/v1/queues/orders/messages:batch", map[string]any{"messages": batch}, http.StatusCreated)
	for i := 0; i < 10; i++ {
		post("/v1/queues/orders/messages", map[string]any{"body": fmt.Sprintf("single-%d", i)}, http.StatusCreated)
	}
	for i := 0; i < 3; i++ {
		post("/v1/queues/orders/messages", map[string]any{"body": "later", "delay_ms": 900000}, http.StatusCreated)
	}
	first := post("/v1/queues/orders/messages", map[string]any{"body": "once", "dedup_id": "order-42"}, http.StatusCreated)
	if again := post("/v1/queues/orders/messages", map[string]any{"body": "once", "dedup_id": "order-42"}, http.StatusOK); again.Str("id") != first.Str("id") {
		t.Fatalf("dedup: second publish got id %q, first %q", again.Str("id"), first.Str("id"))
	}

	// 10 received: 4 acked, 3 nacked into the dead-letter queue (max one
	// receive), 3 kept; then one dead letter goes back.
	rs := receipts(post("/v1/queues/orders/receive", map[string]any{"max_messages": 10, "visibility_timeout_ms": leaseForever}, http.StatusOK))
	if len(rs) != 10 {
		t.Fatalf("received %d from orders, want 10", len(rs))
	}
	for _, r := range rs[:4] {
		post("/v1/queues/orders/ack", map[string]any{"receipt": r}, http.StatusOK)
	}
	for _, r := range rs[4:7] {
		post("/v1/queues/orders/nack", map[string]any{"receipt": r}, http.StatusOK)
	}
	if r := post("/v1/queues/orders-dlq/redrive", map[string]any{"max_messages": 1}, http.StatusOK); r.Num("moved") != 1 {
		t.Fatalf("redrive moved %d, want 1", r.Num("moved"))
	}
	harness.MustStatus(t, s.Call("PATCH", "/v1/queues/orders-dlq", tok, map[string]any{"retention_ms": 86400000}), http.StatusOK, "configure orders-dlq")

	// events-log: 10 published, 2 leased, the other 8 purged.
	for i := 0; i < 10; i++ {
		post("/v1/queues/events-log/messages", map[string]any{"body": "e" + strconv.Itoa(i)}, http.StatusCreated)
	}
	post("/v1/queues/events-log/receive", map[string]any{"max_messages": 2, "visibility_timeout_ms": leaseForever}, http.StatusOK)
	if r := post("/v1/queues/events-log/purge", nil, http.StatusOK); r.Num("purged") != 8 {
		t.Fatalf("purge dropped %d, want 8", r.Num("purged"))
	}

	// slow: two leases of 100 ms run out; the scheduler logs their expiry.
	for i := 0; i < 5; i++ {
		post("/v1/queues/slow/messages", map[string]any{"body": "s" + strconv.Itoa(i)}, http.StatusCreated)
	}
	leased := post("/v1/queues/slow/receive", map[string]any{"max_messages": 2}, http.StatusOK).Num("position")
	deadline := time.Now().Add(20 * time.Second)
	for harness.Stat(s.GetAt("/v1/queues/slow", tok, leased).JSON, "in_flight") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the 100 ms leases of slow never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// temp: created, used, deleted.
	post("/v1/queues/temp/messages", map[string]any{"body": "gone"}, http.StatusCreated)
	harness.MustStatus(t, s.Call("DELETE", "/v1/queues/temp", tok, nil), http.StatusOK, "delete temp")

	verify := harness.MustStatus(t, s.Call("GET", "/v1/audit/verify", tok, nil), http.StatusOK, "verify")
	head := verify.Num("head_position")
	if verify.JSON["ok"] != true || head == 0 {
		t.Fatalf("verify: %s", verify.Body)
	}

	// Three views of the head.
	live := queuesByName(t, s.GetAt("/v1/queues?limit=1000", tok, head).Body)
	atHead := queuesByName(t, harness.MustStatus(t, s.Call("GET", "/v1/audit/state?at_position="+strconv.FormatInt(head, 10), tok, nil), http.StatusOK, "state at head").Body)
	if !reflect.DeepEqual(atHead, live) {
		t.Fatalf("state at the head differs from the live read models:\nat head %v\nlive    %v", atHead, live)
	}
	for _, chk := range []struct {
		queue, stat string
		want        int64
	}{
		{"orders", "published_total", 20 + 10 + 3 + 1 + 1}, {"orders", "acked_total", 4}, {"orders", "dead_lettered_total", 3},
		{"orders", "in_flight", 3}, {"orders", "delayed", 3}, {"orders-dlq", "ready", 2},
		{"events-log", "ready", 0}, {"events-log", "in_flight", 2}, {"slow", "ready", 5}, {"slow", "in_flight", 0},
	} {
		if got := harness.Stat(live[chk.queue], chk.stat); got != chk.want {
			t.Errorf("live %s %s = %d, want %d", chk.queue, chk.stat, got, chk.want)
		}
	}
	if _, ok := live["temp"]; ok || len(live) != 4 {
		t.Errorf("live queues %v: want the four not deleted", keys(live))
	}
	ready := map[string][]string{}
	for name := range live {
		for _, m := range s.GetAt("/v1/queues/"+name+"/messages?state=ready&limit=1000", tok, head).JSON["messages"].([]any) {
			ready[name] = append(ready[name], m.(map[string]any)["id"].(string))
		}
		if int64(len(ready[name])) != harness.Stat(live[name], "ready") {
			t.Fatalf("%s lists %d ready messages, its stats say %d", name, len(ready[name]), harness.Stat(live[name], "ready"))
		}
	}

	s.Stop()
	if replayed := queuesByName(t, harness.ReplayCopy(t, s.Data)); !reflect.DeepEqual(replayed, live) {
		t.Fatalf("ledgerq replay differs from the live read models:\nreplay %v\nlive   %v", replayed, live)
	}

	// The command state after a restart: receiving finds exactly the ready
	// messages, and nothing more.
	s.Restart()
	for name, want := range ready {
		r := post("/v1/queues/"+name+"/receive", map[string]any{"max_messages": 100, "visibility_timeout_ms": leaseForever}, http.StatusOK)
		var got []string
		for _, m := range r.JSON["messages"].([]any) {
			got = append(got, m.(map[string]any)["id"].(string))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s after restart: received %v, the read model had ready %v", name, got, want)
		}
		if r := post("/v1/queues/"+name+"/receive", map[string]any{"max_messages": 100}, http.StatusOK); len(r.JSON["messages"].([]any)) != 0 {
			t.Errorf("%s after restart: a second receive found %d more", name, len(r.JSON["messages"].([]any)))
		}
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
