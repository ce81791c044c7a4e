package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// benchRun is one measured run of one target: a ledgerq phase, a limit or a
// peer. It is what --json writes, one object per run.
type benchRun struct {
	// Phase is what was measured: "publish", "batch", "receive", …
	Phase string `json:"phase"`
	// Target is who was measured: "ledgerq", "limit:http", "rabbitmq" …
	Target string `json:"target"`
	// Unit of Rate: "msg/s", "req/s", "rows/s", "syncs/s" …
	Unit        string  `json:"unit"`
	Concurrency int     `json:"concurrency,omitempty"`
	Ops         int64   `json:"ops"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	// Latency percentiles in milliseconds, over LatencySamples operations
	// (requests, batches or frames, as the phase says).
	P50            float64 `json:"p50_ms,omitempty"`
	P99            float64 `json:"p99_ms,omitempty"`
	P999           float64 `json:"p999_ms,omitempty"`
	Max            float64 `json:"max_ms,omitempty"`
	LatencySamples int     `json:"latency_samples,omitempty"`
	// Extra holds phase-specific figures (delivered frames, RSS …).
	Extra map[string]float64 `json:"extra,omitempty"`
	// Note says anything a reader must know about this run.
	Note string `json:"note,omitempty"`
}

// setLatencies fills the percentile fields from the samples. It sorts a
// copy: callers may still need the samples in the order they were taken.
func (r *benchRun) setLatencies(samples []time.Duration) {
	samples = slices.Clone(samples)
	slices.Sort(samples)
	r.LatencySamples = len(samples)
	if len(samples) == 0 {
		return
	}
	r.P50 = durationMS(percentile(samples, 0.50))
	r.P99 = durationMS(percentile(samples, 0.99))
	r.P999 = durationMS(percentile(samples, 0.999))
	r.Max = durationMS(samples[len(samples)-1])
}

func (r *benchRun) extra(key string, v float64) {
	if r.Extra == nil {
		r.Extra = map[string]float64{}
	}
	r.Extra[key] = v
}

// percentile is the nearest-rank percentile of sorted samples: the smallest
// sample that at least p of all samples are less than or equal to. With
// 1,000 samples p99.9 is the largest; with fewer it is the largest too,
// never an interpolated value nobody observed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

func durationMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mean of xs; 0 for none.
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// spread is (max − min) / min: how far apart repeated runs are.
func spread(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo <= 0 {
		if hi == lo {
			return 0
		}
		return math.Inf(1)
	}
	return (hi - lo) / lo
}

// human prints a figure with three significant digits and a k/M suffix.
func human(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trimFloat(v/1e6) + "M"
	case a >= 1e3:
		return trimFloat(v/1e3) + "k"
	default:
		return trimFloat(v)
	}
}

func trimFloat(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
