package commands

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkStartupFromSnapshot is BenchmarkStartup's log of about a
// million events (400,000 messages, 1 in 4 left ready) started from a
// snapshot at its head. full-replay-s is one start without it, write-ms a
// snapshot write, hold-ms the longest a queue was locked for it.
func BenchmarkStartupFromSnapshot(b *testing.B) {
	s, _ := openStore(b)
	events, _ := writeLog(b, s, 400_000, 128, true)
	start := time.Now()
	a, err := New(s, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	full := time.Since(start)
	path := filepath.Join(b.TempDir(), "commands.snapshot")
	st, err := a.writeSnapshot(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	_ = a.Close()
	b.ResetTimer()
	for b.Loop() {
		a, err := New(s, Options{Logger: quietLogger(), SnapshotPath: path})
		if err != nil {
			b.Fatal(err)
		}
		if !a.Startup().SnapshotUsed {
			b.Fatalf("snapshot not used: %s", a.Startup().SnapshotProblem)
		}
		_ = a.Close()
	}
	b.StopTimer()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(events), "events")
	b.ReportMetric(full.Seconds(), "full-replay-s")
	b.ReportMetric(float64(st.Took.Microseconds())/1000, "write-ms")
	b.ReportMetric(float64(st.Locked.Microseconds())/1000, "hold-ms")
	b.ReportMetric(float64(fi.Size()), "bytes")
}
