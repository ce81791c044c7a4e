package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID    int64
	Event string
	Data  map[string]any
}

// sseConn reads an event stream until it is closed.
type sseConn struct {
	cancel context.CancelFunc
	events chan sseEvent
	resp   *http.Response
}

// subscribe opens GET /v1/subscribe with the given query and Last-Event-ID.
func (s *server) subscribe(t *testing.T, query, lastID string) *sseConn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/v1/subscribe?"+query, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		t.Fatalf("subscribe: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseConn{cancel: cancel, events: make(chan sseEvent, 4096), resp: resp}
	go func() {
		defer close(c.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		var data strings.Builder
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" {
					_ = json.Unmarshal([]byte(data.String()), &ev.Data)
					c.events <- ev
				}
				ev, data = sseEvent{}, strings.Builder{}
			case strings.HasPrefix(line, "id:"):
				ev.ID, _ = strconv.ParseInt(strings.TrimSpace(line[3:]), 10, 64)
			case strings.HasPrefix(line, "event:"):
				ev.Event = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "data:"):
				data.WriteString(strings.TrimPrefix(line[5:], " "))
			}
		}
	}()
	return c
}

func (c *sseConn) close() { c.cancel() }

// TestSSEResumeLosesNothing: a subscriber that disconnects while publishes
// go on and reconnects with Last-Event-ID receives every message update
// exactly once across its two connections.
func TestSSEResumeLosesNothing(t *testing.T) {
	s := startServer(t)
	tok := s.token("ops", "admin")
	mustStatus(t, s.call("POST", "/v1/queues", tok, map[string]any{"name": "live"}), 201, "create")
	q := "queues=live&kinds=message&access_token=" + tok

	var mu sync.Mutex
	published := map[string]bool{}
	publish := func(n int, tag string) {
		for i := 0; i < n; i++ {
			r := s.call("POST", "/v1/queues/live/messages", tok, map[string]any{"body": fmt.Sprintf("%s-%d", tag, i)})
			mustStatus(t, r, 201, "publish")
			mu.Lock()
			published[r.str("id")] = true
			mu.Unlock()
		}
	}

	first := s.subscribe(t, q, "")
	publish(20, "a")
	got := map[string]int{}
	var lastID int64
	collect := func(c *sseConn, until func() bool, within time.Duration) {
		deadline := time.After(within)
		for !until() {
			select {
			case ev, ok := <-c.events:
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
	first.close()

	// Publishes race the reconnect.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); publish(30, "b") }()
	time.Sleep(20 * time.Millisecond)
	second := s.subscribe(t, q, strconv.FormatInt(lastID, 10))
	wg.Wait()
	collect(second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(published)
	}, 15*time.Second)
	second.close()

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
