package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure a server started by Start. The zero value is a server
// on a fresh data directory with its generated secret and JSON logs.
type Options struct {
	// Name says which server a failure message is about ("write node");
	// default "ledgerq".
	Name string
	// Data is the data directory; a fresh t.TempDir() when empty.
	Data string
	// Args are extra flags of `ledgerq serve`, after --addr, --data and
	// --log-format.
	Args []string
	// Env are extra K=V variables for the server and for Token; a later
	// entry wins over the test process's own variable of the same name.
	Env []string
	// JWTSecret is LEDGERQ_JWT_SECRET for the server and for Token. Empty
	// means the data directory's generated secret, whatever the test
	// process's environment says.
	JWTSecret string
	// LogFormat is --log-format; default "json" (LogRecords reads it).
	LogFormat string
	// ReadyTimeout bounds the wait for /readyz 200 at every start; default
	// 60 s. A start-up that replays a large log wants more.
	ReadyTimeout time.Duration
	// RequestTimeout bounds each Do, Call and Must; default 30 s.
	RequestTimeout time.Duration
	// CatchUpTimeout bounds GetAt's wait for the read side; default 1 min.
	CatchUpTimeout time.Duration
	// MaxLogBytes bounds the output kept for Logs: past it, the older half
	// is dropped. Zero keeps everything, which a long load with access
	// logs on may not want.
	MaxLogBytes int
	// TLS, when set, makes the harness speak HTTPS with this client
	// configuration; the test passes --tls-cert and --tls-key in Args.
	TLS *tls.Config
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = "ledgerq"
	}
	if o.LogFormat == "" {
		o.LogFormat = "json"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.CatchUpTimeout <= 0 {
		o.CatchUpTimeout = time.Minute
	}
}

// Timeouts of the process handling.
const (
	// termTimeout is how long Term waits after SIGTERM before SIGKILL.
	termTimeout = 40 * time.Second
	// probeTimeout bounds one /readyz probe during start-up.
	probeTimeout = 5 * time.Second
	// failureLines is how much of the output a failure message shows.
	failureLines = 60
)

// ErrNotRunning is returned by Term when no process is running.
var ErrNotRunning = errors.New("harness: server not running")

