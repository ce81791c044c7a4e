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
	if runtime.GOOS == "linux" {
		idle, ok := run.Extra[extraMachineIdle]
		steal := run.Extra[extraMachineSteal]
		if !ok || idle < 0 || idle > 100 || steal < 0 || steal > 100 {
			t.Fatalf("machine idle %v %% (present %v), steal %v %%: want shares of the window", idle, ok, steal)
		}
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
		{Phase: "publish", Target: "rabbitmq", Extra: map[string]float64{extraBenchCPU: 12, extraMachineIdle: 10, extraMachineSteal: 1}},
		{Phase: "publish", Target: "rabbitmq", Extra: map[string]float64{extraBenchCPU: 12, extraMachineIdle: 20, extraMachineSteal: 0}},
		{Phase: "batch", Target: "limit:http", Extra: map[string]float64{extraServerCPU: 999}},
	}
	got := cpuNote(runs, "publish", "request", cpuSide{"L", "limit:http"}, cpuSide{"RabbitMQ", "rabbitmq"}, cpuSide{"absent", "nobody"})
	for _, want := range []string{"L: server 25 µs, generator 45 µs;", "RabbitMQ: generator 12 µs (the machine 15.0 % idle, 0.5 % stolen)", "CPU per request"} {
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

func TestMachineCPUShares(t *testing.T) {
	m0 := machineCPU{total: 100, idle: 40, steal: 1}
	m1 := machineCPU{total: 300, idle: 90, steal: 11}
	var run benchRun
	m1.addSince(m0, &run)
	if got := run.Extra[extraMachineIdle]; got != 25 {
		t.Errorf("idle %v %%, want 25 (50 of 200 s)", got)
	}
	if got := run.Extra[extraMachineSteal]; got != 5 {
		t.Errorf("steal %v %%, want 5 (10 of 200 s)", got)
	}
	if got := machineNote(run); got != "the machine 25.0 % idle, 5.0 % stolen" {
		t.Errorf("note %q", got)
	}
	var none benchRun
	m0.addSince(m0, &none) // no time passed: no figures, no division by zero
	if len(none.Extra) != 0 || machineNote(none) != "" {
		t.Errorf("figures from an empty window: %v %q", none.Extra, machineNote(none))
	}
}

// TestMachineCPUSeesALoadedCore reads the real /proc/stat around a spin of
// one core: the window cannot be all idle on a machine with up to 4 CPUs.
func TestMachineCPUSeesALoadedCore(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/stat") // the bench then reports no machine figures
	}
	m0, err := readMachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if m0.total <= 0 || m0.idle < 0 || m0.idle > m0.total || m0.steal > m0.total {
		t.Fatalf("implausible reading %+v", m0)
	}
	burnCPU(t, 300*time.Millisecond)
	m1, err := readMachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	var run benchRun
	m1.addSince(m0, &run)
	idle, ok := run.Extra[extraMachineIdle]
	if !ok {
		t.Fatalf("no idle share over a window where CPU time passed: %+v → %+v", m0, m1)
	}
	if limit := 100 - 50/float64(runtime.NumCPU()); runtime.NumCPU() <= 4 && idle > limit {
		t.Errorf("the machine was %.1f %% idle while this test spun one core (at most %.1f %% expected on %d CPUs)", idle, limit, runtime.NumCPU())
	}
}

func TestSSEBudgetNote(t *testing.T) {
	runs := []benchRun{
		{Phase: "fixed-rate", Target: limitHTTPTarget, Rate: 10000, Extra: map[string]float64{extraServerCPU: 40, extraBenchCPU: 30}},
		{Phase: "fixed-rate", Target: "ledgerq", Rate: 10000, Extra: map[string]float64{extraServerCPU: 90, extraBenchCPU: 25}},
		{Phase: "sse", Target: limitSSETarget, Extra: map[string]float64{"publish_rate": 10000, extraPublishServerCPU: 90, extraPublishBenchCPU: 70}},
		{Phase: "sse", Target: "ledgerq", Extra: map[string]float64{"publish_rate": 10000, extraPublishServerCPU: 140, extraPublishBenchCPU: 45}},
	}
	got := sseBudgetNote(runs, 2)
	for _, want := range []string{
		"The 2 CPUs' budget", "L 0.70, ledgerq 1.15;", "with the subscribers L 1.60, ledgerq 1.85",
		"the frames took L 0.90 and ledgerq 0.70", "costs 0.45 cores more than L's", "left 0.40 idle",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("note %q lacks %q", got, want)
		}
	}
	// A run without CPU figures (a server on another machine) leaves the
	// sentence out rather than print a budget from three quarters of it.
	delete(runs[3].Extra, extraPublishServerCPU)
	if n := sseBudgetNote(runs, 2); n != "" {
		t.Errorf("note %q from runs without the server's CPU", n)
	}
	if n := sseBudgetNote(runs[:2], 2); n != "" {
		t.Errorf("note %q without SSE runs", n)
	}
}
