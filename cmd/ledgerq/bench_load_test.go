package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/bench/limits"
)

// limitTarget serves the real limit handler and returns a target with a
// valid token for it.
func limitTarget(t *testing.T) *benchTarget {
	t.Helper()
	secret, err := benchSecret()
	if err != nil {
		t.Fatal(err)
	}
	h, err := limits.NewHTTPHandler([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tok, err := benchToken(secret, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tg := newBenchTarget(srv.URL, tok, 16)
	t.Cleanup(tg.close)
	return tg
}

func TestClosedLoopPublish(t *testing.T) {
	tg := limitTarget(t)
	bodies := newBenchBodies(limits.BodyBytes, 100, 10)
	bufs := newBenchBufs(4)
	run := benchClosedLoop(context.Background(), benchPhase{Phase: "publish", Target: "limit", Unit: "msg/s", Conns: 4,
		Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond},
		func(ctx context.Context, w int) (int, error) {
			_, err := tg.publish(ctx, "q", bodies.single, bufs[w])
			return 1, err
		})
	if run.Errors != 0 {
		t.Fatalf("%d errors, first: %s", run.Errors, run.FirstError)
	}
	if run.Ops == 0 || int(run.Ops) != run.LatencySamples {
		t.Fatalf("ops %d, latency samples %d: want one sample per measured publish", run.Ops, run.LatencySamples)
	}
	if run.Seconds < 0.2 || run.Seconds > 0.21 {
		t.Fatalf("measured %.3f s, want the 0.2 s window", run.Seconds)
	}
	if got := float64(run.Ops) / run.Seconds; got != run.Rate {
		t.Fatalf("rate %v, want ops/seconds = %v", run.Rate, got)
	}
	// Warm-up publishes happened but were not counted.
	if tg.maxPos.Load() <= run.Ops {
		t.Fatalf("server saw position %d for %d measured publishes: the warm-up did not run", tg.maxPos.Load(), run.Ops)
	}
	if run.P50 <= 0 || run.P50 > run.P99 || run.P99 > run.P999 || run.P999 > run.Max {
		t.Fatalf("percentiles out of order: %+v", run)
	}
}

func TestClosedLoopCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":503,"code":"internal"}`))
	}))
	defer srv.Close()
	tg := newBenchTarget(srv.URL, "t", 2)
	bodies := newBenchBodies(10, 1, 1)
	bufs := newBenchBufs(2)
	run := benchClosedLoop(context.Background(), benchPhase{Conns: 2, Duration: 50 * time.Millisecond},
		func(ctx context.Context, w int) (int, error) {
			_, err := tg.publish(ctx, "q", bodies.single, bufs[w])
			return 1, err
		})
	if run.Errors == 0 || run.Ops != 0 {
		t.Fatalf("errors %d, ops %d: every request failed", run.Errors, run.Ops)
	}
	if run.FirstError != "HTTP 503 internal" {
		t.Fatalf("first error %q, want the status and the problem code", run.FirstError)
	}
}

func TestClosedLoopStopsEveryone(t *testing.T) {
	var calls atomic.Int64
	run := benchClosedLoop(context.Background(), benchPhase{Conns: 3, Duration: time.Minute},
		func(ctx context.Context, w int) (int, error) {
			if calls.Add(1) > 30 {
				return 0, errBenchStop
			}
			time.Sleep(time.Millisecond)
			return 10, nil
		})
	if run.Seconds >= 1 {
		t.Fatalf("ran %.1f s: errBenchStop must end the run at once", run.Seconds)
	}
	if run.Ops < 10*27 || run.Ops > 300 {
		t.Fatalf("counted %d units, want ≈ 30 ops × 10", run.Ops)
	}
}

func TestFixedRateOffersTheRate(t *testing.T) {
	tg := limitTarget(t)
	bodies := newBenchBodies(limits.BodyBytes, 1, 1)
	bufs := newBenchBufs(8)
	run := benchFixedRate(context.Background(), benchPhase{Phase: "fixed", Warmup: 100 * time.Millisecond, Duration: 500 * time.Millisecond}, 200, 8,
		func(ctx context.Context, w int, _ time.Time) (int, error) {
			_, err := tg.publish(ctx, "q", bodies.single, bufs[w])
			return 1, err
		})
	// 200/s: 20 due in the warm-up, exactly 100 in the measured 0.5 s.
	if run.Ops != 100 || run.Errors != 0 || run.LatencySamples != 100 {
		t.Fatalf("ops %d errors %d samples %d; want 100 measured requests", run.Ops, run.Errors, run.LatencySamples)
	}
	if run.Rate != 200 || run.Extra["sent"] != 120 {
		t.Fatalf("rate %v sent %v; want 200/s and 120 sent", run.Rate, run.Extra["sent"])
	}
	if got := tg.maxPos.Load(); got != 120 {
		t.Fatalf("the handler saw %d publishes, want 120", got)
	}
}

