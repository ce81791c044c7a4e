package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ledgerq/ledgerq/tests/bench/limits"
)

// compare runs every phase with its anchors, alternating anchor and ledgerq
// runs, and returns the evaluated table.
func (s *benchSession) compare(ctx context.Context) (*benchReport, error) {
	rep := &benchReport{Command: s.cfg.commandLine, StartedAt: s.started, Host: benchHost()}
	q := s.cfg.queues
	pubQ, batchQ, recvQ, mixQ := benchNames("bench-pub-", q), benchNames("bench-batch-", q), benchNames("bench-recv-", q), benchNames("bench-mixed-", q)
	if err := s.lq.ensureQueues(ctx, slices.Concat(pubQ, batchQ, recvQ, mixQ)); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}

	// Memory first (on a fresh server of its own, while the machine is
	// quiet); its row goes near the end, in the order of the goals.
	memRow := s.memoryRow(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	pubRows, pubRate, err := s.comparePublish(ctx, pubQ)
	if err != nil {
		return nil, err
	}
	rep.Rows = append(rep.Rows, pubRows...)
	if pubRate <= 0 {
		return nil, errors.New("bench: single publish measured nothing; see the errors above")
	}
	rate := s.cfg.rate
	if rate == 0 {
		rate = pubRate / 2
	}

	batchRows, err := s.compareBatch(ctx, batchQ)
	if err != nil {
		return nil, err
	}
	rep.Rows = append(rep.Rows, batchRows...)

	var recv []float64
	var recvErrs int64
	for range s.cfg.runs {
		s.fill(ctx, "receive-fill", recvQ, s.prefill(pubRate))
		r := s.receiveRun(ctx, recvQ)
		recv, recvErrs = append(recv, r.Rate), recvErrs+r.Errors
	}
	rep.Rows = append(rep.Rows, benchRow{
		Name: "Receive 10 + ack over HTTP", Anchor: "single-publish rate (this run)",
		Limit: s.ratesOf("publish", "ledgerq"), LimitUnit: "msg/s", Ledgerq: recv, Unit: "msg/s",
		Op: ">=", Target: 1, Errors: recvErrs,
		Note: cpuNote(s.runs, "receive", "message", cpuSide{"ledgerq", "ledgerq"}),
	})

	mp, mr := s.mixedRun(ctx, mixQ)
	mixedRow := benchRow{
		Name:    fmt.Sprintf("Mixed load: %d publishers + %d receivers (receive rate)", max(1, s.cfg.conns/2), max(1, s.cfg.conns/2)),
		Ledgerq: []float64{mr.Rate}, Unit: "msg/s", Errors: mp.Errors + mr.Errors,
		Note: fmt.Sprintf("publishing %s msg/s (p99 %s) while receiving %s msg/s (p99 %s per receive + ack).",
			human(mp.Rate), msText(mp.P99), human(mr.Rate), msText(mr.P99)),
	}

	// The limit handler at the same rate first: what a request costs this
	// machine at a fixed rate when nothing is stored.
	limT, stopLim, limErr := s.startLimit(ctx, "limit-http-fixed.log")
	if limErr == nil {
		s.fixedRunOn(ctx, limT, limitHTTPTarget, pubQ, rate)
		stopLim()
	}
	fr := s.fixedRun(ctx, pubQ, rate)
	fixedRow := benchRow{
		Name:    fmt.Sprintf("Single publish at a fixed %s msg/s (50 %% load): p99", human(rate)),
		Ledgerq: []float64{fr.P99}, Unit: "ms", Errors: fr.Errors,
		Note: fmt.Sprintf("open loop, latency from each request's due time: p50 %s, p99 %s, p99.9 %s, max %s; %s msg/s achieved.",
			msText(fr.P50), msText(fr.P99), msText(fr.P999), msText(fr.Max), human(fr.Rate)),
	}
	if n := cpuNote(s.runs, "fixed-rate", "message", cpuSide{"L at the same rate", limitHTTPTarget}, cpuSide{"ledgerq", "ledgerq"}); n != "" {
		fixedRow.Note += " " + n
	}
	if n := cpuNote(s.runs, "publish", "request", cpuSide{"L", limitHTTPTarget}); n != "" {
		fixedRow.Note += " The same of the closed-loop publish rows: " + n
	}
	if limErr != nil {
		fixedRow.Note += " The limit handler could not run at this rate: " + limErr.Error() + "."
	}

	sseRows := s.sseRows(ctx, rate)
	rep.Rows = append(rep.Rows, s.readSideRows(ctx, rate)...)
	startRows := s.startupRows(ctx, batchQ) // start-up, replay
	rebuildRow := s.rebuildRow(ctx, s.lq.maxPos.Load(), startRows[1].Limit)
	rep.Rows = append(rep.Rows, startRows[1], rebuildRow)
	rep.Rows = append(rep.Rows, sseRows...)
	rep.Rows = append(rep.Rows, startRows[0], memRow, fixedRow, mixedRow)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Runs = s.runs
	rep.Took = time.Since(s.started)
	rep.evaluate()
	return rep, nil
}

