package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the ledgerq binary, built once for the package.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// A prebuilt binary (the artifact a release ships, or a run as an
	// unprivileged user without a Go toolchain of its own) skips the build.
	if bin := os.Getenv("LEDGERQ_BIN"); bin != "" {
		binPath = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "ledgerq-reliability-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "ledgerq")
	build := exec.Command("go", "build", "-o", binPath, "github.com/ledgerq/ledgerq/cmd/ledgerq")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "reliability: building ledgerq:", err)
		return 1
	}
	return m.Run()
}

// httpClient talks to the servers under test. Its own transport keeps
// enough idle connections for the load workers, and the overall timeout
// bounds every request even when a server hangs.
var httpClient = &http.Client{
	Timeout: 60 * time.Second,
	Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	},
}

// server is one `ledgerq serve` process. Its address stays the same across
// restarts so that load workers can keep their URL.
type server struct {
	t    testing.TB
	data string
	addr string
	url  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logs   tail
}

// startServer runs `ledgerq serve` on a free port over data (a fresh
// directory when empty) with extra flags, waits for /readyz 200, and kills
// the process at cleanup.
func startServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	s := &server{t: t, data: data, args: extra}
	s.addr = "127.0.0.1:" + freePort(t)
	s.url = "http://" + s.addr
	t.Cleanup(s.kill)
	s.start()
	return s
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// start launches the process and waits until it is ready.
func (s *server) start() {
	s.t.Helper()
	args := append([]string{"serve", "--addr", s.addr, "--data", s.data, "--log-format", "json"}, s.args...)
	cmd := exec.Command(binPath, args...)
	// The secret generated in the data directory, whatever the caller's
	// environment says.
	cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET=")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start ledgerq: %v", err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go s.logs.copy(pr)
	go func() { _ = cmd.Wait(); pw.Close(); close(exited) }()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.t.Fatalf("ledgerq exited during start-up (%v):\n%s", cmd.ProcessState, s.logs.String())
		default:
		}
		if code, _, err := s.ready(); err == nil && code == http.StatusOK {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("ledgerq not ready within 60s:\n%s", s.logs.String())
}

// pid is the running process's id (0 when stopped).
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// kill ends the process with SIGKILL: a crash, nothing flushed or closed.
func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// term sends SIGTERM and waits (at most 40 s, then SIGKILL) for the exit;
// it returns the exit code.
func (s *server) term() (int, error) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return 0, errors.New("not running")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-exited:
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return -1, errors.New("ledgerq did not exit within 40s of SIGTERM")
	}
	return cmd.ProcessState.ExitCode(), nil
}

// stop is term for a test that needs a clean exit.
func (s *server) stop() {
	s.t.Helper()
	code, err := s.term()
	if err != nil || code != 0 {
		s.t.Fatalf("SIGTERM: exit code %d, %v; logs:\n%s", code, err, s.logs.String())
	}
}

// token mints an admin token for the server's generated secret.
func (s *server) token() string {
	s.t.Helper()
	out, _, code := runTool(s.t, "token", "--sub", "reliability", "--scope", "admin", "--ttl", "2h", "--data", s.data)
	if code != 0 {
		s.t.Fatalf("ledgerq token: exit %d", code)
	}
	return strings.TrimSpace(out)
}

// tail keeps the last 512 KiB a process printed: enough to explain a
// failure, bounded for a soak's access log.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 512 << 10

func (l *tail) copy(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.buf = append(append(l.buf, sc.Bytes()...), '\n')
		if len(l.buf) > tailMax {
			l.buf = append([]byte(nil), l.buf[len(l.buf)-tailMax/2:]...)
		}
		l.mu.Unlock()
	}
	// Drain whatever is left so the child never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

func (l *tail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// answer is an HTTP response read in full.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// problem is an RFC 9457 body.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// problem decodes the answer as problem+json; ok is false when the answer
// is not one.
func (a answer) problem() (problem, bool) {
	var p problem
	if !strings.HasPrefix(a.header.Get("Content-Type"), "application/problem+json") {
		return p, false
	}
	if err := json.Unmarshal(a.body, &p); err != nil {
		return p, false
	}
	return p, true
}

func (a answer) decode(v any) error {
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("decode %d answer %q: %w", a.status, a.body, err)
	}
	return nil
}

// do sends one request; headers come as name, value pairs. It never calls
// t.Fatal, so load workers may use it.
func (s *server) do(method, path, token string, body any, headers ...string) (answer, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rd)
	if err != nil {
		return answer{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: raw}, nil
}

