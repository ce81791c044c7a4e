package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/eventstore/relay"
	"github.com/ledgerq/ledgerq/projections"
	"github.com/ledgerq/ledgerq/queries"
	"github.com/ledgerq/ledgerq/transport"
	"github.com/ledgerq/ledgerq/transport/web"
)

// Files in the data directory.
const (
	eventsFile    = "events.db"
	readModelFile = "readmodel.db"
	nodeIDFile    = "node-id"
	// snapshotFile is the command state at one log position, so that a
	// start-up replays only the events after it. Deleting it is safe.
	snapshotFile = "commands.snapshot"
)

// serveConfig is the parsed configuration of `ledgerq serve`.
type serveConfig struct {
	addr            string
	data            string
	redisURL        string
	rateLimit       transport.RateLimitConfig
	secretFile      string
	publicKeyFile   string
	issuer          string
	audience        string
	role            string
	logFormat       string
	logLevel        string
	tlsCert         string
	tlsKey          string
	shutdownTimeout time.Duration
	maxLag          int64
	debugAddr       string
	snapshotEvery   int64
	commitDelay     time.Duration
}

// maxCommitDelay bounds --commit-delay: the wait is added to the latency of
// the appends it gathers.
const maxCommitDelay = 100 * time.Millisecond

func parseServe(args []string, env envFunc, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := newFlagSet("serve", stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&c.data, "data", "./data", "data directory (event log, read models, generated secret)")
	fs.StringVar(&c.redisURL, "redis", "", "Redis URL (redis://host:port/db) to carry events over Redis Streams; empty: in-process bus")
	rate := fs.String("rate-limit", "off", "requests per second per token subject (N/s, N, or off)")
	fs.StringVar(&c.secretFile, "jwt-secret-file", "", "file with the HS256 secret (default: LEDGERQ_JWT_SECRET, else DATA/jwt-secret, created on first start)")
	fs.StringVar(&c.publicKeyFile, "jwt-public-key", "", "PEM public key verifying RS256, ES256 or EdDSA tokens (instead of HS256)")
	fs.StringVar(&c.issuer, "jwt-issuer", "", "required iss claim, when set")
	fs.StringVar(&c.audience, "jwt-audience", "", "required aud claim, when set")
	fs.StringVar(&c.role, "role", "all", "all (commands, queries, relay) or query (read models from Redis only)")
	fs.StringVar(&c.logFormat, "log-format", "json", "json or text")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate: serve HTTPS (with --tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long SIGTERM waits for in-flight requests")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "serve Go's pprof profiles on this address (e.g. 127.0.0.1:6060); keep it private")
	fs.Int64Var(&c.maxLag, "max-projection-lag", 100000, "events the read side may lag behind the log before /readyz answers 503")
	fs.Int64Var(&c.snapshotEvery, "snapshot-every", 250000, "write a command-state snapshot (DATA/"+snapshotFile+") every N events, so that a start-up replays only the log after it; 0: only at a clean shutdown")
	fs.DurationVar(&c.commitDelay, "commit-delay", eventstore.DefaultCommitDelay, "the longest a group commit of fewer than 24 appends waits for more, while such waits gather appends (a steady stream then shares fsyncs); 0: never wait")
	if err := parseFlags(fs, args, env); err != nil {
		return c, err
	}
	var errs []error
	if c.commitDelay < 0 || c.commitDelay > maxCommitDelay {
		errs = append(errs, fmt.Errorf("--commit-delay %s: want 0 (off) to %s", c.commitDelay, maxCommitDelay))
	}
	rl, err := parseRate(*rate)
	if err != nil {
		errs = append(errs, err)
	}
	c.rateLimit = rl
	if c.role != transport.RoleAll && c.role != transport.RoleQuery {
		errs = append(errs, fmt.Errorf("--role %q: want all or query", c.role))
	}
	if c.role == transport.RoleQuery && c.redisURL == "" {
		errs = append(errs, errors.New("--role query reads the events from Redis: --redis is required"))
	}
	if c.logFormat != "json" && c.logFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q: want json or text", c.logFormat))
	}
	if c.snapshotEvery < 0 {
		errs = append(errs, fmt.Errorf("--snapshot-every %d: want 0 (off) or a number of events", c.snapshotEvery))
	}
	if _, err := logrus.ParseLevel(c.logLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.publicKeyFile != "" && (c.secretFile != "" || env("LEDGERQ_JWT_SECRET") != "") {
		errs = append(errs, errors.New("--jwt-public-key and an HS256 secret exclude each other: the accepted algorithm is pinned"))
	}
	return c, errors.Join(errs...)
}

// parseRate reads "N/s", "N" or "off".
func parseRate(s string) (transport.RateLimitConfig, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "" || s == "off" || s == "0" {
		return transport.RateLimitConfig{}, nil
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "/s"), 10, 64)
	if err != nil || n == 0 {
		return transport.RateLimitConfig{}, fmt.Errorf("--rate-limit %q: want N/s (e.g. 100/s) or off", s)
	}
	return transport.RateLimitConfig{PerSecond: n}, nil
}

