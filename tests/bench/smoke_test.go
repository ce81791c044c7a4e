package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
	"github.com/ledgerq/ledgerq/tests/redistest"
)

func TestMain(m *testing.M) { harness.Main(m) }

// report mirrors the parts of `ledgerq bench --json` the tests read.
type report struct {
	Command string `json:"command"`
	Rows    []struct {
		Name    string    `json:"name"`
		Result  string    `json:"result"`
		Skipped string    `json:"skipped"`
		Errors  int64     `json:"errors"`
		Ledgerq []float64 `json:"ledgerq_runs"`
		Anchor  []float64 `json:"anchor_runs"`
	} `json:"rows"`
	Runs []struct {
		Phase      string             `json:"phase"`
		Target     string             `json:"target"`
		Ops        int64              `json:"ops"`
		Rate       float64            `json:"rate"`
		Errors     int64              `json:"errors"`
		FirstError string             `json:"first_error"`
		Samples    int                `json:"latency_samples"`
		Extra      map[string]float64 `json:"extra"`
	} `json:"runs"`
}

func runBench(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Bin(), append([]string{"bench"}, args...)...)
	// A LEDGERQ_ variable of the developer's shell must not change the run.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEDGERQ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ledgerq bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

func readReport(t *testing.T, path string) report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("bench JSON: %v", err)
	}
	return r
}

// TestBenchSmoke runs the generator for about a second per phase against a
// server the bench starts itself.
func TestBenchSmoke(t *testing.T) {
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "runs.json")
	stdout, stderr := runBench(t, 2*time.Minute, "--scenarios", "publish,batch,receive,fixed",
		"--duration", "1s", "--warmup", "200ms", "--concurrency", "16", "--queues", "4", "--json", jsonPath)
	rep := readReport(t, jsonPath)
	seen := map[string]bool{}
	for _, r := range rep.Runs {
		seen[r.Phase] = true
		if r.Target != "ledgerq" {
			t.Errorf("run %s against %q: a plain run drives ledgerq only", r.Phase, r.Target)
		}
		if r.Errors != 0 {
			t.Errorf("%s: %d errors, first: %s", r.Phase, r.Errors, r.FirstError)
		}
		if r.Ops == 0 || r.Rate <= 0 || r.Samples == 0 {
			t.Errorf("%s measured nothing: ops %d rate %v samples %d", r.Phase, r.Ops, r.Rate, r.Samples)
		}
	}
	for _, p := range []string{"publish", "batch", "receive-fill", "receive", "fixed-rate"} {
		if !seen[p] {
			t.Errorf("no %s run in the JSON", p)
		}
		if !strings.Contains(stdout, "| "+p+" |") {
			t.Errorf("the summary lacks %s:\n%s", p, stdout)
		}
	}
	if !strings.Contains(stderr, "ledgerq ready at") {
		t.Errorf("the bench did not say it started its server:\n%s", stderr)
	}
}

// TestBenchMeasuresARunningServer drives a server the test started, as a
// user drives theirs with --url, and asks for its CPU with --server-pid:
// every run then reports the server's CPU per op beside the generator's.
func TestBenchMeasuresARunningServer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("--server-pid reads /proc")
	}
	srv := harness.Start(t, harness.Options{})
	token := srv.Token("bench", "admin")
	jsonPath := filepath.Join(t.TempDir(), "runs.json")
	runBench(t, 2*time.Minute, "--url", srv.URL, "--token", token, "--server-pid", strconv.Itoa(srv.PID()),
		"--scenarios", "publish,fixed", "--rate", "300", "--duration", "1s", "--warmup", "200ms",
		"--concurrency", "8", "--queues", "2", "--json", jsonPath)
	rep := readReport(t, jsonPath)
	if len(rep.Runs) == 0 {
		t.Fatal("no runs in the JSON")
	}
	for _, r := range rep.Runs {
		if r.Errors != 0 || r.Ops == 0 {
			t.Errorf("%s: ops %d, errors %d (%s)", r.Phase, r.Ops, r.Errors, r.FirstError)
		}
		if v := r.Extra["server_cpu_us_per_op"]; v <= 0 {
			t.Errorf("%s: server CPU per op %v, want a positive figure (extras %v)", r.Phase, v, r.Extra)
		}
	}

	// A process id that names no process is refused before any load.
	cmd := exec.Command(harness.Bin(), "bench", "--url", srv.URL, "--token", token, "--server-pid", "999999999",
		"--scenarios", "publish", "--duration", "1s")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--server-pid 999999999") {
		t.Fatalf("a missing --server-pid process: err %v, output:\n%s", err, out)
	}
}

