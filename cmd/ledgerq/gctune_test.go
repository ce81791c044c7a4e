package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 1700},                         // at start-up: a first goal of 68 MiB
		{mib / 2, 1700},                   // capped
		{4 * mib, 1600},                   // 4 MiB live + 64 MiB garbage
		{8 * mib, 800},                    // 8 MiB live + 64 MiB garbage
		{16 * mib, 400},                   // 16 MiB live + 64 MiB garbage
		{20 * mib, 320},                   // the bench's idle-sized heap
		{30 * mib, 214},                   // rounded up: never less headroom than 64 MiB
		{64 * mib, 100},                   // from here on, Go's default
		{1 << 30, 100},                    // a large backlog: no more than live
		{64*mib + 1, 100},                 // just above the floor
		{64*mib - mib/2, 101},             // just below it
		{uint64(gcHeadroom) / 3, 300 + 1}, // 64 MiB / 3 is not a whole number of bytes
	} {
		got := gcPercentFor(c.live)
		if got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
		// The next collection's goal, with the runtime's minimum that
		// scales with GOGC: at least 64 MiB of headroom, and for a small
		// heap not much more (the first collection of a fresh server
		// comes at the minimum).
		goal := max(c.live*uint64(100+got)/100, goMinHeap*uint64(got)/100)
		if goal-c.live < gcHeadroom {
			t.Errorf("live %d: GOGC %d leaves %d B of headroom, want ≥ 64 MiB", c.live, got, goal-c.live)
		}
		if c.live < gcHeadroom && goal > c.live+gcHeadroom+goMinHeap {
			t.Errorf("live %d: GOGC %d lets the heap reach %d B, want at most %d", c.live, got, goal, c.live+gcHeadroom+goMinHeap)
		}
		if c.live > gcHeadroom && got != 100 {
			t.Errorf("live %d above the floor: GOGC %d, want 100", c.live, got)
		}
	}
}

// The tuner sets the GOGC the runtime's own live-heap figure calls for,
// once per collection, and tuneGC leaves an operator's GOGC alone.
func TestGCTunerFollowsTheLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	var sets []int
	tu := newGCTuner()
	tu.set = func(p int) int { sets = append(sets, p); return debug.SetGCPercent(p) }

	// Hold 96 MiB live: above the floor, so GOGC 100.
	ballast := make([][]byte, 96)
	for i := range ballast {
		ballast[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	if got := tu.step(); got != 100 {
		t.Fatalf("with ~96 MiB live: GOGC %d, want 100 (live %d)", got, liveHeap())
	}
	if again := tu.step(); again != 100 || len(sets) != 1 {
		t.Fatalf("a second step with no collection between: GOGC %d, %d sets (want 1)", again, len(sets))
	}

	// Let it go: the live heap is a few MiB, the headroom stays 64 MiB.
	runtime.KeepAlive(ballast)
	ballast = nil
	runtime.GC()
	live := liveHeap()
	got := tu.step()
	if got != gcPercentFor(live) || got <= 100 {
		t.Fatalf("with %d B live: GOGC %d, want %d", live, got, gcPercentFor(live))
	}
	if cur := debug.SetGCPercent(got); cur != got {
		t.Fatalf("GOGC in force %d, the tuner said %d", cur, got)
	}

	// An operator's GOGC is left in force.
	debug.SetGCPercent(50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if desc := tuneGC(ctx, envWith("GOGC", "50")); desc != "GOGC=50" {
		t.Fatalf("tuneGC with GOGC=50 set: %q", desc)
	}
	runtime.GC()
	if cur := debug.SetGCPercent(50); cur != 50 {
		t.Fatalf("with GOGC=50 set: GOGC in force %d, want 50", cur)
	}
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
