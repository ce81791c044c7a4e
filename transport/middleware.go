package transport

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/oklog/ulid/v2"
	"github.com/sirupsen/logrus"
)

// requestInfo travels with a request; inner layers fill it in (route,
// caller) so that the outer access log can report them.
type requestInfo struct {
	id      string
	route   string
	subject string
	// caller is the verified token's principal; authErr why there is none.
	caller  *principal
	authErr error
	// queue is the route's {queue}, decoded, checked and allowed (guard).
	queue string
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

func requestIDFrom(ctx context.Context) string { return infoFrom(ctx).id }

const maxRequestIDLen = 128

// validRequestID accepts the ids clients and proxies commonly send (UUIDs,
// ULIDs, trace ids) and nothing that could forge a log line or a header.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' && c != ':' && c != '=' && c != '+' {
			return false
		}
	}
	return true
}

// withRequestID echoes a well-formed X-Request-Id or makes a ULID.
func (s *server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = ulid.Make().String()
		}
		w.Header().Set("X-Request-Id", id)
		ri := &requestInfo{id: id}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), infoKey{}, ri)))
	})
}

// statusWriter remembers the status and counts the bytes of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (sw *statusWriter) WriteHeader(code int) {
	if sw.status == 0 {
		sw.status = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	n, err := sw.ResponseWriter.Write(b)
	sw.bytes += int64(n)
	return n, err
}

// Flush keeps streaming answers (SSE, NDJSON) streaming through the wrapper.
func (sw *statusWriter) Flush() {
	if f, ok := sw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (write
// deadlines).
func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

// withAccessLog writes one log line and the request metrics per request.
// It logs the route template, never the URL: query strings may carry an
// access token.
func (s *server) withAccessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		took := time.Since(start)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		ri := infoFrom(r.Context())
		route := ri.route
		if route == "" {
			// Unmatched paths are unbounded; one label keeps the series few.
			route = "unmatched"
		}
		s.metrics.observeRequest(route, r.Method, status, took)
		level := logrus.InfoLevel
		if status >= 500 && status != statusClientClosed {
			level = logrus.WarnLevel
		}
		if !s.log.IsLevelEnabled(level) {
			return // no fields map and entry to build for a line nobody writes
		}
		s.log.WithFields(logrus.Fields{
			"request_id":  ri.id,
			"subject":     ri.subject,
			"method":      r.Method,
			"route":       route,
			"status":      status,
			"duration_ms": float64(took.Microseconds()) / 1000,
			"bytes":       sw.bytes,
		}).Log(level, "request")
	})
}

// withRecover turns a panic into a logged 500 problem; the client never
// sees a dropped connection because of a bug. http.ErrAbortHandler is the
// deliberate way to abort a streaming answer and passes through.
func (s *server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler {
				panic(rec)
			}
			s.log.WithFields(logrus.Fields{
				"request_id": requestIDFrom(r.Context()),
				"panic":      fmt.Sprint(rec),
				"stack":      string(debug.Stack()),
			}).Error("panic serving request")
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				// The answer has begun; all that is left is to cut it short.
				panic(http.ErrAbortHandler)
			}
			s.writeProblem(w, r, fmt.Errorf("panic: %v", rec))
		}()
		next.ServeHTTP(w, r)
	})
}

// recordRoute runs once mux has matched: it notes the route template for
// the access log and metrics.
func recordRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if route := mux.CurrentRoute(r); route != nil {
			if tpl, err := route.GetPathTemplate(); err == nil {
				infoFrom(r.Context()).route = tpl
			}
		}
		next.ServeHTTP(w, r)
	})
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return secs
}

// formatUint is strconv.FormatUint in base 10.
func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }
