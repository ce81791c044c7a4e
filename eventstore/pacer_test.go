package eventstore

import (
	"testing"
	"time"
)

// TestCommitPacer: waits continue while they gain requests, stop once they
// gain nothing, come back as trial waits once every pacerProbeEvery small
// commits, and resume for good when a trial pays again.
func TestCommitPacer(t *testing.T) {
	p := newCommitPacer(time.Millisecond)
	// Off at first: the first trial comes after pacerProbeEvery commits.
	for i := 1; !p.shouldWait(1); i++ {
		if i >= pacerProbeEvery {
			t.Fatalf("no trial wait in %d small commits", i)
		}
	}
	p.waited(3)
	if p.shouldWait(pacerTarget) {
		t.Fatal("a batch of pacerTarget requests waited")
	}
	for i := range 20 {
		if !p.shouldWait(1) {
			t.Fatalf("wait %d refused while every wait gained 3 requests", i)
		}
		p.waited(3)
	}

	// A lone sequential appender: nothing ever arrives during a wait.
	waits := 0
	for range 10 * pacerProbeEvery {
		if p.shouldWait(1) {
			waits++
			p.waited(0)
		}
	}
	// The average falls from 3 to below 0.5 within 15 waits (7/8 per wait),
	// then one trial per pacerProbeEvery commits.
	if waits > 15+10 {
		t.Errorf("%d waits in %d commits that gained nothing, want at most 25", waits, 10*pacerProbeEvery)
	}

	// Load returns: the next trial gains, and waits resume.
	for i := 0; ; i++ {
		if i > pacerProbeEvery {
			t.Fatal("no trial wait within pacerProbeEvery commits")
		}
		if p.shouldWait(1) {
			p.waited(8)
			break
		}
	}
	if !p.shouldWait(1) {
		t.Error("a wait that gained 8 requests did not turn waits back on")
	}

	if newCommitPacer(-1).shouldWait(1) || newCommitPacer(0).shouldWait(1) {
		t.Error("a pacer without a delay waited")
	}
}
