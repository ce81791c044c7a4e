package main

import (
	"math"
	"testing"
)

func TestHistSnapQuantileAndOver(t *testing.T) {
	// 100 observations: 50 up to 1 ms, 40 in (1, 5] ms, 9 in (5, 25] ms, 1 above 25 ms.
	h := histSnap{count: 100, bounds: []float64{.001, .005, .025, math.Inf(1)}, buckets: []float64{50, 90, 99, 100}}
	for _, c := range []struct{ q, want float64 }{
		{0.5, .001},                  // the 50th observation is the top of the first bucket
		{0.7, .001 + .004*20.0/40.0}, // 20 of the 40 in (1, 5] ms
		{0.99, .025},                 // the 99th is the top of the third bucket
		{0.999, .025},                // in +Inf: the highest finite bound
	} {
		if got := h.quantile(c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := h.over(.005); got != 10 {
		t.Errorf("over 5 ms: %v, want 10", got)
	}
	before := histSnap{count: 40, bounds: h.bounds, buckets: []float64{40, 40, 40, 40}}
	d := h.since(before)
	if d.count != 60 || d.over(.001) != 50 || d.quantile(0.5) <= .001 {
		t.Errorf("since: %+v (p50 %v)", d, d.quantile(0.5))
	}
	if !math.IsNaN((histSnap{}).quantile(0.5)) {
		t.Error("an empty histogram has no quantile")
	}
}

func TestServerHistExtras(t *testing.T) {
	bounds := []float64{.001, .01, .025, math.Inf(1)}
	before := map[string]histSnap{
		histReadDelay: {count: 10, bounds: bounds, buckets: []float64{10, 10, 10, 10}},
		histProjTxn:   {count: 2, bounds: bounds, buckets: []float64{2, 2, 2, 2}},
	}
	after := map[string]histSnap{
		// 100 more events: 80 within 10 ms, 15 more within 25 ms, 5 above.
		histReadDelay: {count: 110, bounds: bounds, buckets: []float64{10, 90, 105, 110}},
		// 10 more transactions, 3 of them over 10 ms.
		histProjTxn: {count: 12, bounds: bounds, buckets: []float64{2, 9, 12, 12}},
	}
	var run benchRun
	serverHistExtras(&run, before, after)
	if got := run.Extra["server_read_delay_over_25ms"]; got != 0.05 {
		t.Errorf("share over 25 ms: %v, want 0.05", got)
	}
	if got := run.Extra["server_read_delay_p50_ms"]; got <= 1 || got > 10 {
		t.Errorf("p50: %v ms, want within (1, 10]", got)
	}
	if run.Extra["server_txns"] != 10 || run.Extra["server_txns_over_10ms"] != 3 {
		t.Errorf("transactions: %v, %v over 10 ms; want 10 and 3", run.Extra["server_txns"], run.Extra["server_txns_over_10ms"])
	}
	if _, ok := run.Extra["server_commits"]; ok {
		t.Error("group commits reported though the server exported no such histogram")
	}
	if note := serverHistNote(run); note == "" {
		t.Error("no note for a run with the server's histograms")
	}
	if note := serverHistNote(benchRun{}); note != "" {
		t.Errorf("a note without histograms: %q", note)
	}
}