// ratesOf collects the rates of the recorded runs of one phase and target.
func (s *benchSession) ratesOf(phase, target string) []float64 {
	var out []float64
	for _, r := range s.runs {
		if r.Phase == phase && r.Target == target && r.Seconds > 0 {
			out = append(out, r.Rate)
		}
	}
	return out
}

// Targets of the limit handler's runs.
const (
	limitHTTPTarget    = "limit:http+json+jwt"
	limitDurableTarget = "limit:http+sqlite"
	limitSSETarget     = "limit:http+sse"
)

// comparePublish alternates the HTTP handler limit, fdatasync, RabbitMQ and
// ledgerq's single publish.
func (s *benchSession) comparePublish(ctx context.Context, queues []string) ([]benchRow, float64, error) {
	limT, stopLim, err := s.startLimit(ctx, "limit-http.log")
	if err != nil {
		return nil, 0, fmt.Errorf("bench: %w", err)
	}
	defer stopLim()
	durT, stopDur, err := s.startLimit(ctx, "limit-durable.log", "--durable-db", filepath.Join(s.dir, "limit-durable.db"))
	if err != nil {
		return nil, 0, fmt.Errorf("bench: durable limit: %w", err)
	}
	defer stopDur()
	rabbitErr := peerReachable(s.cfg.rabbitURL)
	if rabbitErr != nil {
		s.logf("RabbitMQ skipped: %v", rabbitErr)
	}
	var httpL, httpP99, syncs, rabbit, durable, durableP99, pub, pubP99 []float64
	var pubErrs, rabbitErrs, durableErrs int64
	for range s.cfg.runs {
		l := s.publishRun(ctx, limT, limitHTTPTarget, queues)
		httpL, httpP99 = append(httpL, l.Rate), append(httpP99, l.P99)

		s.settle(ctx)
		f, err := limits.Fdatasync(ctx, s.dir, s.cfg.duration)
		if err != nil {
			return nil, 0, fmt.Errorf("bench: %w", err)
		}
		syncs = append(syncs, s.record(limitRun("fdatasync", "limit:fdatasync", "syncs/s", f)).Rate)

		if rabbitErr == nil {
			s.settle(ctx)
			ph := s.phase("publish", "rabbitmq", "msg/s")
			ph.CPU = &cpuProbe{} // RabbitMQ is not our child: the generator's CPU only
			r, err := benchRabbitMQ(ctx, s.cfg.rabbitURL, ph, []byte(limits.Body(s.cfg.bodyBytes)))
			if err != nil {
				rabbitErr = err
				s.logf("RabbitMQ skipped: %v", err)
			} else {
				s.record(r)
				rabbit, rabbitErrs = append(rabbit, r.Rate), rabbitErrs+r.Errors
			}
		}

		s.settle(ctx)
		d := s.publishRun(ctx, durT, limitDurableTarget, queues)
		durable, durableP99, durableErrs = append(durable, d.Rate), append(durableP99, d.P99), durableErrs+d.Errors

		p := s.publishRun(ctx, s.lq, "ledgerq", queues)
		pub, pubP99, pubErrs = append(pub, p.Rate), append(pubP99, p.P99), pubErrs+p.Errors
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
	}
	conns := strconv.Itoa(s.cfg.conns)
	rows := []benchRow{
		{Name: "Durable single publish over HTTP (JWT, 201 after commit), " + conns + " connections",
			Anchor: "L: HTTP+JSON+JWT handler", Limit: httpL, LimitUnit: "req/s", Ledgerq: pub, Unit: "msg/s",
			Op: ">=", Target: 0.40, Errors: pubErrs},
		{Name: "Single publish p99 latency", Anchor: "L's p99", Limit: httpP99, LimitUnit: "ms", Ledgerq: pubP99, Unit: "ms",
			Op: "<=", Target: 1.5, Errors: pubErrs},
		{Name: "Group commit at work: single-publish rate", Anchor: "fdatasync rate of the data directory",
			Limit: syncs, LimitUnit: "syncs/s", Ledgerq: pub, Unit: "msg/s", Op: ">=", Target: 3, Errors: pubErrs},
		{Name: "Single publish vs RabbitMQ, " + conns + " publishers", Anchor: "RabbitMQ: durable queue, persistent, confirms",
			Limit: rabbit, LimitUnit: "msg/s", Ledgerq: pub, Unit: "msg/s", Op: ">=", Target: 1, Errors: pubErrs + rabbitErrs},
	}
	durableRow := benchRow{Name: "Durable single publish against the least durable work",
		Anchor: "L-durable: the L handler, also committing each message's row to the same schema (group commit, fsync) before its 201",
		Limit:  durable, LimitUnit: "msg/s", Ledgerq: pub, Unit: "msg/s", Errors: pubErrs + durableErrs}
	durableRow.Note = joinNotes(durableNeed(durable, durableP99, httpL, httpP99, rows[0].Target, rows[1].Target),
		cpuNote(s.runs, "publish", "message", cpuSide{"L-durable", limitDurableTarget}, cpuSide{"ledgerq", "ledgerq"}))
	rows = append(rows, durableRow)
	if rabbitErr != nil {
		rows[3].Skip = "RabbitMQ not reachable (" + rabbitErr.Error() + ")"
	}
	rows[0].Note = cpuNote(s.runs, "publish", "request", cpuSide{"L", limitHTTPTarget}, cpuSide{"ledgerq", "ledgerq"})
	rows[3].Note = cpuNote(s.runs, "publish", "message", cpuSide{"RabbitMQ", "rabbitmq"}, cpuSide{"ledgerq", "ledgerq"})
	rows[2].Note = groupCommitNeed(rows[2].Target, syncs, httpL, rows[0].Target)
	return rows, mean(pub), nil
}

