package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// benchNoise is how far apart two runs of the same anchor may be before the
// machine is called noisy.
const benchNoise = 0.10

// benchRow is one line of the comparison table: a ledgerq figure, what it
// is compared with, and the goal.
type benchRow struct {
	// Name says what is measured.
	Name string `json:"name"`
	// Anchor is what it is compared with ("" for an absolute goal).
	Anchor string `json:"anchor,omitempty"`
	// Limit holds the anchor's runs (a limit, a peer or another ledgerq
	// figure), in LimitUnit.
	Limit     []float64 `json:"anchor_runs,omitempty"`
	LimitUnit string    `json:"anchor_unit,omitempty"`
	// Ledgerq holds ledgerq's runs, in Unit.
	Ledgerq []float64 `json:"ledgerq_runs,omitempty"`
	Unit    string    `json:"unit"`
	// Op and Target are the goal: Value Op Target, where Value is
	// mean(Ledgerq)/mean(Limit) when there is an anchor, else
	// mean(Ledgerq). Op "" marks a row shown for information.
	Op     string  `json:"op,omitempty"`
	Target float64 `json:"target,omitempty"`
	// Errors is how many ledgerq requests failed in these runs; any
	// error fails the row, since its figures are then not of a working
	// broker.
	Errors int64 `json:"errors,omitempty"`
	// Skip says why the row could not be measured.
	Skip string `json:"skipped,omitempty"`
	// Note is shown under the table.
	Note string `json:"note,omitempty"`

	// Filled by evaluate.
	Value  float64 `json:"value"`
	Result string  `json:"result"`
	Noisy  bool    `json:"noisy,omitempty"`
}

// evaluate computes Value, Result and Noisy.
func (r *benchRow) evaluate() {
	r.Noisy = len(r.Limit) >= 2 && spread(r.Limit) > benchNoise
	switch {
	case r.Skip != "":
		r.Result = "n/a"
		return
	case len(r.Ledgerq) == 0:
		r.Skip, r.Result = "not measured", "n/a"
		return
	}
	r.Value = mean(r.Ledgerq)
	if r.Anchor != "" {
		if len(r.Limit) == 0 || mean(r.Limit) <= 0 {
			r.Value, r.Skip, r.Result = 0, "the anchor was not measured", "n/a"
			return
		}
		r.Value /= mean(r.Limit)
	}
	switch {
	case r.Op == "":
		r.Result = "info"
	case r.Errors > 0:
		r.Result = "FAIL"
	case r.Op == ">=" && r.Value >= r.Target, r.Op == "<=" && r.Value <= r.Target:
		r.Result = "pass"
	default:
		r.Result = "FAIL"
	}
}

// goalText is the goal as the table shows it: "≥ 0.40 × L" or "≤ 25 ms".
func (r *benchRow) goalText() string {
	if r.Op == "" {
		return "—"
	}
	op := map[string]string{">=": "≥", "<=": "≤"}[r.Op]
	if r.Anchor != "" {
		return fmt.Sprintf("%s %s × anchor", op, trimFloat(r.Target))
	}
	return fmt.Sprintf("%s %s %s", op, human(r.Target), r.Unit)
}

func runsText(xs []float64, unit string) string {
	if len(xs) == 0 {
		return "—"
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = human(x)
	}
	return strings.Join(parts, ", ") + " " + unit
}

// benchReport is the whole comparison: what --out and --json write.
type benchReport struct {
	Command   string        `json:"command"`
	StartedAt time.Time     `json:"started_at"`
	Took      time.Duration `json:"took_ns"`
	Host      string        `json:"host"`
	Rows      []benchRow    `json:"rows"`
	Runs      []benchRun    `json:"runs"`
	Notes     []string      `json:"notes,omitempty"`
}

// evaluate evaluates every row and adds the noise verdict to the notes.
func (rep *benchReport) evaluate() {
	var noisy []string
	for i := range rep.Rows {
		rep.Rows[i].evaluate()
		if rep.Rows[i].Noisy {
			noisy = append(noisy, fmt.Sprintf("%s (%s: %s, %.0f %% apart)", rep.Rows[i].Name, rep.Rows[i].Anchor,
				runsText(rep.Rows[i].Limit, rep.Rows[i].LimitUnit), 100*spread(rep.Rows[i].Limit)))
		}
	}
	if len(noisy) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("The machine was noisy: the runs of these anchors differ by more than %.0f %%, so their ratios are uncertain: %s.",
			100*benchNoise, strings.Join(noisy, "; ")))
	}
}

