// Package reliability holds fault tests of the real ledgerq binary: SIGKILL
// at random moments under load, a Redis outage, a data directory that fills
// up or turns read-only, a graceful SIGTERM, and a soak under steady mixed
// load that watches memory, open files, goroutines and latency.
//
// The package has no library code: every test builds `ledgerq` once
// (TestMain), runs it as a child process on a free loopback port, and checks
// from the outside what a user would check — the answers it gave, the event
// log (GET /v1/events), `ledgerq audit verify` and `ledgerq replay` on a copy
// of the data directory, and the read models over HTTP.
//
// The normal `go test ./...` run does a short crash series (3 kills; 1
// with -short) and the other fault tests in well under a minute. The long
// versions:
//
//	LEDGERQ_CRASH_KILLS=25 go test -count=1 -run Crash -v ./tests/reliability
//	LEDGERQ_SOAK=60s go test -count=1 -run Soak -v -timeout 10m ./tests/reliability
//
// LEDGERQ_BIN runs the tests against a prebuilt binary instead of building
// one. LEDGERQ_CRASH_SEED replays a crash series' random kill moments. The disk
// tests mount a small tmpfs when run as root and fall back to a per-process
// file size limit (RLIMIT_FSIZE) otherwise.
package reliability
