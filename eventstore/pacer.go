package eventstore

import "time"

// Group commit under a steady trickle.
//
// The writer commits whatever queued up while the previous commit was
// syncing. Under closed-loop load that is many requests, but at a steady
// rate well below capacity (2,000 publishes/s on a 2-core host) each commit
// finds only 2–4 of them, and every commit costs an fdatasync: ~150 µs of
// system CPU here, besides SQLite's own work per transaction. So before a
// commit of fewer than pacerTarget requests the writer may wait up to
// CommitDelay for more, as PostgreSQL's commit_delay does.
//
// Waiting only pays when requests keep coming. A lone sequential producer
// sends its next request only after its answer, so a wait would gain
// nothing and add its whole length to every append. The pacer therefore
// keeps a moving average of the requests each wait gained, waits only
// while that average is at least pacerMinGain, and otherwise tries one
// wait in every pacerProbeEvery commits to notice when the load returns; a
// trial that gains restarts the average from its own gain.
const (
	// pacerTarget is the batch size at which the writer stops waiting. 24
	// rather than 8 (v769 Intel host, fresh servers, alternating): at a
	// fixed 8,000 publishes/s half the commits (2.9k against 5.8k in 6 s)
	// and 12 % less server CPU per publish (126-130 µs against 144-147),
	// for +1.2 ms of p50 latency (3.3 against 2.1 ms); closed loop with 64
	// connections +3.9 % (6 rounds, each won). Every commit is an
	// fdatasync and a rewrite of the index leaves it touches.
	pacerTarget = 24
	// pacerMinGain is the average gain per wait below which waits stop.
	pacerMinGain = 0.5
	// pacerProbeEvery is how many commits pass between two trial waits
	// while waiting does not pay.
	pacerProbeEvery = 64
)

// commitPacer decides whether the writer waits before a small commit. Only
// the writer goroutine uses it.
type commitPacer struct {
	delay time.Duration // <= 0: never wait
	gain  float64       // moving average of requests gained per wait
	since int           // commits since the last wait
	trial bool          // the current wait is a trial
}

// newCommitPacer starts with waits off: a store's first appends say nothing
// yet about the load, and a trial wait comes soon enough under load.
func newCommitPacer(delay time.Duration) *commitPacer {
	return &commitPacer{delay: delay}
}

// shouldWait says whether a batch of n requests should wait for more.
func (p *commitPacer) shouldWait(n int) bool {
	if p.delay <= 0 || n >= pacerTarget {
		return false
	}
	p.since++
	if p.gain >= pacerMinGain {
		p.since = 0
		return true
	}
	if p.since >= pacerProbeEvery {
		p.since, p.trial = 0, true
		return true
	}
	return false
}

// waited records what a wait gained. A trial's gain replaces the average:
// the average stands for a load that is gone.
func (p *commitPacer) waited(gained int) {
	if p.trial {
		p.gain, p.trial = float64(gained), false
		return
	}
	p.gain += (float64(gained) - p.gain) / 8
}