// counts returns how many rows passed, failed and could not be measured.
func (rep *benchReport) counts() (pass, fail, na int) {
	for _, r := range rep.Rows {
		switch r.Result {
		case "pass":
			pass++
		case "FAIL":
			fail++
		case "n/a":
			na++
		}
	}
	return
}

// writeTable writes the comparison table in Markdown.
func (rep *benchReport) writeTable(w io.Writer) {
	fmt.Fprintln(w, "| measured | anchor | anchor runs | ledgerq runs | ratio | goal | result |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rep.Rows {
		ratio := "—"
		if r.Anchor != "" && r.Result != "n/a" {
			ratio = fmt.Sprintf("%.2f", r.Value)
		}
		result := r.Result
		if r.Noisy {
			result += " (noisy)"
		}
		if r.Errors > 0 {
			result += fmt.Sprintf(" (%d errors)", r.Errors)
		}
		if r.Skip != "" {
			result += ": " + r.Skip
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", mdCell(r.Name), mdCell(cmpDash(r.Anchor)),
			runsText(r.Limit, r.LimitUnit), runsText(r.Ledgerq, r.Unit), ratio, r.goalText(), mdCell(result))
	}
}

// writeRuns writes every run in a second table.
func (rep *benchReport) writeRuns(w io.Writer) {
	fmt.Fprintln(w, "| phase | target | conc. | rate | p50 | p99 | p99.9 | max | samples | errors | notes |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rep.Runs {
		lat := func(v float64) string {
			if r.LatencySamples == 0 {
				return "—"
			}
			return msText(v)
		}
		note := r.Note
		if r.FirstError != "" {
			note = strings.TrimSpace(note + " first error: " + r.FirstError)
		}
		if len(r.Extra) > 0 {
			note = strings.TrimSpace(note + " " + extraText(r.Extra))
		}
		conc := "—"
		if r.Concurrency > 0 {
			conc = fmt.Sprint(r.Concurrency)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s %s | %s | %s | %s | %s | %d | %d | %s |\n", r.Phase, r.Target, conc,
			human(r.Rate), r.Unit, lat(r.P50), lat(r.P99), lat(r.P999), lat(r.Max), r.LatencySamples, r.Errors, mdCell(note))
	}
}

func extraText(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := m[k]
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			parts[i] = fmt.Sprintf("%s=%d", k, int64(v))
		} else {
			parts[i] = fmt.Sprintf("%s=%s", k, trimFloat(v))
		}
	}
	return strings.Join(parts, " ")
}

