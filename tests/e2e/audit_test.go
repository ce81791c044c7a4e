package e2e

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestAuditRoutesAndOfflineTools: the log over HTTP (filters, paging,
// NDJSON), verification, point-in-time state, and the same from the binary
// offline; then a tampered copy is caught by `ledgerq audit verify`.
func TestAuditRoutesAndOfflineTools(t *testing.T) {
	s := startServer(t)
	tok := s.Token("auditor", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "a"}), 201, "create a")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", tok, map[string]any{"name": "b"}), 201, "create b")
	var afterFirst int64
	for i := 0; i < 5; i++ {
		r := s.Call("POST", "/v1/queues/a/messages", tok, map[string]any{"body": "m" + strconv.Itoa(i)})
		harness.MustStatus(t, r, 201, "publish")
		if i == 1 {
			afterFirst = r.Num("position")
		}
	}
	harness.MustStatus(t, s.Call("POST", "/v1/queues/b/messages", tok, map[string]any{"body": "other"}), 201, "publish b")

	// Filters and paging.
	r := s.Call("GET", "/v1/events?stream=queue-a&type=MessagePublished&limit=2", tok, nil)
	harness.MustStatus(t, r, 200, "events page 1")
	evs, _ := r.JSON["events"].([]any)
	if len(evs) != 2 || r.Num("next_after") == 0 {
		t.Fatalf("first page: %s", r.Body)
	}
	seen := len(evs)
	next := r.Num("next_after")
	for next != 0 {
		r = s.Call("GET", "/v1/events?stream=queue-a&type=MessagePublished&limit=2&after="+strconv.FormatInt(next, 10), tok, nil)
		harness.MustStatus(t, r, 200, "events next page")
		evs, _ = r.JSON["events"].([]any)
		seen += len(evs)
		next = r.Num("next_after")
	}
	if seen != 5 {
		t.Fatalf("paged through %d MessagePublished events of queue-a, want 5", seen)
	}
	ev := evs[0].(map[string]any)
	for _, k := range []string{"position", "stream", "version", "type", "schema_version", "data", "metadata", "recorded_at", "hash", "prev_hash"} {
		if _, ok := ev[k]; !ok {
			t.Fatalf("event lacks %q: %v", k, ev)
		}
	}
	if md, _ := ev["metadata"].(map[string]any); md["subject"] != "auditor" || md["request_id"] == nil {
		t.Fatalf("event metadata %v lacks subject/request_id", ev["metadata"])
	}

	// NDJSON streams the whole range, one event per line.
	req, _ := http.NewRequest("GET", s.URL+"/v1/events?after=0", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	var lastPos int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Position int64 `json:"position"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("ndjson line %d: %v", lines, err)
		}
		if e.Position != lastPos+1 {
			t.Fatalf("ndjson positions jump from %d to %d", lastPos, e.Position)
		}
		lastPos = e.Position
		lines++
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") || lines < 8 {
		t.Fatalf("ndjson: content type %q, %d lines", resp.Header.Get("Content-Type"), lines)
	}

	// Verify over HTTP.
	r = s.Call("GET", "/v1/audit/verify", tok, nil)
	harness.MustStatus(t, r, 200, "verify")
	if r.JSON["ok"] != true || r.Num("checked") != lastPos || r.Num("head_position") != lastPos {
		t.Fatalf("verify: %s (head %d)", r.Body, lastPos)
	}

	// Point in time: after the second publish, queue a had 2 ready messages
	// and queue b had none.
	r = s.Call("GET", "/v1/audit/state?at_position="+strconv.FormatInt(afterFirst, 10), tok, nil)
	harness.MustStatus(t, r, 200, "state at position")
	atFirst := harness.ParseState(t, r.Body)
	if got := harness.Stat(atFirst.Queues["a"], "ready"); got != 2 {
		t.Fatalf("ready of a at position %d = %d, want 2: %s", afterFirst, got, r.Body)
	}
	if got := harness.Stat(atFirst.Queues["b"], "ready"); got != 0 {
		t.Fatalf("ready of b at position %d = %d, want 0", afterFirst, got)
	}
	harness.MustProblem(t, s.Call("GET", "/v1/audit/state?at_position=abc", tok, nil), 400, "invalid_argument", "bad at_position")

	// Offline: stop the server, replay and verify from the files.
	s.Stop()
	out := harness.Replay(t, s.Data, "--at-position", strconv.FormatInt(afterFirst, 10))
	if got := harness.Stat(harness.ParseState(t, out).Queues["a"], "ready"); got != 2 {
		t.Fatalf("offline replay: ready of a = %d, want 2\n%s", got, out)
	}
	harness.VerifyOffline(t, s.Data)

	// Tamper with one payload: verify exits 1 and names the position.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.Data, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE events SET data = replace(data, 'm3', 'mX') WHERE type = 'MessagePublished' AND data LIKE '%"m3"%'`); err != nil {
		t.Fatal(err)
	}
	var bad int64
	if err := db.QueryRow(`SELECT position FROM events WHERE data LIKE '%"mX"%'`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	db.Close()
	stdout, stderr, code := harness.Run(t, "audit", "verify", "--data", s.Data)
	if code != 1 {
		t.Fatalf("audit verify on a tampered log: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, strconv.FormatInt(bad, 10)) {
		t.Fatalf("audit verify does not name position %d:\n%s", bad, stdout)
	}
}
