package security

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// rawRequest writes head (request line and headers, without the blank
// line) on a new connection, then body unless it is nil, and reads the
// answer. It is how a client that lies about or dribbles its body is
// played: net/http's client would not send such requests.
func rawRequest(t *testing.T, addr, head string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	return rawRequestWithin(t, addr, head, body, 30*time.Second)
}

// rawRequestWithin is rawRequest with a bound on the whole exchange.
func rawRequestWithin(t *testing.T, addr, head string, body io.Reader, limit time.Duration) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(limit))
	if _, err := io.WriteString(conn, head+"\r\n\r\n"); err != nil {
		t.Fatalf("write head: %v", err)
	}
	if body != nil {
		// The server may answer and close before the body is through; the
		// write error that follows is expected.
		go func() { _, _ = io.Copy(conn, body) }()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer to %q: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// chunked streams n bytes of filler as a chunked body, in 64 KB chunks.
func chunked(n int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		chunk := strings.Repeat("a", 64<<10)
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := fmt.Fprintf(pw, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
				return
			}
		}
		_, _ = io.WriteString(pw, "0\r\n\r\n")
		pw.Close()
	}()
	return pr
}

// TestSizeLimits: bodies past their route's limit (declared, or streamed
// without a length), JSON nested 10,000 deep, 10,000 message headers,
// 10,000 HTTP headers and 100,000 unknown keys are each refused quickly, and
// the server keeps answering other clients.
func TestSizeLimits(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	admin := s.token("limits-admin", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "lim.q"}), 201, "create lim.q")
	auth := "Authorization: Bearer " + admin + "\r\nContent-Type: application/json"

	for _, c := range []struct {
		name, path string
		length     int
	}{
		{"publish", "/v1/queues/lim.q/messages", 3 << 20},
		{"batch", "/v1/queues/lim.q/messages:batch", 17 << 20},
		{"receive", "/v1/queues/lim.q/receive", 1 << 20},
		{"create", "/v1/queues", 1 << 20},
	} {
		// A declared length past the limit is refused before a byte of the
		// body is read: none is sent here.
		start := time.Now()
		resp, body := rawRequest(t, s.Addr, "POST "+c.path+" HTTP/1.1\r\nHost: x\r\n"+auth+"\r\nContent-Length: "+strconv.Itoa(c.length), nil)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "payload_too_large") {
			t.Fatalf("%s with Content-Length %d: %d %s", c.name, c.length, resp.StatusCode, body)
		}
		t.Logf("%s: declared %d bytes refused in %s", c.name, c.length, time.Since(start).Round(time.Millisecond))
		// The same amount streamed without a length is cut at the limit.
		resp, body = rawRequest(t, s.Addr, "POST "+c.path+" HTTP/1.1\r\nHost: x\r\n"+auth+"\r\nTransfer-Encoding: chunked", chunked(c.length))
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s with a chunked body of %d bytes: %d %s", c.name, c.length, resp.StatusCode, body)
		}
	}

	deep := func(open, close string, n int) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	many := func(n int, f func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return strings.Join(parts, ",")
	}
	for name, c := range map[string]struct {
		path, body string
		status     int
	}{
		"headers nested 10,000 deep": {"/v1/queues/lim.q/messages", `{"body":"x","headers":` + deep(`{"a":`, `}`, 10000) + `}`, 400},
		"an array 10,000 deep":       {"/v1/queues/lim.q/messages", deep(`[`, `]`, 10000), 400},
		"a batch nested 10,000 deep": {"/v1/queues/lim.q/messages:batch", `{"messages":` + deep(`[`, `]`, 10000) + `}`, 400},
		"create nested 10,000 deep":  {"/v1/queues", `{"name":` + deep(`{"a":`, `}`, 10000) + `}`, 400},
		"10,000 message headers":     {"/v1/queues/lim.q/messages", `{"body":"x","headers":{` + many(10000, func(i int) string { return `"h` + strconv.Itoa(i) + `":"v"` }) + `}}`, 400},
		"100,000 unknown keys":       {"/v1/queues/lim.q/messages", `{"body":"x",` + many(100000, func(i int) string { return `"k` + strconv.Itoa(i) + `":1` }) + `}`, 400},
		"one key 5,000 times":        {"/v1/queues/lim.q/receive", `{` + many(5000, func(int) string { return `"wait_ms":1` }) + `}`, 400},
		"10,000 receipts":            {"/v1/queues/lim.q/ack", `{"receipts":[` + many(10000, func(int) string { return `"r"` }) + `]}`, 400},
		"a batch of 10,000 messages": {"/v1/queues/lim.q/messages:batch", `{"messages":[` + many(10000, func(int) string { return `{"body":"x"}` }) + `]}`, 400},
	} {
		start := time.Now()
		r := s.Call("POST", c.path, admin, c.body)
		took := time.Since(start)
		if r.Status != c.status {
			t.Fatalf("%s: %s, want %d", name, r, c.status)
		}
		if took > 5*time.Second {
			t.Fatalf("%s took %s to refuse", name, took)
		}
		t.Logf("%s (%d KB): %d in %s", name, len(c.body)>>10, r.Status, took.Round(time.Millisecond))
	}

	// 10,000 HTTP headers are far past the 64 KB header limit.
	headers := make([]string, 0, 20000)
	for i := 0; i < 10000; i++ {
		headers = append(headers, "X-Flood-"+strconv.Itoa(i), "v")
	}
	if r := s.Call("GET", "/v1/queues", admin, nil, headers...); r.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("10,000 request headers: %s, want 431", r)
	}
	took := s.responsive(admin, 2*time.Second)
	t.Logf("health and list after the size attacks: %s", took.Round(time.Millisecond))
	harness.MustStatus(t, s.Call("POST", "/v1/queues/lim.q/messages", admin, map[string]any{"body": "fine"}), 201, "a normal publish afterwards")
	s.alive()
}

