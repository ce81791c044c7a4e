package transport

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/queries"
)

// The real implementations satisfy the interfaces the edge declares.
var (
	_ Commands = (*commands.App)(nil)
	_ Queries  = (*queries.Service)(nil)
)

// serveTCP runs hx on a loopback port behind an http.Server configured
// as main does, with a read timeout short enough to matter in a test.
func serveTCP(t *testing.T, hx *harness, readTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hx.h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: readTimeout}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func TestSlowBodyIsCutOff(t *testing.T) {
	hx := newHarness(t, func(d *Deps) { d.BodyReadTimeout = 100 * time.Millisecond })
	addr := serveTCP(t, hx, time.Minute)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Promise 100 bytes, send 10, then stall.
	fmt.Fprintf(conn, "POST /v1/queues/orders/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"body\":\"x", adminToken(t))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "could not be read completely") {
		t.Fatalf("stalled body: %d %s", resp.StatusCode, body)
	}
	if hx.cmds.lastCmd() != nil {
		t.Fatal("an incomplete body reached the write side")
	}
}

func TestLongPollOutlivesTheBodyDeadline(t *testing.T) {
	hx := newHarness(t, func(d *Deps) { d.BodyReadTimeout = 50 * time.Millisecond })
	hx.cmds.receive = func(ctx context.Context, _ commands.Receive) (commands.ReceiveResult, error) {
		select {
		case <-time.After(300 * time.Millisecond):
			return commands.ReceiveResult{Position: 7}, nil
		case <-ctx.Done():
			return commands.ReceiveResult{}, ctx.Err()
		}
	}
	addr := serveTCP(t, hx, time.Minute)
	r, _ := http.NewRequest("POST", "http://"+addr+"/v1/queues/orders/receive", strings.NewReader(`{"wait_ms":1000}`))
	r.Header.Set("Authorization", "Bearer "+adminToken(t))
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != `{"messages":[],"position":7}`+"\n" {
		t.Fatalf("long poll = %d %s", resp.StatusCode, body)
	}
}

// TestStreamOutlivesServerReadTimeout: a server-wide ReadTimeout (main sets
// one for bodies) must not end an SSE stream; net/http lifts the read
// deadline once the request is read.
func TestStreamOutlivesServerReadTimeout(t *testing.T) {
	hx := newHarness(t, func(d *Deps) { d.SSE.Heartbeat = 20 * time.Millisecond })
	addr := serveTCP(t, hx, 100*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/subscribe?kinds=message", nil)
	r.Header.Set("Authorization", "Bearer "+adminToken(t))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	// Read heartbeats for well past the read timeout, then a live event.
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
		if !sc.Scan() {
			t.Fatalf("the stream ended after the server read timeout: %v", sc.Err())
		}
	}
	hx.hub.Publish(messageUpdate(41, "orders"))
	for sc.Scan() {
		if sc.Text() == "id: 41" {
			return
		}
	}
	t.Fatalf("no live event after the read timeout: %v", sc.Err())
}
