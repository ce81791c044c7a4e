package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Event is one Server-Sent Event of GET /v1/subscribe.
type Event struct {
	// ID is the event's id: field, 0 when it had none (an update in the
	// middle of a group carries no id).
	ID int64
	// Event is the event: field, such as "message.updated".
	Event string
	// Data is the data: field decoded as a JSON object.
	Data map[string]any
	// Arrived is when the event was read.
	Arrived time.Time
}

// Subscription says which stream Subscribe opens.
type Subscription struct {
	// Query is the query string of GET /v1/subscribe, without the "?"
	// ("queues=orders&kinds=message", perhaps with access_token=…).
	Query string
	// Token is sent as a bearer token when not empty.
	Token string
	// LastEventID is sent as Last-Event-ID when not empty, to resume.
	LastEventID string
	// CountOnly counts the events without keeping them: for a stream kept
	// open under a long load that no one reads, which must not stall.
	CountOnly bool
}

// Stream is an open event stream, read by a goroutine of its own until the
// server ends it or Close is called.
type Stream struct {
	// Events yields the events in order (none with CountOnly) and is
	// closed when the stream ends. A full buffer holds the reader back,
	// as a slow client would be.
	Events <-chan Event

	count  atomic.Int64
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// Subscribe opens GET /v1/subscribe on the server and fails the test
// unless it answers 200 text/event-stream. The stream is closed when the
// test ends.
func (s *Server) Subscribe(sub Subscription) *Stream {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", s.URL+"/v1/subscribe?"+sub.Query, nil)
	if err != nil {
		cancel()
		s.t.Fatalf("subscribe on %s: %v", s.opts.Name, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if sub.Token != "" {
		req.Header.Set("Authorization", "Bearer "+sub.Token)
	}
	if sub.LastEventID != "" {
		req.Header.Set("Last-Event-ID", sub.LastEventID)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		cancel()
		s.t.Fatalf("subscribe on %s: %v", s.opts.Name, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		cancel()
		s.t.Fatalf("subscribe on %s: %d %s", s.opts.Name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan Event, 1<<16)
	st := &Stream{Events: events, done: make(chan struct{}), cancel: cancel}
	s.t.Cleanup(st.Close)
	go st.read(ctx, resp.Body, events, !sub.CountOnly)
	return st
}

// read parses the stream until it ends; err is nil when the server ended
// it cleanly (the scanner reports io.EOF as nil).
func (st *Stream) read(ctx context.Context, body io.ReadCloser, events chan<- Event, keep bool) {
	defer close(st.done)
	defer close(events)
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev Event
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" {
				st.count.Add(1)
				if keep {
					ev.Arrived = time.Now()
					_ = json.Unmarshal([]byte(strings.Join(data, "\n")), &ev.Data)
					select {
					case events <- ev:
					case <-ctx.Done():
						st.err = ctx.Err()
						return
					}
				}
			}
			ev, data = Event{}, nil
		case strings.HasPrefix(line, "id:"):
			ev.ID, _ = strconv.ParseInt(strings.TrimSpace(line[len("id:"):]), 10, 64)
		case strings.HasPrefix(line, "event:"):
			ev.Event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(line[len("data:"):], " "))
		}
	}
	st.err = sc.Err()
}

// Count is the number of events read so far.
func (st *Stream) Count() int64 { return st.count.Load() }

// Done is closed when the stream has ended.
func (st *Stream) Done() <-chan struct{} { return st.done }

// Err says why the stream ended, once Done is closed: nil when the server
// ended it cleanly, an error when it broke or was closed by Close.
func (st *Stream) Err() error {
	<-st.done
	return st.err
}

// Close ends the stream; it may be called more than once.
func (st *Stream) Close() { st.cancel() }