// TestDeclaredOversizeIsAnsweredAtOnce: a declared Content-Length past a
// small route's 64 KB limit but under 256 KB is refused at once, like
// larger ones, not after the server has waited for a body that never comes
// (net/http drains request bodies under 256 KB before it answers unless
// the answer closes the connection).
func TestDeclaredOversizeIsAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	admin := s.token("declared-admin", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "decl.q"}), 201, "create decl.q")
	head := "POST /v1/queues/decl.q/receive HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(100<<10)
	start := time.Now()
	resp, body := rawRequestWithin(t, s.Addr, head, nil, 5*time.Second)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared 100 KB on receive: %d %s", resp.StatusCode, body)
	}
	t.Logf("declared 100 KB on receive: 413 in %s", time.Since(start).Round(time.Millisecond))
}

// metric reads one unlabelled value from the server's /metrics.
func (s *server) metric(name string) float64 {
	s.t.Helper()
	m, err := s.Metrics(name)
	if err != nil {
		s.t.Fatal(err)
	}
	return m[name]
}

// raiseFileLimit lifts this process's open-file limit to at least n (up to
// the hard limit); the server inherits it.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = min(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < n {
		t.Fatalf("cannot raise the open-file limit to %d (hard limit %d): %v", n, lim.Max, err)
	}
}

// closedBy waits until the server closes conn (a read returns EOF or a
// reset) and reports how long after start that happened; it fails the test
// if the server sent an answer first or kept the connection past limit.
func closedBy(conn net.Conn, start time.Time, limit time.Duration) (time.Duration, error) {
	_ = conn.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	switch {
	case n > 0:
		return 0, fmt.Errorf("the server answered a request it never received in full: %q", buf[:n])
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return time.Since(start), nil
	default:
		return 0, fmt.Errorf("still open after %s: %v", limit, err)
	}
}

