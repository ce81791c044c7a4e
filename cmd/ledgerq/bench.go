package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerq/ledgerq/tests/bench/limits"
)

// benchConfig is every knob of `ledgerq bench`.
type benchConfig struct {
	url, token      string
	serverPID       int
	compare, quick  bool
	scenarios       []string
	duration        time.Duration
	warmup          time.Duration
	conns           int
	queues          int
	rate            float64
	maxInflight     int
	runs            int
	readsideDur     time.Duration
	sseSubscribers  int
	sseQueues       int
	startupEvents   int64
	memoryMessages  int64
	redisURL        string
	rabbitURL       string
	natsURL         string
	workDir         string
	keep            bool
	out, jsonOut    string
	serverLogLevel  string
	receivePrefill  int64
	commandLine     string
	progress        io.Writer
	receiveBatch    int
	publishBatch    int
	bodyBytes       int
	sseGrace        time.Duration
	startupDeadline time.Duration
}

// benchScenarios are the phases a plain (non --compare) run may select.
var benchScenarios = []string{"publish", "batch", "receive", "mixed", "fixed", "sse", "readside"}

const benchUsage = `Usage: ledgerq bench [flags]

Drives a ledgerq server over HTTP with JWTs and prints throughput and
p50/p99/p99.9 latency. Without --url it starts its own server (this binary's
'serve', on a free port, with a temporary data directory).

  ledgerq bench                                  publish, batch, receive, fixed
  ledgerq bench --scenarios publish,sse --url http://127.0.0.1:8080 --token T
  ledgerq bench --compare --out docs/benchmarks.md   the side-by-side table
  ledgerq bench --compare --quick                    a smoke test of all of it

--compare measures the limits (tests/bench/limits) and the peers (RabbitMQ,
NATS JetStream; skipped when not reachable) in the same run, alternating
anchor and ledgerq runs, and writes one table of goals.

Flags (each also as LEDGERQ_<FLAG> in the environment):
`

func runBench(ctx context.Context, args []string, env envFunc, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "limit-http" {
		return runLimitHTTP(ctx, args[1:], env, stderr)
	}
	cfg, err := parseBenchFlags(args, env, stderr)
	if err != nil {
		return err
	}
	cfg.progress = stderr
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: own executable: %w", err)
	}
	dir := cfg.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ledgerq-bench-"); err != nil {
			return fmt.Errorf("bench: work directory: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bench: work directory: %w", err)
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintf(stderr, "bench: keeping %s\n", dir)
	}
	s := &benchSession{cfg: cfg, exe: exe, dir: dir, started: time.Now()}
	defer s.close()
	if err := s.open(ctx, env); err != nil {
		return err
	}
	if cfg.compare {
		rep, err := s.compare(ctx)
		if err != nil {
			return err
		}
		return s.writeReport(rep, stdout)
	}
	return s.scenarios(ctx, stdout)
}

