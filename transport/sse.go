package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerq/ledgerq/queries"
)

// maxSubscribeQueues bounds the queues one subscription may name.
const maxSubscribeQueues = 100

// Subscription kinds: which updates a stream carries.
const (
	kindQueue   = "queue"   // queue.updated, queue.deleted
	kindMessage = "message" // message.updated
)

// subscribeRequest is what GET /v1/subscribe asked for.
type subscribeRequest struct {
	queues map[string]bool // nil: every queue the token may see
	kinds  map[string]bool
	after  int64
	resume bool // Last-Event-ID or ?after= was given
}

func parseSubscribe(r *http.Request, caller *principal) (subscribeRequest, error) {
	p := newParams(r)
	req := subscribeRequest{kinds: map[string]bool{kindQueue: true, kindMessage: true}}
	if raw := p.str("queues"); raw != "" {
		req.queues = make(map[string]bool)
		for _, name := range strings.Split(raw, ",") {
			name = strings.TrimSpace(name)
			if err := checkQueueName("queues", name); err != nil {
				return req, err
			}
			if !caller.allows(name) {
				return req, forbiddenQueue("queues", name)
			}
			req.queues[name] = true
		}
		if len(req.queues) > maxSubscribeQueues {
			return req, invalid("queues", "at most "+strconv.Itoa(maxSubscribeQueues)+" queues")
		}
	}
	if raw := p.str("kinds"); raw != "" {
		req.kinds = make(map[string]bool)
		for _, k := range strings.Split(raw, ",") {
			switch k = strings.TrimSpace(k); k {
			case kindQueue, kindMessage:
				req.kinds[k] = true
			default:
				return req, invalid("kinds", `must list "queue" and/or "message"`)
			}
		}
	}
	// A reconnecting EventSource sends Last-Event-ID and keeps the URL it
	// first used, so the header wins over ?after=.
	raw, field := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if raw == "" {
		raw, field = p.str("after"), "after"
	}
	if raw != "" {
		v, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil || v < 0 {
			return req, invalid(field, "must be a non-negative integer (an event id)")
		}
		req.after, req.resume = v, true
	}
	return req, p.err
}

// accepts is the hub filter: only queues the token may see. The kinds and
// queues asked for are the subscription's hub Interest (see interest),
// which the hub checks before this. It runs under the hub's lock.
func (sr subscribeRequest) accepts(caller *principal) func(queries.Update) bool {
	return func(u queries.Update) bool {
		switch u.Event {
		case queries.EventQueueUpdated, queries.EventQueueDeleted, queries.EventMessageUpdated:
			return caller.allows(u.Queue)
		default:
			return false
		}
	}
}

// interest is what the hub can index: the queues named (nil: every queue)
// and the kinds wanted (building an update costs the read side, so it
// builds only those someone may take).
func (sr subscribeRequest) interest() queries.Interest {
	in := queries.Interest{NoQueueUpdates: !sr.kinds[kindQueue], NoMessageUpdates: !sr.kinds[kindMessage]}
	if sr.queues != nil {
		in.Queues = make([]string, 0, len(sr.queues))
		for q := range sr.queues {
			in.Queues = append(in.Queues, q)
		}
	}
	return in
}

func (s *server) handleSubscribe() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		caller := callerOf(r)
		req, err := parseSubscribe(r, caller)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if !s.streams.acquire(caller.subject) {
			s.writeProblem(w, r, &apiError{code: codeRateLimited, retryAfter: 5,
				detail: "too many open streams for this subject (at most " + strconv.Itoa(s.deps.SSE.MaxStreamsPerSubject) + ")"})
			return
		}
		defer s.streams.release(caller.subject)

		filter := req.accepts(caller)
		in := req.interest()
		var (
			backlog  []queries.Update
			sub      *queries.Subscription
			floor    int64
			snapshot bool
		)
		if req.resume {
			var complete bool
			backlog, sub, complete = s.deps.Hub.SubscribeTo(req.after, in, filter)
			floor = req.after
			if !complete {
				floor, snapshot = s.deps.Queries.Position(), true
			}
		} else {
			// P is read before subscribing: everything after P reaches the
			// subscription, and the snapshot, read later, reflects at least P.
			floor, snapshot = s.deps.Queries.Position(), true
			backlog, sub, _ = s.deps.Hub.SubscribeTo(floor, in, filter)
		}
		defer sub.Close()
		// The client going away and the server shutting down end the
		// subscription, so the loop below waits on three channels, not
		// five: a select locks each of its channels and queues a waiter on
		// each at every wake-up, and a busy server wakes its streams tens
		// of thousands of times a second.
		defer context.AfterFunc(r.Context(), sub.Close)()
		defer context.AfterFunc(s.stopped, sub.Close)()

		var snap []queries.Queue
		if snapshot && req.kinds[kindQueue] {
			// Read before the first byte goes out, so that a failure is
			// still a problem document.
			if snap, err = s.snapshotQueues(r, caller, req.queues); err != nil {
				s.writeProblem(w, r, err)
				return
			}
		}

		s.metrics.SSEClients.Inc()
		defer s.metrics.SSEClients.Dec()
		st := &sseStream{w: w, rc: http.NewResponseController(w), timeout: s.deps.SSE.WriteTimeout}
		defer st.clearDeadline()
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		st.buf.WriteString("retry: 2000\n\n")
		if snapshot {
			for _, q := range snap {
				v := queueFromQuery(q)
				v.Snapshot = true
				data, _ := json.Marshal(v)
				st.event(floor, queries.EventQueueUpdated, data)
			}
			// An id without data moves the client's Last-Event-ID to P even
			// when there was no queue to send.
			st.buf.WriteString("id: " + strconv.FormatInt(floor, 10) + "\n\n")
		}
		st.updates(backlog, floor)
		if st.flush() != nil {
			return
		}

		heartbeat := time.NewTicker(s.deps.SSE.Heartbeat)
		defer heartbeat.Stop()
		for {
			select {
			case us := <-sub.C():
				st.updates(us, floor)
				// Send what else is already waiting in one write.
				for more := true; more; {
					select {
					case us := <-sub.C():
						st.updates(us, floor)
					default:
						more = false
					}
				}
				if st.flush() != nil {
					return
				}
			case <-sub.Done():
				// Dropped as too slow, the hub closed, the client gone or
				// the server shutting down: hand over what is buffered; the
				// client resumes from its Last-Event-ID.
				for more := true; more; {
					select {
					case us := <-sub.C():
						st.updates(us, floor)
					default:
						more = false
					}
				}
				_ = st.flush()
				return
			case <-heartbeat.C:
				st.buf.WriteString(": ping\n\n")
				if st.flush() != nil {
					return
				}
			}
		}
	}
}

