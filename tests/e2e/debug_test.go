package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestDebugListenerServesEveryProfile starts the binary with --debug-addr
// and reads the profiles an operator reaches for: the blocking and mutex
// ones need sampling that --debug-addr turns on, so after some traffic they
// hold samples. The public listener does not serve pprof.
func TestDebugListenerServesEveryProfile(t *testing.T) {
	debug := harness.FreeAddr(t)
	s := startServer(t, "--debug-addr", debug)
	tok := s.Token("alice", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "dbg"}), 201, "create queue")
	for range 50 {
		harness.MustStatus(t, s.Call("POST", "/v1/queues/dbg/messages", tok, map[string]any{"body": "x"}), 201, "publish")
	}

	get := func(path string) (int, []byte) {
		t.Helper()
		var (
			resp *http.Response
			err  error
		)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err = http.Get("http://" + debug + path)
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, p := range []string{"heap", "allocs", "goroutine", "block", "mutex"} {
		code, body := get("/debug/pprof/" + p + "?debug=1")
		if code != http.StatusOK {
			t.Fatalf("%s profile: HTTP %d: %s", p, code, body)
		}
		if p == "block" {
			// A text block profile lists one "cycles/second" header and then
			// its samples, each starting with "<cycles> <count> @".
			if !bytes.Contains(body, []byte(" @ ")) {
				t.Errorf("the block profile holds no sample after 50 publishes:\n%s", body)
			}
		}
	}
	if code, _ := get("/debug/pprof/profile?seconds=1"); code != http.StatusOK {
		t.Fatalf("CPU profile: HTTP %d", code)
	}
	// The collection an operator (or ledgerq bench's memory row) asks for.
	resp, err := http.Post("http://"+debug+"/debug/free-memory", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /debug/free-memory: HTTP %d, want 204", resp.StatusCode)
	}
	if code, _ := get("/debug/free-memory"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /debug/free-memory: HTTP %d, want 405", code)
	}
	if r := s.Call("POST", "/debug/free-memory", tok, nil); r.Status != http.StatusNotFound {
		t.Fatalf("the public listener answers POST /debug/free-memory with %d, want 404", r.Status)
	}
	r := s.Call("GET", "/debug/pprof/", tok, nil)
	if r.Status == http.StatusOK && strings.Contains(string(r.Body), "profile") {
		t.Fatalf("the public listener serves pprof: %s", r.Body)
	}
}
