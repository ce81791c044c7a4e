package transport

import (
	"context"
	"net/http"
	"time"
)

// readyTimeout bounds the readiness checks: a probe that hangs is a failed
// probe.
const readyTimeout = 2 * time.Second

func (s *server) handleHealthz() http.HandlerFunc {
	type answer struct {
		Status string `json:"status"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		s.respond(w, r, http.StatusOK, answer{Status: "ok"})
	}
}

func (s *server) handleReadyz() http.HandlerFunc {
	type answer struct {
		Ready  bool    `json:"ready"`
		Checks []Check `json:"checks"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		report := ReadyReport{}
		if s.deps.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			report = s.deps.Ready(ctx)
			cancel()
		}
		out := answer{Ready: report.Ready(), Checks: report.Checks}
		if out.Checks == nil {
			out.Checks = []Check{}
		}
		status := http.StatusOK
		if !out.Ready {
			status = http.StatusServiceUnavailable
		}
		s.respond(w, r, status, out)
	}
}

func (s *server) handleMetrics() http.Handler {
	if s.metrics == nil {
		// Only Routes builds a server without metrics; it serves nothing.
		return http.NotFoundHandler()
	}
	return s.metrics.Handler()
}

func (s *server) handleOpenAPI() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(s.deps.OpenAPI)
	}
}

func (s *server) handleWeb() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.deps.Web.ServeHTTP(w, r)
	}
}