// limitRun turns a limit's result into a run.
func limitRun(phase, target, unit string, r limits.Result) benchRun {
	return benchRun{Phase: phase, Target: target, Unit: unit, Ops: r.Ops, Seconds: r.Elapsed.Seconds(), Rate: r.Rate()}
}

// compareBatch alternates raw SQLite inserts, JetStream and ledgerq's batch
// publish.
func (s *benchSession) compareBatch(ctx context.Context, queues []string) ([]benchRow, error) {
	natsErr := peerReachable(s.cfg.natsURL)
	if natsErr != nil {
		s.logf("NATS JetStream skipped: %v", natsErr)
	}
	var sqlite, js, batch []float64
	var batchErrs, jsErrs int64
	for range s.cfg.runs {
		s.settle(ctx)
		r, err := limits.SQLiteInsert(ctx, limits.SQLiteConfig{Dir: s.dir, Streams: len(queues), Batch: s.cfg.publishBatch,
			Duration: s.cfg.duration, BodyBytes: s.cfg.bodyBytes})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		sqlite = append(sqlite, s.record(limitRun("batch", "limit:sqlite-insert", "rows/s", r)).Rate)

		if natsErr == nil {
			s.settle(ctx)
			ph := s.phase("batch", "jetstream", "msg/s")
			ph.CPU = &cpuProbe{} // nor is nats-server
			r, err := benchJetStream(ctx, s.cfg.natsURL, ph, s.cfg.publishBatch, []byte(limits.Body(s.cfg.bodyBytes)))
			if err != nil {
				natsErr = err
				s.logf("NATS JetStream skipped: %v", err)
			} else {
				s.record(r)
				js, jsErrs = append(js, r.Rate), jsErrs+r.Errors
			}
		}

		b := s.batchRun(ctx, "batch", queues, s.cfg.duration, nil)
		batch, batchErrs = append(batch, b.Rate), batchErrs+b.Errors
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	rows := []benchRow{
		{Name: "Batch publish, 100 per request", Anchor: "L: raw SQLite insert, same batch and stream mix",
			Limit: sqlite, LimitUnit: "rows/s", Ledgerq: batch, Unit: "msg/s", Op: ">=", Target: 0.5, Errors: batchErrs},
		{Name: "Batch publish vs NATS JetStream", Anchor: "JetStream: file storage, async publish, 100 in flight per publisher",
			Limit: js, LimitUnit: "msg/s", Ledgerq: batch, Unit: "msg/s", Op: ">=", Target: 1, Errors: batchErrs + jsErrs},
	}
	if natsErr != nil {
		rows[1].Skip = "NATS not reachable (" + natsErr.Error() + ")"
	}
	rows[1].Note = joinNotes(jetStreamNeed(sqlite, js),
		cpuNote(s.runs, "batch", "message", cpuSide{"JetStream", "jetstream"}, cpuSide{"ledgerq", "ledgerq"}))
	return rows, nil
}

// groupCommitNeed says what the group-commit goal asks of single publish in
// units of L on this machine: target × the fdatasync rate over L's rate. L
// stores nothing, so where that reaches 1 no durable broker can pass.
func groupCommitNeed(target float64, syncs, httpL []float64, firstGoal float64) string {
	if mean(syncs) <= 0 || mean(httpL) <= 0 {
		return ""
	}
	need := target * mean(syncs) / mean(httpL)
	note := fmt.Sprintf("On this machine passing needs single publish at ≥ %.2f × L (%s × the fdatasync rate over L's rate), where the first row asks ≥ %.2f × L",
		need, strconv.FormatFloat(target, 'g', -1, 64), firstGoal)
	if need >= 1 {
		note += "; L stores nothing, so no durable publish can get there here"
	}
	return note + "."
}

// jetStreamNeed sets the raw SQLite limit beside JetStream: ledgerq's batch
// publish stores through SQLite with a synchronous commit, so that limit
// bounds it.
func jetStreamNeed(sqlite, js []float64) string {
	if mean(sqlite) <= 0 || mean(js) <= 0 {
		return ""
	}
	return fmt.Sprintf("The raw SQLite limit of the row above (the same rows, a synchronous commit, no HTTP) reached %.2f × JetStream's rate in this run: "+
		"a batch publish that commits to SQLite before answering cannot pass where that is below 1.", mean(sqlite)/mean(js))
}

// joinNotes joins the non-empty notes with a space.
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, " ")
}

