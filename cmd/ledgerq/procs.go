package main

import (
	"runtime"
	"strings"
	"sync"
)

// extraProcs is how many Ps serve adds to Go's default GOMAXPROCS.
//
// A cgo call keeps its P while it runs; the scheduler takes the P back only
// when sysmon notices, and not at all while another P looks idle. SQLite's
// commits (pwrite of every WAL frame, then fdatasync) are such calls, and
// two run at once at most of the time under write load: the event log's
// writer and the read model's projection transaction. On a 2-core machine
// with GOMAXPROCS=2 that leaves the HTTP goroutines nothing to run on for
// the length of an fsync. Measured with 64 publishing connections on the
// 2-core bench host (4 alternating rounds of 5 s, `make bench-compare`'s
// load): 5.5–6.0k publishes/s with GOMAXPROCS=2, 6.7–6.8k with 4, 6.6–7.1k
// with 3; 6 and 8 were no better than 4, and CPU per publish fell by ~10 %.
const extraProcs = 2

var (
	procsOnce    sync.Once
	procsDefault int
)

// raiseProcs sets GOMAXPROCS to Go's default plus extraProcs unless the
// GOMAXPROCS environment variable chose a value (which Go has applied
// already). It returns the value in force and whether it changed it. It is
// idempotent: a second call in the same process computes from the same
// default.
//
// Setting GOMAXPROCS turns off Go's automatic update of it when the
// container's CPU limit changes; a restart picks up a new limit.
func raiseProcs(env envFunc) (procs int, raised bool) {
	if strings.TrimSpace(env("GOMAXPROCS")) != "" {
		return runtime.GOMAXPROCS(0), false
	}
	procsOnce.Do(func() { procsDefault = runtime.GOMAXPROCS(0) })
	want := procsDefault + extraProcs
	runtime.GOMAXPROCS(want)
	return want, true
}
