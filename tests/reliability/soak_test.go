//go:build linux

package reliability

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestSoak runs a steady mixed load for LEDGERQ_SOAK (e.g. 60s): paced
// publishers, consumers that long-poll and ack (some nack), queue and
// message-list queries, and an SSE subscriber. Every 5 s it samples the
// server's resident memory and open files (/proc) and its goroutines
// (go_goroutines on /metrics), and it keeps request latencies per 10 s
// window. It fails when memory or open files grow beyond what a warm cache
// explains, when goroutines or files are left over once the clients are
// gone, when p99 latency drifts upwards, or when any request fails; and it
// logs every figure for the report. Skipped unless LEDGERQ_SOAK is set.
func TestSoak(t *testing.T) {
	v := os.Getenv("LEDGERQ_SOAK")
	if v == "" {
		t.Skip("set LEDGERQ_SOAK=60s to run the soak")
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 20*time.Second {
		t.Fatalf("LEDGERQ_SOAK=%q: want a duration of at least 20s", v)
	}
	const (
		sampleEvery = 5 * time.Second
		window      = 10 * time.Second
	)

	s := startServer(t, "")
	tok := s.token()
	const q = "soak"
	// Default visibility: a lease the load forgets would come back, as in
	// production.
	s.Must("POST", "/v1/queues", tok, map[string]any{"name": q}, http.StatusCreated)
	pid := s.PID()

	l := newLedger()
	// A short burst first: the database connection pools and caches open
	// what steady traffic needs, so that the idle figures before and after
	// compare like with like.
	warm := startMixed(t, s, tok, q, l)
	time.Sleep(5 * time.Second)
	warm.stop()
	idleBefore := settle(t, s, pid, 0, 0)
	fdsBefore := fdTargets(pid)
	t.Logf("idle before (after a 5 s warm-up): %s", idleBefore)

	started := time.Now()
	l.mu.Lock()
	l.lat = newLatencies(started, window)
	l.mu.Unlock()
	mixed := startMixed(t, s, tok, q, l)

	var samples []sample
	tick := time.NewTicker(sampleEvery)
	end := time.After(dur)
	for running := true; running; {
		select {
		case <-tick.C:
			smp, err := takeSample(s, pid)
			if err != nil {
				t.Fatalf("sample: %v", err)
			}
			smp.at = time.Since(started)
			samples = append(samples, smp)
		case <-end:
			running = false
		}
	}
	tick.Stop()
	mixed.stop()

	// Figures first, so a failure below still leaves them in the output.
	t.Logf("%d s of load: %s; %d SSE events", int(dur.Seconds()), l.summary(), mixed.sse.Count())
	t.Log("samples (t, rss MiB, of which anonymous MiB, go heap in use MiB, open fds, goroutines):")
	for _, smp := range samples {
		t.Logf("  %5.0fs %7.1f %7.1f %7.1f %4d %4d", smp.at.Seconds(), float64(smp.rssKB)/1024, float64(smp.anonKB)/1024, smp.heapMiB, smp.fds, smp.goroutines)
	}
	logSeries(t, "rss MiB", samples, func(s sample) float64 { return float64(s.rssKB) / 1024 })
	logSeries(t, "go heap in use MiB", samples, func(s sample) float64 { return s.heapMiB })
	logSeries(t, "open fds", samples, func(s sample) float64 { return float64(s.fds) })
	logSeries(t, "goroutines", samples, func(s sample) float64 { return float64(s.goroutines) })
	windows := int(dur / window)
	p99s := make([]time.Duration, 0, windows)
	t.Log("latency per 10 s window (requests, p50, p99, max; publish p99, receive p99, ack p99, query p99):")
	l.mu.Lock()
	for w := range windows {
		all := l.lat.byWin[w]["all"]
		p99 := quantile(all, 0.99)
		p99s = append(p99s, p99)
		t.Logf("  %3d-%3ds %6d %8v %8v %8v; %8v %8v %8v %8v", w*10, w*10+10, len(all), quantile(all, 0.5), p99, quantile(all, 1),
			quantile(l.lat.byWin[w]["publish"], 0.99), quantile(l.lat.byWin[w]["receive"], 0.99),
			quantile(l.lat.byWin[w]["ack"], 0.99), quantile(l.lat.byWin[w]["query"], 0.99))
	}
	l.mu.Unlock()

	s.Client().CloseIdleConnections()
	idleAfter := settle(t, s, pid, idleBefore.goroutines, idleBefore.fds)
	t.Logf("idle after: %s", idleAfter)

	allowed := map[string][]int{"publish": {201}, "receive": {200}, "ack": {200}, "nack": {200}, "query": {200}}
	if bad := l.unexpected(allowed, false); len(bad) > 0 {
		t.Errorf("requests failed under steady load: %s", strings.Join(bad, "; "))
	}
	l.checkNoViolations(t)
	if idleAfter.goroutines > idleBefore.goroutines+2 {
		t.Errorf("goroutine leak: %d idle before the load, %d after", idleBefore.goroutines, idleAfter.goroutines)
	}
	if idleAfter.fds > idleBefore.fds+2 {
		t.Errorf("file descriptor leak: %d open idle before the load, %d after; new: %v", idleBefore.fds, idleAfter.fds, newTargets(fdsBefore, fdTargets(pid)))
	}
	checkFlat(t, samples)
	// p99 may wander on a shared machine; a drift is the last window well
	// above the typical one.
	if len(p99s) >= 3 {
		typical := median(p99s)
		if last := p99s[len(p99s)-1]; last > 4*typical+50*time.Millisecond {
			t.Errorf("p99 drifts upwards: last window %v, median window %v", last, typical)
		}
	}

	// The log and the read model stayed sound under the soak.
	head := s.head(tok)
	checkLog(t, s.readLog(tok), l)
	var live queueStats
	harness.WaitFor(t, "the read model at the head", 30*time.Second, func() bool {
		st, pos, err := s.queueStatsAt(tok, q, head)
		live = st
		return err == nil && pos == head
	})
	s.Stop()
	rep := replayCopy(t, s.Data)
	if want, _ := rep.stats(q); rep.Position != head || want != live {
		t.Errorf("after the soak the read model differs from the replay:\n live   %+v at %d\n replay %+v at %d", live, head, want, rep.Position)
	}
	t.Logf("log head %d; %+v; data directory: %s", head, live, fileSizes(s.Data))
}

// mixedLoad is the soak's traffic: paced publishers, consumers, queries
// and an SSE subscriber.
type mixedLoad struct {
	pub, cons *load
	sse       *harness.Stream
	quit      chan struct{}
	wg        sync.WaitGroup
}

func startMixed(t *testing.T, s *server, tok, q string, l *ledger) *mixedLoad {
	t.Helper()
	m := &mixedLoad{quit: make(chan struct{}), sse: s.Subscribe(harness.Subscription{Query: "queues=" + q, Token: tok, CountOnly: true})}
	m.pub = startLoad(s, loadConfig{queue: q, token: tok, publishers: 2, every: 10 * time.Millisecond, bodyBytes: 512}, l)
	m.cons = startLoad(s, loadConfig{queue: q, token: tok, consumers: 2, nackPct: 5, seed: uint64(time.Now().UnixNano())}, l)
	for _, path := range []string{"/v1/queues/" + q, "/v1/queues/" + q + "/messages?state=ready&limit=20"} {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-m.quit:
					return
				case <-tick.C:
				}
				t0 := time.Now()
				a, err := s.Do("GET", path, tok, nil)
				l.record("query", t0, a, err)
			}
		}()
	}
	return m
}