// memoryRow measures the resident memory of a server of its own (fresh,
// with a private debug listener) with no ready message, with half of
// memoryMessages and with all of them, each time after asking it to
// collect its garbage and hand the freed memory back to the OS. The figure
// is the slope between the last two points: by then the server's fixed
// costs (SQLite page caches, buffers grown by the load itself) are paid,
// so what remains is the cost of one more ready message.
//
// Without the collection, RSS depends on when the collector last ran: the
// server lets 64 MiB of garbage accumulate (see tuneGC), ±670 B per message
// over 100k messages, so the RSS before it is in the note but is not the
// figure. The note also gives the growth from empty, fixed costs included.
func (s *benchSession) memoryRow(ctx context.Context) benchRow {
	n := s.cfg.memoryMessages
	body := float64(s.cfg.bodyBytes)
	row := benchRow{Name: fmt.Sprintf("Resident memory per ready message (%s messages, bodies excluded)", human(float64(n))),
		Unit: "B", Op: "<=", Target: 256}
	if s.server == nil {
		row.Skip = "needs a server the bench starts (no --url)"
		return row
	}
	if n < 2*int64(s.cfg.publishBatch) {
		row.Skip = fmt.Sprintf("--memory-messages must be at least %d", 2*s.cfg.publishBatch)
		return row
	}
	debugAddr, err := freeAddr()
	if err != nil {
		row.Skip = err.Error()
		return row
	}
	srv, _, err := startBenchServer(ctx, s.exe, filepath.Join(s.dir, "memory-data"), s.secret,
		filepath.Join(s.dir, "serve-memory.log"), s.serverArgs("--debug-addr", debugAddr)...)
	if err != nil {
		row.Skip = err.Error()
		return row
	}
	defer func() {
		if err := srv.stop(); err != nil {
			s.logf("memory server: %v", err)
		}
	}()
	lq := newBenchTarget(srv.url, s.token, s.cfg.maxInflight)
	lq.cpu = srv.cpu
	defer lq.close()
	if err := lq.ensureQueues(ctx, []string{"bench-mem", "bench-mem-warmup"}); err != nil {
		row.Skip = err.Error()
		return row
	}
	main := s.lq
	s.lq = lq // for s.fill
	defer func() { s.lq = main }()

	// point publishes more messages (none the first time), lets the server
	// settle, and reads its RSS, then its RSS after a collection, and the
	// queue's ready count.
	point := func(more int64) (before, after, ready int64, err error) {
		if more > 0 {
			row.Errors += s.fill(ctx, "memory-fill", []string{"bench-mem"}, more).Errors
		}
		if ready, err = lq.queueReady(ctx, "bench-mem", lq.maxPos.Load()); err != nil {
			return 0, 0, 0, fmt.Errorf("reading the ready count: %w", err)
		}
		time.Sleep(time.Second)
		if before, err = srv.rss(); err != nil {
			return 0, 0, 0, err
		}
		if err := freeServerMemory(ctx, debugAddr); err != nil {
			return 0, 0, 0, err
		}
		after, err = srv.rss()
		return before, after, ready, err
	}
	// Warm the server's pools and connections first, on another queue.
	s.fill(ctx, "memory-warmup", []string{"bench-mem-warmup"}, int64(s.cfg.conns*s.cfg.publishBatch))
	raw0, rss0, ready0, err := point(0)
	if err == nil && ready0 != 0 {
		err = fmt.Errorf("bench-mem holds %d messages before the measurement", ready0)
	}
	var raw1, rss1, ready1, raw2, rss2, ready2 int64
	if err == nil {
		raw1, rss1, ready1, err = point(n / 2)
	}
	if err == nil {
		raw2, rss2, ready2, err = point(n - n/2)
	}
	if err == nil && (ready1 <= 0 || ready2 <= ready1) {
		err = fmt.Errorf("ready counts %d then %d: nothing to divide by", ready1, ready2)
	}
	if err != nil {
		row.Skip = err.Error()
		return row
	}
	// The goal excludes bodies so that a broker keeping them in memory is
	// not judged by their size. ledgerq keeps none (a receive reads the
	// body from the log), so there is nothing to subtract.
	slope := float64(rss2-rss1) / float64(ready2-ready1)
	overall := float64(rss2-rss0) / float64(ready2)
	rawSlope := float64(raw2-raw1) / float64(ready2-ready1)
	run := benchRun{Phase: "memory", Target: "ledgerq", Unit: "B/msg", Ops: ready2, Rate: slope}
	for _, x := range []struct {
		k string
		v int64
	}{{"rss_empty_bytes", rss0}, {"rss_half_bytes", rss1}, {"rss_full_bytes", rss2},
		{"rss_before_collection_empty_bytes", raw0}, {"rss_before_collection_half_bytes", raw1}, {"rss_before_collection_full_bytes", raw2},
		{"ready_half", ready1}, {"ready_full", ready2}} {
		run.extra(x.k, float64(x.v))
	}
	s.record(run)
	row.Ledgerq = []float64{slope}
	row.Note = fmt.Sprintf("RSS after a collection %s empty, %s with %d ready messages, %s with %d: the last %d cost %.0f B each "+
		"(the figure), %.0f B each from empty, fixed costs included. Before the collection: %s, %s, %s (%.0f B each for the last %d; "+
		"the server lets 64 MiB of garbage build up, then as much as is live). Bodies (%.0f B each here) are not subtracted: "+
		"ledgerq keeps none in memory, a receive reads them from the log.",
		mib(rss0), mib(rss1), ready1, mib(rss2), ready2, ready2-ready1, slope, overall,
		mib(raw0), mib(raw1), mib(raw2), rawSlope, ready2-ready1, body)
	return row
}

