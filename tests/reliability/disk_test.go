//go:build linux

package reliability

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
	"golang.org/x/sys/unix"
)

// TestDiskFull fills the data directory while the server runs: commands
// must answer 503 with a clear problem (never 500, never a hang), nothing
// may corrupt, /readyz must say the store cannot write, and once space
// returns the server must recover by itself with every 201 in the log
// exactly once.
//
// As root the directory is a small tmpfs filled with a filler file (a real
// ENOSPC). Everyone also gets the same scenario with the process's file
// size limit (RLIMIT_FSIZE, set from outside with prlimit) lowered to what
// the files hold, so writes that extend a file fail (EFBIG): the fallback
// that needs no privilege.
func TestDiskFull(t *testing.T) {
	t.Run("tmpfs", func(t *testing.T) {
		dir := mountTmpfs(t, "8m")
		var filler *os.File
		diskFullScenario(t, dir,
			func(s *server) {
				filler = fillDisk(t, dir)
				// An open file keeps the mount busy: close it even when the
				// test stops before free.
				t.Cleanup(func() { filler.Close() })
			},
			func(s *server) {
				// Closed first: an open file's pages stay allocated.
				filler.Close()
				if err := os.Remove(filler.Name()); err != nil {
					t.Fatalf("remove the filler: %v", err)
				}
			})
	})
	t.Run("file-size-limit", func(t *testing.T) {
		var old unix.Rlimit
		diskFullScenario(t, "",
			func(s *server) {
				if err := unix.Prlimit(s.PID(), unix.RLIMIT_FSIZE, nil, &old); err != nil {
					t.Fatalf("prlimit RLIMIT_FSIZE: %v", err)
				}
				// Only the soft limit moves: lowering it, and raising it
				// back up to the hard one, needs no privilege.
				limit := min(uint64(largestFile(t, s.Data))+32<<10, old.Cur)
				if err := unix.Prlimit(s.PID(), unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: old.Max}, nil); err != nil {
					t.Fatalf("prlimit RLIMIT_FSIZE: %v", err)
				}
				t.Logf("RLIMIT_FSIZE of the server lowered to %d bytes", limit)
			},
			func(s *server) {
				if err := unix.Prlimit(s.PID(), unix.RLIMIT_FSIZE, &old, nil); err != nil {
					t.Fatalf("prlimit RLIMIT_FSIZE back: %v", err)
				}
			})
	})
}

