package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRowEvaluate(t *testing.T) {
	cases := []struct {
		name       string
		row        benchRow
		wantResult string
		wantValue  float64
		wantNoisy  bool
	}{
		{"ratio passes", benchRow{Anchor: "L", Limit: []float64{100, 100}, Ledgerq: []float64{40, 42}, Op: ">=", Target: 0.40}, "pass", 0.41, false},
		{"ratio fails", benchRow{Anchor: "L", Limit: []float64{100, 100}, Ledgerq: []float64{30, 40}, Op: ">=", Target: 0.40}, "FAIL", 0.35, false},
		{"ratio of means, not mean of ratios", benchRow{Anchor: "L", Limit: []float64{100, 300}, Ledgerq: []float64{100, 100}, Op: ">=", Target: 0.5}, "pass", 0.5, true},
		{"upper bound on a ratio", benchRow{Anchor: "L p99", Limit: []float64{10, 10}, Ledgerq: []float64{16, 16}, Op: "<=", Target: 1.5}, "FAIL", 1.6, false},
		{"absolute upper bound", benchRow{Ledgerq: []float64{20}, Unit: "ms", Op: "<=", Target: 25}, "pass", 20, false},
		{"absolute, failing", benchRow{Ledgerq: []float64{3.2}, Unit: "s", Op: "<=", Target: 3}, "FAIL", 3.2, false},
		{"errors fail a passing figure", benchRow{Ledgerq: []float64{20}, Op: "<=", Target: 25, Errors: 1}, "FAIL", 20, false},
		{"information only", benchRow{Ledgerq: []float64{7}}, "info", 7, false},
		{"skipped", benchRow{Anchor: "RabbitMQ", Ledgerq: []float64{7}, Op: ">=", Target: 1, Skip: "not reachable"}, "n/a", 0, false},
		{"anchor missing", benchRow{Anchor: "L", Ledgerq: []float64{7}, Op: ">=", Target: 1}, "n/a", 0, false},
		{"nothing measured", benchRow{Op: "<=", Target: 1}, "n/a", 0, false},
		{"10 % apart is not noisy", benchRow{Anchor: "L", Limit: []float64{100, 110}, Ledgerq: []float64{50}, Op: ">=", Target: 0.4}, "pass", 50.0 / 105, false},
		{"11 % apart is noisy", benchRow{Anchor: "L", Limit: []float64{100, 111}, Ledgerq: []float64{50}, Op: ">=", Target: 0.4}, "pass", 50.0 / 105.5, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.row
			r.evaluate()
			if r.Result != c.wantResult {
				t.Errorf("result %q, want %q", r.Result, c.wantResult)
			}
			if d := r.Value - c.wantValue; d > 1e-9 || d < -1e-9 {
				t.Errorf("value %v, want %v", r.Value, c.wantValue)
			}
			if r.Noisy != c.wantNoisy {
				t.Errorf("noisy %v, want %v", r.Noisy, c.wantNoisy)
			}
		})
	}
}

func TestReportTableAndNoiseNote(t *testing.T) {
	rep := &benchReport{Command: "ledgerq bench --compare", Rows: []benchRow{
		{Name: "Durable single publish", Anchor: "L: handler", Limit: []float64{40000, 46000}, LimitUnit: "req/s",
			Ledgerq: []float64{16000, 17000}, Unit: "msg/s", Op: ">=", Target: 0.4},
		{Name: "SSE p99", Ledgerq: []float64{12.5}, Unit: "ms", Op: "<=", Target: 25},
		{Name: "vs RabbitMQ", Anchor: "RabbitMQ", Unit: "msg/s", Op: ">=", Target: 1, Skip: "RabbitMQ not reachable"},
	}}
	rep.evaluate()
	if p, f, na := rep.counts(); p != 1 || f != 1 || na != 1 {
		t.Fatalf("counts pass %d fail %d n/a %d; want 1, 1, 1 (16.5k/43k = 0.38 fails, SSE passes, RabbitMQ skipped)", p, f, na)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "noisy") || !strings.Contains(rep.Notes[0], "Durable single publish") {
		t.Fatalf("notes %q: want one saying the machine was noisy for the publish anchor (40k vs 46k, 15 %% apart)", rep.Notes)
	}
	var b bytes.Buffer
	rep.writeTable(&b)
	table := b.String()
	for _, want := range []string{
		"| Durable single publish | L: handler | 40.0k, 46.0k req/s | 16.0k, 17.0k msg/s | 0.38 | ≥ 0.40 × anchor | FAIL (noisy) |",
		"| SSE p99 | — | — | 12.5 ms | — | ≤ 25.0 ms | pass |",
		"| vs RabbitMQ | RabbitMQ | — | — | — | ≥ 1.00 × anchor | n/a: RabbitMQ not reachable |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks the line\n%s\nin\n%s", want, table)
		}
	}
	b.Reset()
	rep.writeMarkdown(&b)
	if doc := b.String(); !strings.Contains(doc, "    ledgerq bench --compare\n") || !strings.Contains(doc, "## How it is measured") {
		t.Errorf("the page must quote the command and explain the method:\n%s", doc)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"--compare", "--out", "docs/benchmarks.md", "--scenarios", "a b", "it's"})
	want := `--compare --out docs/benchmarks.md --scenarios 'a b' 'it'\''s'`
	if got != want {
		t.Fatalf("shellJoin = %s, want %s", got, want)
	}
}

