package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Response is an HTTP answer read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// JSON is the body decoded when it is a JSON object, nil otherwise.
	JSON map[string]any
}

// Str is the string member key of the JSON object ("" when absent).
func (r Response) Str(key string) string {
	v, _ := r.JSON[key].(string)
	return v
}

// Num is the numeric member key of the JSON object as an integer (0 when
// absent).
func (r Response) Num(key string) int64 {
	v, _ := r.JSON[key].(float64)
	return int64(v)
}

// Decode unmarshals the body into v.
func (r Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %d answer %q: %w", r.Status, r.Body, err)
	}
	return nil
}

// String is the status and the body, for failure messages.
func (r Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// Problem is an RFC 9457 problem+json body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// Problem decodes the answer as problem+json; ok is false when it is not
// one (by Content-Type or body).
func (r Response) Problem() (p Problem, ok bool) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
		return p, false
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		return p, false
	}
	return p, true
}

// Send sends one request with client to url and reads the whole answer.
// A non-empty token goes out as a bearer token. The body is sent as is
// when it is a string or []byte and as JSON otherwise; either way with
// Content-Type application/json, which a header pair may override. Headers
// come as name, value pairs. It never fails the test, so any goroutine may
// use it, with any client (a fresh connection, a client of its own).
func Send(ctx context.Context, client *http.Client, method, url, token string, body any, headers ...string) (Response, error) {
	if len(headers)%2 != 0 {
		return Response{}, fmt.Errorf("%s %s: headers come in name, value pairs; got %d strings", method, url, len(headers))
	}
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
			return Response{}, fmt.Errorf("%s %s: encode the body: %w", method, url, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return Response{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	// Only an object can fill the map; skipping the rest spares a load
	// the work of scanning NDJSON logs and arrays.
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' {
		_ = json.Unmarshal(raw, &r.JSON)
	}
	return r, nil
}

// Do sends a request to the server (path is absolute, "/v1/queues"),
// bounded by Options.RequestTimeout. It never fails the test, so load
// goroutines may use it: a request that got no answer is an error.
func (s *Server) Do(method, path, token string, body any, headers ...string) (Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	r, err := Send(ctx, s.client, method, s.URL+path, token, body, headers...)
	if err != nil {
		return r, fmt.Errorf("%s: %w", s.opts.Name, err)
	}
	return r, nil
}

// Call is Do from the test goroutine: a request that got no answer fails
// the test. Any status is returned.
func (s *Server) Call(method, path, token string, body any, headers ...string) Response {
	s.t.Helper()
	r, err := s.Do(method, path, token, body, headers...)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// Must is Call that also fails the test unless the answer has status want.
func (s *Server) Must(method, path, token string, body any, want int, headers ...string) Response {
	s.t.Helper()
	r := s.Call(method, path, token, body, headers...)
	if r.Status != want {
		s.t.Fatalf("%s %s on %s: status %d, want %d; body %s", method, path, s.opts.Name, r.Status, want, r.Body)
	}
	return r
}

// GetAt is a GET once the read side has applied position pos
// (X-Ledgerq-Min-Position). The server bounds each wait and answers 503
// consistency_timeout when it runs out; GetAt asks again until
// Options.CatchUpTimeout has passed. It fails the test unless the answer
// is 200 and says it reflects at least pos (X-Ledgerq-Position).
func (s *Server) GetAt(path, token string, pos int64) Response {
	s.t.Helper()
	deadline := time.Now().Add(s.opts.CatchUpTimeout)
	for {
		r := s.Call("GET", path, token, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(pos, 10))
		if r.Status == http.StatusServiceUnavailable && r.Str("code") == "consistency_timeout" && time.Now().Before(deadline) {
			continue
		}
		MustStatus(s.t, r, http.StatusOK, "GET "+path+" on "+s.opts.Name)
		if got, _ := strconv.ParseInt(r.Header.Get("X-Ledgerq-Position"), 10, 64); got < pos {
			s.t.Fatalf("GET %s on %s: answered at position %d, asked for %d", path, s.opts.Name, got, pos)
		}
		return r
	}
}

// MustStatus fails the test unless the answer has status want, and
// returns it.
func MustStatus(t testing.TB, r Response, want int, what string) Response {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, want, r.Body)
	}
	return r
}

// MustProblem fails the test unless the answer is problem+json with the
// wanted status and code.
func MustProblem(t testing.TB, r Response, status int, code, what string) {
	t.Helper()
	if r.Status != status || r.Str("code") != code {
		t.Fatalf("%s: got %d %q, want %d %q; body %s", what, r.Status, r.Str("code"), status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
}

// ReadyReport is the body of GET /readyz.
type ReadyReport struct {
	Ready  bool         `json:"ready"`
	Checks []ReadyCheck `json:"checks"`
}

// ReadyCheck is one dependency in a ReadyReport.
type ReadyCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Check returns the named check's state; found is false when it is absent.
func (r ReadyReport) Check(name string) (ok, found bool, detail string) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.OK, true, c.Detail
		}
	}
	return false, false, ""
}

// Ready asks GET /readyz and returns its status and report. It never fails
// the test.
func (s *Server) Ready() (int, ReadyReport, error) {
	var rep ReadyReport
	r, err := s.Do("GET", "/readyz", "", nil)
	if err != nil {
		return 0, rep, err
	}
	return r.Status, rep, r.Decode(&rep)
}

// Metrics reads the unlabelled samples of the named metrics from /metrics;
// a name without a sample is an error. It never fails the test.
func (s *Server) Metrics(names ...string) (map[string]float64, error) {
	r, err := s.Do("GET", "/metrics", "", nil)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("metrics: status %d", r.Status)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
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
			return nil, fmt.Errorf("metrics: %s not found", n)
		}
	}
	return got, nil
}

// Memory is a process's resident memory, in bytes.
type Memory struct {
	// RSS is VmRSS: all resident pages, mapped files included.
	RSS int64
	// Anon is RssAnon: the process's own memory (0 where the kernel does
	// not report it).
	Anon int64
}

// Memory reads the running process's memory from /proc/PID/status (Linux).
// It never fails the test.
func (s *Server) Memory() (Memory, error) {
	var m Memory
	pid := s.PID()
	if pid == 0 {
		return m, fmt.Errorf("memory: %w", ErrNotRunning)
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, fmt.Errorf("memory: %w", err)
	}
	rss := false
	for _, line := range strings.Split(string(raw), "\n") {
		key, rest, _ := strings.Cut(line, ":")
		var dst *int64
		switch key {
		case "VmRSS":
			dst, rss = &m.RSS, true
		case "RssAnon":
			dst = &m.Anon
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return m, fmt.Errorf("memory: parsing %q: %w", line, err)
		}
		*dst = kb << 10
	}
	if !rss {
		return m, errors.New("memory: no VmRSS line in /proc/PID/status")
	}
	return m, nil
}