func parseBenchFlags(args []string, env envFunc, stderr io.Writer) (benchConfig, error) {
	fs := newFlagSet("bench", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var cfg benchConfig
	fs.StringVar(&cfg.url, "url", "", "base URL of a running ledgerq (default: start one)")
	fs.StringVar(&cfg.token, "token", "", "bearer token for --url (default: minted from LEDGERQ_JWT_SECRET)")
	fs.IntVar(&cfg.serverPID, "server-pid", 0, "with --url: the server's process id on this machine, to report its CPU per op too (Linux)")
	fs.BoolVar(&cfg.compare, "compare", false, "measure limits and peers too and print the table of goals")
	fs.BoolVar(&cfg.quick, "quick", false, "a smoke test: every phase short and small (flags given explicitly still win)")
	scen := fs.String("scenarios", "publish,batch,receive,fixed", "phases without --compare, comma-separated: "+strings.Join(benchScenarios, ", ")+" or all")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured time of each phase")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured time before each phase")
	fs.IntVar(&cfg.conns, "concurrency", 64, "connections (closed-loop workers), also the peers' publishers")
	fs.IntVar(&cfg.queues, "queues", 16, "queues the load is spread over (and streams of the raw SQLite limit)")
	fs.Float64Var(&cfg.rate, "rate", 0, "requests/s of the fixed-rate phases (default: 50 % of the measured single-publish rate)")
	fs.IntVar(&cfg.maxInflight, "max-inflight", 1024, "most outstanding requests in the fixed-rate phases")
	fs.IntVar(&cfg.runs, "runs", 2, "runs of each compared phase (anchor and ledgerq alternate)")
	fs.DurationVar(&cfg.readsideDur, "readside-duration", 30*time.Second, "time of the read-side phase")
	fs.IntVar(&cfg.sseSubscribers, "sse-subscribers", 1000, "SSE subscribers")
	fs.IntVar(&cfg.sseQueues, "sse-queues", 250, "queues the SSE subscribers are spread over (each message reaches subscribers/queues of them)")
	fs.Int64Var(&cfg.startupEvents, "startup-events", 1_000_000, "events in the log before the start-up and replay measurements")
	fs.Int64Var(&cfg.memoryMessages, "memory-messages", 200_000, "ready messages for the memory measurement (RSS read at none, half and all)")
	fs.Int64Var(&cfg.receivePrefill, "receive-prefill", 0, "messages published before each receive run (default: 1.5 × what the publish rate would fill)")
	fs.StringVar(&cfg.redisURL, "redis", "", "Redis for the read-side phase and the Redis limit (default: a private redis-server)")
	fs.StringVar(&cfg.rabbitURL, "rabbitmq", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ peer (skipped when not reachable)")
	fs.StringVar(&cfg.natsURL, "nats", "nats://127.0.0.1:4222", "NATS JetStream peer (skipped when not reachable)")
	fs.StringVar(&cfg.workDir, "work-dir", "", "where data directories and limit files go (default: a temporary directory)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the work directory (data, server logs) afterwards")
	fs.StringVar(&cfg.out, "out", "", "write the Markdown report here (with --compare)")
	fs.StringVar(&cfg.jsonOut, "json", "", "write every run (and the table) as JSON here")
	fs.StringVar(&cfg.serverLogLevel, "server-log-level", "warn", "--log-level of the servers the bench starts")
	if err := parseFlags(fs, args, env); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ledgerq bench: unexpected argument %q\n", fs.Arg(0))
		return cfg, errUsage
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, name := range []string{"duration", "warmup", "readside-duration", "sse-subscribers", "sse-queues", "startup-events", "memory-messages"} {
		if env(envName(name)) != "" {
			given[name] = true
		}
	}
	if cfg.quick {
		quick := map[string]func(){
			"duration":          func() { cfg.duration = time.Second },
			"warmup":            func() { cfg.warmup = 250 * time.Millisecond },
			"readside-duration": func() { cfg.readsideDur = 2 * time.Second },
			"sse-subscribers":   func() { cfg.sseSubscribers = 50 },
			"sse-queues":        func() { cfg.sseQueues = 10 },
			"startup-events":    func() { cfg.startupEvents = 20_000 },
			"memory-messages":   func() { cfg.memoryMessages = 5_000 },
		}
		for name, set := range quick {
			if !given[name] {
				set()
			}
		}
	}
	if *scen == "all" {
		cfg.scenarios = slices.Clone(benchScenarios)
	} else {
		for _, s := range strings.Split(*scen, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if !slices.Contains(benchScenarios, s) {
				return cfg, fmt.Errorf("bench: unknown scenario %q (known: %s, all)", s, strings.Join(benchScenarios, ", "))
			}
			cfg.scenarios = append(cfg.scenarios, s)
		}
	}
	var problems []string
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.readsideDur <= 0 {
		problems = append(problems, "durations must be positive")
	}
	if cfg.conns < 1 || cfg.queues < 1 || cfg.maxInflight < 1 || cfg.runs < 1 || cfg.sseSubscribers < 1 || cfg.sseQueues < 1 {
		problems = append(problems, "--concurrency, --queues, --max-inflight, --runs, --sse-subscribers and --sse-queues must be at least 1")
	}
	if cfg.rate < 0 || cfg.startupEvents < 0 || cfg.memoryMessages < 0 || cfg.receivePrefill < 0 {
		problems = append(problems, "--rate, --startup-events, --memory-messages and --receive-prefill must not be negative")
	}
	if cfg.serverPID < 0 || cfg.serverPID > 0 && cfg.url == "" {
		problems = append(problems, "--server-pid needs --url and a positive process id (a server the bench starts is measured anyway)")
	}
	if cfg.url != "" && cfg.token == "" && env("LEDGERQ_JWT_SECRET") == "" {
		problems = append(problems, "--url needs --token (or LEDGERQ_JWT_SECRET to mint one)")
	}
	if len(problems) > 0 {
		return cfg, fmt.Errorf("bench: %s", strings.Join(problems, "; "))
	}
	cfg.commandLine = "ledgerq bench " + shellJoin(args)
	cfg.receiveBatch, cfg.publishBatch, cfg.bodyBytes = 10, 100, limits.BodyBytes
	cfg.sseGrace = 3 * time.Second
	return cfg, nil
}

// shellJoin quotes args so the recorded command can be pasted into a shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ':' || r == '=' || r == ',' ||
				(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
		}) < 0 {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.TrimSpace(strings.Join(out, " "))
}

