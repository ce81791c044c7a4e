package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sseEvent is one dispatched server-sent event. Data is only valid during
// the callback.
type sseEvent struct {
	ID    string
	Event string
	Data  []byte
}

// readSSE parses a text/event-stream (the WHATWG rules that matter here:
// "field: value" lines, one optional space after the colon, comment lines
// starting with ':', several data lines joined by '\n', an event dispatched
// at a blank line only when it has data) and calls fn for each event. It
// returns the reader's error (io.EOF at a clean end).
func readSSE(r io.Reader, fn func(sseEvent)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var ev sseEvent
	var data []byte
	hasData := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: keep reading it.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			return err
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			if hasData {
				ev.Data = data
				fn(ev)
			}
			ev, data, hasData = sseEvent{}, data[:0], false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			ev.ID = string(value)
		case "event":
			ev.Event = string(value)
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		}
	}
}

// benchSSEConfig shapes the fan-out phase.
type benchSSEConfig struct {
	// Target names what is measured in the runs ("ledgerq" when empty).
	Target      string
	Subscribers int
	Queues      int
	Rate        float64 // publishes per second over all queues
	Warmup      time.Duration
	Duration    time.Duration
	Grace       time.Duration // how long to wait for the last frames
	MaxInflight int
	// Token returns subscriber i's bearer token; nil means the target's.
	// Many subscribers are many clients: the server caps the streams one
	// token subject may hold open.
	Token func(i int) (string, error)
}