func TestFixedRateChargesQueueingToTheRequest(t *testing.T) {
	// One slot, requests due every 10 ms, each taking 30 ms: the backlog
	// grows, and latency from the intended time must show it.
	run := benchFixedRate(context.Background(), benchPhase{Duration: 200 * time.Millisecond}, 100, 1,
		func(ctx context.Context, w int, _ time.Time) (int, error) {
			time.Sleep(30 * time.Millisecond)
			return 1, nil
		})
	if run.Ops != 20 {
		t.Fatalf("ops %d, want all 20 due requests completed", run.Ops)
	}
	// The last request is due at 190 ms and completes around 20 × 30 =
	// 600 ms: ≈ 400 ms late. A closed loop would report 30 ms.
	if run.Max < 300 {
		t.Fatalf("max latency %.0f ms, want the growing backlog (> 300 ms) to show", run.Max)
	}
}

func TestReceiveAckAndDrain(t *testing.T) {
	f, srv := newFakeLedgerq(t, "tok")
	tg := newBenchTarget(srv.URL, "tok", 1)
	bodies := newBenchBodies(20, 25, 10)
	var buf bytes.Buffer
	for range 2 {
		if _, err := tg.publishBatch(context.Background(), "q", bodies.batch, &buf); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for {
		n, err := tg.receiveAck(context.Background(), "q", bodies.receive, &buf)
		if errors.Is(err, errBenchDrained) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			t.Fatalf("acked %d at once, want at most max_messages = 10", n)
		}
		total += n
	}
	if total != 50 || f.acked != 50 {
		t.Fatalf("acked %d (server counted %d), want the 50 published", total, f.acked)
	}
}

