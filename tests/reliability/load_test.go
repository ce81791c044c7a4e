package reliability

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// lease is a message a consumer of the test holds: received with 200 and
// neither acked nor nacked since.
type lease struct {
	receipt string
	expires time.Time
}

// ledger records what the server told the load's clients. Only definite
// answers become facts a check may rely on: a request that got no answer
// (the server was killed under it) may or may not have taken effect.
type ledger struct {
	mu         sync.Mutex
	published  map[string]bool  // message ids answered 201
	acked      map[string]bool  // acks answered 200, by message id
	leases     map[string]lease // by message id
	delivered  int              // messages in receives answered 200
	statuses   map[string]map[int]int
	noAnswer   map[string]int
	firstErrs  []string // the first few transport errors, to explain a failure
	violations []string
	lat        *latencies // nil unless a test measures latency
}

func newLedger() *ledger {
	return &ledger{
		published: map[string]bool{},
		acked:     map[string]bool{},
		leases:    map[string]lease{},
		statuses:  map[string]map[int]int{},
		noAnswer:  map[string]int{},
	}
}

// record counts an answer (or its absence) and its latency.
func (l *ledger) record(op string, started time.Time, a harness.Response, err error) {
	d := time.Since(started)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.noAnswer[op]++
		if len(l.firstErrs) < 8 {
			l.firstErrs = append(l.firstErrs, fmt.Sprintf("%s after %v: %v", op, d.Round(time.Microsecond), err))
		}
		return
	}
	if l.statuses[op] == nil {
		l.statuses[op] = map[int]int{}
	}
	l.statuses[op][a.Status]++
	if l.lat != nil {
		l.lat.add(op, started, d)
	}
}

func (l *ledger) violate(format string, args ...any) {
	l.violations = append(l.violations, fmt.Sprintf(format, args...))
}

func (l *ledger) addPublished(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id == "" {
		l.violate("a 201 to a publish named no message id")
		return
	}
	if l.published[id] {
		l.violate("two publishes were answered 201 with the same id %s", id)
	}
	l.published[id] = true
}

// addLeased checks a receive's messages against what the clients already
// know: an acked message must never come back, and a message must not be
// leased again while a lease the test holds on it is still valid.
func (l *ledger) addLeased(msgs []leasedMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.delivered += len(msgs)
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.ID] {
			l.violate("one receive returned message %s twice", m.ID)
		}
		seen[m.ID] = true
		if l.acked[m.ID] {
			l.violate("message %s was leased again after its ack was answered 200", m.ID)
		}
		// A second of slack for the difference between the server's clock
		// and ours; leases in these tests last an hour.
		if old, ok := l.leases[m.ID]; ok && old.expires.After(now.Add(time.Second)) {
			l.violate("message %s was leased again while the lease until %s was valid", m.ID, old.expires.Format(time.RFC3339Nano))
		}
		l.leases[m.ID] = lease{receipt: m.Receipt, expires: m.LeaseExpiresAt}
	}
}

// dropLease forgets a lease whose fate the client cannot know (an ack or
// nack in flight, or answered with an error).
func (l *ledger) dropLease(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.leases, id)
}

func (l *ledger) addAcked(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[id] = true
}

func (l *ledger) countPublished() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.published)
}

// answered returns how many requests of op were answered with status.
func (l *ledger) answered(op string, status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.statuses[op][status]
}

// heldLeases returns the leases the test holds, by message id.
func (l *ledger) heldLeases() map[string]lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]lease, len(l.leases))
	for id, ls := range l.leases {
		out[id] = ls
	}
	return out
}

// checkNoViolations fails the test when an answer broke a guarantee.
func (l *ledger) checkNoViolations(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.violations) > 0 {
		v := l.violations
		if len(v) > 20 {
			v = append(v[:20:20], fmt.Sprintf("… and %d more", len(l.violations)-20))
		}
		t.Fatalf("guarantees broken:\n%s", strings.Join(v, "\n"))
	}
}

// unexpected lists answers outside allowed (op → statuses a test accepts)
// and, when noAnswerOK is false, requests that got no answer.
func (l *ledger) unexpected(allowed map[string][]int, noAnswerOK bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for op, byStatus := range l.statuses {
		for status, n := range byStatus {
			if !slices.Contains(allowed[op], status) {
				out = append(out, fmt.Sprintf("%s answered %d %d times", op, status, n))
			}
		}
	}
	if !noAnswerOK {
		for op, n := range l.noAnswer {
			if n > 0 {
				out = append(out, fmt.Sprintf("%s got no answer %d times", op, n))
			}
		}
	}
	sort.Strings(out)
	return out
}

