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

// serveTCP runs hx behind NewHTTPServer on a loopback port.
func serveTCP(t *testing.T, hx *harness) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer("", hx.h)
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
	addr := serveTCP(t, hx)
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
	addr := serveTCP(t, hx)
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
