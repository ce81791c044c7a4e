package transport

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// Query parameter bounds.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
	maxCursorLen     = 1024
	maxStreamLen     = 6 + maxQueueNameLen // "queue-" + name
)

// params reads query parameters, refusing a parameter given twice: two
// values with one meaning are a client bug or an attempt to confuse.
type params struct {
	v   url.Values
	err error
}

func newParams(r *http.Request) *params {
	v, err := url.ParseQuery(r.URL.RawQuery)
	p := &params{v: v}
	if err != nil {
		p.err = invalid("", "malformed query string")
	}
	return p
}

func (p *params) str(name string) string {
	vs := p.v[name]
	if len(vs) > 1 && p.err == nil {
		p.err = invalid(name, "given more than once")
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// int64 parses an integer within [lo, hi]; absent gives def.
func (p *params) int64(name string, def, lo, hi int64) int64 {
	raw := p.str(name)
	if raw == "" {
		return def
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if (err != nil || v < lo || v > hi) && p.err == nil {
		p.err = invalid(name, "must be an integer between "+strconv.FormatInt(lo, 10)+" and "+strconv.FormatInt(hi, 10))
	}
	return v
}

func (p *params) limit() int {
	return int(p.int64("limit", defaultPageLimit, 1, maxPageLimit))
}

func (p *params) cursor() string {
	c := p.str("cursor")
	if len(c) > maxCursorLen && p.err == nil {
		p.err = invalid("cursor", "malformed cursor")
	}
	return c
}

func (p *params) boolean(name string) bool {
	raw := p.str(name)
	if raw == "" {
		return false
	}
	v, err := strconv.ParseBool(raw)
	if err != nil && p.err == nil {
		p.err = invalid(name, "must be true or false")
	}
	return v
}

func (p *params) time(name string) time.Time {
	raw := p.str(name)
	if raw == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil && p.err == nil {
		p.err = invalid(name, "must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z")
	}
	return t
}

func (s *server) handleListQueues() http.HandlerFunc {
	type answer struct {
		Queues     []queueView `json:"queues"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		p := newParams(r)
		q := queries.ListQueues{Prefix: p.str("prefix"), Limit: p.limit(), Cursor: p.cursor(), Allowed: callerOf(r).allowedFunc()}
		if p.err == nil && len(q.Prefix) > maxQueueNameLen {
			p.err = invalid("prefix", "at most 80 characters")
		}
		if p.err != nil {
			s.writeProblem(w, r, p.err)
			return
		}
		page, err := s.deps.Queries.ListQueues(r.Context(), q)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		s.respond(w, r, http.StatusOK, answer{Queues: queuesFromQuery(page.Queues), NextCursor: page.NextCursor})
	}
}

func (s *server) handleGetQueue() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := s.deps.Queries.GetQueue(r.Context(), queueOf(r))
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		s.respond(w, r, http.StatusOK, queueFromQuery(q))
	}
}

var messageStates = []string{queries.StateReady, queries.StateDelayed, queries.StateInFlight, queries.StateAcked, queries.StateDeadLettered, queries.StateExpired}

func (s *server) handleListMessages() http.HandlerFunc {
	type answer struct {
		Messages   []messageSummaryView `json:"messages"`
		NextCursor string               `json:"next_cursor,omitempty"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		p := newParams(r)
		q := queries.ListMessages{Queue: queueOf(r), State: p.str("state"), Limit: p.limit(), Cursor: p.cursor(), IncludeBody: p.boolean("include_body")}
		if p.err == nil && q.State != "" && !slices.Contains(messageStates, q.State) {
			p.err = invalid("state", "must be one of "+strings.Join(messageStates, ", "))
		}
		if p.err != nil {
			s.writeProblem(w, r, p.err)
			return
		}
		page, err := s.deps.Queries.ListMessages(r.Context(), q)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		out := answer{Messages: make([]messageSummaryView, 0, len(page.Messages)), NextCursor: page.NextCursor}
		for _, m := range page.Messages {
			out.Messages = append(out.Messages, summaryFromQuery(m))
		}
		s.respond(w, r, http.StatusOK, out)
	}
}

func (s *server) handleGetMessage() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathParam(mux.Vars(r)["id"], "id")
		if err == nil {
			err = checkMessageID(id)
		}
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		m, err := s.deps.Queries.GetMessage(r.Context(), id)
		if err == nil && !callerOf(r).allows(m.Queue) {
			// Message ids are global: a 403 would confirm that the id
			// exists in a queue the token cannot see.
			err = domain.WithMessage(domain.ErrMessageNotFound, "message %s not found", id)
		}
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		s.respond(w, r, http.StatusOK, detailFromQuery(m))
	}
}

// eventFilter reads the filter of GET /v1/events.
func eventFilter(r *http.Request, p *params, streaming bool) queries.EventFilter {
	f := queries.EventFilter{
		After:   p.int64("after", 0, 0, 1<<62),
		Stream:  p.str("stream"),
		Type:    p.str("type"),
		Since:   p.time("since"),
		Until:   p.time("until"),
		Allowed: callerOf(r).allowedFunc(),
	}
	if streaming {
		// The whole range streams unless the client bounds it.
		f.Limit = int(p.int64("limit", 0, 1, 1<<31-1))
	} else {
		f.Limit = p.limit()
	}
	switch {
	case p.err != nil:
	case len(f.Stream) > maxStreamLen:
		p.err = invalid("stream", "no such stream can exist")
	case f.Type != "" && !slices.Contains(domain.EventTypes, f.Type):
		p.err = invalid("type", "must be one of "+strings.Join(domain.EventTypes, ", "))
	case !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until):
		p.err = invalid("until", "must be after since")
	}
	return f
}

