package cluster

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// jwtSecret is shared by every node of a test cluster: a token minted once
// is accepted by the write node and the query node alike.
const jwtSecret = "cluster-tests-hs256-secret-0123456789abcdef"

// binPath is the ledgerq binary built once for the package.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ledgerq-cluster-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "ledgerq")
	build := exec.Command("go", "build", "-o", binPath, "github.com/ledgerq/ledgerq/cmd/ledgerq")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster: building ledgerq:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one `ledgerq serve` process.
type node struct {
	t    *testing.T
	name string
	Data string
	Addr string
	URL  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	logs   bytes.Buffer
	exited chan struct{}
}

// startNode runs `ledgerq serve` with a fresh data directory on a free port
// and waits until /readyz answers 200.
func startNode(t *testing.T, name string, args ...string) *node {
	t.Helper()
	n := &node{t: t, name: name, Data: t.TempDir(), args: args}
	n.start()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("%s node log:\n%s", n.name, lastLines(n.Logs(), 40))
		}
	})
	return n
}

func (n *node) start() {
	n.t.Helper()
	if n.Addr == "" {
		n.Addr = "127.0.0.1:" + strconv.Itoa(freePort(n.t))
		n.URL = "http://" + n.Addr
	}
	args := append([]string{"serve", "--addr", n.Addr, "--data", n.Data, "--log-format", "json"}, n.args...)
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET="+jwtSecret)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s node: %v", n.name, err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			n.mu.Lock()
			n.logs.Write(sc.Bytes())
			n.logs.WriteByte('\n')
			n.mu.Unlock()
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			n.t.Fatalf("%s node exited during start-up:\n%s", n.name, lastLines(n.Logs(), 40))
		default:
		}
		if resp, err := http.Get(n.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("%s node not ready in time:\n%s", n.name, lastLines(n.Logs(), 40))
}

// Logs returns what the process printed so far (across restarts).
func (n *node) Logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.logs.String()
}

// kill ends the process with SIGKILL.
func (n *node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// stop sends SIGTERM and fails the test unless the process exits cleanly.
func (n *node) stop() {
	n.t.Helper()
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		n.t.Fatalf("%s node did not exit within 30s of SIGTERM", n.name)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Fatalf("%s node exited with %d after SIGTERM:\n%s", n.name, code, lastLines(n.Logs(), 20))
	}
}

// logLines returns the JSON log lines whose msg is msg.
func (n *node) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(n.Logs(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// mintToken signs an admin token with the cluster's secret.
func mintToken(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(binPath, "token", "--sub", "cluster-test", "--scope", "admin", "--ttl", "1h", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "LEDGERQ_JWT_SECRET="+jwtSecret)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ledgerq token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// response is an HTTP answer; JSON holds the body when it is a JSON object.
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

// client is shared: the tests send many small requests.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// do sends a request with the token and an optional JSON body; header
// pairs follow. A transport error is returned, not fatal, so load
// goroutines can report it.
func (n *node) do(method, path, token string, body any, headers ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s on the %s node: %w", method, path, n.name, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s on the %s node: %w", method, path, n.name, err)
	}
	r := response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	_ = json.Unmarshal(raw, &r.JSON)
	return r, nil
}

// call is do for the test goroutine: an error fails the test.
func (n *node) call(method, path, token string, body any, headers ...string) response {
	n.t.Helper()
	r, err := n.do(method, path, token, body, headers...)
	if err != nil {
		n.t.Fatal(err)
	}
	return r
}

// must fails the test unless the answer has the wanted status.
func must(t *testing.T, r response, status int, what string) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Status, status, r.Body)
	}
	return r
}

// getAt asks a query of n once its read side has applied pos, retrying
// while the node answers 503 consistency_timeout (the wait is bounded per
// request), for up to a minute.
func (n *node) getAt(token, path string, pos int64) response {
	n.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := n.call("GET", path, token, nil, "X-Ledgerq-Min-Position", strconv.FormatInt(pos, 10))
		if r.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			must(n.t, r, http.StatusOK, "GET "+path+" on the "+n.name+" node")
			if got, _ := strconv.ParseInt(r.Header.Get("X-Ledgerq-Position"), 10, 64); got < pos {
				n.t.Fatalf("%s node answered at position %d, asked for %d", n.name, got, pos)
			}
			return r
		}
	}
}

// readView is what a node's read models answer about a set of queues:
// each queue with its stats (the clock-dependent oldest_ready_age_ms
// removed) and the ids of its messages in every state.
type readView struct {
	Queues   map[string]map[string]any
	Messages map[string]map[string][]string
}

// messageStates are the states API.md lets a listing filter on.
var messageStates = []string{"ready", "delayed", "in_flight", "acked", "dead_lettered", "expired"}

// view reads queues on n at position pos.
func (n *node) view(token string, pos int64, queues ...string) readView {
	n.t.Helper()
	v := readView{Queues: map[string]map[string]any{}, Messages: map[string]map[string][]string{}}
	for _, q := range queues {
		r := n.getAt(token, "/v1/queues/"+q, pos)
		v.Queues[q] = withoutAge(r.JSON)
		v.Messages[q] = map[string][]string{}
		for _, st := range messageStates {
			v.Messages[q][st] = n.messageIDs(token, q, st, pos)
		}
	}
	return v
}

// messageIDs lists the ids of a queue's messages in one state, every page.
func (n *node) messageIDs(token, queue, state string, pos int64) []string {
	n.t.Helper()
	ids := []string{}
	cursor := ""
	for {
		path := "/v1/queues/" + queue + "/messages?limit=1000&state=" + state
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := n.getAt(token, path, pos)
		ms, _ := r.JSON["messages"].([]any)
		for _, m := range ms {
			ids = append(ids, m.(map[string]any)["id"].(string))
		}
		if cursor = r.str("next_cursor"); cursor == "" {
			return ids
		}
	}
}

// withoutAge copies a queue object without stats.oldest_ready_age_ms, the
// one member that depends on when it is asked.
func withoutAge(q map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range q {
		out[k] = v
	}
	if st, ok := q["stats"].(map[string]any); ok {
		c := map[string]any{}
		for k, v := range st {
			if k != "oldest_ready_age_ms" {
				c[k] = v
			}
		}
		out["stats"] = c
	}
	return out
}

// stat returns one stats counter of a queue object.
func stat(q map[string]any, name string) int64 {
	st, _ := q["stats"].(map[string]any)
	v, _ := st[name].(float64)
	return int64(v)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
