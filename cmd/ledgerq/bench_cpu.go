package main

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Where the CPU of a run goes. On a 2-core machine the load generator and
// the server share the cores, so a throughput ratio says as much about the
// generator as about the server; these figures say how much each used per
// unit of the run's rate (per message, per request …).
const (
	extraServerCPU = "server_cpu_us_per_op"
	extraBenchCPU  = "bench_cpu_us_per_op"
)

// cpuProbe asks for the CPU figures of a run. Target reads the CPU time the
// measured process has used so far (nil: only the bench's own is measured,
// as for the peers, whose servers are not our children).
type cpuProbe struct {
	Target func() (time.Duration, error)
}

// cpuWindow measures CPU time from the end of a run's warm-up to the end of
// the run: the bench process's own, and the target's when known.
type cpuWindow struct {
	probe *cpuProbe
	timer *time.Timer

	mu               sync.Mutex
	begun            time.Time
	self0, target0   time.Duration
	selfOK, targetOK bool
}

// startCPUWindow begins the window after warmup; a nil probe measures
// nothing.
func startCPUWindow(probe *cpuProbe, warmup time.Duration) *cpuWindow {
	w := &cpuWindow{probe: probe}
	if probe != nil {
		w.timer = time.AfterFunc(warmup, w.begin)
	}
	return w
}

func (w *cpuWindow) begin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	w.self0, err = selfCPU()
	w.selfOK = err == nil
	if w.probe.Target != nil {
		w.target0, err = w.probe.Target()
		w.targetOK = err == nil
	}
	w.begun = time.Now()
}

// finish ends the window and adds the per-op figures to run. A run that
// ended during its warm-up gets none.
func (w *cpuWindow) finish(run *benchRun) {
	if w.probe == nil {
		return
	}
	w.timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.begun.IsZero() || run.Ops <= 0 || run.Seconds <= 0 {
		return
	}
	// The readings span [begun, now]; the ops span the run's measured
	// window, which the first reading may lag on a busy machine (it comes
	// from a timer). Dividing the CPU rate over the readings' span by the
	// op rate over the run's window keeps that lag out of the figure.
	span := time.Since(w.begun).Seconds()
	if span <= 0 {
		return
	}
	opsPerSecond := float64(run.Ops) / run.Seconds
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / span / opsPerSecond }
	if w.selfOK {
		if now, err := selfCPU(); err == nil {
			run.extra(extraBenchCPU, perOp(now-w.self0))
		}
	}
	if w.targetOK {
		if now, err := w.probe.Target(); err == nil {
			run.extra(extraServerCPU, perOp(now-w.target0))
		}
	}
}

// procCPU is the user plus system CPU time process pid has used, its exited
// threads included (Linux /proc only; procfs reads utime and stime of
// /proc/PID/stat, in 10 ms ticks).
func procCPU(pid int) (time.Duration, error) {
	st, err := procStat(pid)
	if err != nil {
		return 0, fmt.Errorf("process CPU: %w", err)
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), nil
}

// cpuSide names a target of a row's runs for cpuNote.
type cpuSide struct {
	label, target string
}

// cpuNote says how much CPU each side of a row used per op in the runs of
// phase, as the means of the recorded runs: the server's (when the bench
// started it) and the generator's. It is "" when no run has the figures.
func cpuNote(runs []benchRun, phase, per string, sides ...cpuSide) string {
	var parts []string
	for _, side := range sides {
		var server, bench []float64
		for _, r := range runs {
			if r.Phase != phase || r.Target != side.target {
				continue
			}
			if v, ok := r.Extra[extraServerCPU]; ok {
				server = append(server, v)
			}
			if v, ok := r.Extra[extraBenchCPU]; ok {
				bench = append(bench, v)
			}
		}
		switch {
		case len(server) > 0 && len(bench) > 0:
			parts = append(parts, fmt.Sprintf("%s: server %s, generator %s", side.label, usText(mean(server)), usText(mean(bench))))
		case len(bench) > 0:
			parts = append(parts, fmt.Sprintf("%s: generator %s", side.label, usText(mean(bench))))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "CPU per " + per + " after the warm-up (mean of the runs; " + strconv.Itoa(runtime.NumCPU()) + " CPUs shared by all): " + strings.Join(parts, "; ") + "."
}

func usText(us float64) string {
	return strconv.FormatFloat(us, 'f', 0, 64) + " µs"
}
