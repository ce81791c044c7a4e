package main

import (
	"io"
	"os"
	"runtime"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestParseBenchFlagsQuick(t *testing.T) {
	cfg, err := parseBenchFlags([]string{"--quick", "--duration", "3s"}, func(k string) string {
		if k == "LEDGERQ_SSE_SUBSCRIBERS" {
			return "77"
		}
		return ""
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.duration != 3*time.Second {
		t.Errorf("duration %v: an explicit flag must win over --quick", cfg.duration)
	}
	if cfg.sseSubscribers != 77 {
		t.Errorf("sse subscribers %d: the environment must win over --quick", cfg.sseSubscribers)
	}
	if cfg.warmup != 250*time.Millisecond || cfg.startupEvents != 20_000 || cfg.readsideDur != 2*time.Second {
		t.Errorf("--quick did not shorten the rest: warmup %v startup events %d read side %v", cfg.warmup, cfg.startupEvents, cfg.readsideDur)
	}
	if want := "ledgerq bench --quick --duration 3s"; cfg.commandLine != want {
		t.Errorf("command line %q, want %q", cfg.commandLine, want)
	}
}

func TestParseBenchFlagsRefuses(t *testing.T) {
	for _, args := range [][]string{
		{"--scenarios", "publish,teleport"},
		{"--concurrency", "0"},
		{"--url", "http://127.0.0.1:1"}, // no token and no secret
		{"--duration", "-1s"},
		{"--server-pid", "42"}, // a server the bench starts is measured anyway
		{"--url", "http://127.0.0.1:1", "--token", "t", "--server-pid", "-3"},
		{"stray"},
	} {
		if _, err := parseBenchFlags(args, noEnv, io.Discard); err == nil {
			t.Errorf("parseBenchFlags(%q) accepted", args)
		}
	}
	cfg, err := parseBenchFlags([]string{"--scenarios", "all"}, noEnv, io.Discard)
	if err != nil || len(cfg.scenarios) != len(benchScenarios) {
		t.Errorf("--scenarios all: %v, %v", cfg.scenarios, err)
	}
}

func TestProcRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux only")
	}
	rss, err := procRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 {
		t.Fatalf("own RSS %d bytes: a Go test binary uses megabytes", rss)
	}
}