// snapshotQueues reads the current state of the queues a subscription sees.
func (s *server) snapshotQueues(r *http.Request, caller *principal, want map[string]bool) ([]queries.Queue, error) {
	allowed := func(name string) bool {
		return (want == nil || want[name]) && caller.allows(name)
	}
	var out []queries.Queue
	cursor := ""
	for {
		page, err := s.deps.Queries.ListQueues(r.Context(), queries.ListQueues{Limit: maxPageLimit, Cursor: cursor, Allowed: allowed})
		if err != nil {
			return nil, err
		}
		out = append(out, page.Queues...)
		if page.NextCursor == "" || page.NextCursor == cursor {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// RenderSSE is the data line of an update as GET /v1/subscribe sends it.
// Give it to the hub (queries.HubConfig.Render) so that each update is
// encoded once, not once per subscriber.
func RenderSSE(u queries.Update) []byte { return sseData(u) }

// sseData is an update's data with times in API.md's format; data the
// edge cannot read is passed on compacted to one line. It uses the frame
// the hub rendered when there is one, and the update's Value, when it has
// one, instead of decoding Data.
func sseData(u queries.Update) []byte {
	if u.Frame != nil {
		return u.Frame
	}
	var (
		v   any
		err error
	)
	switch u.Event {
	case queries.EventQueueUpdated:
		q, ok := u.Value.(queries.Queue)
		if !ok {
			err = json.Unmarshal(u.Data, &q)
		}
		if err == nil {
			qv := queueFromQuery(q)
			qv.Snapshot = u.Snapshot
			v = qv
		}
	case queries.EventMessageUpdated:
		m, ok := u.Value.(queries.MessageSummary)
		if !ok {
			err = json.Unmarshal(u.Data, &m)
		}
		if err == nil {
			v = summaryFromQuery(m)
		}
	default:
		err = errors.New("pass through")
	}
	if err == nil {
		if b, err := json.Marshal(v); err == nil {
			return b
		}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, u.Data) != nil {
		return []byte("null")
	}
	return buf.Bytes()
}

// sseStream buffers events and writes them with a deadline, so a client
// that stops reading is cut off instead of holding the handler.
type sseStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
	// deadline is the write deadline in force; zero: none.
	deadline time.Time
}

func (st *sseStream) event(id int64, event string, data []byte) {
	st.buf.WriteString("id: ")
	st.buf.WriteString(strconv.FormatInt(id, 10))
	st.buf.WriteString("\nevent: ")
	st.buf.WriteString(event)
	st.buf.WriteString("\ndata: ")
	st.buf.Write(data)
	st.buf.WriteString("\n\n")
}

// update writes a projection update. Only the last update of a position
// carries the `id:`: a client that loses the connection in the middle of a
// group resumes from the position before it and gets the whole group again.
func (st *sseStream) update(u queries.Update) {
	if !u.More {
		st.event(u.Position, u.Event, sseData(u))
		return
	}
	st.buf.WriteString("event: ")
	st.buf.WriteString(u.Event)
	st.buf.WriteString("\ndata: ")
	st.buf.Write(sseData(u))
	st.buf.WriteString("\n\n")
}

// updates writes those of us after floor (the position the stream's
// snapshot or resume point already covers).
func (st *sseStream) updates(us []queries.Update, floor int64) {
	for _, u := range us {
		if u.Position > floor {
			st.update(u)
		}
	}
}

// flush writes what is buffered. Each write gets at least half the timeout
// and at most all of it: the deadline moves only once half of it is used up,
// because moving it resets a runtime timer, which cost as much as a fifth of
// a stream's write at the bench's SSE load.
func (st *sseStream) flush() error {
	if now := time.Now(); st.deadline.Sub(now) < st.timeout/2 {
		st.deadline = now.Add(st.timeout)
		if err := st.rc.SetWriteDeadline(st.deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	_, err := st.w.Write(st.buf.Bytes())
	st.buf.Reset()
	if err != nil {
		return err
	}
	if err := st.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (st *sseStream) clearDeadline() { _ = st.rc.SetWriteDeadline(time.Time{}) }