// benchSession is one `ledgerq bench` invocation: its servers, target and
// the runs so far.
type benchSession struct {
	cfg     benchConfig
	exe     string
	dir     string
	started time.Time
	secret  string
	token   string // for ledgerq
	// limitToken is signed with secret, for the limit handler.
	limitToken string
	// canMint: secret is the server's, so the bench can mint more tokens.
	canMint bool
	server  *benchChild // the server the bench started; nil with --url
	dataDir string
	lq      *benchTarget
	bodies  benchBodies
	runs    []benchRun
	cleanup []func()
}

// open starts the server (unless --url) and prepares the target.
func (s *benchSession) open(ctx context.Context, env envFunc) error {
	s.bodies = newBenchBodies(s.cfg.bodyBytes, s.cfg.publishBatch, s.cfg.receiveBatch)
	// The secret signs the limit handler's tokens, and the server's too
	// when the bench starts it or LEDGERQ_JWT_SECRET is the server's.
	s.secret = env("LEDGERQ_JWT_SECRET")
	s.canMint = s.secret != "" || s.cfg.url == ""
	if len(s.secret) < minSecretBytes {
		if s.secret != "" && s.cfg.url == "" {
			return fmt.Errorf("bench: LEDGERQ_JWT_SECRET is %d bytes; use at least %d", len(s.secret), minSecretBytes)
		}
		sec, err := benchSecret()
		if err != nil {
			return err
		}
		s.secret = sec
	}
	var err error
	if s.limitToken, err = benchToken(s.secret, 2*time.Hour); err != nil {
		return fmt.Errorf("bench: token: %w", err)
	}
	s.token = s.limitToken
	if s.cfg.url != "" {
		if s.cfg.token != "" {
			s.token = s.cfg.token
		}
		s.lq = newBenchTarget(s.cfg.url, s.token, s.cfg.maxInflight)
		if pid := s.cfg.serverPID; pid > 0 {
			// Read it once now, so that a wrong id fails here and not as
			// runs that silently lack the server's figures.
			if _, err := procCPU(pid); err != nil {
				return fmt.Errorf("bench: --server-pid %d: %w", pid, err)
			}
			s.lq.cpu = func() (time.Duration, error) { return procCPU(pid) }
		}
		return nil
	}
	s.dataDir = filepath.Join(s.dir, "data")
	s.logf("starting ledgerq serve (data %s)", s.dataDir)
	srv, took, err := startBenchServer(ctx, s.exe, s.dataDir, s.secret, filepath.Join(s.dir, "serve.log"), s.serverArgs()...)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	s.server = srv
	s.logf("ledgerq ready at %s after %s", srv.url, took.Round(time.Millisecond))
	s.lq = newBenchTarget(srv.url, s.token, s.cfg.maxInflight)
	s.lq.cpu = srv.cpu
	return nil
}

func (s *benchSession) serverArgs(extra ...string) []string {
	return append([]string{"--rate-limit", "off", "--log-level", s.cfg.serverLogLevel}, extra...)
}

