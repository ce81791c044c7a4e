package main

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a clock whose sleeps advance time instantly, by the asked
// duration plus an optional oversleep.
type fakeClock struct {
	now       time.Time
	oversleep func(k int) time.Duration
	sleeps    int
}

func (c *fakeClock) pacer(rate float64, d time.Duration) *benchPacer {
	p := newBenchPacer(rate, c.now, d)
	p.now = func() time.Time { return c.now }
	p.sleep = func(ctx context.Context, d time.Duration) error {
		c.sleeps++
		c.now = c.now.Add(d)
		if c.oversleep != nil {
			c.now = c.now.Add(c.oversleep(c.sleeps))
		}
		return ctx.Err()
	}
	return p
}

func TestPacerConstantRate(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	start := clock.now
	p := clock.pacer(1000, time.Second)
	var sent []time.Time
	n := p.run(context.Background(), func(intended time.Time) bool {
		if clock.now.Before(intended) {
			t.Fatalf("request due %v sent early at %v", intended, clock.now)
		}
		sent = append(sent, intended)
		return true
	})
	if n != 1000 || len(sent) != 1000 {
		t.Fatalf("sent %d (reported %d), want exactly 1000 in 1 s at 1000/s", len(sent), n)
	}
	for k, at := range sent {
		if want := start.Add(time.Duration(k) * time.Millisecond); !at.Equal(want) {
			t.Fatalf("request %d due %v, want %v", k, at.Sub(start), want.Sub(start))
		}
	}
}

func TestPacerCatchesUpWithoutSkipping(t *testing.T) {
	// The 100th sleep oversleeps by 50 ms: the 50 requests due meanwhile
	// must go out at once, keeping their intended times, not be dropped.
	clock := &fakeClock{now: time.Unix(1000, 0), oversleep: func(k int) time.Duration {
		if k == 100 {
			return 50 * time.Millisecond
		}
		return 0
	}}
	start := clock.now
	p := clock.pacer(1000, time.Second)
	var late int
	var last time.Time
	n := p.run(context.Background(), func(intended time.Time) bool {
		if intended.Before(last) {
			t.Fatalf("intended times go backwards: %v after %v", intended, last)
		}
		last = intended
		if clock.now.Sub(intended) > time.Millisecond {
			late++
		}
		return true
	})
	if n != 1000 {
		t.Fatalf("sent %d, want 1000: a stall must not lose requests", n)
	}
	if late < 45 || late > 55 {
		t.Fatalf("%d requests went out late, want the ≈50 due during the 50 ms stall", late)
	}
	if got := last.Sub(start); got != 999*time.Millisecond {
		t.Fatalf("last request due at %v, want 999ms", got)
	}
}

func TestPacerStops(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	p := clock.pacer(100, time.Minute)
	count := 0
	if n := p.run(context.Background(), func(time.Time) bool { count++; return count < 10 }); n != 9 {
		t.Fatalf("send refused the 10th: run reported %d, want 9", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n := clock.pacer(100, time.Minute).run(ctx, func(time.Time) bool { return true }); n != 0 {
		t.Fatalf("cancelled context: %d sent, want 0", n)
	}
}
