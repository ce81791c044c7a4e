package main

import (
	"runtime"
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

// envWith is an environment holding only key=value.
func envWith(key, value string) envFunc {
	return func(k string) string {
		if k == key {
			return value
		}
		return ""
	}
}
