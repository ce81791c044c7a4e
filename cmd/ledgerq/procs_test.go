package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestRaiseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	procs, raised := raiseProcs(func(string) string { return "" })
	if !raised || procs != procsDefault+extraProcs || runtime.GOMAXPROCS(0) != procs {
		t.Fatalf("raiseProcs() = %d, %v; GOMAXPROCS %d; want default %d + %d", procs, raised, runtime.GOMAXPROCS(0), procsDefault, extraProcs)
	}
	// A second serve in the same process does not add again.
	if again, _ := raiseProcs(func(string) string { return "" }); again != procs {
		t.Fatalf("second raiseProcs() = %d, want %d", again, procs)
	}
	// GOMAXPROCS in the environment is the operator's choice: left alone.
	runtime.GOMAXPROCS(3)
	if got, raised := raiseProcs(envWith("GOMAXPROCS", "3")); raised || got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Fatalf("with GOMAXPROCS=3 set: raiseProcs() = %d, %v; GOMAXPROCS %d", got, raised, runtime.GOMAXPROCS(0))
	}
}

func TestRaiseGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	if got := raiseGCPercent(func(string) string { return "" }); got != gcPercent {
		t.Fatalf("raiseGCPercent() = %d, want %d", got, gcPercent)
	}
	if cur := debug.SetGCPercent(100); cur != gcPercent {
		t.Fatalf("GOGC in force %d, want %d", cur, gcPercent)
	}
	// GOGC in the environment is the operator's choice: left alone (here
	// the test sets what Go would have applied from GOGC=50).
	debug.SetGCPercent(50)
	if got := raiseGCPercent(envWith("GOGC", "50")); got != 50 {
		t.Fatalf("with GOGC=50 set: raiseGCPercent() = %d, want 50", got)
	}
	if cur := debug.SetGCPercent(100); cur != 50 {
		t.Fatalf("with GOGC=50 set: GOGC in force %d, want 50", cur)
	}
}

// envWith is an environment holding only key=value.
func envWith(key, value string) envFunc {
	return func(k string) string {
		if k == key {
			return value
		}
		return ""
	}
}