// Server is one `ledgerq serve` process owned by a test. Its address and
// data directory stay the same across Restart, so clients can keep their
// URL. Its methods are safe for concurrent use; the ones that fail the test
// must be called from the test's goroutine.
type Server struct {
	// URL is http(s)://Addr. Read-only.
	URL string
	// Addr is the loopback host:port the server listens on. Read-only.
	Addr string
	// Data is the data directory. Read-only.
	Data string

	t      testing.TB
	opts   Options
	env    []string
	client *http.Client
	logs   *logBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs `ledgerq serve` on a free loopback port and waits until
// /readyz answers 200. When the test ends the process is killed (SIGKILL)
// and, if the test failed, the end of its output is logged.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.setDefaults()
	if opts.Data == "" {
		opts.Data = t.TempDir()
	}
	s := &Server{
		Addr: FreeAddr(t),
		Data: opts.Data,
		t:    t,
		opts: opts,
		// The generated secret unless the test names one: a variable of
		// the developer's shell must not change which key signs.
		env:  append(append(os.Environ(), "LEDGERQ_JWT_SECRET="+opts.JWTSecret), opts.Env...),
		logs: &logBuffer{max: opts.MaxLogBytes},
	}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	s.URL = scheme + "://" + s.Addr
	// One client per server, with room for load workers; requests are
	// bounded by their context, so a stream may stay open.
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
		TLSClientConfig:     opts.TLS,
	}
	s.client = &http.Client{Transport: tr}
	// Registered before the process starts, so that a failed start-up
	// does not leave it running.
	t.Cleanup(func() {
		s.Kill()
		tr.CloseIdleConnections()
		if t.Failed() {
			t.Logf("%s output (last %d lines):\n%s", s.opts.Name, failureLines, lastLines(s.Logs(), failureLines))
		}
	})
	s.start()
	return s
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start launches the process and waits until it is ready.
func (s *Server) start() {
	s.t.Helper()
	args := append([]string{"serve", "--addr", s.Addr, "--data", s.Data, "--log-format", s.opts.LogFormat}, s.opts.Args...)
	cmd := exec.Command(binary(s.t), args...)
	cmd.Env = s.env
	// One writer for both: os/exec then copies from a single pipe, and
	// Wait returns only once everything printed is in the buffer.
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("%s: start: %v", s.opts.Name, err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() { _ = cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(s.opts.ReadyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.t.Fatalf("%s exited during start-up (%v):\n%s", s.opts.Name, cmd.ProcessState, lastLines(s.Logs(), failureLines))
		default:
		}
		if s.probe() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("%s not ready within %v:\n%s", s.opts.Name, s.opts.ReadyTimeout, lastLines(s.Logs(), failureLines))
}

// probe reports whether /readyz answers 200.
func (s *Server) probe() bool {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	r, err := Send(ctx, s.client, "GET", s.URL+"/readyz", "", nil)
	return err == nil && r.Status == http.StatusOK
}

// Restart starts the server again on the same address and data directory
// and waits until it is ready. The last process must be gone (Kill, Stop,
// Term, or an exit of its own): a test restarts deliberately.
func (s *Server) Restart() {
	s.t.Helper()
	if s.Running() {
		s.t.Fatalf("%s: Restart while the process runs; Kill or Stop it first", s.opts.Name)
	}
	s.start()
}

// take detaches the current process from the server.
func (s *Server) take() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	return cmd, exited
}

// Kill ends the process with SIGKILL, a crash with nothing flushed or
// closed, and waits until it is gone. It does nothing when none runs.
func (s *Server) Kill() {
	cmd, exited := s.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Term sends SIGTERM and waits for the exit, at most 40 s (then SIGKILL
// and an error); it returns the exit code. It never fails the test.
func (s *Server) Term() (int, error) {
	cmd, exited := s.take()
	if cmd == nil {
		return 0, ErrNotRunning
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		// The process is gone already (or cannot be signalled): make sure,
		// and reap it before reporting.
		_ = cmd.Process.Kill()
		<-exited
		return cmd.ProcessState.ExitCode(), fmt.Errorf("%s: SIGTERM: %w", s.opts.Name, err)
	}
	select {
	case <-exited:
	case <-time.After(termTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return -1, fmt.Errorf("%s did not exit within %v of SIGTERM", s.opts.Name, termTimeout)
	}
	return cmd.ProcessState.ExitCode(), nil
}

// Stop is Term for a test that needs a clean exit: it fails the test
// unless the process exits with 0.
func (s *Server) Stop() {
	s.t.Helper()
	code, err := s.Term()
	if err != nil || code != 0 {
		s.t.Fatalf("%s: SIGTERM: exit code %d, %v; output:\n%s", s.opts.Name, code, err, lastLines(s.Logs(), failureLines))
	}
}

// Running reports whether the last process started is still alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// PID is the running process's id, 0 when there is none.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Client is the HTTP client of Do, Call and Subscribe (for example to
// close its idle connections before counting the server's descriptors).
func (s *Server) Client() *http.Client { return s.client }

// Logs is what the server printed so far, across restarts (bounded by
// Options.MaxLogBytes).
func (s *Server) Logs() string { return s.logs.String() }

// LogRecords returns the JSON log records whose msg is msg.
func (s *Server) LogRecords(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.Logs(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// Token mints a token with `ledgerq token` for this server's key: its
// JWTSecret when set, its data directory's generated secret otherwise. It
// is valid for two hours.
func (s *Server) Token(sub, scope string, queues ...string) string {
	s.t.Helper()
	args := []string{"token", "--sub", sub, "--scope", scope, "--ttl", "2h", "--data", s.Data}
	if len(queues) > 0 {
		args = append(args, "--queues", strings.Join(queues, ","))
	}
	out, errOut, code := run(s.t, s.env, args)
	if code != 0 {
		s.t.Fatalf("ledgerq token: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	return strings.TrimSpace(out)
}

// logBuffer keeps a process's output. Past max bytes (when max > 0) it
// drops the older half at a line boundary: enough to explain a failure,
// bounded for a long run's access log.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

// Write appends p; it never fails, so the child never blocks on its pipe.
func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if l.max > 0 && len(l.buf) > l.max {
		keep := l.buf[len(l.buf)-l.max/2:]
		if i := bytes.IndexByte(keep, '\n'); i >= 0 {
			keep = keep[i+1:]
		}
		l.buf = append([]byte(nil), keep...)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
