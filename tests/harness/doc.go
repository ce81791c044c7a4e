// Package harness runs the real ledgerq binary for the end-to-end test
// packages under tests/: it builds cmd/ledgerq once per test binary, starts
// `ledgerq serve` on a free loopback port, and gives a test what it needs to
// check the server from the outside the way a user would.
//
// A package adopts it in three lines and then starts servers from its tests:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
//	s := harness.Start(t, harness.Options{Args: []string{"--rate-limit", "5/s"}})
//	tok := s.Token("alice", "admin")
//	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "orders"}), 201, "create")
//
// What it covers:
//
//   - the binary: Main and Build (LEDGERQ_BIN names a prebuilt one), Bin;
//   - a server process: Start with Options (data directory, extra flags and
//     environment, JWT secret, log format, timeouts, TLS), Kill (SIGKILL),
//     Term and Stop (SIGTERM and the exit code), Restart on the same port
//     and data directory, PID, Memory, Logs and LogRecords;
//   - HTTP: Send with any client, Do (never fails the test, for load
//     goroutines), Call, Must and GetAt (read-your-writes) from the test
//     goroutine, Response with its decoded JSON and Problem, MustStatus and
//     MustProblem, Ready and Metrics;
//   - SSE: Subscribe, a Stream of parsed events (or only their count);
//   - the offline tools: Run, MustRun, Token, Replay, ReplayCopy (on a copy
//     of a crashed server's log), VerifyOffline;
//   - comparing queue documents: ParseState, WithoutAge, NormalTimes, Stat;
//   - WaitFor and FreeAddr.
//
// Load generators, workloads and checks of what a test's clients were told
// stay in the packages that own them. The package imports testing but is
// not a test package itself, so every test package under tests/ can share
// it; it fails tests with t.Fatal and never panics.
package harness
