package main

import (
	"context"
	"time"
)

// benchPacer hands out send times at a constant rate, open loop: the k-th
// request is due at start + k/rate whatever happened to the earlier ones.
// A closed loop (send, wait for the answer, send again) slows down with the
// server and so hides its stalls (coordinated omission); here latency is
// measured from the intended time, so a stall shows up in every request
// that should have gone out during it.
type benchPacer struct {
	rate  float64 // requests per second, > 0
	start time.Time
	end   time.Time // no request is due at or after end

	// now and sleep are the clock; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

func newBenchPacer(rate float64, start time.Time, d time.Duration) *benchPacer {
	return &benchPacer{rate: rate, start: start, end: start.Add(d), now: time.Now, sleep: sleepCtx}
}

// due is the intended time of request k (from 0).
func (p *benchPacer) due(k int64) time.Time {
	return p.start.Add(time.Duration(float64(k) * float64(time.Second) / p.rate))
}

// run calls send with the intended time of each request in order, never
// before that time. When it falls behind (send blocked, or a sleep
// overslept) it sends the overdue requests at once with their original
// intended times instead of skipping them. It stops at the end of the
// schedule, when ctx ends, or when send returns false, and returns how many
// requests it handed out.
func (p *benchPacer) run(ctx context.Context, send func(intended time.Time) bool) int64 {
	var k int64
	for ; ; k++ {
		t := p.due(k)
		if !t.Before(p.end) {
			return k
		}
		if d := t.Sub(p.now()); d > 0 {
			if p.sleep(ctx, d) != nil {
				return k
			}
		}
		if ctx.Err() != nil || !send(t) {
			return k
		}
	}
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
