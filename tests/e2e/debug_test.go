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
	r := s.Call("GET", "/debug/pprof/", tok, nil)
	if r.Status == http.StatusOK && strings.Contains(string(r.Body), "profile") {
		t.Fatalf("the public listener serves pprof: %s", r.Body)
	}
}
