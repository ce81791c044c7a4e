package main

import (
	"fmt"
	"strings"
	"time"
)

// Timer slack: how late the kernel may wake a thread sleeping on a timer,
// so that it can wake several at once. Linux gives every thread 50 µs.
//
// serve runs with 1 ms, set before the Go runtime starts (see
// timerslack_linux.go). The runtime's own sleeps are what it coalesces: its
// monitor thread (sysmon) sleeps 20 µs at a time while a P sits in a cgo
// call or a syscall, which SQLite's statements and the fsyncs keep doing,
// and threads looking for work sleep for microseconds before they park. On
// the 2-core bench host (a paravirtualised VM, where every context switch
// is dear) those wake-ups were ~3,300 nanosleeps a second at a fixed 3,500
// publishes/s, and switching in and out of them 4.8 % of the server's CPU.
// With 1 ms, in alternating runs (docs/performance.md): 8 % less server CPU
// per publish at that fixed rate with a lower p99; in the closed loop the
// difference was within the machine's drift (−15 to +3 %). The price: a Go
// timer may fire up to 1 ms late. The commit delay (1 ms) and the relay's
// linger (2 ms) may last up to 1 ms longer; nothing in the broker needs a
// timer finer than that.
const defaultTimerSlack = time.Millisecond

// maxTimerSlack bounds LEDGERQ_TIMER_SLACK: beyond it timers would be late
// enough to show in latencies.
const maxTimerSlack = 100 * time.Millisecond

// timerSlackEnv names the variable that overrides the default: a duration
// in ns, us (µs) or ms (such as 200us), or "off" for the kernel's own.
// It is read before the program starts, so it has no flag.
const timerSlackEnv = "LEDGERQ_TIMER_SLACK"

// parseTimerSlack reads LEDGERQ_TIMER_SLACK's value: want is the slack to
// be in force, 0 for "leave the inherited one".
func parseTimerSlack(v string) (want time.Duration, err error) {
	switch v {
	case "":
		return defaultTimerSlack, nil
	case "off":
		return 0, nil
	}
	bad := fmt.Errorf("%s=%q: want a duration in ns, us or ms from 1ns to %v (such as 200us), or off", timerSlackEnv, v, maxTimerSlack)
	unit := strings.TrimLeft(v, "0123456789.")
	switch unit {
	case "ns", "us", "µs", "ms":
	default:
		return 0, bad
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > maxTimerSlack {
		return 0, bad
	}
	return d, nil
}

// timerSlack returns the timer slack in force, for the start-up log, and a
// warning when LEDGERQ_TIMER_SLACK asked for another: the constructor in
// timerslack_linux.go applies it only when the program starts as "ledgerq
// serve" on Linux (not when a test runs serve in its own process). A value
// parseTimerSlack refuses is an error.
func timerSlack(env envFunc) (slack, warning string, err error) {
	v := env(timerSlackEnv)
	want, err := parseTimerSlack(v)
	if err != nil {
		return "", "", err
	}
	got, ok := currentTimerSlack()
	if !ok {
		if want != 0 && v != "" {
			warning = fmt.Sprintf("%s=%s is ignored: timer slack is set only on Linux", timerSlackEnv, v)
		}
		return "unsupported", warning, nil
	}
	if v != "" && want != 0 && got != want {
		warning = fmt.Sprintf("%s=%s is not in force (the timer slack is %v): it applies only when the program starts as \"ledgerq serve\" on Linux", timerSlackEnv, v, got)
	}
	return got.String(), warning, nil
}