func TestBenchSSEFanOut(t *testing.T) {
	_, srv := newFakeLedgerq(t, "tok")
	tg := newBenchTarget(srv.URL, "tok", 8)
	run, err := benchSSE(context.Background(), tg, newBenchBodies(50, 1, 1), benchSSEConfig{
		Subscribers: 6, Queues: 3, Rate: 200, Warmup: 50 * time.Millisecond, Duration: 250 * time.Millisecond,
		Grace: 2 * time.Second, MaxInflight: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 50 measured publishes, each seen by the 2 subscribers of its queue.
	if exp := run.Extra["frames_expected"]; exp != 100 || run.Ops != 100 {
		t.Fatalf("frames %d of %v expected; want 100 of 100", run.Ops, exp)
	}
	if run.LatencySamples != 100 || run.Errors != 0 || run.Extra["disconnected"] != 0 {
		t.Fatalf("samples %d errors %d disconnected %v", run.LatencySamples, run.Errors, run.Extra["disconnected"])
	}
}

func TestBenchReadSide(t *testing.T) {
	_, srv := newFakeLedgerq(t, "tok")
	tg := newBenchTarget(srv.URL, "tok", 8)
	run, err := benchReadSide(context.Background(), tg, newBenchBodies(50, 1, 1), []string{"a", "b"}, 100, 0, 400*time.Millisecond, 8)
	if err != nil {
		t.Fatal(err)
	}
	if run.Errors != 0 || run.Ops < 5 || run.LatencySamples != int(run.Ops) {
		t.Fatalf("probes %d samples %d errors %d (%s)", run.Ops, run.LatencySamples, run.Errors, run.FirstError)
	}
	if run.Extra["load_rate"] != 100 {
		t.Fatalf("background load %v msg/s, want the offered 100", run.Extra["load_rate"])
	}
	// What the phase cost: the bench's CPU per background publish always,
	// the machine's idle share where /proc/stat exists.
	if _, ok := run.Extra[extraPublishBenchCPU]; !ok {
		t.Errorf("no bench CPU per publish in %v", run.Extra)
	}
	if _, ok := run.Extra[extraMachineIdle]; runtime.GOOS == "linux" && !ok {
		t.Errorf("no machine idle share in %v", run.Extra)
	}
}

// The read side warms up like every other phase: the load runs for the
// warm-up first, and neither its publishes nor any probe taken then count.
func TestBenchReadSideWarmsUp(t *testing.T) {
	_, srv := newFakeLedgerq(t, "tok")
	tg := newBenchTarget(srv.URL, "tok", 8)
	const warmup, d = 400 * time.Millisecond, 400 * time.Millisecond
	run, err := benchReadSide(context.Background(), tg, newBenchBodies(50, 1, 1), []string{"a", "b"}, 100, warmup, d, 8)
	if err != nil {
		t.Fatal(err)
	}
	// A probe every 10 ms at most: ~40 in the measured 400 ms, ~80 if the
	// warm-up's were counted.
	if run.Errors != 0 || run.Ops < 5 || run.Ops > 45 {
		t.Fatalf("%d probes (errors %d), want those of the measured %s only", run.Ops, run.Errors, d)
	}
	if run.Extra["load_rate"] != 100 {
		t.Fatalf("background load %v msg/s over the measured time, want the offered 100", run.Extra["load_rate"])
	}
}

func TestReadSideCPUNote(t *testing.T) {
	run := benchRun{Phase: "read-side", Target: "ledgerq", Extra: map[string]float64{
		extraPublishServerCPU: 310, extraPublishBenchCPU: 95, extraMachineIdle: 4.25, extraMachineSteal: 0.5}}
	runs := []benchRun{
		{Phase: "fixed-rate", Target: limitHTTPTarget, Extra: map[string]float64{extraServerCPU: 60}},
		{Phase: "fixed-rate", Target: "ledgerq", Extra: map[string]float64{extraServerCPU: 240}},
		{Phase: "fixed-rate", Target: "ledgerq", Extra: map[string]float64{extraServerCPU: 260}},
	}
	want := " CPU per background publish: the server 310 µs (250 µs over the in-process bus in the fixed-rate runs), the bench 95 µs." +
		" Over the phase the machine 4.2 % idle, 0.5 % stolen."
	if got := readSideCPUNote(run, runs); got != want {
		t.Errorf("note:\n got %q\nwant %q", got, want)
	}
	if got := readSideCPUNote(benchRun{}, runs); got != "" {
		t.Errorf("nothing measured: got %q, want \"\"", got)
	}
}

func TestLagTrend(t *testing.T) {
	ms := time.Millisecond
	steady := []time.Duration{2 * ms, 3 * ms, 2 * ms, 3 * ms, 2 * ms, 3 * ms, 2 * ms, 3 * ms}
	if first, last := lagTrend(steady); first != last {
		t.Errorf("steady lag: first %v last %v, want equal", first, last)
	}
	growing := []time.Duration{1 * ms, 2 * ms, 5 * ms, 9 * ms, 14 * ms, 20 * ms, 27 * ms, 35 * ms}
	// Quarters of two: medians (nearest rank) 1 ms and 27 ms.
	if first, last := lagTrend(growing); first != 1*ms || last != 27*ms {
		t.Errorf("growing lag: first %v last %v, want 1ms and 27ms", first, last)
	}
	if first, last := lagTrend(growing[:3]); first != 0 || last != 0 {
		t.Errorf("fewer than four samples have no quarters: got %v, %v", first, last)
	}
}

func TestScenariosAgainstFake(t *testing.T) {
	_, srv := newFakeLedgerq(t, "tok")
	dir := t.TempDir()
	var progress bytes.Buffer
	cfg, err := parseBenchFlags([]string{"--url", srv.URL, "--token", "tok", "--scenarios", "publish,batch,receive,mixed,fixed",
		"--duration", "150ms", "--warmup", "20ms", "--concurrency", "4", "--queues", "2", "--max-inflight", "16",
		"--json", filepath.Join(dir, "out.json")}, func(string) string { return "" }, &progress)
	if err != nil {
		t.Fatal(err)
	}
	cfg.progress = &progress
	s := &benchSession{cfg: cfg, dir: dir, started: time.Now()}
	if err := s.open(context.Background(), func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var out bytes.Buffer
	if err := s.scenarios(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	phases := map[string]benchRun{}
	for _, r := range s.runs {
		phases[r.Phase] = r
		if r.Errors != 0 {
			t.Errorf("%s: %d errors (%s)", r.Phase, r.Errors, r.FirstError)
		}
	}
	for _, p := range []string{"publish", "batch", "receive-fill", "receive", "mixed-publish", "mixed-receive", "fixed-rate"} {
		if phases[p].Ops == 0 {
			t.Errorf("phase %s measured nothing: %+v", p, phases[p])
		}
		if !strings.Contains(out.String(), "| "+p+" |") {
			t.Errorf("summary lacks %s:\n%s", p, out.String())
		}
	}
	// The fixed-rate phase runs at half the measured publish rate.
	if got, want := phases["fixed-rate"].Extra["offered_rate"], phases["publish"].Rate/2; got != want {
		t.Errorf("fixed rate offered %v, want half the publish rate %v", got, want)
	}
	var rep benchReport
	b, err := os.ReadFile(filepath.Join(dir, "out.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Runs) != len(s.runs) {
		t.Fatalf("JSON report: %v, %d runs of %d", err, len(rep.Runs), len(s.runs))
	}
}

func TestClosedLoopWorkersFinishTheirShare(t *testing.T) {
	var left atomic.Int64
	left.Store(30)
	run := benchClosedLoop(context.Background(), benchPhase{Conns: 3, Duration: time.Minute},
		func(ctx context.Context, w int) (int, error) {
			if left.Add(-1) < 0 {
				return 0, errBenchWorkerDone
			}
			time.Sleep(2 * time.Millisecond)
			return 100, nil
		})
	// All 30 operations count, including those finishing after the first
	// worker found nothing left, and the run ends with the last of them.
	if run.Ops != 3000 || run.LatencySamples != 30 {
		t.Fatalf("ops %d samples %d, want 3000 and 30", run.Ops, run.LatencySamples)
	}
	if run.Seconds <= 0 || run.Seconds > 1 {
		t.Fatalf("measured %.3f s, want the ≈ 20 ms the work took", run.Seconds)
	}
}

// A steady but noisy lag, the shape a read side that keeps up produces: the
// trend must come from the samples in the order they were taken. Reading
// quarters of the sorted samples (what the read-side phase once did, since
// setLatencies sorted in place) turns the spread into 8 ms of "growth".
func TestSetLagSamplesKeepsOrder(t *testing.T) {
	ms := time.Millisecond
	var probes []time.Duration
	for i := range 400 {
		probes = append(probes, []time.Duration{1 * ms, 5 * ms, 9 * ms, 5 * ms}[i%4])
	}
	taken := slices.Clone(probes)
	var r benchRun
	r.setLagSamples(probes)
	if !slices.Equal(probes, taken) {
		t.Fatal("setLagSamples reordered the caller's samples")
	}
	if g := r.Extra["lag_growth_ms"]; g != 0 {
		t.Fatalf("steady noisy lag: growth %v ms, want 0 (first %v, last %v)", g,
			r.Extra["lag_first_quarter_median_ms"], r.Extra["lag_last_quarter_median_ms"])
	}
	if r.P50 != 5 || r.Max != 9 || r.LatencySamples != 400 {
		t.Fatalf("percentiles: p50 %v max %v samples %d; want 5, 9, 400", r.P50, r.Max, r.LatencySamples)
	}
	var growing []time.Duration
	for i := range 400 {
		growing = append(growing, time.Duration(i)*ms/10)
	}
	r = benchRun{}
	r.setLagSamples(growing)
	if g := r.Extra["lag_growth_ms"]; g < 29 || g > 31 {
		t.Fatalf("lag rising 0.1 ms per probe: growth %v ms, want ≈ 30", g)
	}
}

// The generator's requests carry what the server checks: the method, the
// escaped path, the bearer token, the JSON content type with the body, and
// the extra headers (the read side's X-Ledgerq-Min-Position).
func TestCallSendsTheRequest(t *testing.T) {
	type seen struct {
		method, path, auth, ctype, minPos, body string
	}
	got := make(chan seen, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"),
			r.Header.Get("X-Ledgerq-Min-Position"), string(b)}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"position":42}`))
	}))
	defer srv.Close()
	tg := newBenchTarget(srv.URL+"/", "tok", 1)
	defer tg.close()
	var buf bytes.Buffer
	pos, err := tg.publish(context.Background(), "a b", []byte(`{"body":"x"}`), &buf)
	if err != nil || pos != 42 || tg.maxPos.Load() != 42 {
		t.Fatalf("publish: position %d (noted %d), %v; want 42", pos, tg.maxPos.Load(), err)
	}
	want := seen{"POST", "/v1/queues/a%20b/messages", "Bearer tok", "application/json", "", `{"body":"x"}`}
	if s := <-got; s != want {
		t.Fatalf("publish sent %+v, want %+v", s, want)
	}
	if err := tg.call(context.Background(), http.MethodGet, messagesPath("q"), nil, &buf, "X-Ledgerq-Min-Position", "7"); err != nil {
		t.Fatal(err)
	}
	want = seen{"GET", "/v1/queues/q", "Bearer tok", "", "7", ""}
	if s := <-got; s != want {
		t.Fatalf("read sent %+v, want %+v", s, want)
	}
	if buf.String() != `{"position":42}` {
		t.Fatalf("answer %q, want the whole body", buf.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tg.call(ctx, http.MethodGet, "/", nil, &buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call on an ended context: %v, want context.Canceled", err)
	}
}
