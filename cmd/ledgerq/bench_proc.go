package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/procfs"
	"github.com/redis/go-redis/v9"

	"github.com/ledgerq/ledgerq/tests/bench/limits"
)

// benchChild is a process the bench started: a ledgerq server, the limit
// handler or a redis-server. It is stopped with SIGTERM, then SIGKILL.
type benchChild struct {
	name    string
	cmd     *exec.Cmd
	url     string // http://addr for HTTP children
	addr    string
	logPath string
	exited  chan struct{}
	waitErr error
}

// benchSecret returns a random HS256 secret, as hex text.
func benchSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// benchToken mints the bench's admin token for the secret.
func benchToken(secret string, ttl time.Duration) (string, error) {
	return benchTokenFor(secret, "bench", "admin", ttl)
}

// benchTokenFor mints a token the way 'ledgerq token' does.
func benchTokenFor(secret, subject, scope string, ttl time.Duration) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": subject, "scope": scope, "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}).SignedString([]byte(secret))
}

// freeAddr finds a free loopback port.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// childEnv is this process's environment without any LEDGERQ_ variable (a
// LEDGERQ_REDIS meant for the bench must not turn the plain server into a
// Redis one), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEDGERQ_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startBenchChild starts exe with args, output to logPath.
func startBenchChild(name, exe string, args, env []string, logPath string) (*benchChild, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &benchChild{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		logf.Close()
		close(c.exited)
	}()
	return c, nil
}

// startBenchServer runs `exe serve` on a free port with dataDir and extra
// flags, and waits until /readyz answers 200. It returns the time from
// process start to ready.
func startBenchServer(ctx context.Context, exe, dataDir, secret, logPath string, extra ...string) (*benchChild, time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, 0, err
	}
	args := append([]string{"serve", "--addr", addr, "--data", dataDir}, extra...)
	start := time.Now()
	c, err := startBenchChild("ledgerq serve", exe, args, childEnv("LEDGERQ_JWT_SECRET="+secret), logPath)
	if err != nil {
		return nil, 0, err
	}
	c.addr, c.url = addr, "http://"+addr
	if err := c.waitReady(ctx, 5*time.Minute); err != nil {
		c.stop()
		return nil, 0, err
	}
	return c, time.Since(start), nil
}

// startLimitHTTP runs this binary's hidden `bench limit-http` on a free port,
// with extra flags (--durable-db for the durable limit).
func startLimitHTTP(ctx context.Context, exe, secret, logPath string, extra ...string) (*benchChild, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"bench", "limit-http", "--addr", addr}, extra...)
	c, err := startBenchChild("limit handler", exe, args, childEnv("LEDGERQ_JWT_SECRET="+secret), logPath)
	if err != nil {
		return nil, err
	}
	c.addr, c.url = addr, "http://"+addr
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitReady polls /readyz every 5 ms (fine enough to time a start-up).
func (c *benchChild) waitReady(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited during start-up (%v); its log: %s\n%s", c.name, c.waitErr, c.logPath, tailFile(c.logPath, 20))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get(c.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s; its log: %s", c.name, timeout, c.logPath)
}

// stop sends SIGTERM, waits up to 30 s for a clean exit, then kills.
func (c *benchChild) stop() error {
	if c == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		var ee *exec.ExitError
		if c.waitErr != nil && !errors.As(c.waitErr, &ee) {
			return c.waitErr
		}
		if ee != nil && !ee.Success() {
			return fmt.Errorf("%s exited with %v after SIGTERM; its log: %s", c.name, ee, c.logPath)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not stop within 30 s of SIGTERM and was killed", c.name)
	}
}

// rss is the child's resident set size in bytes (Linux /proc only).
// cpu is the CPU time the child has used so far.
func (c *benchChild) cpu() (time.Duration, error) {
	return procCPU(c.cmd.Process.Pid)
}

func (c *benchChild) rss() (int64, error) {
	return procRSS(c.cmd.Process.Pid)
}

func procRSS(pid int) (int64, error) {
	st, err := procStat(pid)
	if err != nil {
		return 0, fmt.Errorf("resident memory: %w", err)
	}
	return int64(st.ResidentMemory()), nil
}

// procStat reads /proc/PID/stat (Linux only).
func procStat(pid int) (procfs.ProcStat, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	return p.Stat()
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// startBenchRedis runs a private redis-server on a free port with nothing on
// disk, or returns exec.ErrNotFound when there is no redis-server.
func startBenchRedis(ctx context.Context, dir string) (*benchChild, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	c, err := startBenchChild("redis-server", bin,
		[]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir},
		childEnv(), filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	c.addr, c.url = addr, "redis://"+addr+"/0"
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := rdb.Ping(ctx).Err(); err == nil {
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("redis-server exited: %s", tailFile(c.logPath, 5))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.stop()
			return nil, errors.New("redis-server did not answer PING within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runLimitHTTP is the hidden `ledgerq bench limit-http`: the limit handler
// of tests/bench/limits as its own process, like the server it stands for.
func runLimitHTTP(ctx context.Context, args []string, env envFunc, stderr io.Writer) error {
	fs := newFlagSet("bench limit-http", stderr)
	addr := fs.String("addr", "127.0.0.1:18081", "listen address")
	durable := fs.String("durable-db", "", "make each publish durable in a new events database at this path before answering (the durable limit)")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	secret := env("LEDGERQ_JWT_SECRET")
	if secret == "" {
		return errors.New("bench limit-http: LEDGERQ_JWT_SECRET is not set")
	}
	var h http.Handler
	var err error
	if *durable != "" {
		d, err := limits.NewDurableHTTPHandler([]byte(secret), *durable)
		if err != nil {
			return err
		}
		defer d.Close()
		h = d
	} else if h, err = limits.NewHTTPHandler([]byte(secret)); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutCtx)
	}
}

// timeReplay runs `exe replay --data dir` and returns how long it took.
func timeReplay(ctx context.Context, exe, dataDir, logPath string) (time.Duration, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, exe, "replay", "--data", dataDir)
	cmd.Env = childEnv()
	cmd.Stdout = io.Discard
	cmd.Stderr = logf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("ledgerq replay: %w (see %s)", err, logPath)
	}
	return time.Since(start), nil
}
