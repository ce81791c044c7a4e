package main

import (
	"math"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(i + 1)
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one sample is every percentile", []time.Duration{ms(7)}, 0.5, ms(7)},
		{"p50 of 1..100", hundred, 0.50, ms(50)},
		{"p99 of 1..100", hundred, 0.99, ms(99)},
		{"p99.9 of 1..100 is the largest", hundred, 0.999, ms(100)},
		{"p0 is the smallest", hundred, 0, ms(1)},
		{"p50 of two", []time.Duration{ms(1), ms(9)}, 0.5, ms(1)},
		{"p51 of two", []time.Duration{ms(1), ms(9)}, 0.51, ms(9)},
	}
	for _, c := range cases {
		if got := percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
}

func TestSetLatenciesSortsAndFills(t *testing.T) {
	var samples []time.Duration
	// 1000 samples in descending order: 1000 ms … 1 ms.
	for i := 1000; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	var r benchRun
	r.setLatencies(samples)
	if r.LatencySamples != 1000 || r.P50 != 500 || r.P99 != 990 || r.P999 != 999 || r.Max != 1000 {
		t.Fatalf("got samples %d p50 %v p99 %v p99.9 %v max %v; want 1000, 500, 990, 999, 1000",
			r.LatencySamples, r.P50, r.P99, r.P999, r.Max)
	}
}

func TestMeanAndSpread(t *testing.T) {
	if got := mean([]float64{1, 2, 6}); got != 3 {
		t.Errorf("mean = %v, want 3", got)
	}
	if got := mean(nil); got != 0 {
		t.Errorf("mean(nil) = %v, want 0", got)
	}
	if got := spread([]float64{100, 110}); math.Abs(got-0.10) > 1e-12 {
		t.Errorf("spread(100, 110) = %v, want 0.10", got)
	}
	if got := spread([]float64{110, 100, 105}); math.Abs(got-0.10) > 1e-12 {
		t.Errorf("spread is order-independent: got %v, want 0.10", got)
	}
	if got := spread([]float64{5}); got != 0 {
		t.Errorf("one run has no spread, got %v", got)
	}
	if got := spread([]float64{0, 5}); !math.IsInf(got, 1) {
		t.Errorf("spread(0, 5) = %v, want +Inf", got)
	}
}

func TestHuman(t *testing.T) {
	for v, want := range map[float64]string{
		41234: "41.2k", 999: "999", 5.5: "5.50", 1_250_000: "1.25M", 16000: "16.0k", 0: "0.00",
	} {
		if got := human(v); got != want {
			t.Errorf("human(%v) = %q, want %q", v, got, want)
		}
	}
}
