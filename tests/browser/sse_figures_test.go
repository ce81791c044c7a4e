package browser

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// figuresConfig shapes the SSE measurement; every field has an environment
// override so that a smaller or larger run needs no edit.
type figuresConfig struct {
	Subscribers int           // LEDGERQ_SSE_SUBSCRIBERS
	Queues      int           // LEDGERQ_SSE_QUEUES: subscriber i follows queue i mod Queues
	Rate        float64       // LEDGERQ_SSE_RATE: publishes per second in the steady phase
	Steady      time.Duration // LEDGERQ_SSE_STEADY: length of the steady phase
	Closed      time.Duration // LEDGERQ_SSE_CLOSED: length of each closed-loop phase
	Concurrency int           // LEDGERQ_SSE_CONCURRENCY: closed-loop publishers
}

// perSubject is how many streams one token subject opens: under the
// server's default cap of 16 (transport.DefaultMaxStreams).
const perSubject = 15

func figuresConfigFromEnv(t *testing.T) figuresConfig {
	t.Helper()
	c := figuresConfig{Subscribers: 1000, Queues: 10, Rate: 200, Steady: 20 * time.Second, Closed: 10 * time.Second, Concurrency: 16}
	intVar := func(name string, dst *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive integer", name, v)
			}
			*dst = n
		}
	}
	durVar := func(name string, dst *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				t.Fatalf("%s=%q: want a positive duration such as 20s", name, v)
			}
			*dst = d
		}
	}
	intVar("LEDGERQ_SSE_SUBSCRIBERS", &c.Subscribers)
	intVar("LEDGERQ_SSE_QUEUES", &c.Queues)
	intVar("LEDGERQ_SSE_CONCURRENCY", &c.Concurrency)
	durVar("LEDGERQ_SSE_STEADY", &c.Steady)
	durVar("LEDGERQ_SSE_CLOSED", &c.Closed)
	if v := os.Getenv("LEDGERQ_SSE_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) {
			t.Fatalf("LEDGERQ_SSE_RATE=%q: want a positive number", v)
		}
		c.Rate = r
	}
	return c
}