// must sends a request from the test goroutine and fails the test unless
// the answer has the wanted status.
func (s *server) must(method, path, token string, body any, want int, headers ...string) answer {
	s.t.Helper()
	a, err := s.do(method, path, token, body, headers...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	if a.status != want {
		s.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, a.status, want, a.body)
	}
	return a
}

// createQueue creates a queue whose leases outlive any test, so that no
// lease expires (and no scheduler event appears) while a test compares
// states.
func (s *server) createQueue(token, name string) {
	s.t.Helper()
	s.must("POST", "/v1/queues", token, map[string]any{"name": name, "visibility_timeout_ms": 3_600_000}, http.StatusCreated)
}

// readyReport is the body of GET /readyz.
type readyReport struct {
	Ready  bool `json:"ready"`
	Checks []struct {
		Name   string `json:"name"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

// check returns the named check's state; found is false when it is absent.
func (r readyReport) check(name string) (ok, found bool, detail string) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.OK, true, c.Detail
		}
	}
	return false, false, ""
}

func (s *server) ready() (int, readyReport, error) {
	var r readyReport
	a, err := s.do("GET", "/readyz", "", nil)
	if err != nil {
		return 0, r, err
	}
	return a.status, r, a.decode(&r)
}

// waitReady polls /readyz until cond holds for status and report.
func (s *server) waitReady(what string, timeout time.Duration, cond func(int, readyReport) bool) readyReport {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		code, r, err := s.ready()
		if err == nil && cond(code, r) {
			return r
		}
		last = fmt.Sprintf("%d %+v %v", code, r, err)
		if time.Now().After(deadline) {
			s.t.Fatalf("/readyz never showed %s within %v; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// head is the log's last position, from the server's own chain check.
func (s *server) head(token string) int64 {
	s.t.Helper()
	var v struct {
		OK   bool  `json:"ok"`
		Head int64 `json:"head_position"`
	}
	if err := s.must("GET", "/v1/audit/verify", token, nil, http.StatusOK).decode(&v); err != nil {
		s.t.Fatal(err)
	}
	if !v.OK {
		s.t.Fatalf("GET /v1/audit/verify: chain not ok")
	}
	return v.Head
}

// metric reads one unlabelled sample from /metrics.
func (s *server) metric(name string) (float64, error) {
	a, err := s.do("GET", "/metrics", "", nil)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(a.body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// queueStats are the counters of a queue that do not depend on the clock
// (oldest_ready_age_ms does, and is left out of every comparison).
type queueStats struct {
	Ready        int64 `json:"ready"`
	Delayed      int64 `json:"delayed"`
	InFlight     int64 `json:"in_flight"`
	Published    int64 `json:"published_total"`
	Acked        int64 `json:"acked_total"`
	Released     int64 `json:"released_total"`
	Expired      int64 `json:"expired_total"`
	DeadLettered int64 `json:"dead_lettered_total"`
}

// queueStatsAt reads GET /v1/queues/{queue} once the read side has applied
// minPos, and the position it had applied.
func (s *server) queueStatsAt(token, queue string, minPos int64) (queueStats, int64, error) {
	var v struct {
		Stats queueStats `json:"stats"`
	}
	a, err := s.do("GET", "/v1/queues/"+queue, token, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(minPos, 10))
	if err != nil {
		return v.Stats, 0, err
	}
	if a.status != http.StatusOK {
		return v.Stats, 0, fmt.Errorf("GET /v1/queues/%s: %d %s", queue, a.status, a.body)
	}
	pos, _ := strconv.ParseInt(a.header.Get("X-Ledgerq-Position"), 10, 64)
	return v.Stats, pos, a.decode(&v)
}

// waitStats polls the read model until it shows want at position minPos.
// The read side catches up asynchronously (after a restart, a Redis
// outage, a full disk), so equality is awaited, bounded by timeout.
func (s *server) waitStats(token, queue string, minPos int64, want queueStats, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, pos, err := s.queueStatsAt(token, queue, minPos)
		if err == nil && got == want && pos == minPos {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("read model of %s never converged within %v:\n got  %+v at position %d (err %v)\n want %+v at position %d (the replay)",
				queue, timeout, got, pos, err, want, minPos)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runTool runs the binary with args (bounded to 2 minutes) and returns its
// stdout, stderr and exit code.
func runTool(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ledgerq %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// verifyOffline runs `ledgerq audit verify` on a data directory and fails
// unless the chain is intact; it returns the head position.
func verifyOffline(t testing.TB, dir string) int64 {
	t.Helper()
	out, errOut, code := runTool(t, "audit", "verify", "--data", dir)
	var v struct {
		OK   bool  `json:"ok"`
		Head int64 `json:"head_position"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !v.OK {
		t.Fatalf("ledgerq audit verify: exit %d\n%s\n%s", code, out, errOut)
	}
	return v.Head
}

// replayView is what `ledgerq replay` prints.
type replayView struct {
	Position int64 `json:"position"`
	Queues   []struct {
		Name  string     `json:"name"`
		Stats queueStats `json:"stats"`
	} `json:"queues"`
}

func (r replayView) stats(queue string) (queueStats, bool) {
	for _, q := range r.Queues {
		if q.Name == queue {
			return q.Stats, true
		}
	}
	return queueStats{}, false
}

// replayCopy runs `ledgerq replay` on a copy of the log of a stopped (or
// crashed) server. The copy leaves the original exactly as the crash left
// it for the server's own recovery; only the database and its WAL are
// copied, as the shared-memory index is a cache SQLite rebuilds.
func replayCopy(t testing.TB, dir string) replayView {
	t.Helper()
	dst := t.TempDir()
	for _, name := range []string{"events.db", "events.db-wal"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && name != "events.db" {
			continue
		}
		if err != nil {
			t.Fatalf("copy log: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), raw, 0o600); err != nil {
			t.Fatalf("copy log: %v", err)
		}
	}
	out, errOut, code := runTool(t, "replay", "--data", dst)
	var v replayView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("ledgerq replay: exit %d\n%s\n%s", code, out, errOut)
	}
	return v
}

// logEvent is the part of an event the checks read.
type logEvent struct {
	Position int64  `json:"position"`
	Type     string `json:"type"`
	Data     struct {
		Queue     string `json:"queue"`
		MessageID string `json:"message_id"`
	} `json:"data"`
}

// logSummary counts what the log says happened to each message.
type logSummary struct {
	head      int64
	published map[string]int // message id → MessagePublished events
	acked     map[string]int // message id → MessageAcked events
	perQueue  map[string]map[string]int
}

// readLog streams the whole log as NDJSON and summarises it. It fails the
// test on a gap or a repeat in the positions.
func (s *server) readLog(token string) logSummary {
	s.t.Helper()
	a := s.must("GET", "/v1/events", token, nil, http.StatusOK, "Accept", "application/x-ndjson")
	sum := logSummary{published: map[string]int{}, acked: map[string]int{}, perQueue: map[string]map[string]int{}}
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e logEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			s.t.Fatalf("event log line %q: %v", sc.Bytes(), err)
		}
		if e.Position != sum.head+1 {
			s.t.Fatalf("event log: position %d follows %d (positions must be gap-free)", e.Position, sum.head)
		}
		sum.head = e.Position
		switch e.Type {
		case "MessagePublished":
			sum.published[e.Data.MessageID]++
		case "MessageAcked":
			sum.acked[e.Data.MessageID]++
		}
		if sum.perQueue[e.Data.Queue] == nil {
			sum.perQueue[e.Data.Queue] = map[string]int{}
		}
		sum.perQueue[e.Data.Queue][e.Type]++
	}
	if err := sc.Err(); err != nil {
		s.t.Fatalf("event log: %v", err)
	}
	return sum
}

// checkLog fails the test unless every publish answered 201 is in the log
// exactly once, no message was published twice, and every ack answered 200
// is in the log (once).
func checkLog(t testing.TB, sum logSummary, l *ledger) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var problems []string
	for id := range l.published {
		if n := sum.published[id]; n != 1 {
			problems = append(problems, fmt.Sprintf("message %s answered 201 is in the log %d times", id, n))
		}
	}
	for id, n := range sum.published {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("message %s published %d times in the log", id, n))
		}
	}
	for id := range l.acked {
		if sum.acked[id] != 1 {
			problems = append(problems, fmt.Sprintf("ack of %s answered 200 is in the log %d times", id, sum.acked[id]))
		}
	}
	for id, n := range sum.acked {
		if n > 1 {
			problems = append(problems, fmt.Sprintf("message %s acked %d times in the log", id, n))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("… and %d more", len(problems)-20))
		}
		t.Fatalf("event log disagrees with the answers given:\n%s", strings.Join(problems, "\n"))
	}
}
