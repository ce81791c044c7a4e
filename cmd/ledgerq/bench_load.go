package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgerq/ledgerq/tests/bench/limits"
	"github.com/valyala/fasthttp"
)

// benchTarget is an HTTP endpoint the generator drives: a ledgerq server or
// the limit handler, which answer the publish route alike.
type benchTarget struct {
	base  string
	token string
	// fast sends the load. The generator shares the machine's cores with
	// the server it measures, so its own CPU per request matters: on the
	// 2-core hosts of docs/benchmarks.md net/http's client spent 77–90 µs
	// per publish and fasthttp's 31–43 µs, which left the servers (the
	// limit handler and ledgerq alike) that much more of the machine.
	fast *fasthttp.Client
	// client reads /metrics, which the load does not depend on.
	client *http.Client
	// cpu reads the target process's CPU time when the bench started it;
	// nil otherwise.
	cpu func() (time.Duration, error)
	// maxPos is the highest position any command answer carried.
	maxPos atomic.Int64
}

// cpuProbe measures the bench's CPU and, when known, the target's.
func (t *benchTarget) cpuProbe() *cpuProbe { return &cpuProbe{Target: t.cpu} }

// benchRequestTimeout bounds one request when the context has no deadline.
const benchRequestTimeout = 2 * time.Minute

// newBenchTarget keeps up to idle connections open so that a run with that
// many concurrent requests never pays for new TCP connections mid-run.
func newBenchTarget(base, token string, idle int) *benchTarget {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &benchTarget{
		base:  strings.TrimRight(base, "/"),
		token: token,
		fast: &fasthttp.Client{
			Name:                          "ledgerq-bench",
			MaxConnsPerHost:               idle + 64,
			MaxConnWaitTimeout:            benchRequestTimeout,
			MaxIdleConnDuration:           time.Minute, // under the server's 120 s idle timeout
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			Dial: func(addr string) (net.Conn, error) {
				return dialer.Dial("tcp", addr)
			},
		},
		client: &http.Client{Timeout: benchRequestTimeout},
	}
}

func (t *benchTarget) close() {
	t.fast.CloseIdleConnections()
	t.client.CloseIdleConnections()
}

// benchHTTPError is an answer that was not a 2xx.
type benchHTTPError struct {
	Status int
	Code   string
}

func (e *benchHTTPError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d %s", e.Status, e.Code)
}

// call sends one request and reads the whole answer into buf. Extra headers
// come as name, value pairs. A request already sent is not cut short when
// ctx ends (fasthttp has no such hook) but is bounded by ctx's deadline.
func (t *benchTarget) call(ctx context.Context, method, path string, body []byte, buf *bytes.Buffer, headers ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.base + path)
	req.Header.SetMethod(method)
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(benchRequestTimeout)
	}
	if err := t.fast.DoDeadline(req, resp, deadline); err != nil {
		return err
	}
	buf.Reset()
	buf.Write(resp.Body())
	if status := resp.StatusCode(); status >= 300 {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(buf.Bytes(), &p)
		return &benchHTTPError{Status: status, Code: p.Code}
	}
	return nil
}

func (t *benchTarget) notePosition(p int64) { raiseTo(&t.maxPos, p) }

// ensureQueues creates the queues (default attributes); an existing queue
// is fine.
func (t *benchTarget) ensureQueues(ctx context.Context, names []string) error {
	var buf bytes.Buffer
	for _, n := range names {
		body, _ := json.Marshal(map[string]string{"name": n})
		if err := t.call(ctx, http.MethodPost, "/v1/queues", body, &buf); err != nil {
			return fmt.Errorf("create queue %s: %w", n, err)
		}
	}
	return nil
}

// benchBodies are the request bodies every phase sends, encoded once so the
// generator spends its CPU on requests, not on encoding/json.
type benchBodies struct {
	single  []byte // {"body": 200 B}
	batch   []byte // {"messages": [100 × {"body": 200 B}]}
	batchN  int
	receive []byte // {"max_messages": 10, …}
}

func newBenchBodies(bodyBytes, batch, receiveMax int) benchBodies {
	msg := map[string]string{"body": limits.Body(bodyBytes)}
	single, _ := json.Marshal(msg)
	msgs := make([]map[string]string, batch)
	for i := range msgs {
		msgs[i] = msg
	}
	batchBody, _ := json.Marshal(map[string]any{"messages": msgs})
	recv, _ := json.Marshal(map[string]any{"max_messages": receiveMax, "visibility_timeout_ms": 120000, "wait_ms": 0, "consumer": "bench"})
	return benchBodies{single: single, batch: batchBody, batchN: batch, receive: recv}
}

func messagesPath(queue string) string { return "/v1/queues/" + url.PathEscape(queue) }