// The group-commit row says what it asks in units of L, and says plainly
// when that is beyond a handler that stores nothing.
func TestGroupCommitNeed(t *testing.T) {
	// 3 × 8.7k syncs/s over L's 26.75k req/s: 0.98 × L, reachable in
	// principle.
	got := groupCommitNeed(3, []float64{8.46e3, 9.01e3}, []float64{25.8e3, 27.7e3}, 0.40)
	if !strings.Contains(got, "≥ 0.98 × L (3 × the fdatasync rate over L's rate)") || !strings.Contains(got, "asks ≥ 0.40 × L") {
		t.Errorf("need: %q", got)
	}
	if strings.Contains(got, "no durable publish") {
		t.Errorf("0.98 × L is called out of reach: %q", got)
	}
	got = groupCommitNeed(3, []float64{10e3}, []float64{25e3}, 0.40)
	if !strings.Contains(got, "≥ 1.20 × L") || !strings.Contains(got, "no durable publish can get there here") {
		t.Errorf("1.2 × L: %q", got)
	}
	if got := groupCommitNeed(3, nil, []float64{25e3}, 0.40); got != "" {
		t.Errorf("no fdatasync runs: %q", got)
	}
}

// The durable limit's note says whether a durable publish can meet the
// first two rows' goals on this machine, from its own runs against L's.
func TestDurableNeed(t *testing.T) {
	httpL, httpP99 := []float64{23.2e3, 22.2e3}, []float64{9.44, 10.2}
	// 10.75k against 22.7k: 0.47 × L, p99 14 against 9.82 ms: 1.43 × L's.
	got := durableNeed([]float64{11.0e3, 10.5e3}, []float64{14.4, 13.6}, httpL, httpP99, 0.40, 1.5)
	if !strings.Contains(got, "reached 0.47 × L's rate") || !strings.Contains(got, "p99 of 1.43 × L's") ||
		!strings.Contains(got, "a durable publish can meet them here") {
		t.Errorf("within both goals: %q", got)
	}
	// Fast enough but a p99 above the goal: neither verdict.
	got = durableNeed([]float64{11.0e3, 10.5e3}, []float64{20, 20}, httpL, httpP99, 0.40, 1.5)
	if strings.Contains(got, "can meet them") || strings.Contains(got, "does not reach") {
		t.Errorf("p99 over the goal: %q", got)
	}
	// Below the rate goal: out of reach here.
	got = durableNeed([]float64{8e3}, []float64{14}, httpL, httpP99, 0.40, 1.5)
	if !strings.Contains(got, "reached 0.35 × L's rate") || !strings.Contains(got, "the least work that answers after its commit is synced does not reach that goal") {
		t.Errorf("below the rate goal: %q", got)
	}
	if got := durableNeed(nil, nil, httpL, httpP99, 0.40, 1.5); got != "" {
		t.Errorf("no durable runs: %q", got)
	}
}

func TestJetStreamNeed(t *testing.T) {
	got := jetStreamNeed([]float64{66.4e3, 76.6e3}, []float64{146e3, 170e3})
	if !strings.Contains(got, "reached 0.45 × JetStream's rate") {
		t.Errorf("need: %q", got)
	}
	if got := jetStreamNeed([]float64{1}, nil); got != "" {
		t.Errorf("no JetStream runs: %q", got)
	}
	if got := joinNotes("", "a.", "", "b."); got != "a. b." {
		t.Errorf("joinNotes: %q", got)
	}
}
