package eventstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore"
)

// crashChildEnv switches the test binary into the crash child: it appends to
// the store at the path in this variable until it is killed.
const crashChildEnv = "LEDGERQ_EVENTSTORE_CRASH_CHILD"

// crashRoundEnv names the child's streams, so every round writes new ones.
const crashRoundEnv = "LEDGERQ_EVENTSTORE_CRASH_ROUND"

const crashWriters = 16

// runCrashChild appends from crashWriters goroutines and prints
// "position stream version hash" for each event once Wait returned, i.e.
// once the store reported it durable. It never exits on its own before the
// parent kills it, except after a safety timeout.
func runCrashChild(path string) int {
	s, err := eventstore.Open(path, eventstore.Options{Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	round := os.Getenv(crashRoundEnv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out sync.Mutex
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Go(func() {
			own := fmt.Sprintf("crash-%s-%d", round, w)
			var version int64
			for i := 0; ctx.Err() == nil; i++ {
				req := appendReq(own, version, newEvent("Crash", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)))
				if i%3 == 0 {
					req.Streams = append(req.Streams, eventstore.StreamAppend{
						StreamID: "crash-shared", ExpectedVersion: eventstore.AnyVersion,
						Events: []eventstore.NewEvent{newEvent("Shared", `{}`)},
					})
				}
				res, err := s.Append(ctx, req)
				if err != nil {
					fmt.Fprintln(os.Stderr, "crash child append:", err)
					return
				}
				version++
				var buf bytes.Buffer
				for _, e := range res.Events {
					fmt.Fprintf(&buf, "%d %s %d %s\n", e.Position, e.StreamID, e.Version, e.Hash)
				}
				// One write per request: a pipe write under PIPE_BUF is
				// atomic, so SIGKILL never leaves half a report.
				out.Lock()
				_, err = os.Stdout.Write(buf.Bytes())
				out.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return 3 // only reached when the parent failed to kill us
}

type reported struct {
	stream  string
	version int64
	hash    string
}

// TestCrashRecovery kills a process that is appending concurrently at a
// random moment and checks that everything it was told is durable survived,
// in five rounds on the same file.
func TestCrashRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	all := map[int64]reported{}
	for round := range rounds {
		killAfter := 20 + rng.IntN(400) // reported events before the kill
		got := runAndKill(t, path, round, killAfter)
		if len(got) < killAfter {
			t.Fatalf("round %d: child reported %d events, want at least %d", round, len(got), killAfter)
		}
		for pos, r := range got {
			if prev, dup := all[pos]; dup {
				t.Fatalf("round %d: position %d reported again (%+v, before %+v)", round, pos, r, prev)
			}
			all[pos] = r
		}
		checkAfterCrash(t, path, all)
		t.Logf("round %d: killed after %d reported events; %d reported in total", round, len(got), len(all))
	}
}

func runAndKill(t *testing.T, path string, round, killAfter int) map[int64]reported {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	got := map[int64]reported{}
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			break // a partial last line was never fully reported
		}
		if err != nil {
			t.Fatalf("reading the child: %v", err)
		}
		pos, rep := parseReport(t, line)
		got[pos] = rep
		if !killed && len(got) >= killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("kill: %v", err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !killed || !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed as planned (killed=%v, wait %v); stderr:\n%s", killed, err, stderr.String())
	}
	return got
}

func parseReport(t *testing.T, line string) (int64, reported) {
	t.Helper()
	f := strings.Fields(line)
	if len(f) != 4 {
		t.Fatalf("bad report line %q", line)
	}
	pos, err1 := strconv.ParseInt(f[0], 10, 64)
	v, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad report line %q", line)
	}
	return pos, reported{stream: f[1], version: v, hash: f[3]}
}

// checkAfterCrash reopens the file: every reported event must be there as
// reported, positions must be 1..head without a gap, and the chain intact.
func checkAfterCrash(t *testing.T, path string, all map[int64]reported) {
	t.Helper()
	s := openStore(t, path)
	defer s.Close()
	var count int64
	versions := map[string]int64{}
	err := s.ReadAll(testCtx(t), 0, func(e eventstore.Event) error {
		count++
		if e.Position != count {
			return fmt.Errorf("position %d where %d was expected: a gap", e.Position, count)
		}
		versions[e.StreamID]++
		if e.Version != versions[e.StreamID] {
			return fmt.Errorf("stream %s has version %d at position %d, want %d", e.StreamID, e.Version, e.Position, versions[e.StreamID])
		}
		if r, ok := all[e.Position]; ok && (r.stream != e.StreamID || r.version != e.Version || r.hash != e.Hash) {
			return fmt.Errorf("position %d holds %s v%d, the child was told %s v%d", e.Position, e.StreamID, e.Version, r.stream, r.version)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != s.Head() {
		t.Fatalf("read %d events, head is %d", count, s.Head())
	}
	for pos := range all {
		if pos > count {
			t.Fatalf("reported position %d is lost: the log ends at %d", pos, count)
		}
	}
	rep, err := s.Verify(testCtx(t), 0, 0)
	if err != nil || !rep.OK || rep.Checked != count {
		t.Fatalf("Verify after the crash: %+v, %v", rep, err)
	}
}