// freeServerMemory asks a server's debug listener to collect its garbage
// and return the freed memory to the OS.
func freeServerMemory(ctx context.Context, debugAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+debugAddr+"/debug/free-memory", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking the server to free memory: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("asking the server to free memory: %s", resp.Status)
	}
	return nil
}

// sseRows measures the fan-out: first the limit handler serving the same
// subscribers at the same rate with nothing stored, then ledgerq. The goal
// row is ledgerq's; the row after it sets ledgerq's p99 beside the limit's,
// for information: what this machine spends on the requests and the frames
// alone at this rate is in its note.
func (s *benchSession) sseRows(ctx context.Context, rate float64) []benchRow {
	cfg := s.sseConfig(rate)
	var limRun benchRow
	limT, stopLim, limErr := s.startLimit(ctx, "limit-http-sse.log")
	if limErr == nil {
		lcfg := cfg
		lcfg.Target = limitSSETarget
		s.sseRun(ctx, limT, lcfg, &limRun)
		stopLim()
	}
	row := benchRow{Name: fmt.Sprintf("SSE: %d subscribers (%s per queue) at 50 %% load: append → frame p99", cfg.Subscribers,
		strconv.FormatFloat(float64(cfg.Subscribers)/float64(cfg.Queues), 'g', 3, 64)), Unit: "ms", Op: "<=", Target: 25}
	s.sseRun(ctx, s.lq, cfg, &row)
	if row.Skip == "" && limErr == nil && limRun.Skip == "" {
		row.Note += sseBudgetNote(s.runs, runtime.NumCPU())
	}
	lim := benchRow{Name: "SSE against its limit: the same subscribers and rate", Anchor: "L: HTTP+JSON+JWT handler fanning the frames out in memory, nothing stored",
		Limit: limRun.Ledgerq, LimitUnit: "ms", Ledgerq: row.Ledgerq, Unit: "ms", Errors: limRun.Errors}
	switch {
	case limErr != nil:
		lim.Skip = limErr.Error()
	case limRun.Skip != "":
		lim.Skip = limRun.Skip
	default:
		lim.Note = "L's run: " + limRun.Note + " L hands each frame to its queue's subscribers as soon as the request is decoded, " +
			"with no commit to wait for, so a frame often arrives before its 201 (counted as 0)."
	}
	return []benchRow{row, lim}
}

// sseRun runs the fan-out phase against t and fills row with its p99 and
// note.
func (s *benchSession) sseRun(ctx context.Context, t *benchTarget, cfg benchSSEConfig, row *benchRow) {
	s.settle(ctx)
	run, err := benchSSE(ctx, t, s.bodies, cfg)
	if err != nil {
		row.Skip = err.Error()
		var he *benchHTTPError
		if errors.As(err, &he) && he.Status == http.StatusTooManyRequests && cfg.Token == nil {
			row.Skip += " (the server caps streams per token subject: set LEDGERQ_JWT_SECRET to the server's secret so the bench mints a subject per 8 subscribers)"
		}
		return
	}
	s.record(run)
	exp := int64(run.Extra["frames_expected"])
	row.Ledgerq = []float64{run.P99}
	row.Errors = run.Errors + (exp - run.Ops)
	row.Note = fmt.Sprintf("%d subscribers over %d queues, publishing %s msg/s (publish p99 %s); %d of %d frames arrived (missing ones count as errors), "+
		"%d streams ended by the server; p50 %s, p99.9 %s.",
		cfg.Subscribers, cfg.Queues, human(run.Extra["publish_rate"]), msText(run.Extra["publish_p99_ms"]), run.Ops, exp,
		int(run.Extra["disconnected"]), msText(run.P50), msText(run.P999))
	if m := machineNote(run); m != "" {
		row.Note += " While publishing, " + m + " (" + strconv.Itoa(runtime.NumCPU()) + " CPUs, the generator's and its subscribers' share included)"
		if b, ok := run.Extra[extraPublishBenchCPU]; ok {
			row.Note += "; CPU per publish"
			if srv, ok := run.Extra[extraPublishServerCPU]; ok {
				row.Note += ": the server " + usText(srv) + " (its frames included), the bench " + usText(b)
			} else {
				row.Note += ": the bench " + usText(b)
			}
			row.Note += " (its publisher and its subscribers' reading)"
		}
		row.Note += "."
	}
	row.Note += serverHistNote(run)
}

// startLimit starts a fresh limit handler process (its log in logName) and
// returns a target for it whose runs report its CPU, and the function that
// stops both.
func (s *benchSession) startLimit(ctx context.Context, logName string, extra ...string) (*benchTarget, func(), error) {
	lim, err := startLimitHTTP(ctx, s.exe, s.secret, filepath.Join(s.dir, logName), extra...)
	if err != nil {
		return nil, nil, err
	}
	t := newBenchTarget(lim.url, s.limitToken, s.cfg.maxInflight)
	t.cpu = lim.cpu
	return t, func() { t.close(); lim.stop() }, nil
}