// publish sends one message and returns the position of its event.
func (t *benchTarget) publish(ctx context.Context, queue string, body []byte, buf *bytes.Buffer) (int64, error) {
	return t.postForPosition(ctx, messagesPath(queue)+"/messages", "publish", body, buf)
}

// publishBatch sends one batch and returns the position of its last event.
func (t *benchTarget) publishBatch(ctx context.Context, queue string, body []byte, buf *bytes.Buffer) (int64, error) {
	return t.postForPosition(ctx, messagesPath(queue)+"/messages:batch", "batch", body, buf)
}

// postForPosition sends a command and returns (and notes) the position it
// answered.
func (t *benchTarget) postForPosition(ctx context.Context, path, what string, body []byte, buf *bytes.Buffer) (int64, error) {
	if err := t.call(ctx, http.MethodPost, path, body, buf); err != nil {
		return 0, err
	}
	var out struct {
		Position int64 `json:"position"`
	}
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		return 0, fmt.Errorf("%s answer: %w", what, err)
	}
	t.notePosition(out.Position)
	return out.Position, nil
}

// errBenchDrained: a receive found the queue empty.
var errBenchDrained = errors.New("queue drained")

// receiveAck receives up to the body's max_messages and acknowledges them
// with one batch ack; it returns how many acks succeeded.
func (t *benchTarget) receiveAck(ctx context.Context, queue string, body []byte, buf *bytes.Buffer) (int, error) {
	if err := t.call(ctx, http.MethodPost, messagesPath(queue)+"/receive", body, buf); err != nil {
		return 0, err
	}
	var got struct {
		Messages []struct {
			Receipt string `json:"receipt"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		return 0, fmt.Errorf("receive answer: %w", err)
	}
	if len(got.Messages) == 0 {
		return 0, errBenchDrained
	}
	receipts := make([]string, len(got.Messages))
	for i, m := range got.Messages {
		receipts[i] = m.Receipt
	}
	ackBody, _ := json.Marshal(map[string]any{"receipts": receipts})
	if err := t.call(ctx, http.MethodPost, messagesPath(queue)+"/ack", ackBody, buf); err != nil {
		return 0, fmt.Errorf("ack: %w", err)
	}
	var acks struct {
		Results []struct {
			OK   bool   `json:"ok"`
			Code string `json:"code"`
		} `json:"results"`
		Position int64 `json:"position"`
	}
	if err := json.Unmarshal(buf.Bytes(), &acks); err != nil {
		return 0, fmt.Errorf("ack answer: %w", err)
	}
	t.notePosition(acks.Position)
	n := 0
	for _, r := range acks.Results {
		if r.OK {
			n++
		}
	}
	if n < len(receipts) {
		return n, fmt.Errorf("ack: %d of %d receipts refused", len(receipts)-n, len(receipts))
	}
	return n, nil
}

// queueReady reads a queue's ready count once the read side has applied
// position minPos, asking again for up to a minute while the server answers
// consistency_timeout (a read side still catching up after a burst).
func (t *benchTarget) queueReady(ctx context.Context, queue string, minPos int64) (int64, error) {
	var buf bytes.Buffer
	deadline := time.Now().Add(time.Minute)
	for {
		err := t.call(ctx, http.MethodGet, messagesPath(queue), nil, &buf, "X-Ledgerq-Min-Position", strconv.FormatInt(minPos, 10))
		var he *benchHTTPError
		if errors.As(err, &he) && he.Code == "consistency_timeout" && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			return 0, err
		}
		break
	}
	var q struct {
		Stats struct {
			Ready int64 `json:"ready"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(buf.Bytes(), &q); err != nil {
		return 0, fmt.Errorf("queue answer: %w", err)
	}
	return q.Stats.Ready, nil
}

// benchPhase names and shapes one run.
type benchPhase struct {
	Phase, Target, Unit string
	Conns               int
	Warmup, Duration    time.Duration
	// CPU, when set, adds the CPU used per op after the warm-up (the
	// bench's own and the target's) to the run's extras. Leave it nil when
	// other work runs in the bench at the same time.
	CPU *cpuProbe
}

// errBenchStop, returned (wrapped) by an operation, ends the run for every
// worker at that moment: the figures cover the time until then.
var errBenchStop = errors.New("bench: stop")

// errBenchWorkerDone, returned by an operation, ends that worker only (its
// share of a fixed amount of work is done); when every worker is done the
// run ends with the last completed operation.
var errBenchWorkerDone = errors.New("bench: worker done")

// benchOp is one closed-loop operation of one worker; it returns how many
// units (messages, rows …) it completed.
type benchOp func(ctx context.Context, worker int) (int, error)

// benchClosedLoop runs ph.Conns workers, each repeating op as fast as the
// target answers, for ph.Warmup and then ph.Duration. Operations that
// complete inside the measured window count toward the rate and the
// latencies; errors count anywhere before its end.
func benchClosedLoop(ctx context.Context, ph benchPhase, op benchOp) benchRun {
	start := time.Now()
	from := start.Add(ph.Warmup)
	cpu := startCPUWindow(ph.CPU, ph.Warmup)
	var end, lastDone atomic.Int64
	end.Store(from.Add(ph.Duration).UnixNano())
	type tally struct {
		units, errs int64
		firstErr    string
		lat         []time.Duration
	}
	tallies := make([]tally, ph.Conns)
	var wg sync.WaitGroup
	for w := range ph.Conns {
		wg.Go(func() {
			tl := &tallies[w]
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.UnixNano() >= end.Load() {
					return
				}
				n, err := op(ctx, w)
				t1 := time.Now()
				if errors.Is(err, errBenchStop) {
					lowerTo(&end, t1.UnixNano())
					return
				}
				if errors.Is(err, errBenchWorkerDone) {
					return
				}
				if t1.UnixNano() > end.Load() || ctx.Err() != nil {
					return
				}
				if err != nil {
					tl.errs++
					if tl.firstErr == "" {
						tl.firstErr = err.Error()
					}
					// A dead server answers instantly: do not spin on it.
					_ = sleepCtx(ctx, 5*time.Millisecond)
					continue
				}
				if !t1.Before(from) {
					tl.units += int64(n)
					tl.lat = append(tl.lat, t1.Sub(t0))
					raiseTo(&lastDone, t1.UnixNano())
				}
			}
		})
	}
	wg.Wait()
	if done := lastDone.Load(); done > 0 && time.Now().UnixNano() < end.Load() {
		// Every worker finished its share before the time was up.
		lowerTo(&end, done)
	}
	run := benchRun{Phase: ph.Phase, Target: ph.Target, Unit: ph.Unit, Concurrency: ph.Conns}
	var lat []time.Duration
	for _, tl := range tallies {
		run.Ops += tl.units
		run.Errors += tl.errs
		if run.FirstError == "" {
			run.FirstError = tl.firstErr
		}
		lat = append(lat, tl.lat...)
	}
	elapsed := time.Duration(end.Load() - from.UnixNano())
	if elapsed > 0 {
		run.Seconds = elapsed.Seconds()
		run.Rate = float64(run.Ops) / run.Seconds
	} else {
		run.Note = "ended during the warm-up; nothing measured"
	}
	run.setLatencies(lat)
	cpu.finish(&run)
	return run
}

// raiseTo sets a to v when v is higher.
func raiseTo(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// lowerTo sets a to v when v is lower.
func lowerTo(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v >= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// benchFixedOp is one open-loop request; intended is when it was due.
type benchFixedOp func(ctx context.Context, worker int, intended time.Time) (int, error)

// benchFixedRate offers rate requests per second, open loop, for ph.Warmup
// and then ph.Duration, with up to maxInflight requests outstanding. Each
// latency runs from the request's intended time to its answer, so time a
// request spent waiting for a free slot counts. Requests due in the
// measured window count, whenever they finish.
func benchFixedRate(ctx context.Context, ph benchPhase, rate float64, maxInflight int, op benchFixedOp) benchRun {
	start := time.Now()
	from := start.Add(ph.Warmup)
	cpu := startCPUWindow(ph.CPU, ph.Warmup)
	pacer := newBenchPacer(rate, start, ph.Warmup+ph.Duration)
	jobs := make(chan time.Time, maxInflight)
	type tally struct {
		units, errs int64
		firstErr    string
		lat         []time.Duration
	}
	tallies := make([]tally, maxInflight)
	var wg sync.WaitGroup
	for w := range maxInflight {
		wg.Go(func() {
			tl := &tallies[w]
			for intended := range jobs {
				n, err := op(ctx, w, intended)
				done := time.Now()
				if intended.Before(from) || ctx.Err() != nil {
					continue
				}
				if err != nil {
					tl.errs++
					if tl.firstErr == "" {
						tl.firstErr = err.Error()
					}
					continue
				}
				tl.units += int64(n)
				tl.lat = append(tl.lat, done.Sub(intended))
			}
		})
	}
	sent := pacer.run(ctx, func(t time.Time) bool {
		select {
		case jobs <- t:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(jobs)
	wg.Wait()
	run := benchRun{Phase: ph.Phase, Target: ph.Target, Unit: ph.Unit, Concurrency: maxInflight}
	var lat []time.Duration
	for _, tl := range tallies {
		run.Ops += tl.units
		run.Errors += tl.errs
		if run.FirstError == "" {
			run.FirstError = tl.firstErr
		}
		lat = append(lat, tl.lat...)
	}
	run.Seconds = ph.Duration.Seconds()
	run.Rate = float64(run.Ops) / run.Seconds
	run.extra("offered_rate", rate)
	run.extra("sent", float64(sent))
	run.setLatencies(lat)
	cpu.finish(&run)
	return run
}