// wantsNDJSON reports whether the client asked for newline-delimited JSON.
func wantsNDJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/x-ndjson") {
			return true
		}
	}
	return false
}

// ndjsonFlushEvery is how many events go out between flushes: often enough
// that a follower sees progress, seldom enough not to cost a syscall each.
const ndjsonFlushEvery = 64

func (s *server) handleEvents() http.HandlerFunc {
	type answer struct {
		Events    []eventView `json:"events"`
		NextAfter int64       `json:"next_after,omitempty"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		streaming := wantsNDJSON(r)
		p := newParams(r)
		f := eventFilter(r, p, streaming)
		if p.err != nil {
			s.writeProblem(w, r, p.err)
			return
		}
		if !streaming {
			page, err := s.deps.Audit.Events(r.Context(), f)
			if err != nil {
				s.writeProblem(w, r, err)
				return
			}
			out := answer{Events: make([]eventView, 0, len(page.Events)), NextAfter: page.NextAfter}
			for _, e := range page.Events {
				out.Events = append(out.Events, eventFromQuery(e))
			}
			s.respond(w, r, http.StatusOK, out)
			return
		}
		s.streamEvents(w, r, f)
	}
}

// streamEvents writes the range as one JSON event per line, flushing as it
// goes, so the range is never held in memory. Until the first event the
// answer can still be a problem; after it, a failure can only cut the
// stream short, which the client sees as a broken chunked body.
func (s *server) streamEvents(w http.ResponseWriter, r *http.Request, f queries.EventFilter) {
	rc := http.NewResponseController(w)
	started := false
	start := func() {
		started = true
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}
	n := 0
	var line []byte
	err := s.deps.Audit.StreamEvents(r.Context(), f, func(e queries.EventView) error {
		if !started {
			start()
		}
		var err error
		line, err = appendJSONLine(line[:0], eventFromQuery(e))
		if err != nil {
			return err
		}
		if _, err := w.Write(line); err != nil {
			return errClientWrite{err}
		}
		// The first event goes out at once so the client sees the stream begin.
		if n++; n == 1 || n%ndjsonFlushEvery == 0 {
			if err := rc.Flush(); err != nil {
				return errClientWrite{err}
			}
		}
		return nil
	})
	var cw errClientWrite
	switch {
	case err == nil && !started:
		start()
	case err == nil:
		_ = rc.Flush()
	case errors.As(err, &cw) || r.Context().Err() != nil:
		// The client went away; nothing is left to tell it.
	case !started:
		s.writeProblem(w, r, err)
	default:
		s.log.WithError(err).WithField("request_id", requestIDFrom(r.Context())).Error("event stream failed midway")
		panic(http.ErrAbortHandler)
	}
}

// errClientWrite marks a failed write to the client, as opposed to a
// failure to read the log.
type errClientWrite struct{ err error }

func (e errClientWrite) Error() string { return "write to client: " + e.err.Error() }
func (e errClientWrite) Unwrap() error { return e.err }

func (s *server) handleVerify() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := newParams(r)
		from := p.int64("from", 0, 0, 1<<62)
		to := p.int64("to", 0, 0, 1<<62)
		if p.err == nil && to != 0 && from > to {
			p.err = invalid("to", "must not be before from")
		}
		if p.err != nil {
			s.writeProblem(w, r, p.err)
			return
		}
		res, err := s.deps.Audit.Verify(r.Context(), from, to)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		s.respond(w, r, http.StatusOK, res)
	}
}

// stateAnswer is the JSON of a point-in-time state.
type stateAnswer struct {
	Position int64       `json:"position"`
	Queues   []queueView `json:"queues"`
}

// StateJSON renders a point-in-time state exactly as GET /v1/audit/state
// answers it, so `ledgerq replay` prints the same document offline.
func StateJSON(v queries.StateView) any {
	return stateAnswer{Position: v.Position, Queues: queuesFromQuery(v.Queues)}
}

func (s *server) handleStateAt() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := newParams(r)
		q := queries.StateAt{Position: p.int64("at_position", 0, 1, 1<<62), Time: p.time("at_time")}
		if p.err == nil && (q.Position == 0) == q.Time.IsZero() {
			p.err = invalid("at_position", "give exactly one of at_position and at_time")
		}
		if p.err != nil {
			s.writeProblem(w, r, p.err)
			return
		}
		st, err := s.deps.Audit.StateAt(r.Context(), q)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		caller := callerOf(r)
		visible := make([]queries.Queue, 0, len(st.Queues))
		for _, qu := range st.Queues {
			if caller.allows(qu.Name) {
				visible = append(visible, qu)
			}
		}
		s.respond(w, r, http.StatusOK, stateAnswer{Position: st.Position, Queues: queuesFromQuery(visible)})
	}
}