// serverHistNote is the sentence of a row's note that gives the server's own
// read-side histograms over the phase (serverHistExtras), or "".
func serverHistNote(run benchRun) string {
	if _, ok := run.Extra["server_read_delay_p99_ms"]; !ok {
		return ""
	}
	return fmt.Sprintf(" The server's own histograms over the phase: append → read model p50 %s, p99 %s (%.1f %% of events over 25 ms); "+
		"%d read-model transactions, p99 %s, %d over 10 ms; %d group commits, p99 %s.",
		msText(run.Extra["server_read_delay_p50_ms"]), msText(run.Extra["server_read_delay_p99_ms"]), 100*run.Extra["server_read_delay_over_25ms"],
		int(run.Extra["server_txns"]), msText(run.Extra["server_txn_p99_ms"]), int(run.Extra["server_txns_over_10ms"]),
		int(run.Extra["server_commits"]), msText(run.Extra["server_commit_p99_ms"]))
}

// readSideCPUNote says what the read-side phase cost the machine: CPU per
// background publish (the server's over Redis, and over the in-process bus
// in the fixed-rate runs at the same rate when there are some) and the
// idle share. "" when nothing was measured.
func readSideCPUNote(run benchRun, runs []benchRun) string {
	var parts []string
	if v, ok := run.Extra[extraPublishServerCPU]; ok {
		part := "the server " + usText(v)
		var fixed []float64
		for _, r := range runs {
			if r.Phase == "fixed-rate" && r.Target == "ledgerq" {
				if f, ok := r.Extra[extraServerCPU]; ok {
					fixed = append(fixed, f)
				}
			}
		}
		if len(fixed) > 0 {
			part += " (" + usText(mean(fixed)) + " over the in-process bus in the fixed-rate runs)"
		}
		parts = append(parts, part)
	}
	if v, ok := run.Extra[extraPublishBenchCPU]; ok {
		parts = append(parts, "the bench "+usText(v))
	}
	s := ""
	if len(parts) > 0 {
		s = " CPU per background publish: " + strings.Join(parts, ", ") + "."
	}
	if m := machineNote(run); m != "" {
		s += " Over the phase " + m + "."
	}
	return s
}

// readSideRows runs the read-side phase on a server using Redis, between
// two runs of the raw Redis limit.
func (s *benchSession) readSideRows(ctx context.Context, rate float64) []benchRow {
	lat := benchRow{Name: fmt.Sprintf("Read side keeps up: %s at 50 %% load through Redis, append → read model p99", s.cfg.readsideDur), Unit: "ms", Op: "<=", Target: 50}
	growth := benchRow{Name: "Read side lag growth (median of last quarter − first quarter)", Unit: "ms", Op: "<=", Target: 10}
	skip := func(why string) []benchRow {
		lat.Skip, growth.Skip = why, why
		return []benchRow{lat, growth}
	}
	redisURL := s.cfg.redisURL
	if redisURL == "" && s.server != nil {
		rs, err := startBenchRedis(ctx, s.dir)
		if errors.Is(err, exec.ErrNotFound) {
			return skip("no redis-server on PATH and no --redis")
		}
		if err != nil {
			return skip(err.Error())
		}
		defer rs.stop()
		redisURL = rs.url
	}
	var limitNote string
	var xadd, xread []float64
	var rdb *redis.Client
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return skip("--redis: " + err.Error())
		}
		rdb = redis.NewClient(opt)
		defer rdb.Close()
	}
	redisLimit := func() {
		if rdb == nil {
			return
		}
		r, err := limits.RedisStreams(ctx, limits.RedisConfig{Client: rdb, Batch: 100, Duration: min(s.cfg.duration, 3*time.Second)})
		if err != nil {
			limitNote += " Redis limit failed: " + err.Error() + "."
			return
		}
		xadd = append(xadd, s.record(limitRun("redis", "limit:redis-xadd", "entries/s", r.Add)).Rate)
		xread = append(xread, s.record(limitRun("redis", "limit:redis-xreadgroup", "entries/s", r.Read)).Rate)
	}

	target := s.lq
	if s.server != nil {
		s.settle(ctx)
		redisLimit()
		srv, _, err := startBenchServer(ctx, s.exe, filepath.Join(s.dir, "data-redis"), s.secret, filepath.Join(s.dir, "serve-redis.log"),
			s.serverArgs("--redis", redisURL)...)
		if err != nil {
			return skip(err.Error())
		}
		defer srv.stop()
		target = newBenchTarget(srv.url, s.token, s.cfg.maxInflight)
		target.cpu = srv.cpu
		defer target.close()
	} else {
		limitNote += " Measured on the server at --url, with whatever bus it was started with."
		redisLimit()
	}
	run, err := benchReadSide(ctx, target, s.bodies, benchNames("bench-rs-", s.cfg.queues), rate, s.cfg.warmup, s.cfg.readsideDur, s.cfg.maxInflight)
	if err != nil {
		return skip(err.Error())
	}
	s.record(run)
	if s.server != nil {
		redisLimit()
	}
	if len(xadd) > 0 {
		limitNote += fmt.Sprintf(" The bus's limit, raw Redis on the same redis-server before and after: XADD %s, XREADGROUP + XACK %s.",
			runsText(xadd, "entries/s"), runsText(xread, "entries/s"))
	}
	errs := run.Errors + int64(run.Extra["load_errors"])
	lat.Ledgerq, lat.Errors = []float64{run.P99}, errs
	growth.Ledgerq, growth.Errors = []float64{run.Extra["lag_growth_ms"]}, errs
	lat.Note = fmt.Sprintf("The load ran for %s unmeasured first (every phase's warm-up); then %d probes: p50 %s, p99.9 %s; background load %s msg/s offered, %s achieved (p99 %s).%s",
		s.cfg.warmup, run.Ops, msText(run.P50), msText(run.P999), human(run.Extra["load_offered_rate"]), human(run.Extra["load_rate"]),
		msText(run.Extra["load_p99_ms"]), readSideCPUNote(run, s.runs)+serverHistNote(run)+limitNote)
	growth.Note = fmt.Sprintf("first quarter median %s, last quarter median %s.",
		msText(run.Extra["lag_first_quarter_median_ms"]), msText(run.Extra["lag_last_quarter_median_ms"]))
	return []benchRow{lat, growth}
}

