package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the ledgerq binary built once for the whole package.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ledgerq-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "ledgerq")
	build := exec.Command("go", "build", "-o", binPath, "github.com/ledgerq/ledgerq/cmd/ledgerq")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building ledgerq:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one ledgerq process started by a test.
type server struct {
	t    *testing.T
	Data string
	Addr string
	URL  string
	args []string
	env  []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	logs   bytes.Buffer
	exited chan struct{}
}

// startServer runs `ledgerq serve` on a free port with a fresh data directory
// (or the one given as --data) and waits until /readyz answers 200.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServerEnv(t, nil, extra...)
}

// startServerEnv is startServer with extra environment variables (K=V).
func startServerEnv(t *testing.T, env []string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, Data: t.TempDir(), env: env}
	for i := 0; i < len(extra); i++ {
		if extra[i] == "--data" && i+1 < len(extra) {
			s.Data = extra[i+1]
			extra = append(extra[:i:i], extra[i+2:]...)
			break
		}
	}
	s.args = extra
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *server) start() {
	s.t.Helper()
	port := s.port()
	s.Addr = "127.0.0.1:" + port
	s.URL = "http://" + s.Addr
	args := append([]string{"serve", "--addr", s.Addr, "--data", s.Data, "--log-format", "json"}, s.args...)
	cmd := exec.Command(binPath, args...)
	// The data directory's generated secret unless a test sets one.
	cmd.Env = append(append(os.Environ(), "LEDGERQ_JWT_SECRET="), s.env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start ledgerq: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.exited = make(chan struct{})
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
	exited := s.exited
	go func() { _ = cmd.Wait(); pw.Close(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.t.Fatalf("ledgerq exited during start-up:\n%s", s.Logs())
		default:
		}
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("ledgerq not ready in time:\n%s", s.Logs())
}

// port keeps the server's port across restarts.
func (s *server) port() string {
	if s.Addr != "" {
		_, p, _ := net.SplitHostPort(s.Addr)
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// Logs returns what the server printed so far.
func (s *server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// kill ends the process with SIGKILL (a crash).
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

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("ledgerq did not exit within 30s of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("ledgerq exited with %d after SIGTERM", code)
	}
	return nil
}

// restart starts the server again on the same port and data directory.
func (s *server) restart() {
	s.t.Helper()
	s.start()
}

// token mints a token with `ledgerq token` for this server's data directory.
func (s *server) token(sub, scope string, queues ...string) string {
	s.t.Helper()
	args := []string{"token", "--sub", sub, "--scope", scope, "--data", s.Data, "--ttl", "1h"}
	if len(queues) > 0 {
		args = append(args, "--queues", strings.Join(queues, ","))
	}
	out, err := exec.Command(binPath, args...).Output()
	if err != nil {
		s.t.Fatalf("ledgerq token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// response is an HTTP answer with its body decoded when it is JSON.
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

// call sends a request with an optional bearer token and JSON body (a
// string is sent as is).
func (s *server) call(method, path, token string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	_ = json.Unmarshal(raw, &r.JSON)
	return r
}

// mustStatus fails the test unless the answer has the wanted status.
func mustStatus(t *testing.T, r response, want int, what string) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, want, r.Body)
	}
}

// mustProblem checks a problem+json answer's status and code.
func mustProblem(t *testing.T, r response, status int, code string, what string) {
	t.Helper()
	if r.Status != status || r.str("code") != code {
		t.Fatalf("%s: got %d %q, want %d %q; body %s", what, r.Status, r.str("code"), status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
}
