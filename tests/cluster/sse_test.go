package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// frame is one Server-Sent Event, stamped with its arrival time.
type frame struct {
	ID      int64
	Event   string
	Data    map[string]any
	Arrived time.Time
}

// stream reads GET /v1/subscribe until it is closed.
type stream struct {
	cancel context.CancelFunc
	frames chan frame
}

// subscribe opens an event stream on n; query is the subscribe query
// string without the token.
func (n *node) subscribe(t *testing.T, token, query string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL+"/v1/subscribe?"+query, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("subscribe on the %s node: %v", n.name, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		cancel()
		t.Fatalf("subscribe on the %s node: %d %s", n.name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{cancel: cancel, frames: make(chan frame, 1<<16)}
	t.Cleanup(cancel)
	go func() {
		defer close(s.frames)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var f frame
		var data strings.Builder
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if f.Event != "" {
					f.Arrived = time.Now()
					_ = json.Unmarshal([]byte(data.String()), &f.Data)
					s.frames <- f
				}
				f, data = frame{}, strings.Builder{}
			case strings.HasPrefix(line, "id:"):
				f.ID, _ = strconv.ParseInt(strings.TrimSpace(line[3:]), 10, 64)
			case strings.HasPrefix(line, "event:"):
				f.Event = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "data:"):
				data.WriteString(strings.TrimPrefix(line[5:], " "))
			}
		}
	}()
	return s
}

func (s *stream) close() { s.cancel() }

// messageStates collects, from message.updated frames, the states each
// message id went through, until done reports true for the collection or
// the time is up.
func (s *stream) collect(t *testing.T, within time.Duration, done func(map[string][]string) bool) map[string][]string {
	t.Helper()
	seen := map[string][]string{}
	deadline := time.After(within)
	for !done(seen) {
		select {
		case f, ok := <-s.frames:
			if !ok {
				t.Fatalf("event stream ended early")
			}
			if f.Event != "message.updated" {
				continue
			}
			id, _ := f.Data["id"].(string)
			st, _ := f.Data["state"].(string)
			seen[id] = append(seen[id], st)
		case <-deadline:
			t.Fatalf("event stream: after %s, %d messages seen", within, len(seen))
		}
	}
	return seen
}
