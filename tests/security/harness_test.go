package security

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ledgerq/ledgerq/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// server is a harness server that also remembers every token a test sent
// to it: none may reach its logs.
type server struct {
	*harness.Server
	t *testing.T

	mu     sync.Mutex
	tokens []string
}

// startServer runs ledgerq through the shared harness with a fresh data
// directory. When the test ends, the process is killed and its whole
// output is checked for the tokens the test used.
func startServer(t *testing.T, opts harness.Options) *server {
	t.Helper()
	s := &server{Server: harness.Start(t, opts), t: t}
	// Registered after Start's own cleanup, so it runs first: kill, then
	// read everything the process printed.
	t.Cleanup(func() {
		s.Kill()
		s.checkLogs()
	})
	return s
}

// alive fails the test if the server process has died.
func (s *server) alive() {
	s.t.Helper()
	if !s.Running() {
		s.t.Fatalf("ledgerq died:\n%s", s.Logs())
	}
}

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

// token mints a token with the real `ledgerq token` command and remembers
// it.
func (s *server) token(sub, scope string, queues ...string) string {
	s.t.Helper()
	tok := s.Token(sub, scope, queues...)
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

// mustUnauthorized checks a 401 with the Bearer challenge, and that the
// answer does not echo the token it refused.
func mustUnauthorized(t *testing.T, r harness.Response, token, what string) {
	t.Helper()
	harness.MustProblem(t, r, http.StatusUnauthorized, "unauthorized", what)
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
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: s.Client().Transport.(*http.Transport).TLSClientConfig}}
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
