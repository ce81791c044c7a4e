package main

import (
	"context"
	"fmt"
	"math"
	"net/http"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The server's latency histograms the bench reads around a phase, so that a
// row measured from outside can say where the time went inside.
const (
	histReadDelay   = "ledgerq_read_delay_seconds"
	histProjTxn     = "ledgerq_projection_transaction_seconds"
	histGroupCommit = "ledgerq_append_commit_seconds"
)

// readSideHists are the histograms serverHistExtras reads.
var readSideHists = []string{histReadDelay, histProjTxn, histGroupCommit}

// histSnap is one unlabelled histogram as scraped: cumulative bucket counts
// by upper bound (seconds), ascending, the last one +Inf.
type histSnap struct {
	count   float64
	bounds  []float64
	buckets []float64
}

// histograms scrapes the target's /metrics for the named histograms. A name
// the server does not export is absent from the result.
func (t *benchTarget) histograms(ctx context.Context, names ...string) (map[string]histSnap, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", t.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := make(map[string]histSnap, len(names))
	for _, name := range names {
		f, ok := families[name]
		if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetHistogram() == nil {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		s := histSnap{count: float64(h.GetSampleCount())}
		for _, b := range h.GetBucket() {
			s.bounds = append(s.bounds, b.GetUpperBound())
			s.buckets = append(s.buckets, float64(b.GetCumulativeCount()))
		}
		if len(s.bounds) == 0 || !math.IsInf(s.bounds[len(s.bounds)-1], 1) {
			s.bounds = append(s.bounds, math.Inf(1))
			s.buckets = append(s.buckets, s.count)
		}
		out[name] = s
	}
	return out, nil
}

// since is what was observed between before and h (the same histogram).
// Without a usable before (the histogram was not there yet) it is all of h.
func (h histSnap) since(before histSnap) histSnap {
	if len(before.buckets) != len(h.buckets) {
		return h
	}
	d := histSnap{count: h.count - before.count, bounds: h.bounds, buckets: make([]float64, len(h.buckets))}
	for i := range h.buckets {
		d.buckets[i] = h.buckets[i] - before.buckets[i]
	}
	return d
}

// quantile estimates the q-quantile in seconds as Prometheus's
// histogram_quantile does: linearly within the bucket that holds it. In
// the +Inf bucket it answers the highest finite bound. NaN when empty.
func (h histSnap) quantile(q float64) float64 {
	if h.count <= 0 || len(h.bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, le := range h.bounds {
		if h.buckets[i] >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			in := h.buckets[i] - below
			if in <= 0 {
				return le
			}
			return lower + (le-lower)*(rank-below)/in
		}
		lower, below = le, h.buckets[i]
	}
	return lower
}

// over counts the observations above bound v, which should be one of the
// histogram's bounds (otherwise the next bound above v is used).
func (h histSnap) over(v float64) float64 {
	for i, le := range h.bounds {
		if le >= v {
			return h.count - h.buckets[i]
		}
	}
	return 0
}

// serverHistExtras records, from the server's histograms over a phase, its
// own view of the read side: append → read model p50 and p99, the read
// model's transactions (count, p99, how many over 10 ms) and the group
// commits' p99. Histograms the server does not have are left out.
func serverHistExtras(run *benchRun, before, after map[string]histSnap) {
	delta := func(name string) (histSnap, bool) {
		a, ok := after[name]
		if !ok {
			return histSnap{}, false
		}
		d := a.since(before[name])
		return d, d.count > 0
	}
	if d, ok := delta(histReadDelay); ok {
		run.extra("server_read_delay_p50_ms", 1000*d.quantile(0.5))
		run.extra("server_read_delay_p99_ms", 1000*d.quantile(0.99))
		run.extra("server_read_delay_over_25ms", d.over(.025)/d.count)
	}
	if d, ok := delta(histProjTxn); ok {
		run.extra("server_txns", d.count)
		run.extra("server_txn_p99_ms", 1000*d.quantile(0.99))
		run.extra("server_txns_over_10ms", d.over(.01))
	}
	if d, ok := delta(histGroupCommit); ok {
		run.extra("server_commits", d.count)
		run.extra("server_commit_p99_ms", 1000*d.quantile(0.99))
	}
}
