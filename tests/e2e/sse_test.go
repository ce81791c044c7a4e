package e2e

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestSSEResumeLosesNothing: a subscriber that disconnects while publishes
// go on and reconnects with Last-Event-ID receives every message update
// exactly once across its two connections.
func TestSSEResumeLosesNothing(t *testing.T) {
	s := startServer(t)
	tok := s.Token("ops", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "live"}), 201, "create")
	q := "queues=live&kinds=message&access_token=" + tok

	var mu sync.Mutex
	published := map[string]bool{}
	publish := func(n int, tag string) {
		for i := 0; i < n; i++ {
			r := s.Call("POST", "/v1/queues/live/messages", tok, map[string]any{"body": fmt.Sprintf("%s-%d", tag, i)})
			harness.MustStatus(t, r, 201, "publish")
			mu.Lock()
			published[r.Str("id")] = true
			mu.Unlock()
		}
	}

	first := s.Subscribe(harness.Subscription{Query: q})
	publish(20, "a")
	got := map[string]int{}
	var lastID int64
	collect := func(c *harness.Stream, until func() bool, within time.Duration) {
		deadline := time.After(within)
		for !until() {
			select {
			case ev, ok := <-c.Events:
				if !ok {
					return
				}
				if ev.Event != "message.updated" || ev.Data["state"] != "ready" {
					continue
				}
				if ev.ID <= lastID {
					t.Fatalf("event id %d not after %d", ev.ID, lastID)
				}
				lastID = ev.ID
				got[ev.Data["id"].(string)]++
			case <-deadline:
				return
			}
		}
	}
	collect(first, func() bool { return len(got) >= 10 }, 10*time.Second)
	first.Close()

	// Publishes race the reconnect.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); publish(30, "b") }()
	time.Sleep(20 * time.Millisecond)
	second := s.Subscribe(harness.Subscription{Query: q, LastEventID: strconv.FormatInt(lastID, 10)})
	wg.Wait()
	collect(second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(published)
	}, 15*time.Second)
	second.Close()

	mu.Lock()
	defer mu.Unlock()
	for id := range published {
		if got[id] != 1 {
			t.Errorf("message %s seen %d times across the two connections, want 1", id, got[id])
		}
	}
	if len(got) != len(published) {
		t.Errorf("saw %d messages, published %d", len(got), len(published))
	}
}
