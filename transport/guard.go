package transport

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ledgerq/ledgerq/commands"
)

// authenticate runs on every /v1 route: it verifies the token, takes one
// request from the caller's rate budget (by subject, or by address when the
// token is bad, so that guessing tokens is limited too) and then refuses
// requests without a valid token.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := infoFrom(r.Context())
		p, err := s.auth.authenticate(s.tokenOf(r, ri.route))
		if err == nil {
			ri.caller, ri.subject = p, p.subject
		}
		if lerr := s.limiter.limit(w, r, limitKey(r, p)); lerr != nil {
			s.writeProblem(w, r, lerr)
			return
		}
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenOf finds the bearer token: the Authorization header, or on the
// subscribe route (browsers' EventSource cannot send headers) the
// access_token query parameter. A malformed header yields a value the
// authenticator refuses rather than falling back on the query.
func (s *server) tokenOf(r *http.Request, route string) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := bearerToken(h); ok {
			return tok
		}
		return "malformed"
	}
	if route == "/v1/subscribe" {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// guard checks what the token allows: the route's scope, then, on routes
// with a {queue}, the decoded name against the name rule (400) and the
// token's queue patterns (403).
func (s *server) guard(scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := infoFrom(r.Context()).caller
		if p == nil || !p.has(scope) {
			s.writeProblem(w, r, missingScope(scope))
			return
		}
		if raw, ok := mux.Vars(r)["queue"]; ok {
			name, err := pathParam(raw, "queue")
			if err == nil {
				err = checkQueueName("queue", name)
			}
			if err != nil {
				s.writeProblem(w, r, err)
				return
			}
			if !p.allows(name) {
				s.writeProblem(w, r, forbiddenQueue("queue", name))
				return
			}
			// Kept in the request's info, not in a context of its own: a
			// context value costs a copy of the whole *http.Request.
			infoFrom(r.Context()).queue = name
		}
		next.ServeHTTP(w, r)
	})
}

// queueOf is the decoded, checked and allowed {queue} of the route.
func queueOf(r *http.Request) string {
	return infoFrom(r.Context()).queue
}

// callerOf is the verified caller; guard has made sure there is one.
func callerOf(r *http.Request) *principal { return infoFrom(r.Context()).caller }

// asCaller puts who is calling into the context of a command, so that it
// becomes the metadata of the events it appends.
func (s *server) asCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := infoFrom(r.Context())
		corr := r.Header.Get("X-Correlation-Id")
		if !validRequestID(corr) {
			corr = ri.id
		}
		ctx := commands.WithCaller(r.Context(), commands.Caller{Subject: ri.subject, RequestID: ri.id, CorrelationID: corr})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// readAfter gives queries read-your-writes: with X-Ledgerq-Min-Position
// (or ?min_position=) it first waits for the read side to apply that
// position. Every answer then carries the position the read side had
// applied before the query ran, so the answer reflects at least it.
func (s *server) readAfter(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.Header.Get("X-Ledgerq-Min-Position")
		field := "X-Ledgerq-Min-Position"
		if raw == "" {
			raw, field = r.URL.Query().Get("min_position"), "min_position"
		}
		if raw != "" {
			pos, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
			if err != nil || pos < 0 {
				s.writeProblem(w, r, invalid(field, "must be a non-negative integer"))
				return
			}
			if pos > 0 {
				if err := s.deps.Queries.WaitFor(r.Context(), pos, s.deps.WaitTimeout); err != nil {
					s.writeProblem(w, r, err)
					return
				}
			}
		}
		setPosition(w, s.deps.Queries.Position())
		next.ServeHTTP(w, r)
	})
}