// startupRows tops the first server's log up to startupEvents events,
// restarts it and times the start-up (from the command-state snapshot the
// clean stop wrote), times it again with the snapshot removed (as after a
// crash before any snapshot), then alternates the raw scan + decode limit
// with `ledgerq replay` on the stopped server's data.
func (s *benchSession) startupRows(ctx context.Context, queues []string) []benchRow {
	n := s.cfg.startupEvents
	start := benchRow{Name: fmt.Sprintf("Start-up: state rebuilt from %s events", human(float64(n))), Unit: "s", Op: "<=", Target: 3}
	replay := benchRow{Name: "Replay: `ledgerq replay` of the whole log", Anchor: "L: raw ordered scan + decode of the same rows",
		LimitUnit: "events/s", Unit: "events/s", Op: ">=", Target: 0.85,
		Note: "`ledgerq replay` is timed as a whole process (start, rebuild, print the state), so the ratio errs low. " +
			"The rebuild of every read model is the next row (and `make bench`, go test -bench in projections/)."}
	if s.server == nil {
		why := "needs a server the bench starts (no --url)"
		start.Skip, replay.Skip = why, why
		return []benchRow{start, replay}
	}
	if n > 0 && s.lq.maxPos.Load() < n {
		fill := s.batchRun(ctx, "startup-fill", queues, time.Hour, func() bool { return s.lq.maxPos.Load() >= n })
		start.Errors = fill.Errors
	}
	// The fill outruns the read side (batch publishes write several times
	// faster than the projections apply under the same load), and /readyz
	// waits until the read side is within --max-projection-lag of the log.
	// Let it catch up before the stop, so that the figure is the state's
	// rebuild and not the drain of a backlog the bench itself just made.
	settleStart := time.Now()
	s.settle(ctx)
	settled := time.Since(settleStart)
	head := s.lq.maxPos.Load()
	start.Name = fmt.Sprintf("Start-up: state rebuilt from %s events", human(float64(head)))
	if err := s.server.stop(); err != nil {
		start.Skip, replay.Skip = err.Error(), err.Error()
		return []benchRow{start, replay}
	}
	srv, took, err := startBenchServer(ctx, s.exe, s.dataDir, s.secret, filepath.Join(s.dir, "serve-restart.log"), s.serverArgs()...)
	if err != nil {
		start.Skip, replay.Skip = err.Error(), err.Error()
		return []benchRow{start, replay}
	}
	s.server = srv
	run := benchRun{Phase: "start-up", Target: "ledgerq", Unit: "s", Ops: head, Seconds: took.Seconds(), Rate: took.Seconds()}
	if rss, err := srv.rss(); err == nil {
		run.extra("rss_after_start_bytes", float64(rss))
	}
	s.record(run)
	start.Ledgerq = []float64{took.Seconds()}
	if err := s.server.stop(); err != nil {
		replay.Skip = err.Error()
		return []benchRow{start, replay}
	}
	note, err := s.startupWithoutSnapshot(ctx, head)
	start.Note = fmt.Sprintf("%s The read side had caught up with the fill before the stop (in %s).", note, settled.Round(100*time.Millisecond))
	if err != nil {
		replay.Skip = err.Error()
		return []benchRow{start, replay}
	}
	db, err := limits.FindEventsDB(s.dataDir)
	if err != nil {
		replay.Skip = err.Error()
		return []benchRow{start, replay}
	}
	for i := range s.cfg.runs {
		r, err := limits.ScanDecode(ctx, db)
		if err != nil {
			replay.Skip = err.Error()
			return []benchRow{start, replay}
		}
		replay.Limit = append(replay.Limit, s.record(limitRun("replay", "limit:scan+decode", "events/s", r)).Rate)
		d, err := timeReplay(ctx, s.exe, s.dataDir, filepath.Join(s.dir, fmt.Sprintf("replay-%d.log", i)))
		if err != nil {
			replay.Skip = err.Error()
			return []benchRow{start, replay}
		}
		rr := s.record(benchRun{Phase: "replay", Target: "ledgerq", Unit: "events/s", Ops: r.Ops, Seconds: d.Seconds(), Rate: float64(r.Ops) / d.Seconds()})
		replay.Ledgerq = append(replay.Ledgerq, rr.Rate)
	}
	return []benchRow{start, replay}
}