func (s *benchSession) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	if s.lq != nil {
		s.lq.close()
	}
	if err := s.server.stop(); err != nil {
		s.logf("%v", err)
	}
}

func (s *benchSession) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.progress, "bench: "+format+"\n", args...)
}

// record keeps a run and prints it as one progress line.
func (s *benchSession) record(r benchRun) benchRun {
	s.runs = append(s.runs, r)
	line := fmt.Sprintf("%-16s %-18s %9s %-8s", r.Phase, r.Target, human(r.Rate), r.Unit)
	if r.LatencySamples > 0 {
		line += fmt.Sprintf(" p50 %-8s p99 %-8s p99.9 %-8s", msText(r.P50), msText(r.P99), msText(r.P999))
	}
	if r.Errors > 0 {
		line += fmt.Sprintf(" errors %d (%s)", r.Errors, r.FirstError)
	}
	if r.Note != "" {
		line += " — " + r.Note
	}
	s.logf("%s", line)
	return r
}

func (s *benchSession) phase(name, target, unit string) benchPhase {
	return benchPhase{Phase: name, Target: target, Unit: unit, Conns: s.cfg.conns, Warmup: s.cfg.warmup, Duration: s.cfg.duration}
}

func benchNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// settleQueue is a queue every mode creates; settle asks about it.
const settleQueue = "bench-pub-0"

// settle waits until ledgerq's read side has applied everything written so
// far, so that no run, of ledgerq or of an anchor, shares the CPU with a
// backlog the previous run left behind.
func (s *benchSession) settle(ctx context.Context) {
	if s.lq.maxPos.Load() == 0 {
		// Nothing written to it yet (the memory row runs on a server of
		// its own first): nothing to wait for, and its queues may not
		// exist.
		return
	}
	start := time.Now()
	if _, err := s.lq.queueReady(ctx, settleQueue, s.lq.maxPos.Load()); err != nil {
		s.logf("waiting for the read side to catch up: %v", err)
		return
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		s.logf("waited %s for the read side to catch up", d.Round(100*time.Millisecond))
	}
}

// publishRun is the closed-loop single publish against t (ledgerq or the
// limit handler), worker w on queue w mod len(queues).
func (s *benchSession) publishRun(ctx context.Context, t *benchTarget, target string, queues []string) benchRun {
	s.settle(ctx)
	bufs := newBenchBufs(s.cfg.conns)
	unit := "msg/s"
	if t != s.lq {
		unit = "req/s" // the limit stores nothing: requests, not messages
	}
	ph := s.phase("publish", target, unit)
	ph.CPU = t.cpuProbe()
	return s.record(benchClosedLoop(ctx, ph, func(ctx context.Context, w int) (int, error) {
		_, err := t.publish(ctx, queues[w%len(queues)], s.bodies.single, bufs[w])
		return 1, err
	}))
}

// batchRun is the closed-loop batch publish (100 per request). With stop,
// there is no warm-up and each worker ends when stop says the work is done.
func (s *benchSession) batchRun(ctx context.Context, phase string, queues []string, d time.Duration, stop func() bool) benchRun {
	s.settle(ctx)
	bufs := newBenchBufs(s.cfg.conns)
	ph := s.phase(phase, "ledgerq", "msg/s")
	ph.Duration = d
	if stop != nil {
		ph.Warmup = 0
	} else {
		ph.CPU = s.lq.cpuProbe()
	}
	return s.record(benchClosedLoop(ctx, ph, func(ctx context.Context, w int) (int, error) {
		if stop != nil && stop() {
			return 0, errBenchWorkerDone
		}
		_, err := s.lq.publishBatch(ctx, queues[w%len(queues)], s.bodies.batch, bufs[w])
		return s.bodies.batchN, err
	}))
}

// fill publishes n messages in batches over queues and returns the run.
func (s *benchSession) fill(ctx context.Context, phase string, queues []string, n int64) benchRun {
	var reserved atomicCounter
	return s.batchRun(ctx, phase, queues, time.Hour, func() bool { return reserved.add(int64(s.bodies.batchN)) > n })
}

