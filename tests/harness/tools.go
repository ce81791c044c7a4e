package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// toolTimeout bounds one run of the binary: a hang fails the test with
// what the tool printed instead of stalling it, and a replay of a
// million-event log still fits.
const toolTimeout = 10 * time.Minute

// Run runs the binary with args and returns what it printed and its exit
// code. LEDGERQ_JWT_SECRET is cleared, so that commands use a data
// directory's generated secret. Only a tool that cannot be run (or hangs
// for ten minutes) fails the test; a non-zero exit is the caller's to judge.
func Run(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return run(t, append(os.Environ(), "LEDGERQ_JWT_SECRET="), args)
}

func run(t testing.TB, env, args []string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("ledgerq %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	if ctx.Err() != nil {
		t.Fatalf("ledgerq %s: killed after %v\n%s%s", strings.Join(args, " "), toolTimeout, out.String(), errOut.String())
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// MustRun is Run for a command that must succeed: it returns the standard
// output and fails the test, with everything printed, on a non-zero exit.
func MustRun(t testing.TB, args ...string) []byte {
	t.Helper()
	out, errOut, code := Run(t, args...)
	if code != 0 {
		t.Fatalf("ledgerq %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return []byte(out)
}

// Replay runs `ledgerq replay --data dir` with extra flags (such as
// --at-position N) on a stopped server's data directory and returns the
// JSON it printed (ParseState reads it). It fails the test on a non-zero
// exit.
func Replay(t testing.TB, dir string, extra ...string) []byte {
	t.Helper()
	return MustRun(t, append([]string{"replay", "--data", dir}, extra...)...)
}

// ReplayCopy is Replay on a copy of the log of dir, for a server that was
// crashed, stopped or is about to be restarted: the original stays exactly
// as it was for the server's own recovery. Only the database and its WAL
// are copied; the shared-memory index is a cache SQLite rebuilds.
func ReplayCopy(t testing.TB, dir string, extra ...string) []byte {
	t.Helper()
	dst := t.TempDir()
	for _, name := range []string{"events.db", "events.db-wal"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && name != "events.db" {
			continue
		}
		if err != nil {
			t.Fatalf("copy the log: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), raw, 0o600); err != nil {
			t.Fatalf("copy the log: %v", err)
		}
	}
	return Replay(t, dst, extra...)
}

// VerifyReport is what `ledgerq audit verify` prints about an intact log.
type VerifyReport struct {
	OK           bool   `json:"ok"`
	Checked      int64  `json:"checked"`
	HeadPosition int64  `json:"head_position"`
	HeadHash     string `json:"head_hash"`
}

// VerifyOffline runs `ledgerq audit verify` on a data directory and fails
// the test unless it exits 0 and reports the chain intact.
func VerifyOffline(t testing.TB, dir string) VerifyReport {
	t.Helper()
	out, errOut, code := Run(t, "audit", "verify", "--data", dir)
	var v VerifyReport
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !v.OK {
		t.Fatalf("ledgerq audit verify --data %s: exit %d\n%s%s", dir, code, out, errOut)
	}
	return v
}
