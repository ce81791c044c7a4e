package limits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oklog/ulid/v2"
)

// maxRequestBytes bounds a publish body the way ledgerq's largest allowed
// message (1 MiB plus JSON overhead) does.
const maxRequestBytes = 2 << 20

// publishRequest is the single-publish body of API.md.
type publishRequest struct {
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding,omitempty"`
	ContentType  string            `json:"content_type,omitempty"`
	Headers      map[string]string `json:"headers,omitempty"`
	DelayMS      *int64            `json:"delay_ms,omitempty"`
	DedupID      string            `json:"dedup_id,omitempty"`
}

type publishResponse struct {
	ID       string `json:"id"`
	Queue    string `json:"queue"`
	Position int64  `json:"position"`
}

// httpLimit is the ceiling for "HTTP + JSON + JWT": the request work every
// ledgerq publish needs before it touches the store, and nothing more.
type httpLimit struct {
	secret   []byte
	parser   *jwt.Parser
	position atomic.Int64
	fan      fanOut
	// store, when set, makes a publish durable before its answer and
	// returns the message's position (NewDurableHTTPHandler).
	store func(ctx context.Context, queue, id, body string) (int64, error)
}

// NewHTTPHandler returns the limit handler: POST /v1/queues/{queue}/messages
// verifies the bearer token exactly as ledgerq does (HS256 pinned, exp
// required, 30 s leeway, scope messages:publish or admin), decodes the
// publish JSON, and answers 201 {id, queue, position} with a fresh ULID and a
// counter, without storing anything. GET /readyz answers 200 so callers can
// wait for it like for ledgerq.
//
// For the fan-out limit it also serves GET /v1/subscribe?queues=q (scope
// queues:read or admin): a text/event-stream that gets one message.updated
// frame, shaped like ledgerq's, for every publish to q, handed over in
// memory when the publish is decoded (see fanOut). POST /v1/queues answers
// 201 and creates nothing, so that the bench's set-up runs unchanged.
func NewHTTPHandler(secret []byte) (http.Handler, error) {
	l, err := newHTTPLimit(secret)
	if err != nil {
		return nil, err
	}
	return l.mux(), nil
}

func newHTTPLimit(secret []byte) (*httpLimit, error) {
	if len(secret) == 0 {
		return nil, errors.New("limits: empty JWT secret")
	}
	return &httpLimit{
		secret: secret,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(30*time.Second),
		),
	}, nil
}

func (l *httpLimit) mux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/queues/{queue}/messages", l.publish)
	mux.HandleFunc("POST /v1/queues", l.createQueue)
	mux.HandleFunc("GET /v1/subscribe", l.subscribe)
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /healthz", ok)
	return mux
}

func (l *httpLimit) publish(w http.ResponseWriter, r *http.Request) {
	if !l.allowed(w, r, "messages:publish") {
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		problem(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json")
		return
	}
	var req publishRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		problem(w, http.StatusBadRequest, "invalid_argument", "the body is not a valid publish request")
		return
	}
	id, queue := newID(), r.PathValue("queue")
	var pos int64
	if l.store != nil {
		if pos, err = l.store(r.Context(), queue, id, req.Body); err != nil {
			problem(w, http.StatusServiceUnavailable, "unavailable", "the publish was not stored")
			return
		}
	} else {
		pos = l.position.Add(1)
	}
	l.fan.publish(queue, pos, id, time.Now())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Ledgerq-Position", strconv.FormatInt(pos, 10))
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(publishResponse{ID: id, Queue: queue, Position: pos})
}

// newID is the message id both handlers answer with.
func newID() string { return ulid.Make().String() }

// createQueue answers like ledgerq's POST /v1/queues and keeps nothing.
func (l *httpLimit) createQueue(w http.ResponseWriter, r *http.Request) {
	if !l.allowed(w, r, "queues:manage") {
		return
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil || req.Name == "" {
		problem(w, http.StatusBadRequest, "invalid_argument", "the body must name the queue")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"queue": map[string]string{"name": req.Name}, "position": l.position.Add(1)})
}

// allowed authorizes r for scope want, or answers the problem and returns
// false.
func (l *httpLimit) allowed(w http.ResponseWriter, r *http.Request, want string) bool {
	err := l.authorize(r, want)
	if err == nil {
		return true
	}
	status, code := http.StatusUnauthorized, "unauthorized"
	if errors.Is(err, errForbidden) {
		status, code = http.StatusForbidden, "forbidden"
	} else {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	problem(w, status, code, err.Error())
	return false
}

var errForbidden = errors.New("the token lacks the scope")

// authorize verifies the bearer token and checks that its scope claim
// grants want (or admin).
func (l *httpLimit) authorize(r *http.Request, want string) error {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return errors.New("missing bearer token")
	}
	claims := jwt.MapClaims{}
	if _, err := l.parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return l.secret, nil }); err != nil {
		return fmt.Errorf("invalid token: %w", err)
	}
	scope, _ := claims["scope"].(string)
	for _, s := range strings.Fields(scope) {
		if s == want || s == "admin" {
			return nil
		}
	}
	return errForbidden
}

func problem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail, "code": code,
	})
}