func msText(v float64) string {
	switch {
	case v >= 1000:
		return trimFloat(v/1000) + " s"
	case v >= 1:
		return trimFloat(v) + " ms"
	default:
		return fmt.Sprintf("%.0f µs", v*1000)
	}
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func cmpDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// writeJSON writes the report as indented JSON.
func (rep *benchReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeMarkdown writes the whole docs/benchmarks.md page.
func (rep *benchReport) writeMarkdown(w io.Writer) {
	pass, fail, na := rep.counts()
	fmt.Fprintln(w, "# ledgerq benchmarks")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "This page is generated; do not edit it by hand. It was made by")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "    %s\n\n", rep.Command)
	fmt.Fprintf(w, "on %s (%s), in %s. %d goals passed, %d failed, %d could not be measured.\n\n",
		rep.StartedAt.UTC().Format("2006-01-02 15:04 MST"), rep.Host, rep.Took.Round(time.Second), pass, fail, na)
	fmt.Fprintln(w, "## Results")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each ledgerq figure is compared with an anchor measured in the same run: a *limit* (a small program of")
	fmt.Fprintln(w, "our own, in `tests/bench/limits`, doing the least work that gives the same answer), a *peer* broker, or")
	fmt.Fprintln(w, "another ledgerq figure. Anchor and ledgerq runs alternate (anchor, ledgerq, anchor, ledgerq); the ratio")
	fmt.Fprintln(w, "is mean(ledgerq) / mean(anchor).")
	fmt.Fprintln(w)
	rep.writeTable(w)
	fmt.Fprintln(w)
	notes := append([]string(nil), rep.Notes...)
	for _, r := range rep.Rows {
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("**%s**: %s", r.Name, r.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "Notes:")
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "## Every run")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Latencies are per request (per batch of 100 for batch publishes and JetStream, per receive + ack for")
	fmt.Fprintln(w, "receive, per frame for SSE, per probe for the read side).")
	fmt.Fprintln(w)
	rep.writeRuns(w)
	fmt.Fprintln(w)
	fmt.Fprint(w, benchMethod)
}

// benchMethod explains how every figure is made.
const benchMethod = `## How it is measured

- **Load generator.** ` + "`ledgerq bench`" + ` drives the server over HTTP/1.1 keep-alive connections with an
  HS256 JWT, from the same machine, so generator and server share the CPU; the limits are driven by the same
  generator code. It sends with fasthttp's client, which needs less than half the CPU per request of net/http's
  (31–43 against 77–90 µs per publish on a 2-core AMD EPYC host), so that the generator takes as little as it
  can from the server it measures; the SSE subscribers read their streams with net/http. Request bodies are encoded once; every message body is 200 bytes of ASCII. Each phase has a
  warm-up whose requests are not counted. Closed-loop phases (single publish, batch, receive) run N workers that
  each send the next request when the previous answered; the fixed-rate phases (latency at 50 % load, SSE,
  read side) are open loop: requests are due at start + k/rate and their latency runs from that due time, so a
  stall is charged to every request it delayed.
- **Servers.** Without ` + "`--url`" + `, the bench starts ` + "`ledgerq serve --rate-limit off`" + ` itself on a free port
  with a fresh data directory (no Redis: in-process bus), and a second one with ` + "`--redis`" + ` and a private
  redis-server for the read-side row. The data directory and the limits' files are on the same file system.
- **HTTP + JSON + JWT handler (limit).** ` + "`tests/bench/limits.NewHTTPHandler`" + ` in its own process (the hidden
  ` + "`ledgerq bench limit-http`" + `): verifies the token like ledgerq (HS256 pinned, exp required, scope), decodes
  the publish JSON, answers 201 with a ULID and a counter. Nothing is stored. The fixed-rate row runs it once at
  the same rate before ledgerq, to show what a request costs this machine at that rate with nothing else to do.
- **SSE fan-out (limit).** The same process also serves ` + "`GET /v1/subscribe?queues=…`" + `: each decoded publish
  renders one message.updated frame shaped like ledgerq's and hands it over a buffered channel to its queue's
  subscribers, whose handlers write what is waiting and flush. No commit, no read model, no ring to resume from.
  It runs the SSE phase once, same subscribers and rate, before ledgerq.
- **Durable HTTP publish (limit, L-durable).** The same handler started with ` + "`--durable-db`" + `
  (` + "`tests/bench/limits.NewDurableHTTPHandler`" + `): before its 201 it also inserts the message's
  MessagePublished row (stream queue-NAME, version and SHA-256 chain kept in memory) into a fresh events
  table like the raw SQLite limit's, with group commit: one writer takes every row queued while its previous
  transaction committed, and the COMMIT syncs the WAL (synchronous=FULL). No command model, relay, read model,
  metrics or access log: the least work that gives a durable 201. It runs between RabbitMQ and ledgerq in each
  round of the publish rows; the row it anchors is for information.
- **fdatasync (limit).** 4 KiB overwrites of a preallocated file in the data directory, fdatasync after each:
  the rate a store that syncs once per append could reach. Group commit should beat it several times over.
- **Raw SQLite insert (limit).** ledgerq's events table with its UNIQUE(stream_id, version) (WAL,
  synchronous=FULL, one writer), one transaction per batch of 100 MessagePublished rows rotating over the same
  number of streams as the batch phase's queues, versions kept in memory, a SHA-256 chain computed per row,
  payloads encoded before the clock starts. The store's secondary index on (type, position) is left
  out, so the ceiling is strict.
- **Redis Streams (limit).** go-redis XADD pipelined 100 at a time, then XREADGROUP COUNT 100 + XACK, on the
  private redis-server: the bus the read side rides on.
- **Scan + decode (limit).** An ordered scan of the server's events table that decodes every row's data
  into its domain event type and its metadata; compared with the wall time of ` + "`ledgerq replay --data DIR`" + `
  (a whole process: start, rebuild, print).
- **RabbitMQ (peer).** amqp091-go: durable queue, persistent messages, publisher confirms; N publishers, each
  with its own channel, each waiting for its confirm before the next message (like an HTTP client waiting for
  its 201).
- **NATS JetStream (peer).** nats.go jetstream: file storage, one replica; N publishers each send 100 async
  publishes and wait for their 100 acks. The server's default ` + "`sync_interval`" + ` (2 min) means its acks come
  before an fsync, unlike ledgerq's 201 and RabbitMQ's confirms: it is the faster, less durable comparison.
- **Receive.** The queues are first filled with batch publishes; N workers receive up to 10 and ack them in
  one batch ack; the run ends when its time is up or a queue runs dry.
- **Read side.** Publishes at 50 % of the single-publish rate for the phase's time while a prober publishes
  to its own queue and asks ` + "`GET /v1/queues/{q}`" + ` with ` + "`X-Ledgerq-Min-Position`" + `: the time from the 201 to
  the answer. "Lag growth" is the median of the last quarter of probes minus that of the first.
- **SSE.** Subscribers on ` + "`/v1/subscribe?queues=…&kinds=message`" + ` spread over the phase's queues, publishes
  at 50 % of the single-publish rate round-robin over them; each frame's latency is its arrival minus the
  publish's 201 (0 when the frame came first). After the last publish the bench keeps reading as long as
  frames keep coming (up to 2 minutes), so a lagging read side shows as latency; frames that never came count
  as errors, and streams the server ended are counted.
- **CPU per op.** For the closed-loop and fixed-rate runs the bench reads, at the end of the warm-up and at
  the end of the run, its own CPU time (getrusage) and that of the server it started (utime + stime from
  ` + "`/proc/PID/stat`" + `, 10 ms ticks), and divides each one's CPU per second between the readings by the run's
  messages or requests per second (` + "`server_cpu_us_per_op`" + `, ` + "`bench_cpu_us_per_op`" + ` in the JSON; the peers' servers are not its
  children, so only the generator's CPU is known for them). The rows' notes give the means. On a machine
  whose cores both are busy, a rate is the cores' time divided by generator + server CPU per op, which is
  why a ratio against a light anchor moves when the host's CPU changes.
- **The machine's share.** Over the same window (for SSE, while its publishes run) the bench also reads
  ` + "`/proc/stat`" + ` and reports how much of all the CPUs' time was idle (iowait included) and how much the
  hypervisor gave to other guests (steal): ` + "`machine_idle_pct`" + `, ` + "`machine_steal_pct`" + ` in the JSON, in the
  rows' notes. A latency row at ~0 % idle ran on full cores, whatever filled them.
- **Settling.** Before every run, of ledgerq or of an anchor, the bench waits until ledgerq's read side has
  applied everything written so far, so no run shares the CPU with the backlog of the one before.
- **Rebuild.** After the replay runs, the stopped server's read model file is deleted and the server is
  started again: its projections rebuild every read model from the whole log (the catch-up path, which reads
  the store in position order). The figure is the log's events over the time from process start until a
  query with ` + "`X-Ledgerq-Min-Position`" + ` set to the head answers.
- **Start-up.** The first server's log is topped up to the target number of events with batch publishes, the
  server is stopped with SIGTERM (which writes the command-state snapshot) and started again; the figure is
  process start to the first 200 from /readyz. The note also times a start after the snapshot file is deleted,
  which folds the whole log, as after a crash with no snapshot.
- **Memory.** VmRSS of the server process with no ready message, with half of them and with all of them
  (batches of 100 into one queue, a second's pause before each reading). The figure is the growth over the
  second half divided by its messages, minus the 200-byte body: by then fixed costs (SQLite page caches,
  buffers grown by the load) are paid. The growth from empty is in the note. RSS includes garbage not yet
  collected, so both err high.
`