// benchSSE opens cfg.Subscribers subscriptions (subscriber i on queue
// i mod Queues, kinds=message), publishes at cfg.Rate round-robin over the
// queues, and measures for each frame the time from the publish's 201 to
// the frame's arrival (0 when the frame came first). A frame counts once
// per subscriber and position. After the last publish it waits for frames
// as long as they keep arriving (up to two minutes), so a lagging read side
// shows as latency, and missing frames are ones that never came.
func benchSSE(ctx context.Context, t *benchTarget, bodies benchBodies, cfg benchSSEConfig) (benchRun, error) {
	target := cmp.Or(cfg.Target, "ledgerq")
	run := benchRun{Phase: "sse", Target: target, Unit: "frames/s", Concurrency: cfg.Subscribers}
	queues := make([]string, cfg.Queues)
	for i := range queues {
		queues[i] = "bench-sse-" + strconv.Itoa(i)
	}
	if err := t.ensureQueues(ctx, queues); err != nil {
		return run, err
	}
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	// Subscriptions need a connection each, outside the request pool.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()

	type frame struct {
		pos int64
		at  time.Time
	}
	frames := make([][]frame, cfg.Subscribers)
	// received counts frames at or after countFrom: those of the measured
	// publishes, not of the warm-up's.
	var received, countFrom, disconnected atomic.Int64
	countFrom.Store(1 << 62)
	connected := make(chan error, cfg.Subscribers)
	var wg sync.WaitGroup
	tokens := make([]string, cfg.Subscribers)
	for i := range tokens {
		tokens[i] = t.token
		if cfg.Token != nil {
			tok, err := cfg.Token(i)
			if err != nil {
				return run, fmt.Errorf("subscriber token: %w", err)
			}
			tokens[i] = tok
		}
	}
	for i := range cfg.Subscribers {
		wg.Go(func() {
			q := url.Values{"queues": {queues[i%cfg.Queues]}, "kinds": {"message"}}
			req, err := http.NewRequestWithContext(subCtx, http.MethodGet, t.base+"/v1/subscribe?"+q.Encode(), nil)
			if err != nil {
				connected <- err
				return
			}
			req.Header.Set("Authorization", "Bearer "+tokens[i])
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				connected <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(io.LimitReader(resp.Body, 4096))
				connected <- fmt.Errorf("subscriber %d: %w: %s", i, &benchHTTPError{Status: resp.StatusCode}, bytes.TrimSpace(buf.Bytes()))
				return
			}
			connected <- nil
			defer func() {
				if subCtx.Err() == nil {
					disconnected.Add(1) // the server ended the stream
				}
			}()
			_ = readSSE(resp.Body, func(ev sseEvent) {
				if ev.Event != "message.updated" {
					return
				}
				pos, err := strconv.ParseInt(ev.ID, 10, 64)
				if err != nil {
					return
				}
				frames[i] = append(frames[i], frame{pos, time.Now()})
				if pos >= countFrom.Load() {
					received.Add(1)
				}
			})
		})
	}
	timeout := time.After(60 * time.Second)
	for range cfg.Subscribers {
		select {
		case err := <-connected:
			if err != nil {
				stopSubs()
				wg.Wait()
				return run, fmt.Errorf("subscribe: %w", err)
			}
		case <-timeout:
			stopSubs()
			wg.Wait()
			return run, errors.New("subscribe: not every subscriber connected within 60 s")
		case <-ctx.Done():
			stopSubs()
			wg.Wait()
			return run, ctx.Err()
		}
	}

	type published struct {
		pos   int64
		queue int
		at    time.Time
	}
	var next atomic.Int64
	pubs := make([][]published, cfg.MaxInflight)
	record := false
	op := func(ctx context.Context, w int, _ time.Time) (int, error) {
		qi := int(next.Add(1) % int64(cfg.Queues))
		var buf bytes.Buffer
		pos, err := t.publish(ctx, queues[qi], bodies.single, &buf)
		if err != nil {
			return 0, err
		}
		if record {
			pubs[w] = append(pubs[w], published{pos, qi, time.Now()})
		}
		return 1, nil
	}
	if cfg.Warmup > 0 {
		benchFixedRate(ctx, benchPhase{Phase: "sse-warmup", Duration: cfg.Warmup}, cfg.Rate, cfg.MaxInflight, op)
	}
	record = true // the warm-up's workers have all returned
	countFrom.Store(t.maxPos.Load() + 1)
	histBefore, histErr := t.histograms(ctx, readSideHists...)
	// CPU while publishing, when the frames are made: per publish, the
	// server's (frames included) and the bench's (its publisher and every
	// subscriber's reading), and the machine's idle share.
	cpu := startCPUWindow(t.cpuProbe(), 0)
	pubRun := benchFixedRate(ctx, benchPhase{Phase: "sse-publish", Target: target, Unit: "msg/s", Duration: cfg.Duration}, cfg.Rate, cfg.MaxInflight, op)
	cpu.finishPerPublish(pubRun, &run)

	byPos := map[int64]published{}
	perQueue := make([]int, cfg.Queues)
	for i := range cfg.Subscribers {
		perQueue[i%cfg.Queues]++
	}
	expected := 0
	for _, ps := range pubs {
		for _, p := range ps {
			byPos[p.pos] = p
			expected += perQueue[p.queue]
		}
	}
	// Wait for the last frames while they keep coming: a read side that
	// lags by seconds still delivers, and those frames must count (late),
	// not go missing. Grace is how long a silence ends the wait.
	hardStop := time.Now().Add(2 * time.Minute)
	deadline := time.Now().Add(cfg.Grace)
	for last := received.Load(); last < int64(expected) && time.Now().Before(deadline) && time.Now().Before(hardStop) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
		if n := received.Load(); n > last {
			last, deadline = n, time.Now().Add(cfg.Grace)
		}
	}
	stopSubs()
	wg.Wait()
	var histAfter map[string]histSnap
	if histErr == nil {
		histAfter, histErr = t.histograms(ctx, readSideHists...)
	}

	var lat []time.Duration
	delivered := 0
	for i, fs := range frames {
		seen := map[int64]bool{}
		for _, f := range fs {
			p, ok := byPos[f.pos]
			if !ok || p.queue != i%cfg.Queues || seen[f.pos] {
				continue
			}
			seen[f.pos] = true
			delivered++
			lat = append(lat, max(f.at.Sub(p.at), 0))
		}
	}
	run.Ops = int64(delivered)
	run.Seconds = cfg.Duration.Seconds()
	run.Rate = float64(delivered) / run.Seconds
	run.Errors = pubRun.Errors
	run.FirstError = pubRun.FirstError
	run.setLatencies(lat)
	run.extra("subscribers", float64(cfg.Subscribers))
	run.extra("queues", float64(cfg.Queues))
	run.extra("publish_rate", pubRun.Rate)
	run.extra("publish_p99_ms", pubRun.P99)
	run.extra("frames_expected", float64(expected))
	run.extra("disconnected", float64(disconnected.Load()))
	if expected > 0 {
		run.extra("delivered_ratio", float64(delivered)/float64(expected))
	}
	if histErr == nil {
		serverHistExtras(&run, histBefore, histAfter)
	}
	return run, nil
}