// diskFullScenario runs the server over dir (fresh when empty), takes the
// room away with fill and gives it back with free.
func diskFullScenario(t *testing.T, dir string, fill, free func(*server)) {
	s := startServer(t, dir, "--log-level", "warn")
	tok := s.token()
	const q = "disk"
	s.createQueue(tok, q)
	l := newLedger()
	publish := func(body string) (harness.Response, error) {
		started := time.Now()
		a, err := s.Do("POST", "/v1/queues/"+q+"/messages", tok, map[string]any{"body": body})
		l.record("publish", started, a, err)
		if err == nil && a.Status == http.StatusCreated {
			var r struct {
				ID string `json:"id"`
			}
			if err := a.Decode(&r); err != nil {
				t.Fatal(err)
			}
			l.addPublished(r.ID)
		}
		return a, err
	}
	for i := range 20 {
		if a, err := publish(fmt.Sprintf("before-%d", i)); err != nil || a.Status != http.StatusCreated {
			t.Fatalf("publish before the disk fills: %v %d %s", err, a.Status, a.Body)
		}
	}
	held := receive(t, s, tok, q, 5, l)
	// A probe has seen the store healthy, as a load balancer would have.
	s.waitReady("ready before the disk fills", 10*time.Second, func(code int, _ harness.ReadyReport) bool { return code == http.StatusOK })

	fill(s)
	body := strings.Repeat("f", 2048)
	var refused harness.Response
	for i := 0; ; i++ {
		if i == 5000 {
			t.Fatalf("5000 publishes of 2 KiB were all accepted on a full disk")
		}
		a, err := publish(body)
		if err != nil {
			t.Fatalf("publish on a full disk got no answer: %v\n%s", err, s.Logs())
		}
		if a.Status == http.StatusCreated {
			continue
		}
		mustUnavailable(t, a, "publish on a full disk")
		refused = a
		break
	}
	t.Logf("full after %d publishes: %s", l.countPublished(), refused.Body)
	// Other commands that append are refused as cleanly; a refused ack
	// changes nothing, so the lease stays good for later.
	for _, m := range held[:2] {
		a, err := s.Do("POST", "/v1/queues/"+q+"/ack", tok, map[string]any{"receipt": m.Receipt})
		if err != nil {
			t.Fatalf("ack on a full disk got no answer: %v", err)
		}
		if a.Status == http.StatusOK {
			l.addAcked(m.ID)
			l.dropLease(m.ID)
			continue
		}
		mustUnavailable(t, a, "ack on a full disk")
	}
	if a, err := s.Do("POST", "/v1/queues/"+q+"/receive", tok, map[string]any{"max_messages": 3}); err != nil || (a.Status != http.StatusOK && a.Status != http.StatusServiceUnavailable) {
		t.Fatalf("receive on a full disk: %v %d %s", err, a.Status, a.Body)
	} else if a.Status == http.StatusServiceUnavailable {
		mustUnavailable(t, a, "receive on a full disk")
	}
	reportReadyOnFullDisk(t, s)
	// Reads are served from what is already on disk.
	s.Must("GET", "/v1/queues/"+q, tok, nil, http.StatusOK)

	free(s)
	harness.WaitFor(t, "a publish accepted once space returned", 30*time.Second, func() bool {
		a, err := publish("after-first")
		if err == nil && a.Status != http.StatusCreated {
			mustUnavailable(t, a, "publish while space returns")
		}
		return err == nil && a.Status == http.StatusCreated
	})
	s.waitReady("ready again (200)", 60*time.Second, func(code int, r harness.ReadyReport) bool { return code == http.StatusOK && r.Ready })
	for i := range 20 {
		if a, err := publish(fmt.Sprintf("after-%d", i)); err != nil || a.Status != http.StatusCreated {
			t.Fatalf("publish after recovery: %v %d %s", err, a.Status, a.Body)
		}
	}
	// Leases taken before the disk filled survived the refused writes.
	for _, m := range held {
		if l.acked[m.ID] {
			continue
		}
		s.Must("POST", "/v1/queues/"+q+"/ack", tok, map[string]any{"receipt": m.Receipt}, http.StatusOK)
		l.addAcked(m.ID)
		l.dropLease(m.ID)
	}
	l.checkNoViolations(t)

	head := s.head(tok)
	checkLog(t, s.readLog(tok), l)
	var live queueStats
	harness.WaitFor(t, "the read model at the head", 60*time.Second, func() bool {
		st, pos, err := s.queueStatsAt(tok, q, head)
		live = st
		return err == nil && pos == head
	})
	s.Stop()
	verifyOffline(t, s.Data)
	rep := replayCopy(t, s.Data)
	want, _ := rep.stats(q)
	if rep.Position != head || live != want {
		t.Fatalf("after recovery the read model differs from the replay:\n live   %+v at %d\n replay %+v at %d", live, head, want, rep.Position)
	}
	if live.Published != int64(l.countPublished()) {
		t.Fatalf("published_total %d, publishes answered 201: %d", live.Published, l.countPublished())
	}
	// The data survives a restart as well.
	s.Restart()
	s.waitStats(tok, q, head, want, 30*time.Second)
	t.Logf("recovered: head %d, %+v; answers: %s", head, live, l.summary())
}

