package security

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// binPath is the ledgerq binary, built once for the package.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ledgerq-security-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "ledgerq")
	build := exec.Command("go", "build", "-o", binPath, "github.com/ledgerq/ledgerq/cmd/ledgerq")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "security: building ledgerq:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverOptions configure one ledgerq process.
type serverOptions struct {
	// args are extra flags of `ledgerq serve`.
	args []string
	// env are extra K=V variables.
	env []string
	// tls, when set, makes the harness talk HTTPS with this client
	// configuration (the test passes --tls-cert and --tls-key in args).
	tls *tls.Config
}

// server is one `ledgerq serve` process owned by a test.
type server struct {
	t      *testing.T
	Data   string
	Addr   string
	URL    string
	client *http.Client

	cmd    *exec.Cmd
	stderr lockedBuffer
	stdout lockedBuffer
	exited chan struct{}

	mu     sync.Mutex
	tokens []string // every token a test used: none may reach the logs
}

// startServer runs ledgerq on a free port with a fresh data directory and
// waits until /readyz answers 200. When the test ends, the process is
// killed and its logs are checked for the tokens the test used.
func startServer(t *testing.T, opts serverOptions) *server {
	t.Helper()
	s := &server{t: t, Data: t.TempDir()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	s.Addr = l.Addr().String()
	l.Close()
	scheme := "http"
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	if opts.tls != nil {
		scheme = "https"
		tr.TLSClientConfig = opts.tls
	}
	s.URL = scheme + "://" + s.Addr
	s.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}

	args := append([]string{"serve", "--addr", s.Addr, "--data", s.Data, "--log-format", "json"}, opts.args...)
	s.cmd = exec.Command(binPath, args...)
	// The data directory's generated secret unless a test sets one.
	s.cmd.Env = append(append(os.Environ(), "LEDGERQ_JWT_SECRET="), opts.env...)
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start ledgerq: %v", err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	// Cleanups run last-registered first: kill, then read the whole log.
	t.Cleanup(s.checkLogs)
	t.Cleanup(s.kill)
	t.Cleanup(tr.CloseIdleConnections)

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("ledgerq exited during start-up:\n%s", s.stderr.String())
		default:
		}
		resp, err := s.client.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("ledgerq not ready in time:\n%s", s.stderr.String())
	return nil
}

// kill ends the process by its pid.
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// alive fails the test if the server process has died.
func (s *server) alive() {
	s.t.Helper()
	select {
	case <-s.exited:
		s.t.Fatalf("ledgerq died:\n%s", s.stderr.String())
	default:
	}
}

// Logs is everything the server wrote so far.
func (s *server) Logs() string { return s.stderr.String() + s.stdout.String() }

// remember records tokens (or any secret a test sent) that the logs must
// never contain.
func (s *server) remember(tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = append(s.tokens, tokens...)
}

// checkLogs fails the test when a token the test sent, or the signature or
// claims part of one, appears in the server's output.
func (s *server) checkLogs() {
	logs := s.Logs()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tok := range s.tokens {
		tok = strings.TrimSpace(tok)
		if len(tok) >= 16 && strings.Contains(logs, tok) {
			s.t.Errorf("the server logged a whole token: %.40s…", tok)
			continue
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			continue
		}
		for i, part := range parts[1:] {
			if len(part) >= 16 && strings.Contains(logs, part) {
				s.t.Errorf("the server logged the %s of a token: %.40s…", []string{"claims", "signature"}[i], part)
			}
		}
	}
}

// secret is the HS256 secret the server generated in its data directory.
func (s *server) secret() []byte {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Data, "jwt-secret"))
	if err != nil {
		s.t.Fatalf("read the server's secret: %v", err)
	}
	return bytes.TrimSpace(b)
}

// token mints a token with the real `ledgerq token` command.
func (s *server) token(sub, scope string, queues ...string) string {
	s.t.Helper()
	args := []string{"token", "--sub", sub, "--scope", scope, "--data", s.Data, "--ttl", "1h"}
	if len(queues) > 0 {
		args = append(args, "--queues", strings.Join(queues, ","))
	}
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET=")
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("ledgerq token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	s.remember(tok)
	return tok
}

// sign signs claims with method and key, and remembers the token.
func (s *server) sign(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	s.t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		s.t.Fatalf("sign %s token: %v", method.Alg(), err)
	}
	s.remember(tok)
	return tok
}

// response is an answer with its body decoded when it is JSON.
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

// String shows the status and body, for failure messages.
func (r response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// request is one call: a JSON body (a string or []byte is sent as is) and
// headers in pairs.
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
		s.t.Fatalf("%s %s: %v", method, path, err)
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
	resp, err := s.client.Do(req)
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
		t.Fatalf("%s: got %s, want status %d", what, r, want)
	}
}

// mustProblem checks a problem+json answer's status and code.
func mustProblem(t *testing.T, r response, status int, code, what string) {
	t.Helper()
	if r.Status != status || r.str("code") != code {
		t.Fatalf("%s: got %s, want %d %q", what, r, status, code)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
}

// mustUnauthorized checks a 401 with the Bearer challenge, and that the
// answer does not echo the token it refused.
func mustUnauthorized(t *testing.T, r response, token, what string) {
	t.Helper()
	mustProblem(t, r, http.StatusUnauthorized, "unauthorized", what)
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("%s: 401 without WWW-Authenticate: Bearer (%v)", what, r.Header)
	}
	if tok := strings.TrimSpace(token); len(tok) >= 16 && bytes.Contains(r.Body, []byte(tok)) {
		t.Fatalf("%s: the 401 echoes the token", what)
	}
}

// responsive fails the test unless the server answers a health check and
// an authenticated query within limit: whatever the attack, other clients
// keep being served.
func (s *server) responsive(token string, limit time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	// A fresh connection each time: a pooled one would hide a full accept
	// queue.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: s.client.Transport.(*http.Transport).TLSClientConfig}}
	for _, path := range []string{"/healthz", "/v1/queues"} {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			s.t.Fatalf("the server did not answer %s within %s: %v", path, limit, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			s.t.Fatalf("%s answered %d while under attack", path, resp.StatusCode)
		}
	}
	return time.Since(start)
}

// jsonNumber formats a decoded JSON number as an integer.
func jsonNumber(v any) string {
	f, _ := v.(float64)
	return strconv.FormatInt(int64(f), 10)
}