// TestSSEFigures measures what issue 5 asks: 1,000 concurrent subscribers
// while publishing steadily — p50/p99 from append to delivery, memory per
// subscriber, and the publish rate sustained with and without subscribers.
// It takes about a minute and loads the machine, so it runs only with
// LEDGERQ_SSE_FIGURES=1. Besides logging the figures it fails when a
// subscriber misses a frame or is dropped during the steady phase, or when
// a publish fails.
//
// Phases, on one server:
//  1. closed loop, no subscribers (Concurrency publishers, Closed long);
//  2. RSS and Go memory before and after opening the subscribers;
//  3. steady publishing at Rate for Steady: every frame's arrival is
//     matched with its publish, per stream;
//  4. closed loop with the subscribers still connected;
//  5. the subscribers close; closed loop again, to tell the cost of the
//     subscribers from the cost of a longer log.
func TestSSEFigures(t *testing.T) {
	if os.Getenv("LEDGERQ_SSE_FIGURES") != "1" {
		t.Skip("set LEDGERQ_SSE_FIGURES=1 to measure 1,000 SSE subscribers (about a minute of full load)")
	}
	cfg := figuresConfigFromEnv(t)
	raiseOpenFiles(t, uint64(2*cfg.Subscribers+1024))
	srv := startServer(t, "--log-level", "warn")
	admin := srv.Token("figures", "admin")
	queues := make([]string, cfg.Queues)
	for i := range queues {
		queues[i] = fmt.Sprintf("fig-%03d", i)
		srv.Must("POST", "/v1/queues", admin, map[string]any{"name": queues[i]}, 201)
	}
	subjects := (cfg.Subscribers + perSubject - 1) / perSubject
	tokens := make([]string, subjects)
	for i := range tokens {
		tokens[i] = srv.Token(fmt.Sprintf("watcher-%03d", i), "queues:read")
	}
	pubClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * cfg.Concurrency, DisableCompression: true}}
	defer pubClient.CloseIdleConnections()
	p := &publisher{srv: srv, client: pubClient, token: admin, queues: queues}
	ctx := context.Background()
	t.Logf("config: %d subscribers over %d queues (kinds=message, %d subjects), steady %.0f msg/s for %v, closed loop %d publishers for %v each",
		cfg.Subscribers, cfg.Queues, subjects, cfg.Rate, cfg.Steady, cfg.Concurrency, cfg.Closed)

	// 1. Without subscribers.
	before := p.closedLoop(ctx, cfg.Concurrency, cfg.Closed)
	if before.errors > 0 {
		t.Fatalf("closed loop without subscribers: %d errors, first: %v", before.errors, before.firstErr)
	}

	// 2. Memory before and after the subscribers connect.
	memBefore := settleMemory(t, srv)
	subs := openSubscribers(t, srv, tokens, queues, cfg.Subscribers)
	defer subs.close()
	waitMetric(t, srv, "ledgerq_sse_clients", float64(cfg.Subscribers), 30*time.Second)
	memAfter := settleMemory(t, srv)

	// 3. Steady publishing with every frame timed.
	subs.record.Store(true)
	steady := p.steady(ctx, cfg.Rate, cfg.Steady)
	if steady.errors > 0 {
		t.Errorf("steady phase: %d publishes failed, first: %v", steady.errors, steady.firstErr)
	}
	expected := 0
	perQueue := make([]int, len(queues))
	for i := range cfg.Subscribers {
		perQueue[i%len(queues)]++
	}
	for _, pub := range steady.published {
		expected += perQueue[pub.queue]
	}
	deadline := time.Now().Add(15 * time.Second)
	for subs.frames.Load() < int64(expected) && time.Now().Before(deadline) && subs.dropped.Load() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	subs.record.Store(false)
	lat := subs.latencies(steady.published, len(queues))
	if lat.delivered != expected || lat.duplicates > 0 || lat.foreign > 0 {
		t.Errorf("steady phase: %d of %d frames delivered, %d duplicates, %d for a queue the stream did not ask for",
			lat.delivered, expected, lat.duplicates, lat.foreign)
	}
	if n := subs.dropped.Load(); n > 0 {
		t.Errorf("steady phase: the server ended %d streams (too slow a reader?)", n)
	}

	// 4. Closed loop with the subscribers connected.
	during := p.closedLoop(ctx, cfg.Concurrency, cfg.Closed)
	droppedDuring := subs.dropped.Load()

	// 5. Without subscribers again.
	subs.close()
	waitMetric(t, srv, "ledgerq_sse_clients", 0, 30*time.Second)
	// Every stream's goroutines end with it. The slack covers the HTTP
	// connections the publishers keep alive.
	goroutinesLeft := waitGoroutinesAtMost(t, srv, memBefore.goroutines+float64(2*cfg.Concurrency)+10, 15*time.Second)
	after := p.closedLoop(ctx, cfg.Concurrency, cfg.Closed)

	n := float64(cfg.Subscribers)
	t.Logf("append→frame latency over %d frames (%d publishes at %.1f/s achieved, %d late ticks): from the 201: p50 %s p99 %s p99.9 %s max %s; from sending the publish: p50 %s p99 %s max %s; frames before their 201: %.1f %%",
		lat.delivered, len(steady.published), steady.rate(), steady.late,
		ms(lat.fromAnswer, 0.50), ms(lat.fromAnswer, 0.99), ms(lat.fromAnswer, 0.999), ms(lat.fromAnswer, 1),
		ms(lat.fromSend, 0.50), ms(lat.fromSend, 0.99), ms(lat.fromSend, 1), 100*lat.early)
	t.Logf("steady publish latency: p50 %s p99 %s", ms(steady.latency, 0.5), ms(steady.latency, 0.99))
	t.Logf("memory: RSS %.1f → %.1f MiB = %.1f KiB per subscriber; Go heap in use + stacks %.1f → %.1f MiB = %.1f KiB per subscriber; goroutines %.0f → %.0f = %.1f per subscriber (%.0f once they left)",
		mib(memBefore.rss), mib(memAfter.rss), (memAfter.rss-memBefore.rss)/n/1024,
		mib(memBefore.goMem()), mib(memAfter.goMem()), (memAfter.goMem()-memBefore.goMem())/n/1024,
		memBefore.goroutines, memAfter.goroutines, (memAfter.goroutines-memBefore.goroutines)/n, goroutinesLeft)
	t.Logf("closed-loop publish, %d publishers, %v each: no subscribers %.0f msg/s (p99 %s); %d subscribers %.0f msg/s (p99 %s, %d streams dropped, %d errors); no subscribers again %.0f msg/s (p99 %s)",
		cfg.Concurrency, cfg.Closed, before.rate(), ms(before.latency, 0.99),
		cfg.Subscribers, during.rate(), ms(during.latency, 0.99), droppedDuring, during.errors,
		after.rate(), ms(after.latency, 0.99))
	if base := (before.rate() + after.rate()) / 2; base > 0 {
		t.Logf("with %d subscribers the closed-loop publish rate is %.0f %% of the mean without", cfg.Subscribers, 100*during.rate()/base)
	}
	if after.errors > 0 {
		t.Errorf("closed loop after the subscribers left: %d errors, first: %v", after.errors, after.firstErr)
	}
}