func newLogger(format, level string, out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	if format == "text" {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	} else {
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	}
	lvl, _ := logrus.ParseLevel(level)
	log.SetLevel(lvl)
	return log
}

// node is everything `serve` runs, in start order; close stops it in
// reverse order.
type node struct {
	log          *logrus.Logger
	store        *eventstore.Store
	app          *commands.App
	snapshotPath string
	bus          *relay.Bus
	relay        *relay.Relay
	engine       *projections.Engine
	hub          *queries.Hub
	metrics      *transport.Metrics

	wg      sync.WaitGroup
	cancel  context.CancelFunc
	runErrs chan error
}

// failingWindow is how long /readyz reports the event store as failing
// after a commit failed with none successful since. It is bounded so that a
// load balancer that stops sending writes lets the node recover: afterwards
// the next write tells whether the disk is writable again.
const failingWindow = 30 * time.Second

func runServe(ctx context.Context, args []string, env envFunc, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, env, stderr)
	if err != nil {
		if errors.Is(err, errUsage) {
			return err
		}
		return fmt.Errorf("serve: %w", err)
	}
	log := newLogger(cfg.logFormat, cfg.logLevel, stderr)
	procs, _ := raiseProcs(env)
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	gogc := tuneGC(gcCtx, env)
	slack, slackWarning, err := timerSlack(env)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if slackWarning != "" {
		log.Warn(slackWarning)
	}
	if err := os.MkdirAll(cfg.data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	auth, err := authConfig(cfg, env)
	if err != nil {
		return err
	}
	n, err := startNode(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.close()

	done := make(chan struct{})
	handler, err := transport.NewServer(transport.Deps{
		Commands:  commandsOrNil(n.app),
		Queries:   queries.New(n.engine, n.engine),
		Audit:     n.audit(),
		Hub:       n.hub,
		Auth:      auth,
		RateLimit: cfg.rateLimit,
		Logger:    log,
		Metrics:   n.metrics,
		Ready:     n.ready(cfg.maxLag),
		Role:      cfg.role,
		Web:       web.Handler(),
		OpenAPI:   web.OpenAPI(),
		Done:      done,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: handler,
		// Slow clients cannot hold a connection by trickling headers; bodies
		// get their own bound, and no WriteTimeout, which would cut SSE
		// streams and long polls (they bound their own writes).
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// net/http's own complaints (TLS handshakes, malformed requests)
		// go through logrus too, as structured warnings.
		ErrorLog: stdlog.New(log.WithField("component", "http").WriterLevel(logrus.WarnLevel), "", 0),
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if cfg.debugAddr != "" {
		go serveDebug(cfg.debugAddr, log)
	}
	log.WithFields(logrus.Fields{"addr": ln.Addr().String(), "url": scheme + "://" + ln.Addr().String(), "role": cfg.role,
		"data": cfg.data, "bus": busName(cfg.redisURL), "head": n.head(), "gomaxprocs": procs, "gogc": gogc,
		"timer_slack": slack, "commit_delay": cfg.commitDelay.String()}).Info("listening")

	select {
	case <-ctx.Done():
		log.Info("shutting down: draining requests")
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	case err := <-n.runErrs:
		log.WithError(err).Error("a component stopped; shutting down")
		close(done)
		sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return err
	}
	// Long polls and SSE streams end at once; other requests finish, and
	// only then (n.close) do the command side, relay and projections stop.
	close(done)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.WithError(err).Warn("shutdown: requests still running were cut")
	}
	log.Info("stopped")
	return nil
}

func busName(redisURL string) string {
	if redisURL == "" {
		return "in-process"
	}
	return "redis"
}

// commandsOrNil keeps a nil *App from becoming a non-nil interface.
func commandsOrNil(app *commands.App) transport.Commands {
	if app == nil {
		return nil
	}
	return app
}

// startNode opens the log (role all), the bus, the relay and the
// projections, and starts their goroutines.
func startNode(ctx context.Context, cfg serveConfig, log *logrus.Logger) (*node, error) {
	n := &node{log: log, runErrs: make(chan error, 4)}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := transport.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	n.metrics = m
	wmLog := logrusAdapter{log.WithField("component", "watermill")}

	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel

	var source projections.Source
	var upcast func(eventstore.Event) (eventstore.Event, error)
	readModel := filepath.Join(cfg.data, readModelFile)
	if cfg.role == transport.RoleAll {
		delay := cfg.commitDelay
		if delay == 0 {
			delay = -1 // the store's "never wait"; its zero means the default
		}
		n.store, err = eventstore.Open(filepath.Join(cfg.data, eventsFile), eventstore.Options{Logger: log.WithField("component", "eventstore"),
			Upcasters: eventstore.UpcastersOf(domain.Upcasters()), CommitDelay: delay,
			ObserveCommit: func(_, _ int, took time.Duration) { m.AppendCommitSeconds.Observe(took.Seconds()) }})
		if err != nil {
			return nil, fmt.Errorf("event store: %w", err)
		}
		start := time.Now()
		n.snapshotPath = filepath.Join(cfg.data, snapshotFile)
		n.app, err = commands.New(n.store, commands.Options{Logger: log.WithField("component", "commands"),
			SnapshotPath: n.snapshotPath, SnapshotEvery: cfg.snapshotEvery})
		if err != nil {
			return nil, fmt.Errorf("command state: %w", err)
		}
		took := time.Since(start)
		st := n.app.Startup()
		if st.SnapshotUsed {
			log.WithFields(logrus.Fields{"path": n.snapshotPath, "position": st.SnapshotPosition, "queues": st.SnapshotQueues,
				"took_ms": st.SnapshotLoad.Milliseconds()}).Info("command state: snapshot used")
		} else {
			log.WithFields(logrus.Fields{"path": n.snapshotPath, "reason": st.SnapshotProblem}).Info("command state: snapshot not used; replaying the whole log")
		}
		log.WithFields(logrus.Fields{"events": n.store.Head(), "replayed": st.Replayed, "from_snapshot": st.SnapshotUsed,
			"took_ms": took.Milliseconds()}).Info("command state rebuilt from the log")
		source = n.store
		upcast = n.store.Upcast
	}
	n.bus, err = relay.NewBus(runCtx, relay.BusConfig{RedisURL: cfg.redisURL, Logger: wmLog})
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	group := "ledgerq-projections"
	if cfg.role == transport.RoleQuery {
		id, err := nodeID(cfg.data)
		if err != nil {
			return nil, err
		}
		// Each query node builds its own read models: its own consumer
		// group, so every node sees every pack.
		group = "ledgerq-query-" + id
		source = projections.RangeSource{Read: n.bus.ReadRange}
	}
	sub, err := n.bus.Subscriber(group)
	if err != nil {
		return nil, fmt.Errorf("bus subscriber: %w", err)
	}
	n.hub = queries.NewHub(queries.HubConfig{Render: transport.RenderSSE})
	n.engine, err = projections.New(projections.Config{
		Path: readModel, Source: source, Subscriber: sub, Topic: relay.Topic,
		DecodePack: relay.DecodePack, Upcast: upcast, Hub: n.hub, Logger: wmLog,
		ObserveTransaction: func(_ int, took time.Duration) { m.ProjectionTransactionSeconds.Observe(took.Seconds()) },
		ObserveDelay:       func(d time.Duration) { m.ReadDelaySeconds.Observe(max(d, 0).Seconds()) },
	})
	if err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	if n.store != nil {
		n.relay, err = relay.New(n.store, n.bus, relay.Config{Logger: wmLog,
			OnError: func(err error) { log.WithError(err).Warn("relay: publish failed; retrying") }})
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		n.goRun("relay", func() error { return n.relay.Run(runCtx) })
	}
	n.goRun("projections", func() error { return n.engine.Run(runCtx) })
	n.goRun("metrics", func() error { n.updateMetrics(runCtx); return nil })
	n.metrics.CollectQueueDepths(n.queueDepths)
	ok = true
	return n, nil
}

// goRun runs a component; an error it returns before shutdown ends serve.
func (n *node) goRun(name string, fn func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) {
			select {
			case n.runErrs <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
}

func (n *node) head() int64 {
	if n.store != nil {
		return n.store.Head()
	}
	return n.engine.AppliedPosition()
}

func (n *node) audit() transport.Audit {
	if n.store == nil {
		return nil
	}
	store := n.store
	return queries.NewAudit(store, func(ctx context.Context, upTo int64, at time.Time) (queries.StateView, error) {
		return projections.StateAt(ctx, store, upTo, at)
	})
}

// ready checks the event store, the bus and the read side's lag.
func (n *node) ready(maxLag int64) func(context.Context) transport.ReadyReport {
	return func(ctx context.Context) transport.ReadyReport {
		var r transport.ReadyReport
		if n.store != nil {
			c := transport.Check{Name: "event_store", OK: true}
			now := time.Now()
			st := n.store.Stats()
			if _, err := n.store.PositionAt(ctx, now); err != nil {
				c.OK, c.Detail = false, "event store unreadable"
			} else if st.SyncFailed {
				c.OK, c.Detail = false, "an fdatasync of the log failed: appends are refused until the server restarts"
			} else if since := st.FailingSince; !since.IsZero() && now.Sub(since) < failingWindow {
				c.OK, c.Detail = false, "the last commit failed (disk full or read-only?)"
			}
			r.Checks = append(r.Checks, c)
		}
		bus := transport.Check{Name: "bus", OK: true, Detail: busName(boolStr(n.bus.IsRedis()))}
		if err := n.bus.Healthy(ctx); err != nil {
			bus.OK, bus.Detail = false, "redis unreachable"
		}
		r.Checks = append(r.Checks, bus)
		lag := n.head() - n.engine.AppliedPosition()
		pc := transport.Check{Name: "projections", OK: lag <= maxLag && n.engine.LastError() == nil,
			Detail: fmt.Sprintf("lag %d events", lag)}
		if err := n.engine.LastError(); err != nil {
			pc.Detail += "; last error: " + err.Error()
		}
		r.Checks = append(r.Checks, pc)
		return r
	}
}

func boolStr(redis bool) string {
	if redis {
		return "redis"
	}
	return ""
}

// updateMetrics copies the components' counters into Prometheus once a second.
func (n *node) updateMetrics(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var events, commits, syncs, waits int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.store != nil {
			st := n.store.Stats()
			de, dc, dw := st.Events-events, st.Commits-commits, st.CommitWaits-waits
			if de > 0 {
				n.metrics.EventsAppended.Add(float64(de))
				if dc > 0 {
					n.metrics.AppendBatchSize.Observe(float64(de) / float64(dc))
				}
			}
			if dc > 0 {
				n.metrics.AppendCommits.Add(float64(dc))
			}
			if dw > 0 {
				n.metrics.AppendCommitWaits.Add(float64(dw))
			}
			if ds := st.Syncs - syncs; ds > 0 {
				n.metrics.AppendSyncs.Add(float64(ds))
			}
			events, commits, syncs, waits = st.Events, st.Commits, st.Syncs, st.CommitWaits
		}
		if n.relay != nil {
			n.metrics.RelayLag.Set(float64(n.relay.Lag()))
		}
		head := n.head()
		for name, cp := range n.engine.Checkpoints() {
			n.metrics.ProjectionLag.WithLabelValues(name).Set(float64(max(0, head-cp)))
		}
	}
}

// maxDepthQueues bounds the queues exported as depth gauges: each is three
// series, and a scrape must stay small however many queues there are.
const maxDepthQueues = 1000

// queueDepths reads ready, delayed and in-flight counts per queue from the
// read model, for a /metrics scrape; a deleted queue's series disappear.
func (n *node) queueDepths(ctx context.Context) ([]transport.QueueDepth, error) {
	qs, err := n.engine.Queues(ctx, queries.QueueFilter{Limit: maxDepthQueues, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	out := make([]transport.QueueDepth, len(qs))
	for i, q := range qs {
		out[i] = transport.QueueDepth{Queue: q.Name, Ready: q.Stats.Ready, Delayed: q.Stats.Delayed, InFlight: q.Stats.InFlight}
	}
	return out, nil
}

func (n *node) close() {
	if n.cancel != nil {
		n.cancel()
	}
	if n.app != nil {
		n.app.Close()
	}
	n.wg.Wait()
	if n.relay != nil {
		n.relay.Close()
	}
	if n.engine != nil {
		n.engine.Close()
	}
	if n.hub != nil {
		n.hub.Close()
	}
	if n.bus != nil {
		n.bus.Close()
	}
	if n.app != nil {
		// The command side is stopped and nothing appends any more: the
		// next start-up then replays nothing.
		start := time.Now()
		if pos, err := n.app.WriteSnapshot(context.Background(), n.snapshotPath); err != nil {
			n.log.WithError(err).Warn("final command-state snapshot failed; the next start-up replays more of the log")
		} else {
			n.log.WithFields(logrus.Fields{"position": pos, "took_ms": time.Since(start).Milliseconds()}).Info("final command-state snapshot written")
		}
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			n.log.WithError(err).Warn("closing the event store")
		}
	}
}

// authConfig builds JWT verification from the flags: a public key, or the
// HS256 secret (created in the data directory on first start).
func authConfig(cfg serveConfig, env envFunc) (transport.AuthConfig, error) {
	a := transport.AuthConfig{Issuer: cfg.issuer, Audience: cfg.audience}
	if cfg.publicKeyFile != "" {
		pem, err := os.ReadFile(cfg.publicKeyFile)
		if err != nil {
			return a, fmt.Errorf("--jwt-public-key: %w", err)
		}
		if a.PublicKey, err = transport.ParsePublicKeyPEM(pem); err != nil {
			return a, fmt.Errorf("--jwt-public-key: %w", err)
		}
		return a, nil
	}
	secret, _, err := resolveSecret(env, cfg.secretFile, cfg.data, true)
	if err != nil {
		return a, err
	}
	a.HS256Secret = secret
	return a, nil
}

// nodeID is a stable id for this data directory (a query node's consumer
// group), created on first start.
func nodeID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, nodeIDFile)
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	raw := make([]byte, 8)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// logrusAdapter lets watermill log through logrus. Watermill's info lines
// (handlers starting, subscriptions) are routine: they go out at debug.
//
// Watermill logs at trace and debug for every message it moves (several
// lines per relay pack), and WithFields copies the fields whether or not
// the level is on, so each method first asks whether its level is enabled.
type logrusAdapter struct{ e *logrus.Entry }

func (l logrusAdapter) log(level logrus.Level, msg string, err error, f watermill.LogFields) {
	if !l.e.Logger.IsLevelEnabled(level) {
		return
	}
	e := l.e.WithFields(logrus.Fields(f))
	if err != nil {
		e = e.WithError(err)
	}
	e.Log(level, msg)
}

func (l logrusAdapter) Error(msg string, err error, f watermill.LogFields) {
	l.log(logrus.WarnLevel, msg, err, f)
}
func (l logrusAdapter) Info(msg string, f watermill.LogFields) {
	l.log(logrus.DebugLevel, msg, nil, f)
}
func (l logrusAdapter) Debug(msg string, f watermill.LogFields) {
	l.log(logrus.DebugLevel, msg, nil, f)
}
func (l logrusAdapter) Trace(msg string, f watermill.LogFields) {
	l.log(logrus.TraceLevel, msg, nil, f)
}
func (l logrusAdapter) With(f watermill.LogFields) watermill.LoggerAdapter {
	return logrusAdapter{l.e.WithFields(logrus.Fields(f))}
}

// Sampling of the blocking and mutex profiles while --debug-addr is set:
// one blocking event per 10 µs spent blocked, one contended mutex in 100.
// Both are off without it (they cost a little on every channel operation
// and lock).
const (
	debugBlockRate     = int(10 * time.Microsecond)
	debugMutexFraction = 100
)

// serveDebug serves pprof on its own listener, never on the public one. It
// turns on the sampling that the block and mutex profiles need, so that all
// of pprof's profiles (CPU, heap and allocations, goroutines, blocking,
// mutexes, traces) can be taken from a running server.
func serveDebug(addr string, log *logrus.Logger) {
	runtime.SetBlockProfileRate(debugBlockRate)
	runtime.SetMutexProfileFraction(debugMutexFraction)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// A collection now, with the freed memory handed back to the OS: for
	// measuring what the live state costs (ledgerq bench's memory row), or
	// for giving memory back after a spike without a restart.
	mux.HandleFunc("POST /debug/free-memory", func(w http.ResponseWriter, _ *http.Request) {
		debug.FreeOSMemory()
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.WithField("addr", addr).Info("debug: pprof listening")
	if err := srv.ListenAndServe(); err != nil {
		log.WithError(err).Warn("debug listener stopped")
	}
}