// receiveRun receives 10 + acks until the time is up or a queue is empty.
func (s *benchSession) receiveRun(ctx context.Context, queues []string) benchRun {
	s.settle(ctx)
	bufs := newBenchBufs(s.cfg.conns)
	ph := s.phase("receive", "ledgerq", "msg/s")
	ph.CPU = s.lq.cpuProbe()
	run := benchClosedLoop(ctx, ph, func(ctx context.Context, w int) (int, error) {
		n, err := s.lq.receiveAck(ctx, queues[w%len(queues)], s.bodies.receive, bufs[w])
		if errors.Is(err, errBenchDrained) {
			return 0, fmt.Errorf("%w: %w", errBenchStop, err)
		}
		return n, err
	})
	if run.Seconds > 0 && run.Seconds < ph.Duration.Seconds()*0.999 {
		run.Note = fmt.Sprintf("a queue ran dry after %.1f s", run.Seconds)
	}
	return s.record(run)
}

// fixedRun publishes to ledgerq at rate, open loop.
func (s *benchSession) fixedRun(ctx context.Context, queues []string, rate float64) benchRun {
	return s.fixedRunOn(ctx, s.lq, "ledgerq", queues, rate)
}

// fixedRunOn publishes to t (ledgerq or the limit handler) at rate, open
// loop.
func (s *benchSession) fixedRunOn(ctx context.Context, t *benchTarget, target string, queues []string, rate float64) benchRun {
	s.settle(ctx)
	var next atomicCounter
	bufs := newBenchBufs(s.cfg.maxInflight)
	unit := "msg/s"
	if t != s.lq {
		unit = "req/s"
	}
	ph := s.phase("fixed-rate", target, unit)
	ph.CPU = t.cpuProbe()
	return s.record(benchFixedRate(ctx, ph, rate, s.cfg.maxInflight,
		func(ctx context.Context, w int, _ time.Time) (int, error) {
			_, err := t.publish(ctx, queues[next.add(1)%int64(len(queues))], s.bodies.single, bufs[w])
			return 1, err
		}))
}

// mixedRun runs half the connections publishing and half receiving + acking
// on the same queues at the same time.
func (s *benchSession) mixedRun(ctx context.Context, queues []string) (pub, recv benchRun) {
	s.settle(ctx)
	half := max(1, s.cfg.conns/2)
	recvBody := []byte(strings.Replace(string(s.bodies.receive), `"wait_ms":0`, `"wait_ms":500`, 1))
	done := make(chan benchRun, 1)
	go func() {
		bufs := newBenchBufs(half)
		ph := s.phase("mixed-receive", "ledgerq", "msg/s")
		ph.Conns = half
		done <- benchClosedLoop(ctx, ph, func(ctx context.Context, w int) (int, error) {
			n, err := s.lq.receiveAck(ctx, queues[w%len(queues)], recvBody, bufs[w])
			if errors.Is(err, errBenchDrained) {
				return 0, nil
			}
			return n, err
		})
	}()
	bufs := newBenchBufs(half)
	ph := s.phase("mixed-publish", "ledgerq", "msg/s")
	ph.Conns = half
	pub = benchClosedLoop(ctx, ph, func(ctx context.Context, w int) (int, error) {
		_, err := s.lq.publish(ctx, queues[w%len(queues)], s.bodies.single, bufs[w])
		return 1, err
	})
	recv = <-done
	return s.record(pub), s.record(recv)
}