func (m *mixedLoad) stop() {
	close(m.quit)
	m.wg.Wait()
	m.pub.stop()
	m.cons.stop()
	m.sse.Close()
}

// fdTargets lists what the process's descriptors point at.
func fdTargets(pid int) map[string]int {
	out := map[string]int{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if target, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			if strings.HasPrefix(target, "socket:") {
				target = "socket"
			}
			out[target]++
		}
	}
	return out
}

// newTargets lists the descriptor targets that grew in number.
func newTargets(before, after map[string]int) []string {
	var out []string
	for target, n := range after {
		if n > before[target] {
			out = append(out, fmt.Sprintf("%s +%d", target, n-before[target]))
		}
	}
	return out
}

// sample is one reading of the server process.
type sample struct {
	at         time.Duration
	rssKB      int64
	anonKB     int64 // RssAnon: the process's own memory, without mapped files
	heapMiB    float64
	fds        int
	goroutines int
}

func (s sample) String() string {
	return fmt.Sprintf("rss %.1f MiB, %d open fds, %d goroutines", float64(s.rssKB)/1024, s.fds, s.goroutines)
}

func takeSample(s *server, pid int) (sample, error) {
	var smp sample
	mem, err := s.Memory()
	if err != nil {
		return smp, err
	}
	smp.rssKB, smp.anonKB = mem.RSS>>10, mem.Anon>>10
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return smp, err
	}
	smp.fds = len(fds)
	m, err := s.Metrics("go_goroutines", "go_memstats_heap_inuse_bytes")
	if err != nil {
		return smp, err
	}
	smp.goroutines = int(m["go_goroutines"])
	smp.heapMiB = m["go_memstats_heap_inuse_bytes"] / (1 << 20)
	return smp, nil
}