// reportReadyOnFullDisk says whether /readyz shows the event store failing
// while commits fail. It is logged, not asserted: today the check in
// cmd/ledgerq/serve.go ((*node).ready and lastCommitFailed) takes its
// baseline at the first probe after the first failure and only reports
// failures that happen between two probes, so a probe on a full disk with
// no write in between says ready. Flip strictReadyOnFullDisk when fixed.
func reportReadyOnFullDisk(t *testing.T, s *server) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, r, err := s.Ready()
		ok, found, detail := r.Check("event_store")
		if err == nil && code == http.StatusServiceUnavailable && found && !ok {
			t.Logf("/readyz on a full disk: 503, event_store %q", detail)
			return
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("/readyz on a full disk: %d, event_store ok=%v %q (err %v)", code, ok, detail, err)
			if strictReadyOnFullDisk {
				t.Fatal(msg)
			}
			t.Log("KNOWN ISSUE: " + msg)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// strictReadyOnFullDisk makes reportReadyOnFullDisk fail the test.
const strictReadyOnFullDisk = true

// receive leases up to n messages and fails the test unless it gets n.
func receive(t *testing.T, s *server, tok, q string, n int, l *ledger) []leasedMessage {
	t.Helper()
	var r struct {
		Messages []leasedMessage `json:"messages"`
	}
	if err := s.Must("POST", "/v1/queues/"+q+"/receive", tok, map[string]any{"max_messages": n}, http.StatusOK).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != n {
		t.Fatalf("received %d messages, want %d", len(r.Messages), n)
	}
	l.addLeased(r.Messages)
	return r.Messages
}

// mustUnavailable checks a refusal for lack of room: 503, problem+json,
// code unavailable, a detail a person can act on.
func mustUnavailable(t *testing.T, a harness.Response, what string) {
	t.Helper()
	p, ok := a.Problem()
	if a.Status != http.StatusServiceUnavailable || !ok || p.Code != "unavailable" || p.Status != http.StatusServiceUnavailable || p.Detail == "" {
		t.Fatalf("%s: got %d %s %s, want 503 problem+json with code unavailable and a detail", what, a.Status, a.Header.Get("Content-Type"), a.Body)
	}
}

// TestReadOnlyDataDir stops the server, makes its data directory read-only
// and starts it again: it must refuse to start with a clear message (exit
// code 1, no panic), leave the log intact (the offline verifier still reads
// it), and serve everything once the directory is writable again.
func TestReadOnlyDataDir(t *testing.T) {
	var dir string
	var makeRO, makeRW func()
	if os.Geteuid() == 0 {
		// Root ignores permission bits: only a read-only mount stops it.
		dir = mountTmpfs(t, "16m")
		makeRO = func() { remount(t, dir, unix.MS_RDONLY) }
		makeRW = func() { remount(t, dir, 0) }
	} else {
		dir = t.TempDir()
		makeRO = func() { chmodTree(t, dir, 0o500, 0o400) }
		makeRW = func() { chmodTree(t, dir, 0o700, 0o600) }
		t.Cleanup(makeRW)
	}
	s := startServer(t, dir, "--log-level", "warn")
	tok := s.token()
	const q = "ro"
	s.createQueue(tok, q)
	for i := range 10 {
		s.Must("POST", "/v1/queues/"+q+"/messages", tok, map[string]any{"body": fmt.Sprint("m", i)}, http.StatusCreated)
	}
	head := s.head(tok)
	s.Stop()

	makeRO()
	out, errOut, code := harness.Run(t, "serve", "--addr", harness.FreeAddr(t), "--data", dir)
	if code != 1 {
		t.Fatalf("serve on a read-only data directory: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine ") {
		t.Fatalf("serve on a read-only data directory panicked:\n%s", errOut)
	}
	if !strings.Contains(strings.ToLower(errOut), "read-only") && !strings.Contains(strings.ToLower(errOut), "permission denied") {
		t.Fatalf("serve on a read-only data directory does not say why:\n%s", errOut)
	}
	t.Logf("refused: %s", strings.TrimSpace(errOut))
	// Known weakness, reported rather than asserted: the offline verifier
	// opens the log with mode=ro, and SQLite in WAL mode still wants to
	// create events.db-shm, which a read-only medium forbids.
	if out, errOut, code := harness.Run(t, "audit", "verify", "--data", dir); code != 0 {
		t.Logf("KNOWN ISSUE: audit verify on a read-only directory: exit %d: %s%s", code, strings.TrimSpace(out), strings.TrimSpace(errOut))
	}

	makeRW()
	if got := verifyOffline(t, dir); got != head {
		t.Fatalf("audit verify after the read-only spell: head %d, want %d", got, head)
	}
	s.Restart()
	rep := replayCopy(t, dir)
	want, _ := rep.stats(q)
	if rep.Position != head || want.Published != 10 || want.Ready != 10 {
		t.Fatalf("after the read-only spell: replay %+v at %d, want 10 published and ready at %d", want, rep.Position, head)
	}
	s.waitStats(tok, q, head, want, 30*time.Second)
	s.Must("POST", "/v1/queues/"+q+"/messages", tok, map[string]any{"body": "after"}, http.StatusCreated)
}

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it at cleanup (registered first, so it runs after the server
// started on it is killed). It needs root: otherwise the test is skipped,
// except that root under CI=true must be able to mount.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skipf("not root: cannot mount a tmpfs; the file-size-limit case covers a full disk without privilege")
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs as root under CI=true: %v", err)
		}
		t.Skipf("mount tmpfs: %v (no CAP_SYS_ADMIN in this container?); the file-size-limit case covers a full disk", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Logf("unmount %s: %v; detaching it", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// remount changes the flags of the tmpfs on dir (MS_RDONLY or 0).
func remount(t *testing.T, dir string, flags uintptr) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV|flags, ""); err != nil {
		t.Fatalf("remount %s (flags %#x): %v", dir, flags, err)
	}
}

// fillDisk writes a file until the file system is full and returns it open.
func fillDisk(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatalf("filler: %v", err)
	}
	chunk := make([]byte, 64<<10)
	for written := 0; ; written += len(chunk) {
		if written > 1<<30 {
			t.Fatalf("wrote 1 GiB into a small tmpfs without filling it")
		}
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	// The last pages a partial write could not use.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return f
}

// largestFile is the size of the biggest file in dir.
func largestFile(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var most int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			most = max(most, info.Size())
		}
	}
	return most
}

// chmodTree sets the mode of dir and of the files in it.
func chmodTree(t *testing.T, dir string, dirMode, fileMode os.FileMode) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, dirMode|0o100); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(dir, e.Name()), fileMode); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		t.Fatal(err)
	}
}