// TestSlowAndIdleClients holds 2,000 idle connections, a client that sends
// its headers a line a second and one that sends its body a byte a second.
// Meanwhile other clients are answered quickly; the idle and slow-header
// connections are closed after the server's header timeout (10 s) and the
// slow body gets a 400 after the body timeout (30 s). Open descriptors on
// the server come back down: nothing leaks.
func TestSlowAndIdleClients(t *testing.T) {
	t.Parallel()
	const idle = 2000
	raiseFileLimit(t, idle+1024)
	s := startServer(t, harness.Options{})
	admin := s.token("patient-admin", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "slow.q"}), 201, "create slow.q")
	baseFDs := s.metric("process_open_fds")

	var wg sync.WaitGroup
	errs := make(chan error, 8)

	// Headers, a line a second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := net.Dial("tcp", s.Addr)
		if err != nil {
			errs <- err
			return
		}
		defer conn.Close()
		start := time.Now()
		_, _ = io.WriteString(conn, "GET /v1/queues HTTP/1.1\r\nHost: x\r\n")
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := fmt.Fprintf(conn, "X-Slow-%d: drip\r\n", i); err != nil {
						return
					}
				}
			}
		}()
		took, err := closedBy(conn, start, 20*time.Second)
		if err != nil {
			errs <- fmt.Errorf("slow headers: %w", err)
			return
		}
		t.Logf("slow headers: closed after %s", took.Round(100*time.Millisecond))
	}()

	// A body, a byte a second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := net.Dial("tcp", s.Addr)
		if err != nil {
			errs <- err
			return
		}
		defer conn.Close()
		start := time.Now()
		_, _ = io.WriteString(conn, "POST /v1/queues/slow.q/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+admin+
			"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		go func() {
			for i := 0; i < 60; i++ {
				time.Sleep(time.Second)
				if _, err := io.WriteString(conn, " "); err != nil {
					return
				}
			}
		}()
		_ = conn.SetReadDeadline(start.Add(50 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			errs <- fmt.Errorf("slow body: no answer within 50 s: %w", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !resp.Close {
			errs <- fmt.Errorf("slow body: %d (close %v), want 400 and the connection closed", resp.StatusCode, resp.Close)
			return
		}
		t.Logf("slow body: 400 after %s", time.Since(start).Round(100*time.Millisecond))
	}()

	// 2,000 connections that never send a byte.
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < idle; i++ {
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	t.Logf("%d idle connections opened in %s", idle, time.Since(start).Round(time.Millisecond))
	// The kernel completes the handshakes before the server accepts them;
	// give its accept loop a moment to catch up on a loaded machine.
	fds := s.metric("process_open_fds")
	for deadline := time.Now().Add(5 * time.Second); fds < baseFDs+idle*9/10 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		fds = s.metric("process_open_fds")
	}
	if fds < baseFDs+idle*9/10 {
		t.Fatalf("the server holds %v descriptors with %d idle connections (base %v): were they accepted?", fds, idle, baseFDs)
	}
	// Other clients are served while all of that is held.
	var worst time.Duration
	for i := 0; i < 20; i++ {
		worst = max(worst, s.responsive(admin, 2*time.Second))
		harness.MustStatus(t, s.Call("POST", "/v1/queues/slow.q/messages", admin, map[string]any{"body": "meanwhile"}), 201, "publish meanwhile")
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("worst health+list round trip under %d idle connections: %s", idle, worst.Round(time.Millisecond))

	// The server closes every idle connection after its header timeout.
	var closeWG sync.WaitGroup
	var mu sync.Mutex
	var latest time.Duration
	stillOpen := 0
	for _, c := range conns {
		closeWG.Add(1)
		go func(c net.Conn) {
			defer closeWG.Done()
			took, err := closedBy(c, start, 25*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				stillOpen++
				return
			}
			latest = max(latest, took)
		}(c)
	}
	closeWG.Wait()
	if stillOpen > 0 {
		t.Fatalf("%d of %d idle connections were still open 25 s after they were made", stillOpen, idle)
	}
	t.Logf("all %d idle connections closed by the server within %s", idle, latest.Round(100*time.Millisecond))

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Descriptors come back down.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := s.metric("process_open_fds")
		if fds <= baseFDs+50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds %v descriptors (base %v) after the clients left", fds, baseFDs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.responsive(admin, 2*time.Second)
	s.alive()
}

// TestSSEStreamsPerSubject: one subject may hold 16 streams; the 17th is a
// 429 with Retry-After, another subject is unaffected, a closed stream
// frees its place, and the server answers other clients throughout.
func TestSSEStreamsPerSubject(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	greedy := s.token("greedy-reader", "queues:read")
	other := s.token("other-reader", "queues:read")
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	type stream struct {
		cancel context.CancelFunc
		resp   *http.Response
	}
	open := func(tok string, viaQuery bool) (stream, int, string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		url := s.URL + "/v1/subscribe"
		if viaQuery {
			url += "?access_token=" + tok
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if !viaQuery {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("subscribe: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			return stream{}, resp.StatusCode, resp.Header.Get("Retry-After") + " " + string(body)
		}
		return stream{cancel: cancel, resp: resp}, resp.StatusCode, ""
	}
	var held []stream
	defer func() {
		for _, st := range held {
			st.cancel()
			st.resp.Body.Close()
		}
	}()
	for i := 0; i < 16; i++ {
		st, status, body := open(greedy, i%2 == 0)
		if status != http.StatusOK {
			t.Fatalf("stream %d: %d %s", i+1, status, body)
		}
		held = append(held, st)
	}
	for _, viaQuery := range []bool{false, true} {
		_, status, body := open(greedy, viaQuery)
		if status != http.StatusTooManyRequests || !strings.Contains(body, "rate_limited") || strings.HasPrefix(body, " ") {
			t.Fatalf("the 17th stream (token in query: %v): %d %q, want 429 rate_limited with Retry-After", viaQuery, status, body)
		}
	}
	st, status, body := open(other, false)
	if status != http.StatusOK {
		t.Fatalf("another subject's stream: %d %s", status, body)
	}
	held = append(held, st)
	s.responsive(greedy, 2*time.Second)

	// Closing one stream frees a place for the subject.
	held[0].cancel()
	held[0].resp.Body.Close()
	held = held[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, status, body := open(greedy, false)
		if status == http.StatusOK {
			held = append(held, st)
			break
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after closing a stream: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.alive()
}