// settle samples the idle server until its goroutines and open files are
// back to at most the given figures (when non-zero), waiting out
// connections and timers that close on their own; it gives up after 20 s
// and returns the last sample. The metrics scrapes use fresh connections
// that close at once, so they do not count against the figures.
func settle(t *testing.T, s *server, pid, goroutines, fds int) sample {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var prev sample
	for {
		s.Client().CloseIdleConnections()
		smp, err := takeSample(s, pid)
		if err != nil {
			t.Fatalf("sample: %v", err)
		}
		stable := prev.goroutines == smp.goroutines && prev.fds == smp.fds
		if goroutines == 0 && stable {
			return smp
		}
		if goroutines > 0 && smp.goroutines <= goroutines && smp.fds <= fds {
			return smp
		}
		if time.Now().After(deadline) {
			return smp
		}
		prev = smp
		time.Sleep(500 * time.Millisecond)
	}
}

// checkFlat fails when memory, open files or goroutines under load keep
// growing: the peak of the last third of the samples against the peak of
// the first third. Resident memory gets a wide margin because SQLite's page
// caches (up to 64 MiB for the read model's writer alone) legitimately fill
// as the files grow; the Go heap gets a tighter one.
func checkFlat(t *testing.T, samples []sample) {
	t.Helper()
	if len(samples) < 3 {
		return
	}
	third := len(samples) / 3
	peak := func(ss []sample, f func(sample) int64) int64 {
		var m int64
		for _, s := range ss {
			m = max(m, f(s))
		}
		return m
	}
	rss := func(s sample) int64 { return s.rssKB }
	fds := func(s sample) int64 { return int64(s.fds) }
	gor := func(s sample) int64 { return int64(s.goroutines) }
	early, late := samples[:third], samples[len(samples)-third:]
	if e, l := peak(early, rss), peak(late, rss); l > e+e/2+16<<10 {
		t.Errorf("resident memory grows under steady load: early peak %d KiB, late peak %d KiB", e, l)
	}
	heap := func(s sample) int64 { return int64(s.heapMiB * 1024) }
	if e, l := peak(early, heap), peak(late, heap); l > e+e/2+8<<10 {
		t.Errorf("Go heap grows under steady load: early peak %d KiB, late peak %d KiB", e, l)
	}
	if e, l := peak(early, fds), peak(late, fds); l > e+8 {
		t.Errorf("open files grow under steady load: early peak %d, late peak %d", e, l)
	}
	if e, l := peak(early, gor), peak(late, gor); l > e+16 {
		t.Errorf("goroutines grow under steady load: early peak %d, late peak %d", e, l)
	}
}

// fileSizes lists the database files of a data directory with their sizes.
func fileSizes(dir string) string {
	entries, _ := os.ReadDir(dir)
	var parts []string
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.Contains(e.Name(), ".db") && info.Size() > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", e.Name(), float64(info.Size())/(1<<20)))
		}
	}
	return strings.Join(parts, ", ")
}

func logSeries(t *testing.T, name string, samples []sample, f func(sample) float64) {
	t.Helper()
	if len(samples) == 0 {
		return
	}
	lo, hi := f(samples[0]), f(samples[0])
	for _, s := range samples {
		lo, hi = min(lo, f(s)), max(hi, f(s))
	}
	t.Logf("%s: start %.1f, end %.1f, min %.1f, max %.1f", name, f(samples[0]), f(samples[len(samples)-1]), lo, hi)
}

func median(ds []time.Duration) time.Duration {
	c := append([]time.Duration(nil), ds...)
	return quantile(c, 0.5)
}