// scenarios is the plain run: each selected phase once against ledgerq.
func (s *benchSession) scenarios(ctx context.Context, stdout io.Writer) error {
	q := s.cfg.queues
	pubQ, batchQ, recvQ, mixQ := benchNames("bench-pub-", q), benchNames("bench-batch-", q), benchNames("bench-recv-", q), benchNames("bench-mixed-", q)
	if err := s.lq.ensureQueues(ctx, slices.Concat(pubQ, batchQ, recvQ, mixQ)); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	rate := s.cfg.rate
	pubRate := 0.0
	for _, sc := range s.cfg.scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		needRate := func() error {
			if rate > 0 {
				return nil
			}
			if pubRate <= 0 {
				return fmt.Errorf("bench: scenario %s needs --rate (or the publish scenario before it)", sc)
			}
			rate = pubRate / 2
			return nil
		}
		switch sc {
		case "publish":
			pubRate = s.publishRun(ctx, s.lq, "ledgerq", pubQ).Rate
		case "batch":
			s.batchRun(ctx, "batch", batchQ, s.cfg.duration, nil)
		case "receive":
			s.fill(ctx, "receive-fill", recvQ, s.prefill(pubRate))
			s.receiveRun(ctx, recvQ)
		case "mixed":
			s.mixedRun(ctx, mixQ)
		case "fixed":
			if err := needRate(); err != nil {
				return err
			}
			s.fixedRun(ctx, pubQ, rate)
		case "sse":
			if err := needRate(); err != nil {
				return err
			}
			s.settle(ctx)
			run, err := benchSSE(ctx, s.lq, s.bodies, s.sseConfig(rate))
			if err != nil {
				return fmt.Errorf("bench: sse: %w", err)
			}
			s.record(run)
		case "readside":
			if err := needRate(); err != nil {
				return err
			}
			s.settle(ctx)
			run, err := benchReadSide(ctx, s.lq, s.bodies, benchNames("bench-rs-", q), rate, s.cfg.warmup, s.cfg.readsideDur, s.cfg.maxInflight)
			if err != nil {
				return fmt.Errorf("bench: read side: %w", err)
			}
			s.record(run)
		}
	}
	rep := &benchReport{Command: s.cfg.commandLine, StartedAt: s.started, Took: time.Since(s.started), Host: benchHost(), Runs: s.runs}
	fmt.Fprintln(stdout)
	rep.writeRuns(stdout)
	if s.cfg.jsonOut != "" {
		return writeFileWith(s.cfg.jsonOut, rep.writeJSON)
	}
	return nil
}

// prefill is how many messages to publish before a receive run: enough
// that receiving at the publish rate would not run dry.
func (s *benchSession) prefill(pubRate float64) int64 {
	if s.cfg.receivePrefill > 0 {
		return s.cfg.receivePrefill
	}
	if pubRate <= 0 {
		pubRate = 20_000
	}
	n := int64(1.5 * pubRate * (s.cfg.warmup + s.cfg.duration).Seconds())
	return min(max(n, 5_000), 2_000_000)
}

func (s *benchSession) sseConfig(rate float64) benchSSEConfig {
	cfg := benchSSEConfig{
		Subscribers: s.cfg.sseSubscribers, Queues: s.cfg.sseQueues, Rate: rate,
		Warmup: s.cfg.warmup, Duration: s.cfg.duration, Grace: s.cfg.sseGrace, MaxInflight: s.cfg.maxInflight,
	}
	if s.canMint {
		// Eight subscribers per subject: many clients, each well under the
		// server's cap on streams per subject.
		cfg.Token = func(i int) (string, error) {
			return benchTokenFor(s.secret, "bench-sse-"+strconv.Itoa(i/8), "queues:read", 2*time.Hour)
		}
	}
	return cfg
}

// writeReport prints the table and writes --out and --json.
func (s *benchSession) writeReport(rep *benchReport, stdout io.Writer) error {
	fmt.Fprintln(stdout)
	rep.writeTable(stdout)
	pass, fail, na := rep.counts()
	fmt.Fprintf(stdout, "\n%d passed, %d failed, %d not measured (%s).\n", pass, fail, na, rep.Took.Round(time.Second))
	for _, n := range rep.Notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	var errs []error
	if s.cfg.out != "" {
		errs = append(errs, writeFileWith(s.cfg.out, func(w io.Writer) error { rep.writeMarkdown(w); return nil }))
	}
	if s.cfg.jsonOut != "" {
		errs = append(errs, writeFileWith(s.cfg.jsonOut, rep.writeJSON))
	}
	return errors.Join(errs...)
}

// writeFileWith writes path through a temporary file, so a failed run never
// leaves half a report.
func writeFileWith(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bench-*")
	if err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// benchHost describes the machine for the report.
func benchHost() string {
	h := fmt.Sprintf("%d CPUs, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h += ", Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				h += ", " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return h
}
