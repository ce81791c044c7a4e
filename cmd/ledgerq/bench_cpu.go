package main

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"
)

// Where the CPU of a run goes. On a 2-core machine the load generator and
// the server share the cores, so a throughput ratio says as much about the
// generator as about the server; these figures say how much each used per
// unit of the run's rate (per message, per request …).
const (
	extraServerCPU = "server_cpu_us_per_op"
	extraBenchCPU  = "bench_cpu_us_per_op"
	// The SSE and read-side phases', per publish rather than per frame or
	// probe: the bench's includes its subscribers' reading or its probes.
	extraPublishServerCPU = "server_cpu_us_per_publish"
	extraPublishBenchCPU  = "bench_cpu_us_per_publish"
	// The whole machine over the same window, in % of all its CPUs' time:
	// idle (iowait included), and stolen by the hypervisor for other
	// guests. A latency row measured at ~0 % idle says the cores were full,
	// whoever filled them; steal says a neighbour took part of them.
	extraMachineIdle  = "machine_idle_pct"
	extraMachineSteal = "machine_steal_pct"
)

// machineCPU is the machine's CPU time so far, in seconds summed over its
// CPUs, from /proc/stat (Linux only).
type machineCPU struct{ total, idle, steal float64 }

func readMachineCPU() (machineCPU, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return machineCPU{}, err
	}
	st, err := fs.Stat()
	if err != nil {
		return machineCPU{}, fmt.Errorf("machine CPU: %w", err)
	}
	c := st.CPUTotal
	// Guest time is already inside user and nice.
	total := c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	return machineCPU{total: total, idle: c.Idle + c.Iowait, steal: c.Steal}, nil
}

// addSince adds the idle and steal shares of [m0, m] to run; nothing when
// no CPU time passed between the readings.
func (m machineCPU) addSince(m0 machineCPU, run *benchRun) {
	d := m.total - m0.total
	if d <= 0 {
		return
	}
	run.extra(extraMachineIdle, 100*(m.idle-m0.idle)/d)
	run.extra(extraMachineSteal, 100*(m.steal-m0.steal)/d)
}

// machineNote is the clause of a note that gives the machine's idle and
// stolen shares of run, or "".
func machineNote(run benchRun) string {
	idle, ok := run.Extra[extraMachineIdle]
	if !ok {
		return ""
	}
	return machineText(idle, run.Extra[extraMachineSteal])
}

func machineText(idle, steal float64) string {
	return "the machine " + pctText(idle) + " idle, " + pctText(steal) + " stolen"
}

func pctText(v float64) string {
	return strconv.FormatFloat(v, 'f', 1, 64) + " %"
}

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
	machine0         machineCPU
	machineOK        bool
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
	w.machine0, err = readMachineCPU()
	w.machineOK = err == nil
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
	if w.machineOK {
		if now, err := readMachineCPU(); err == nil {
			now.addSince(w.machine0, run)
		}
	}
}

// finishPerPublish ends the window of a phase whose ops are not run's own
// (frames, probes) and adds to run the CPU per publish of pub, the
// publishing part of the phase, under the per-publish keys, with the
// machine's idle and stolen shares.
func (w *cpuWindow) finishPerPublish(pub benchRun, run *benchRun) {
	perPublish := benchRun{Ops: pub.Ops, Seconds: pub.Seconds}
	w.finish(&perPublish)
	for from, to := range map[string]string{extraServerCPU: extraPublishServerCPU, extraBenchCPU: extraPublishBenchCPU,
		extraMachineIdle: extraMachineIdle, extraMachineSteal: extraMachineSteal} {
		if v, ok := perPublish.Extra[from]; ok {
			run.extra(to, v)
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
		var server, bench, idle, steal []float64
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
			if v, ok := r.Extra[extraMachineIdle]; ok {
				idle = append(idle, v)
				steal = append(steal, r.Extra[extraMachineSteal])
			}
		}
		var part string
		switch {
		case len(server) > 0 && len(bench) > 0:
			part = fmt.Sprintf("%s: server %s, generator %s", side.label, usText(mean(server)), usText(mean(bench)))
		case len(bench) > 0:
			part = fmt.Sprintf("%s: generator %s", side.label, usText(mean(bench)))
		default:
			continue
		}
		if len(idle) > 0 {
			part += " (" + machineText(mean(idle), mean(steal)) + ")"
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return ""
	}
	return "CPU per " + per + " after the warm-up (mean of the runs; " + strconv.Itoa(runtime.NumCPU()) + " CPUs shared by all): " + strings.Join(parts, "; ") + "."
}

func usText(us float64) string {
	return strconv.FormatFloat(us, 'f', 0, 64) + " µs"
}

// sseBudgetNote says where the CPUs went in the SSE phase, from the runs of
// one comparison: the cores (server and bench together) that L and ledgerq
// used to publish at the phase's rate with no subscriber (the fixed-rate
// runs), and with the subscribers (the SSE runs). The frames are what the
// second adds to the first. It is "" unless all four runs reported CPU.
//
// The SSE goal's rate is half of ledgerq's own closed-loop rate, so the
// budget, not any one stage, decides whether the phase has a core to spare:
// the sentence puts ledgerq's extra cost for publishing beside what the
// limit's whole phase left idle.
func sseBudgetNote(runs []benchRun, cpus int) string {
	cores := func(phase, target, srvKey, benchKey string, rateOf func(benchRun) float64) (float64, bool) {
		for i := len(runs) - 1; i >= 0; i-- {
			r := runs[i]
			if r.Phase != phase || r.Target != target {
				continue
			}
			srv, ok1 := r.Extra[srvKey]
			gen, ok2 := r.Extra[benchKey]
			if rate := rateOf(r); ok1 && ok2 && rate > 0 {
				return rate * (srv + gen) / 1e6, true
			}
			return 0, false
		}
		return 0, false
	}
	fixedRate := func(r benchRun) float64 { return r.Rate }
	sseRate := func(r benchRun) float64 { return r.Extra["publish_rate"] }
	lf, ok1 := cores("fixed-rate", limitHTTPTarget, extraServerCPU, extraBenchCPU, fixedRate)
	qf, ok2 := cores("fixed-rate", "ledgerq", extraServerCPU, extraBenchCPU, fixedRate)
	ls, ok3 := cores("sse", limitSSETarget, extraPublishServerCPU, extraPublishBenchCPU, sseRate)
	qs, ok4 := cores("sse", "ledgerq", extraPublishServerCPU, extraPublishBenchCPU, sseRate)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return ""
	}
	c := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	return fmt.Sprintf(" The %d CPUs' budget at this rate, in cores (server and bench together): publishing with no subscriber "+
		"(the fixed-rate runs, over their queues) L %s, ledgerq %s; with the subscribers L %s, ledgerq %s, so the frames took L %s and ledgerq %s. "+
		"ledgerq's publishing costs %s cores more than L's (the commit, the relay, the read model), and L's whole phase left %s idle.",
		cpus, c(lf), c(qf), c(ls), c(qs), c(ls-lf), c(qs-qf), c(qf-lf), c(max(0, float64(cpus)-ls)))
}
