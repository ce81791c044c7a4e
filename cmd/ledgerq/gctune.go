package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"
)

// gcHeadroom is the garbage serve lets the heap hold before a collection,
// unless the environment sets GOGC: a fixed 64 MiB while the live heap is
// smaller than that, as much as is live (Go's default, GOGC=100) once it is
// larger.
//
// Go's GOGC is a ratio: the heap may grow to live × (1 + GOGC/100) before
// the next collection. A broker's live heap is small next to what it
// allocates per request (request and event JSON, SQLite arguments), so at
// GOGC=100 an idle-sized heap of 20–30 MB is collected a dozen times a
// second under load; GOGC=200 cost 9 % less CPU per publish (see
// Performance in the README). But a ratio also scales the garbage with what
// is live, and what is live grows with the messages waiting in the queues
// (~100 B each in the aggregate): at GOGC=200 a broker holding 10 million
// ready messages may reach three times its 1 GB of live heap, and the
// bench's resident memory per ready message counted that garbage. A fixed
// headroom gives small heaps the fewer collections and large ones Go's
// default ratio. The idea is Uber's GOGCTuner and Go's own minimum heap
// (4 MiB × GOGC/100), with a floor a broker can afford.
const gcHeadroom = 64 << 20

// goMinHeap is the Go runtime's smallest heap goal at GOGC=100. It scales
// with GOGC (the goal is never below goMinHeap × GOGC/100), and a process's
// first collection comes there, before anything was measured.
const goMinHeap = 4 << 20

// gcMaxPercent caps the ratio for a heap of at most goMinHeap live, and sets
// it at start-up, when nothing was measured yet: the runtime's minimum goal
// then lies at goMinHeap + gcHeadroom. A cap of 6,400 (64 MiB over 1 MiB
// live) raised that minimum to 256 MiB: a fresh server's first collection
// waited for four times the headroom in new memory, every page of it a page
// fault, during its first seconds under load.
const gcMaxPercent = 100 * (goMinHeap + gcHeadroom) / goMinHeap

// gcTuneEvery is how often the tuner looks for a finished collection.
const gcTuneEvery = 250 * time.Millisecond

// gcPercentFor returns the GOGC that gives a heap of live bytes the
// headroom of gcHeadroom, and never less than Go's default of 100.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	p := (100*uint64(gcHeadroom) + live - 1) / live
	return int(min(max(p, 100), gcMaxPercent))
}

// gcTuner sets GOGC after each collection from the live heap it measured.
type gcTuner struct {
	samples []metrics.Sample
	cycles  uint64
	percent int
	set     func(int) int // debug.SetGCPercent
}

func newGCTuner() *gcTuner {
	return &gcTuner{
		samples: []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/live:bytes"}},
		set:     debug.SetGCPercent,
	}
}

// step applies the GOGC for the live heap of the last collection, if one
// finished since the last step. It returns the GOGC in force.
func (t *gcTuner) step() int {
	metrics.Read(t.samples)
	if t.samples[0].Value.Kind() != metrics.KindUint64 || t.samples[1].Value.Kind() != metrics.KindUint64 {
		return t.percent // a runtime without these metrics: leave GOGC alone
	}
	cycles, live := t.samples[0].Value.Uint64(), t.samples[1].Value.Uint64()
	if cycles == t.cycles && t.percent != 0 {
		return t.percent
	}
	t.cycles = cycles
	if p := gcPercentFor(live); p != t.percent {
		t.set(p)
		t.percent = p
	}
	return t.percent
}

// tuneGC starts the tuner unless the GOGC environment variable chose a
// ratio, which is then left in force. It returns a description of the
// policy for the start-up log line; the tuner stops with ctx.
func tuneGC(ctx context.Context, env envFunc) string {
	if v := strings.TrimSpace(env("GOGC")); v != "" {
		return "GOGC=" + v
	}
	t := newGCTuner()
	t.step()
	go func() {
		tick := time.NewTicker(gcTuneEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				t.step()
			}
		}
	}()
	return "64 MiB headroom, GOGC=100 above 64 MiB live"
}