// benchReadSide publishes at rate over queues for d while a prober
// publishes one message at a time to its own queue and asks a query for
// it with X-Ledgerq-Min-Position: each sample is the time from the
// publish's 201 to the query's answer, which the server holds until the
// read model has applied that position. It also reports whether that lag
// grew: the median of the last quarter of samples against the first. The
// load runs for warmup first, unmeasured, as in every other phase: probes,
// the server's histograms and the CPU window start after it.
func benchReadSide(ctx context.Context, t *benchTarget, bodies benchBodies, queues []string, rate float64, warmup, d time.Duration, maxInflight int) (benchRun, error) {
	run := benchRun{Phase: "read-side", Target: "ledgerq", Unit: "probes/s"}
	const probeQueue = "bench-probe"
	if err := t.ensureQueues(ctx, append([]string{probeQueue}, queues...)); err != nil {
		return run, err
	}
	// CPU over the phase, per background publish: the server's, the
	// bench's (load and probes), and the machine's idle share. A tail
	// measured with no core to spare is the machine's, not one stage's.
	cpu := startCPUWindow(t.cpuProbe(), warmup)
	loadDone := make(chan benchRun, 1)
	go func() {
		var next atomic.Int64
		loadDone <- benchFixedRate(ctx, benchPhase{Phase: "read-side-load", Target: "ledgerq", Unit: "msg/s", Warmup: warmup, Duration: d}, rate, maxInflight,
			func(ctx context.Context, _ int, _ time.Time) (int, error) {
				var buf bytes.Buffer
				_, err := t.publish(ctx, queues[next.Add(1)%int64(len(queues))], bodies.single, &buf)
				return 1, err
			})
	}()
	type sample struct {
		at  time.Time
		lag time.Duration
	}
	if err := sleepCtx(ctx, warmup); err != nil {
		return run, err
	}
	histBefore, histErr := t.histograms(ctx, readSideHists...)
	var samples []sample
	var buf bytes.Buffer
	var load benchRun
probing:
	for {
		select {
		case load = <-loadDone:
			break probing
		default:
		}
		pos, err := t.publish(ctx, probeQueue, bodies.single, &buf)
		if err != nil {
			run.Errors++
			run.FirstError = cmp.Or(run.FirstError, "probe publish: "+err.Error())
			_ = sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		t0 := time.Now()
		err = t.call(ctx, http.MethodGet, messagesPath(probeQueue), nil, &buf, "X-Ledgerq-Min-Position", strconv.FormatInt(pos, 10))
		if err != nil {
			run.Errors++
			run.FirstError = cmp.Or(run.FirstError, "probe query: "+err.Error())
			continue
		}
		samples = append(samples, sample{t0, time.Since(t0)})
		_ = sleepCtx(ctx, 10*time.Millisecond)
	}
	if ctx.Err() != nil {
		return run, ctx.Err()
	}
	cpu.finishPerPublish(load, &run)
	if histErr == nil {
		if histAfter, err := t.histograms(ctx, readSideHists...); err == nil {
			serverHistExtras(&run, histBefore, histAfter)
		}
	}
	lat := make([]time.Duration, len(samples))
	for i, s := range samples {
		lat[i] = s.lag
	}
	run.Ops = int64(len(samples))
	run.Seconds = d.Seconds()
	run.Rate = float64(run.Ops) / run.Seconds
	run.setLagSamples(lat)
	run.extra("load_rate", load.Rate)
	run.extra("load_offered_rate", rate)
	run.extra("load_p99_ms", load.P99)
	run.extra("load_errors", float64(load.Errors))
	if load.FirstError != "" {
		run.FirstError = cmp.Or(run.FirstError, "load: "+load.FirstError)
	}
	return run, nil
}

// setLagSamples fills the latency percentiles and the lag trend from probe
// samples in the order they were taken.
func (r *benchRun) setLagSamples(inOrder []time.Duration) {
	// The trend first, from the samples as taken: medians of a sorted slice's
	// first and last quarters would report the spread as growth.
	first, last := lagTrend(inOrder)
	r.setLatencies(inOrder)
	r.extra("lag_first_quarter_median_ms", durationMS(first))
	r.extra("lag_last_quarter_median_ms", durationMS(last))
	r.extra("lag_growth_ms", durationMS(last-first))
}

// lagTrend returns the medians of the first and the last quarter of
// samples taken in time order; a read side that keeps up has the same lag
// at the end as at the start.
func lagTrend(inOrder []time.Duration) (first, last time.Duration) {
	q := len(inOrder) / 4
	if q == 0 {
		return 0, 0
	}
	med := func(xs []time.Duration) time.Duration {
		s := slices.Clone(xs)
		slices.Sort(s)
		return percentile(s, 0.5)
	}
	return med(inOrder[:q]), med(inOrder[len(inOrder)-q:])
}
