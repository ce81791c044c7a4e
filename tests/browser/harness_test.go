package browser

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
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ledgerq-browser-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "ledgerq")
	build := exec.Command("go", "build", "-o", binPath, "github.com/ledgerq/ledgerq/cmd/ledgerq")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "browser: building ledgerq:", err)
		return 1
	}
	return m.Run()
}

// server is one `ledgerq serve` process owned by a test.
type server struct {
	URL  string
	Data string
	cmd  *exec.Cmd

	mu     sync.Mutex
	logs   bytes.Buffer
	exited chan struct{}
}

// startServer runs `ledgerq serve` on a free port with a fresh data
// directory, waits for /readyz, and stops it when the test ends. On failure
// the test log gets the server's output.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{URL: "http://" + addr, Data: t.TempDir(), exited: make(chan struct{})}
	args := append([]string{"serve", "--addr", addr, "--data", s.Data, "--log-format", "text"}, extra...)
	s.cmd = exec.Command(binPath, args...)
	// The data directory's generated secret, whatever the caller's
	// environment says.
	s.cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET=")
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start ledgerq: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.logs.Write(sc.Bytes())
			s.logs.WriteByte('\n')
			s.mu.Unlock()
		}
	}()
	go func() { _ = s.cmd.Wait(); pw.Close(); close(s.exited) }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("ledgerq output (last %d lines):\n%s", logTail, tail(s.Logs(), logTail))
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("ledgerq exited during start-up:\n%s", s.Logs())
		default:
		}
		if resp, err := http.Get(s.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("ledgerq not ready within 30 s:\n%s", s.Logs())
	return nil
}

// logTail is how much of the server's output a failed test shows.
const logTail = 60

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop asks for a clean exit and kills the process if it does not come.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Logs is what the server printed so far.
func (s *server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// token mints a token for this server's key with `ledgerq token`.
func (s *server) token(t *testing.T, sub, scope string) string {
	t.Helper()
	out, err := exec.Command(binPath, "token", "--sub", sub, "--scope", scope, "--ttl", "1h", "--data", s.Data).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ledgerq token: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("ledgerq token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// httpError is an answer with a status other than the one asked for.
type httpError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// call sends a JSON request and decodes the answer into out (when not nil).
// Any status other than want is an *httpError. It is safe for concurrent use.
func (s *server) call(ctx context.Context, client *http.Client, method, path, token string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return &httpError{Method: method, Path: path, Status: resp.StatusCode, Body: string(raw)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decoding %q: %w", method, path, raw, err)
		}
	}
	return nil
}

// mustCall is call on the default client that fails the test on error.
func (s *server) mustCall(t *testing.T, method, path, token string, body any, want int, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.call(ctx, http.DefaultClient, method, path, token, body, want, out); err != nil {
		t.Fatal(err)
	}
}

// rssBytes is the server's resident set size from /proc/PID/status.
func (s *server) rssBytes() (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("server RSS: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("server RSS: parsing %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("server RSS: no VmRSS line in /proc/PID/status")
}

// metrics reads the unlabelled samples of the wanted names from /metrics.
func (s *server) metrics(names ...string) (map[string]float64, error) {
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %s: %w", name, err)
		}
		got[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	for _, n := range names {
		if _, ok := got[n]; !ok {
			return nil, fmt.Errorf("metrics: %s is missing", n)
		}
	}
	return got, nil
}