// raiseOpenFiles lifts the soft RLIMIT_NOFILE to at least need (up to the
// hard limit). The server inherits it: os/exec restores Go's start-up
// value in children only when the program never set the limit itself.
func raiseOpenFiles(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Max < need {
		t.Fatalf("RLIMIT_NOFILE hard limit %d is below the %d descriptors the test needs (raise it: ulimit -Hn)", lim.Max, need)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
}

// memory is the server's memory at one moment.
type memory struct {
	rss, heapInuse, stackInuse, goroutines float64
}

func (m memory) goMem() float64 { return m.heapInuse + m.stackInuse }

// settleMemory waits a moment for the server to go quiet and reads its RSS
// and Go memory statistics.
func settleMemory(t *testing.T, srv *harness.Server) memory {
	t.Helper()
	time.Sleep(2 * time.Second)
	mem, err := srv.Memory()
	if err != nil {
		t.Fatal(err)
	}
	m, err := srv.Metrics("go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines")
	if err != nil {
		t.Fatal(err)
	}
	return memory{rss: float64(mem.RSS), heapInuse: m["go_memstats_heap_inuse_bytes"],
		stackInuse: m["go_memstats_stack_inuse_bytes"], goroutines: m["go_goroutines"]}
}

// waitMetric polls /metrics until name has the value want.
func waitMetric(t *testing.T, srv *harness.Server, name string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last float64
	for time.Now().Before(deadline) {
		m, err := srv.Metrics(name)
		if err != nil {
			t.Fatal(err)
		}
		if last = m[name]; last == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s is %v after %v, want %v", name, last, within, want)
}

// waitGoroutinesAtMost polls go_goroutines until it is at most limit and
// returns the last value; it fails the test when that takes longer than
// within.
func waitGoroutinesAtMost(t *testing.T, srv *harness.Server, limit float64, within time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, err := srv.Metrics("go_goroutines")
		if err != nil {
			t.Fatal(err)
		}
		n := m["go_goroutines"]
		if n <= limit {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%.0f goroutines %v after the subscribers left, want at most %.0f: streams leak", n, within, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// publisher publishes single messages round-robin over queues.
type publisher struct {
	srv    *harness.Server
	client *http.Client
	token  string
	queues []string
	next   atomic.Int64
}

// publish is one publish as the steady phase saw it.
type publish struct {
	id     string
	queue  int
	sent   time.Time
	answer time.Time
}

// loadResult is what one publishing phase did.
type loadResult struct {
	ops, errors int
	firstErr    error
	late        int // steady phase: ticks with every publisher busy
	took        time.Duration
	latency     []time.Duration // sorted
	published   []publish       // steady phase only
}

func (r loadResult) rate() float64 {
	if r.took <= 0 {
		return 0
	}
	return float64(r.ops) / r.took.Seconds()
}

func (p *publisher) one(ctx context.Context) (publish, error) {
	qi := int(p.next.Add(1) % int64(len(p.queues)))
	pub := publish{queue: qi, sent: time.Now()}
	r, err := harness.Send(ctx, p.client, "POST", p.srv.URL+"/v1/queues/"+p.queues[qi]+"/messages", p.token,
		map[string]any{"body": "figures"})
	pub.answer = time.Now()
	if err == nil && r.Status != http.StatusCreated {
		err = fmt.Errorf("publish to %s: status %s", p.queues[qi], r)
	}
	if err == nil {
		pub.id = r.Str("id")
	}
	if err == nil && pub.id == "" {
		err = errors.New("publish answered 201 without an id")
	}
	return pub, err
}

// closedLoop runs workers that each publish again as soon as the last
// publish answered, for d.
func (p *publisher) closedLoop(ctx context.Context, workers int, d time.Duration) loadResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var lat []time.Duration
			ops, errs := 0, 0
			var first error
			for ctx.Err() == nil {
				pub, err := p.one(ctx)
				if err != nil {
					if ctx.Err() == nil {
						errs++
						first = cmpErr(first, err)
					}
					continue
				}
				ops++
				lat = append(lat, pub.answer.Sub(pub.sent))
			}
			mu.Lock()
			res.ops += ops
			res.errors += errs
			res.firstErr = cmpErr(res.firstErr, first)
			res.latency = append(res.latency, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.took = time.Since(start)
	slices.Sort(res.latency)
	return res
}

// steady publishes at rate for d with a pool of publishers; a tick that
// finds them all busy is counted as late and skipped, so the offered rate
// never bunches up.
func (p *publisher) steady(ctx context.Context, rate float64, d time.Duration) loadResult {
	const workers = 64
	ticks := make(chan struct{}, workers)
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range ticks {
				pub, err := p.one(ctx)
				mu.Lock()
				if err != nil {
					res.errors++
					res.firstErr = cmpErr(res.firstErr, err)
				} else {
					res.ops++
					res.published = append(res.published, pub)
					res.latency = append(res.latency, pub.answer.Sub(pub.sent))
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for next := start; time.Since(start) < d; next = next.Add(interval) {
		time.Sleep(time.Until(next))
		select {
		case ticks <- struct{}{}:
		default:
			res.late++
		}
	}
	close(ticks)
	wg.Wait()
	res.took = time.Since(start)
	slices.Sort(res.latency)
	return res
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// frame is one message.updated event as a subscriber received it.
type frame struct {
	id string
	at time.Time
}

// subscribers holds the open streams.
type subscribers struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	record  atomic.Bool  // frames are kept only while set
	frames  atomic.Int64 // frames kept
	dropped atomic.Int64 // streams the server ended
	queueOf []int
	mu      []sync.Mutex // guards got[i]: a reader may be appending as recording stops
	got     [][]frame
	closed  sync.Once
}

// openSubscribers opens n streams, subscriber i on queues[i mod len] with
// the token of subject i / perSubject, and returns once every one answered
// 200. Opening is spread over a few dozen goroutines so that the listen
// backlog never overflows.
func openSubscribers(t *testing.T, srv *harness.Server, tokens, queues []string, n int) *subscribers {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscribers{cancel: cancel, queueOf: make([]int, n), mu: make([]sync.Mutex, n), got: make([][]frame, n)}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1}}
	opened := make(chan error, n)
	gate := make(chan struct{}, 50)
	for i := range n {
		s.queueOf[i] = i % len(queues)
		s.wg.Go(func() {
			gate <- struct{}{}
			q := url.Values{"queues": {queues[s.queueOf[i]]}, "kinds": {"message"}, "access_token": {tokens[i/perSubject]}}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/subscribe?"+q.Encode(), nil)
			if err != nil {
				<-gate
				opened <- err
				return
			}
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			<-gate
			if err != nil {
				opened <- fmt.Errorf("subscriber %d: %w", i, err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				var body bytes.Buffer
				_, _ = body.ReadFrom(resp.Body)
				opened <- fmt.Errorf("subscriber %d: status %d: %s", i, resp.StatusCode, body.String())
				return
			}
			opened <- nil
			_ = s.read(i, bufio.NewReaderSize(resp.Body, 16<<10))
			if ctx.Err() == nil {
				// The server ended the stream (or it broke) while we still
				// wanted it.
				s.dropped.Add(1)
			}
		})
	}
	timeout := time.After(60 * time.Second)
	for range n {
		select {
		case err := <-opened:
			if err != nil {
				s.close()
				t.Fatalf("open subscribers: %v", err)
			}
		case <-timeout:
			s.close()
			t.Fatal("open subscribers: not all answered within 60 s")
		}
	}
	return s
}

// read consumes one stream until it ends, keeping the message.updated
// frames that arrive while recording. Only the id is decoded: the
// subscriber does the least work a real client would.
func (s *subscribers) read(i int, r *bufio.Reader) error {
	var event string
	var data []byte
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A longer line than any frame here; skip the rest of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			line = nil
		}
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if event == "message.updated" && data != nil && s.record.Load() {
				var m struct {
					ID string `json:"id"`
				}
				if json.Unmarshal(data, &m) == nil && m.ID != "" {
					at := time.Now()
					s.mu[i].Lock()
					s.got[i] = append(s.got[i], frame{id: m.ID, at: at})
					s.mu[i].Unlock()
					s.frames.Add(1)
				}
			}
			event, data = "", data[:0]
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data[:0], bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}

// close ends every stream and waits for the readers.
func (s *subscribers) close() {
	s.closed.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
}

// latencyFigures is the steady phase seen from the subscribers.
type latencyFigures struct {
	fromAnswer, fromSend []time.Duration // sorted; fromAnswer may be negative
	early                float64         // share of frames that beat their 201
	delivered            int             // distinct (stream, message) pairs matched
	duplicates, foreign  int
}

// latencies matches every kept frame with its publish.
func (s *subscribers) latencies(published []publish, queues int) latencyFigures {
	byID := make(map[string]publish, len(published))
	for _, p := range published {
		byID[p.id] = p
	}
	var f latencyFigures
	early := 0
	for i := range s.got {
		s.mu[i].Lock()
		frames := s.got[i]
		s.mu[i].Unlock()
		seen := make(map[string]bool, len(frames))
		for _, fr := range frames {
			p, ok := byID[fr.id]
			if !ok {
				continue // a publish of another phase
			}
			if p.queue != s.queueOf[i] {
				f.foreign++
				continue
			}
			if seen[fr.id] {
				f.duplicates++
				continue
			}
			seen[fr.id] = true
			f.delivered++
			d := fr.at.Sub(p.answer)
			if d < 0 {
				early++
			}
			f.fromAnswer = append(f.fromAnswer, d)
			f.fromSend = append(f.fromSend, fr.at.Sub(p.sent))
		}
	}
	slices.Sort(f.fromAnswer)
	slices.Sort(f.fromSend)
	if f.delivered > 0 {
		f.early = float64(early) / float64(f.delivered)
	}
	return f
}

// ms formats the q-quantile of sorted durations in milliseconds.
func ms(sorted []time.Duration, q float64) string {
	if len(sorted) == 0 {
		return "n/a"
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return strconv.FormatFloat(float64(sorted[i])/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

func mib(b float64) float64 { return b / (1 << 20) }
