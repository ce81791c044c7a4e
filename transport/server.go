package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/queries"
)

// Roles a node can play.
const (
	// RoleAll serves commands, queries and subscriptions.
	RoleAll = "all"
	// RoleQuery serves queries and subscriptions only: no command route is
	// registered, so a POST there answers 405.
	RoleQuery = "query"
)

// Defaults of Deps.
const (
	DefaultWaitTimeout       = 5 * time.Second
	DefaultMaxBodyBytes      = 2 << 20  // one publish: 1 MiB body as base64 (1.34 MiB) plus headers and envelope
	DefaultMaxBatchBodyBytes = 16 << 20 // a batch of up to 100 messages
	DefaultSmallBodyBytes    = 64 << 10 // every other JSON body (queue attributes, receipts …)
	DefaultBodyReadTimeout   = 30 * time.Second
	DefaultHeartbeat         = 15 * time.Second
	DefaultStreamWriteTime   = 10 * time.Second
	DefaultMaxStreams        = 16
)

// Deps is everything the HTTP edge needs. Zero values take the defaults
// documented on each field.
type Deps struct {
	// Commands is the write side; required unless Role is RoleQuery.
	Commands Commands
	// Queries is the read side; required.
	Queries Queries
	// Audit reads the event log. Nil on a node without the log: the audit
	// routes are then not registered.
	Audit Audit
	// Hub fans projection updates out to GET /v1/subscribe. Nil: the route
	// is not registered.
	Hub *queries.Hub
	// Auth configures JWT verification; a key is required.
	Auth AuthConfig
	// RateLimit configures per-subject request limits (zero: off).
	RateLimit RateLimitConfig
	// Logger receives the access log and the errors behind 5xx answers.
	// Default: logrus.StandardLogger().
	Logger *logrus.Logger
	// Metrics are served on /metrics. Default: a private registry.
	Metrics *Metrics
	// Ready runs the readiness checks of /readyz. Nil: always ready.
	Ready func(ctx context.Context) ReadyReport
	// Role is RoleAll (default) or RoleQuery.
	Role string
	// WaitTimeout bounds a read-your-writes wait (X-Ledgerq-Min-Position).
	// Default DefaultWaitTimeout.
	WaitTimeout time.Duration
	// MaxBodyBytes bounds the body of a single publish.
	// Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxBatchBodyBytes bounds the body of a batch publish.
	// Default DefaultMaxBatchBodyBytes.
	MaxBatchBodyBytes int64
	// BodyReadTimeout bounds the time to receive a request body.
	// Default DefaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// SSE configures GET /v1/subscribe.
	SSE SSEConfig
	// Web serves "/", "/docs" and "/assets/…" (the docs page and the
	// dashboard). Nil: those routes are not registered.
	Web http.Handler
	// OpenAPI is the OpenAPI 3.1 document served on /openapi.json. Nil: the
	// route is not registered.
	OpenAPI []byte
	// Done, when closed, ends long polls and SSE streams so that
	// http.Server.Shutdown does not wait for them, and stops the rate
	// limiter's sweeper. Nil: they end only with their clients.
	Done <-chan struct{}
}

// SSEConfig configures server-sent event streams.
type SSEConfig struct {
	// Heartbeat is the interval of the keep-alive comment.
	// Default DefaultHeartbeat.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a stream; a client that does not
	// read for that long is disconnected (a write gets between half of it
	// and all of it). Default DefaultStreamWriteTime.
	WriteTimeout time.Duration
	// MaxStreamsPerSubject caps the streams one token subject may hold
	// open; one more answers 429. Default DefaultMaxStreams.
	MaxStreamsPerSubject int
}

func (d *Deps) setDefaults() {
	if d.Role == "" {
		d.Role = RoleAll
	}
	if d.Logger == nil {
		d.Logger = logrus.StandardLogger()
	}
	if d.WaitTimeout <= 0 {
		d.WaitTimeout = DefaultWaitTimeout
	}
	if d.MaxBodyBytes <= 0 {
		d.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if d.MaxBatchBodyBytes <= 0 {
		d.MaxBatchBodyBytes = DefaultMaxBatchBodyBytes
	}
	if d.BodyReadTimeout <= 0 {
		d.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if d.SSE.Heartbeat <= 0 {
		d.SSE.Heartbeat = DefaultHeartbeat
	}
	if d.SSE.WriteTimeout <= 0 {
		d.SSE.WriteTimeout = DefaultStreamWriteTime
	}
	if d.SSE.MaxStreamsPerSubject <= 0 {
		d.SSE.MaxStreamsPerSubject = DefaultMaxStreams
	}
}

// Validate reports every problem of the dependencies at once.
func (d *Deps) Validate() error {
	var errs []error
	switch d.Role {
	case "", RoleAll:
		if d.Commands == nil {
			errs = append(errs, errors.New("Commands is required when the role is all"))
		}
	case RoleQuery:
	default:
		errs = append(errs, fmt.Errorf("role %q: want %q or %q", d.Role, RoleAll, RoleQuery))
	}
	if d.Queries == nil {
		errs = append(errs, errors.New("Queries is required"))
	}
	if err := d.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := d.RateLimit.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	return nil
}

// server holds the dependencies and the shared machinery of the handlers.
type server struct {
	deps      Deps
	auth      *authenticator
	limiter   *rateLimiter
	streams   *streamCounter
	metrics   *Metrics
	log       *logrus.Logger
	routeList []Route
	probe     *mux.Router
	allowed   map[string][]string // path template → methods
	router    *mux.Router
	// stopped is cancelled when deps.Done closes (never without one), so
	// that an SSE stream can have its subscription ended by context.AfterFunc
	// instead of waiting on Done itself.
	stopped context.Context
}

// NewServer builds the whole HTTP surface of ledgerq over deps.
func NewServer(deps Deps) (http.Handler, error) {
	if err := deps.Validate(); err != nil {
		return nil, err
	}
	deps.setDefaults()
	s := &server{deps: deps, log: deps.Logger, metrics: deps.Metrics, streams: newStreamCounter(deps.SSE.MaxStreamsPerSubject)}
	if s.metrics == nil {
		m, err := NewMetrics(prometheus.NewRegistry())
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	auth, err := newAuthenticator(deps.Auth)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	lim, err := newRateLimiter(deps.RateLimit, deps.Done)
	if err != nil {
		return nil, err
	}
	s.limiter = lim
	s.stopped = context.Background()
	if deps.Done != nil {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-deps.Done; cancel() }()
		s.stopped = ctx
	}
	s.router = s.buildRouter()
	// The outer layers see every request, matched or not: the request id
	// first so that everything after can log it, then the access log and
	// metrics, then recovery so that a panic still gets logged as a 500.
	return s.withRequestID(s.withAccessLog(s.withRecover(s.router))), nil
}