// startupWithoutSnapshot times a restart of the stopped server with its
// command-state snapshot removed, so that it replays the whole log, and
// says so for the start-up row's note. It leaves the server stopped (and a
// new snapshot written by that stop).
func (s *benchSession) startupWithoutSnapshot(ctx context.Context, head int64) (string, error) {
	notMeasured := func(err error) (string, error) {
		return "without a snapshot: not measured (" + err.Error() + ").", err
	}
	if err := os.Remove(filepath.Join(s.dataDir, snapshotFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return notMeasured(err)
	}
	srv, took, err := startBenchServer(ctx, s.exe, s.dataDir, s.secret, filepath.Join(s.dir, "serve-restart-no-snapshot.log"), s.serverArgs()...)
	if err != nil {
		return notMeasured(err)
	}
	s.server = srv
	s.record(benchRun{Phase: "start-up", Target: "ledgerq, no snapshot", Unit: "s", Ops: head, Seconds: took.Seconds(), Rate: took.Seconds()})
	if err := s.server.stop(); err != nil {
		return notMeasured(err)
	}
	return fmt.Sprintf("without a snapshot (after a crash): %.2f s.", took.Seconds()), nil
}

// mib prints a byte count in MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// rebuildRow deletes the stopped server's read model and starts the server
// again, so that its projections rebuild every read model from the whole
// log (their catch-up path: the store read in position order, one
// transaction per batch). The figure is the log's events divided by the
// time from process start until a query sees the head applied; start-up is
// included. scan holds the raw scan + decode limit's runs on the same log.
func (s *benchSession) rebuildRow(ctx context.Context, head int64, scan []float64) benchRow {
	row := benchRow{Name: fmt.Sprintf("Rebuild: every read model from the whole log (%s events)", human(float64(head))), Unit: "events/s"}
	if s.server == nil || s.dataDir == "" {
		row.Skip = "needs a server the bench starts (no --url)"
		return row
	}
	if err := s.server.stop(); err != nil {
		row.Skip = err.Error()
		return row
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(s.dataDir, readModelFile+suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			row.Skip = err.Error()
			return row
		}
	}
	started := time.Now()
	srv, _, err := startBenchServer(ctx, s.exe, s.dataDir, s.secret, filepath.Join(s.dir, "serve-rebuild.log"), s.serverArgs()...)
	if err != nil {
		row.Skip = err.Error()
		return row
	}
	s.server = srv
	defer srv.stop()
	t := newBenchTarget(srv.url, s.token, 1)
	defer t.close()
	deadline := started.Add(10 * time.Minute)
	for {
		_, err := t.queueReady(ctx, settleQueue, head)
		if err == nil {
			break
		}
		var he *benchHTTPError
		if errors.As(err, &he) && he.Code == "consistency_timeout" && time.Now().Before(deadline) {
			continue
		}
		row.Skip = "waiting for the rebuilt read model: " + err.Error()
		return row
	}
	took := time.Since(started)
	run := s.record(benchRun{Phase: "rebuild", Target: "ledgerq", Unit: "events/s", Ops: head, Seconds: took.Seconds(), Rate: float64(head) / took.Seconds()})
	row.Ledgerq = []float64{run.Rate}
	row.Note = fmt.Sprintf("the stopped server's %s was deleted and the server started again: %.1f s from process start until a query "+
		"saw position %d applied, start-up included.", readModelFile, took.Seconds(), head)
	if len(scan) > 0 {
		row.Note += fmt.Sprintf(" The raw scan + decode of the same log (the replay row's limit) ran at %s: the rebuild, which also "+
			"writes every read model, runs at %.2f × that.", runsText(scan, "events/s"), run.Rate/mean(scan))
	}
	return row
}

// durableNeed sets the durable limit beside the HTTP limit and the first
// two rows' goals: where it stays below them, the least durable work does
// not reach them on this machine (a cleverer store might, by overlapping its
// commits with its syncs as ledgerq's does); where it passes them, what
// ledgerq adds is what keeps it from them.
func durableNeed(durable, durableP99, httpL, httpP99 []float64, rateGoal, p99Goal float64) string {
	d, l := mean(durable), mean(httpL)
	if d <= 0 || l <= 0 {
		return ""
	}
	note := fmt.Sprintf("L-durable reached %.2f × L's rate (%s msg/s against %s req/s)", d/l, human(d), human(l))
	if dp, lp := mean(durableP99), mean(httpP99); dp > 0 && lp > 0 {
		note += fmt.Sprintf(" with a p99 of %.2f × L's (%s ms)", dp/lp, human(dp))
		if d/l >= rateGoal && dp/lp <= p99Goal {
			return note + " in this run, within both goals of the first two rows: a durable publish can meet them here, and what ledgerq does besides (its command model, relay, read model, metrics and access log) is what it costs to miss them."
		}
	}
	if d/l < rateGoal {
		return note + fmt.Sprintf(" in this run, below the first row's %.2f: on this machine the least work that answers after its commit is synced does not reach that goal.", rateGoal)
	}
	return note + " in this run."
}
