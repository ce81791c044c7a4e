package evidence

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

// jwtSecret signs the tokens of every server these tests start.
const jwtSecret = "evidence-tests-hs256-secret-0123456789abcdef"

// binPath is the ledgerq binary built once for the package.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ledgerq-evidence-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "ledgerq")
	build := exec.Command("go", "build", "-o", binPath, "github.com/ledgerq/ledgerq/cmd/ledgerq")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "evidence: building ledgerq:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one `ledgerq serve` process on a data directory.
type server struct {
	t    *testing.T
	Data string
	URL  string
	addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	logs   bytes.Buffer
	exited chan struct{}
}

// startServer runs `ledgerq serve` on dataDir (created when missing) on a
// free port and waits until /readyz answers 200.
func startServer(t *testing.T, dataDir string) *server {
	t.Helper()
	s := &server{t: t, Data: dataDir}
	s.start()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server log (tail):\n%s", tail(s.Logs(), 30))
		}
	})
	return s
}

func (s *server) start() {
	s.t.Helper()
	if s.addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.t.Fatalf("free port: %v", err)
		}
		s.addr = l.Addr().String()
		l.Close()
		s.URL = "http://" + s.addr
	}
	cmd := exec.Command(binPath, "serve", "--addr", s.addr, "--data", s.Data, "--log-format", "json")
	cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET="+jwtSecret)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start ledgerq: %v", err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.logs.Write(sc.Bytes())
			s.logs.WriteByte('\n')
			s.mu.Unlock()
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(exited) }()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.t.Fatalf("ledgerq exited during start-up:\n%s", tail(s.Logs(), 30))
		default:
		}
		if resp, err := http.Get(s.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("ledgerq not ready in time:\n%s", tail(s.Logs(), 30))
}

// Logs returns what the server printed so far.
func (s *server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

// stop sends SIGTERM and fails the test unless the server exits cleanly.
func (s *server) stop() {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		s.t.Fatal("ledgerq did not exit within 30s of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Fatalf("ledgerq exited with %d after SIGTERM:\n%s", code, tail(s.Logs(), 20))
	}
}

// token mints an admin token for jwtSecret.
func token(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(binPath, "token", "--sub", "evidence", "--scope", "admin", "--ttl", "1h", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET="+jwtSecret)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ledgerq token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// response is an HTTP answer; JSON holds the body when it is an object.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

func (r response) str(key string) string {
	v, _ := r.JSON[key].(string)
	return v
}

func (r response) num(key string) int64 {
	v, _ := r.JSON[key].(float64)
	return int64(v)
}

// call sends a request with the token and an optional JSON body; header
// pairs follow.
func (s *server) call(method, path, tok string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	r := response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	_ = json.Unmarshal(raw, &r.JSON)
	return r
}

// getAt is a GET once the read side has applied pos, waiting out 503
// consistency_timeout for up to ten minutes (a large log takes a while).
func (s *server) getAt(path, tok string, pos int64) response {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		r := s.call("GET", path, tok, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(pos, 10))
		if r.Status == http.StatusServiceUnavailable && r.str("code") == "consistency_timeout" && time.Now().Before(deadline) {
			continue
		}
		must(s.t, r, http.StatusOK, "GET "+path)
		return r
	}
}

// must fails the test unless the answer has the wanted status.
func must(t *testing.T, r response, status int, what string) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, status, r.Body)
	}
	return r
}

// run runs the binary and returns its standard output; a non-zero exit
// fails the test with what it printed.
func run(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("ledgerq %s: exit %d\n%s%s", strings.Join(args, " "), exit.ExitCode(), out, stderr.Bytes())
	}
	if err != nil {
		t.Fatalf("ledgerq %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// queuesByName indexes the queues of a {queues: […]} answer, each without
// the clock-dependent stats.oldest_ready_age_ms and with its times in one
// layout (see canonical).
func queuesByName(t *testing.T, raw []byte) map[string]map[string]any {
	t.Helper()
	var v struct {
		Queues []map[string]any `json:"queues"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not a queue list: %v\n%s", err, raw)
	}
	out := map[string]map[string]any{}
	for _, q := range v.Queues {
		out[q["name"].(string)] = canonical(q)
	}
	return out
}

// canonical copies a queue object without stats.oldest_ready_age_ms (it
// depends on when it is asked) and with every time in the API's layout:
// `ledgerq replay` prints Go's default, which drops trailing zeros of the
// milliseconds; the instants are what must agree.
func canonical(q map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range q {
		switch x := v.(type) {
		case string:
			if ts, err := time.Parse(time.RFC3339Nano, x); err == nil {
				v = ts.UTC().Format("2006-01-02T15:04:05.000Z07:00")
			}
		case map[string]any:
			if k == "stats" {
				st := map[string]any{}
				for sk, sv := range x {
					if sk != "oldest_ready_age_ms" {
						st[sk] = sv
					}
				}
				v = st
			}
		}
		out[k] = v
	}
	return out
}

// stat returns one stats counter of a queue object.
func stat(q map[string]any, name string) int64 {
	st, _ := q["stats"].(map[string]any)
	v, _ := st[name].(float64)
	return int64(v)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
