package main

import (
	"context"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/bench/limits"
)

// burnCPU spins until this process has used at least d more CPU time.
func burnCPU(t *testing.T, d time.Duration) {
	t.Helper()
	start, err := selfCPU()
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		now, err := selfCPU()
		if err != nil {
			t.Fatal(err)
		}
		if now-start >= d {
			break
		}
	}
	_ = x
}

func TestProcCPUFollowsTheProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc") // the bench then reports no server CPU
	}
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	burnCPU(t, 200*time.Millisecond)
	after, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in 10 ms ticks; 200 ms of spinning shows as most of it.
	if d := after - before; d < 150*time.Millisecond {
		t.Fatalf("/proc says %s used while spinning for 200 ms of CPU", d)
	}
	if _, err := procCPU(-1); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

// TestClosedLoopReportsCPU runs a closed loop with a target whose CPU is
// a counter each op moves: by 300 µs during the warm-up, by 100 µs after
// it. The figure is the CPU per op after the warm-up; one that counted the
// warm-up would be about twice as high.
func TestClosedLoopReportsCPU(t *testing.T) {
	tg := limitTarget(t)
	bodies := newBenchBodies(limits.BodyBytes, 100, 10)
	bufs := newBenchBufs(2)
	var fake atomic.Int64 // the target's CPU in ns, moved by each op
	var calls atomic.Int32
	probe := &cpuProbe{Target: func() (time.Duration, error) { calls.Add(1); return time.Duration(fake.Load()), nil }}
	const warmup = 150 * time.Millisecond
	start := time.Now()
	run := benchClosedLoop(context.Background(), benchPhase{Phase: "publish", Target: "limit", Unit: "req/s", Conns: 1,
		Warmup: warmup, Duration: 100 * time.Millisecond, CPU: probe},
		func(ctx context.Context, w int) (int, error) {
			cost := 100 * time.Microsecond
			if time.Since(start) < warmup {
				cost = 300 * time.Microsecond
			}
			fake.Add(int64(cost))
			_, err := tg.publish(ctx, "q", bodies.single, bufs[w])
			return 1, err
		})
	if run.Errors != 0 || run.Ops == 0 {
		t.Fatalf("ops %d, errors %d (%s)", run.Ops, run.Errors, run.FirstError)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("target CPU read %d times, want at the end of the warm-up and at the end", n)
	}
	// The first reading comes from a timer that may fire late on a busy
	// machine; the figure divides rates, so the lag does not bias it, but
	// the op rate of so short a run varies: allow for that, not for the
	// warm-up.
	if got := run.Extra[extraServerCPU]; got < 80 || got > 125 {
		t.Fatalf("server CPU %.1f µs per op over %d ops, want about 100", got, run.Ops)
	}
	if v, ok := run.Extra[extraBenchCPU]; !ok || v <= 0 {
		t.Fatalf("bench CPU per op %v (present %v), want a positive figure", v, ok)
	}

	// A run that ends in its warm-up has no figures.
	short := benchClosedLoop(context.Background(), benchPhase{Phase: "publish", Conns: 1, Warmup: time.Hour, Duration: time.Second, CPU: probe},
		func(ctx context.Context, w int) (int, error) { return 0, errBenchStop })
	if _, ok := short.Extra[extraServerCPU]; ok {
		t.Fatalf("figures for a run that ended during its warm-up: %v", short.Extra)
	}
}

func TestCPUNote(t *testing.T) {
	runs := []benchRun{
		{Phase: "publish", Target: "limit:http", Extra: map[string]float64{extraServerCPU: 20, extraBenchCPU: 40}},
		{Phase: "publish", Target: "limit:http", Extra: map[string]float64{extraServerCPU: 30, extraBenchCPU: 50}},
		{Phase: "publish", Target: "rabbitmq", Extra: map[string]float64{extraBenchCPU: 12}},
		{Phase: "batch", Target: "limit:http", Extra: map[string]float64{extraServerCPU: 999}},
	}
	got := cpuNote(runs, "publish", "request", cpuSide{"L", "limit:http"}, cpuSide{"RabbitMQ", "rabbitmq"}, cpuSide{"absent", "nobody"})
	for _, want := range []string{"L: server 25 µs, generator 45 µs", "RabbitMQ: generator 12 µs", "CPU per request"} {
		if !strings.Contains(got, want) {
			t.Errorf("note %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "absent") || strings.Contains(got, "999") {
		t.Errorf("note %q names a side or phase without figures", got)
	}
	if n := cpuNote(runs, "receive", "message", cpuSide{"ledgerq", "ledgerq"}); n != "" {
		t.Errorf("note %q for a phase without runs", n)
	}
}