// TestBenchCompareSmoke runs the whole comparison, every phase tiny, and
// checks that every ledgerq row was measured and the report was written.
func TestBenchCompareSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the comparison takes about a minute")
	}
	redistest.Require(t) // the read-side row needs a redis-server
	dir := t.TempDir()
	md, jsonPath := filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "bench.json")
	stdout, _ := runBench(t, 5*time.Minute, "--compare", "--quick",
		"--duration", "400ms", "--warmup", "100ms", "--concurrency", "16", "--queues", "4",
		"--readside-duration", "1s", "--sse-subscribers", "20", "--sse-queues", "4",
		"--startup-events", "5000", "--memory-messages", "2000",
		"--out", md, "--json", jsonPath)
	rep := readReport(t, jsonPath)
	if len(rep.Rows) < 12 {
		t.Fatalf("%d rows, want the full table:\n%s", len(rep.Rows), stdout)
	}
	for _, r := range rep.Rows {
		peer := strings.Contains(r.Name, "RabbitMQ") || strings.Contains(r.Name, "JetStream")
		switch {
		case r.Result == "n/a" && peer && strings.Contains(r.Skipped, "not reachable"):
			// An absent peer is skipped by name; that is the contract.
		case r.Result == "n/a":
			t.Errorf("row %q not measured: %s", r.Name, r.Skipped)
		case r.Errors != 0:
			t.Errorf("row %q: %d errors", r.Name, r.Errors)
		case len(r.Ledgerq) == 0:
			t.Errorf("row %q has no ledgerq figure", r.Name)
		}
	}
	// Anchors alternate with ledgerq: two runs of each compared anchor.
	count := map[string]int{}
	for _, r := range rep.Runs {
		count[r.Phase+"/"+r.Target]++
	}
	for _, k := range []string{"publish/limit:http+json+jwt", "publish/limit:http+sqlite", "publish/ledgerq", "fdatasync/limit:fdatasync", "batch/limit:sqlite-insert", "batch/ledgerq", "receive/ledgerq", "replay/limit:scan+decode", "replay/ledgerq"} {
		if count[k] != 2 {
			t.Errorf("%d runs of %s, want 2 (--runs default)", count[k], k)
		}
	}
	// The fixed-rate and SSE rows run the limit handler once at the same
	// rate, before ledgerq.
	for _, k := range []string{"fixed-rate/limit:http+json+jwt", "fixed-rate/ledgerq", "sse/limit:http+sse", "sse/ledgerq"} {
		if count[k] != 1 {
			t.Errorf("%d runs of %s, want 1", count[k], k)
		}
	}
	if count["rebuild/ledgerq"] != 1 {
		t.Errorf("%d rebuilds of the read models, want 1", count["rebuild/ledgerq"])
	}
	// The servers the bench started report their CPU per op, the
	// generator its own; both are real figures of these processes.
	for _, r := range rep.Runs {
		// (Receive runs may end early when a queue runs dry, below the
		// 10 ms resolution of /proc's CPU times.)
		if (r.Phase == "publish" || r.Phase == "batch") && (r.Target == "ledgerq" || strings.HasPrefix(r.Target, "limit:http+")) {
			if r.Extra["server_cpu_us_per_op"] <= 0 || r.Extra["bench_cpu_us_per_op"] <= 0 {
				t.Errorf("%s/%s: CPU per op server %v, generator %v: want both measured", r.Phase, r.Target,
					r.Extra["server_cpu_us_per_op"], r.Extra["bench_cpu_us_per_op"])
			}
		}
		// And how busy the whole machine was, for the latency rows above all.
		if r.Phase == "publish" || r.Phase == "sse" {
			if v, ok := r.Extra["machine_idle_pct"]; !ok || v < 0 || v > 100 {
				t.Errorf("%s/%s: machine idle %v %% (present %v), want a share of the run's window", r.Phase, r.Target, v, ok)
			}
		}
		// The SSE phase splits its CPU per publish between the server
		// (frames included) and the bench (publisher and readers).
		if r.Phase == "sse" && (r.Extra["server_cpu_us_per_publish"] <= 0 || r.Extra["bench_cpu_us_per_publish"] <= 0) {
			t.Errorf("sse: CPU per publish server %v, bench %v: want both measured",
				r.Extra["server_cpu_us_per_publish"], r.Extra["bench_cpu_us_per_publish"])
		}
	}
	page, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# ledgerq benchmarks", "    ledgerq bench --compare --quick", "| measured | anchor | anchor runs | ledgerq runs | ratio | goal | result |", "## How it is measured",
		fmt.Sprintf("stolen (%d CPUs", runtime.NumCPU()) /* the SSE row's note */, "(its frames included), the bench "} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
