//go:build linux

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// processTimerSlack reads the timer slack of a process's first thread, the
// one the binary's constructor sets before the Go runtime starts the others
// (they inherit it).
func processTimerSlack(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", pid))
	if err != nil {
		t.Fatalf("timer slack of the server: %v", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("timer slack of the server: %q: %v", b, err)
	}
	return ns
}

// TestServeRunsWithTimerSlack starts the binary as an operator would and
// checks the timer slack its threads run with: 1 ms by default,
// LEDGERQ_TIMER_SLACK's value when set, the inherited one with "off", and
// the start-up log says which. A value it cannot use stops the start with a
// message naming the variable.
func TestServeRunsWithTimerSlack(t *testing.T) {
	own, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	inherited, _ := strconv.ParseInt(strings.TrimSpace(string(own)), 10, 64)
	for _, tc := range []struct {
		env     string
		wantNS  int64
		wantLog string
	}{
		{"", 1_000_000, "1ms"},
		{"200us", 200_000, "200µs"},
		{"off", inherited, time.Duration(inherited).String()},
	} {
		t.Run("LEDGERQ_TIMER_SLACK="+tc.env, func(t *testing.T) {
			s := harness.Start(t, harness.Options{Env: []string{"LEDGERQ_TIMER_SLACK=" + tc.env}})
			if got := processTimerSlack(t, s.PID()); got != tc.wantNS {
				t.Errorf("timer slack %d ns, want %d", got, tc.wantNS)
			}
			recs := s.LogRecords("listening")
			if len(recs) == 0 {
				t.Fatalf("no listening record in the logs:\n%s", s.Logs())
			}
			if got := recs[0]["timer_slack"]; got != tc.wantLog {
				t.Errorf("listening record says timer_slack %v, want %q", got, tc.wantLog)
			}
		})
	}

	// The constructor finds "serve" after argv[0], whatever its length: a
	// binary installed under a long path gets the slack too.
	t.Run("long argv[0]", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), strings.Repeat("a-long-directory-name/", 8))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "ledgerq")
		data, err := os.ReadFile(harness.Bin())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		addr := harness.FreeAddr(t)
		cmd := exec.Command(bin, "serve", "--addr", addr, "--data", t.TempDir())
		cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET=timerslack-test-secret-0123456789abcdef")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve from %s did not answer /healthz: %v", bin, err)
			}
		}
		if got := processTimerSlack(t, cmd.Process.Pid); got != 1_000_000 {
			t.Errorf("timer slack %d ns with argv[0] %d bytes long, want 1000000", got, len(bin))
		}
	})

	for _, bad := range []string{"2s", "1e3ns", "fast", "5ms "} {
		cmd := exec.Command(harness.Bin(), "serve", "--addr", harness.FreeAddr(t), "--data", t.TempDir())
		cmd.Env = append(os.Environ(), "LEDGERQ_TIMER_SLACK="+bad)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("LEDGERQ_TIMER_SLACK=%q: serve started; want it refused", bad)
		}
		if !strings.Contains(string(out), "LEDGERQ_TIMER_SLACK") {
			t.Errorf("LEDGERQ_TIMER_SLACK=%q: the error does not name the variable:\n%s", bad, out)
		}
	}
}