// summary is a one-line account of the answers, for logs.
func (l *ledger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for op, byStatus := range l.statuses {
		for status, n := range byStatus {
			parts = append(parts, fmt.Sprintf("%s %d×%d", op, status, n))
		}
	}
	for op, n := range l.noAnswer {
		parts = append(parts, fmt.Sprintf("%s no-answer×%d", op, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// leasedMessage is the part of a received message the load reads.
type leasedMessage struct {
	ID             string    `json:"id"`
	Receipt        string    `json:"receipt"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
}

// loadConfig shapes the traffic of a load.
type loadConfig struct {
	queue      string
	token      string
	publishers int
	consumers  int
	// every is the pause between one worker's requests (0: back to back).
	every time.Duration
	// Of the messages a consumer receives, keepPct percent stay leased and
	// nackPct percent are nacked; the rest are acked.
	keepPct, nackPct int
	bodyBytes        int
	seed             uint64
}

// load is running traffic; stop ends it between requests, so that no
// request is cut by the test itself.
type load struct {
	quit chan struct{}
	wg   sync.WaitGroup
}

func startLoad(s *server, cfg loadConfig, l *ledger) *load {
	ld := &load{quit: make(chan struct{})}
	for w := range cfg.publishers {
		ld.wg.Add(1)
		go func() { defer ld.wg.Done(); ld.publish(s, cfg, l, w) }()
	}
	for w := range cfg.consumers {
		ld.wg.Add(1)
		rng := rand.New(rand.NewPCG(cfg.seed, uint64(1000+w)))
		go func() { defer ld.wg.Done(); ld.consume(s, cfg, l, rng) }()
	}
	return ld
}

func (ld *load) stop() {
	close(ld.quit)
	ld.wg.Wait()
}

// pacer spaces one worker's requests: with every > 0 they start on a
// ticker, so the offered rate stays steady when answers slow down (a slow
// answer skips ticks rather than bunching requests up); with every == 0
// they go back to back. After a request that got no answer it waits at
// least 20 ms so that a dead server is not hammered.
type pacer struct {
	quit  <-chan struct{}
	every time.Duration
	tick  *time.Ticker
}

func newPacer(quit <-chan struct{}, every time.Duration) *pacer {
	p := &pacer{quit: quit, every: every}
	if every > 0 {
		p.tick = time.NewTicker(every)
	}
	return p
}

// next reports false when the load is stopping.
func (p *pacer) next(failed bool) bool {
	if failed {
		t := time.NewTimer(max(p.every, 20*time.Millisecond))
		defer t.Stop()
		select {
		case <-p.quit:
			return false
		case <-t.C:
		}
	}
	if p.tick == nil {
		select {
		case <-p.quit:
			return false
		default:
			return true
		}
	}
	select {
	case <-p.quit:
		return false
	case <-p.tick.C:
		return true
	}
}

func (p *pacer) stop() {
	if p.tick != nil {
		p.tick.Stop()
	}
}

func (ld *load) publish(s *server, cfg loadConfig, l *ledger, w int) {
	pad := strings.Repeat("p", max(0, cfg.bodyBytes-24))
	p := newPacer(ld.quit, cfg.every)
	defer p.stop()
	for i := 0; ; i++ {
		started := time.Now()
		a, err := s.Do("POST", "/v1/queues/"+cfg.queue+"/messages", cfg.token,
			map[string]any{"body": fmt.Sprintf("w%d-%d-%s", w, i, pad)})
		l.record("publish", started, a, err)
		if err == nil && a.Status == http.StatusCreated {
			var r struct {
				ID string `json:"id"`
			}
			_ = a.Decode(&r)
			l.addPublished(r.ID)
		}
		if !p.next(err != nil) {
			return
		}
	}
}

func (ld *load) consume(s *server, cfg loadConfig, l *ledger, rng *rand.Rand) {
	base := "/v1/queues/" + cfg.queue
	p := newPacer(ld.quit, cfg.every)
	defer p.stop()
	for {
		started := time.Now()
		a, err := s.Do("POST", base+"/receive", cfg.token, map[string]any{"max_messages": 10, "wait_ms": 100})
		l.record("receive", started, a, err)
		if err == nil && a.Status == http.StatusOK {
			var r struct {
				Messages []leasedMessage `json:"messages"`
			}
			if derr := a.Decode(&r); derr != nil {
				l.mu.Lock()
				l.violate("receive: %v", derr)
				l.mu.Unlock()
			}
			l.addLeased(r.Messages)
			for _, m := range r.Messages {
				switch p := rng.IntN(100); {
				case p < cfg.keepPct:
				case p < cfg.keepPct+cfg.nackPct:
					ld.settle(s, cfg, l, "nack", m)
				default:
					ld.settle(s, cfg, l, "ack", m)
				}
			}
		}
		if !p.next(err != nil) {
			return
		}
	}
}

// settle acks or nacks one held message. The lease is forgotten before the
// request goes out: once it is sent, another consumer may lawfully receive
// a nacked message before this one reads the answer.
func (ld *load) settle(s *server, cfg loadConfig, l *ledger, op string, m leasedMessage) {
	l.dropLease(m.ID)
	started := time.Now()
	a, err := s.Do("POST", "/v1/queues/"+cfg.queue+"/"+op, cfg.token, map[string]any{"receipt": m.Receipt})
	l.record(op, started, a, err)
	if err != nil {
		return
	}
	switch {
	case a.Status == http.StatusOK && op == "ack":
		l.addAcked(m.ID)
	case a.Status == http.StatusOK:
	case a.Status == http.StatusConflict || a.Status == http.StatusNotFound:
		// The lease lasts an hour: the server must still know it, through
		// any number of crashes.
		l.mu.Lock()
		l.violate("%s of a valid lease on %s answered %d: %s", op, m.ID, a.Status, a.Body)
		l.mu.Unlock()
	}
}

// latencies keeps request durations in windows of a fixed length from a
// start time, per operation.
type latencies struct {
	start  time.Time
	window time.Duration
	byWin  map[int]map[string][]time.Duration
}

func newLatencies(start time.Time, window time.Duration) *latencies {
	return &latencies{start: start, window: window, byWin: map[int]map[string][]time.Duration{}}
}

// add is called with the ledger's lock held.
func (lt *latencies) add(op string, started time.Time, d time.Duration) {
	w := int(started.Sub(lt.start) / lt.window)
	if w < 0 {
		return
	}
	if lt.byWin[w] == nil {
		lt.byWin[w] = map[string][]time.Duration{}
	}
	lt.byWin[w][op] = append(lt.byWin[w][op], d)
	lt.byWin[w]["all"] = append(lt.byWin[w]["all"], d)
}

// quantile returns the q-quantile (nearest rank) of ds, sorting ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
