package harness

import (
	"encoding/json"
	"testing"
	"time"
)

// State is a document listing queues: what `ledgerq replay` prints and
// GET /v1/audit/state answers ({"position": …, "queues": […]}), or a
// GET /v1/queues page (no position).
type State struct {
	// Position is the position the state is at (0 when not given).
	Position int64
	// Queues are the queue objects by name, as decoded.
	Queues map[string]map[string]any
}

// ParseState decodes such a document and fails the test unless it is one.
func ParseState(t testing.TB, raw []byte) State {
	t.Helper()
	var v struct {
		Position int64            `json:"position"`
		Queues   []map[string]any `json:"queues"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not a queue list: %v\n%s", err, raw)
	}
	st := State{Position: v.Position, Queues: make(map[string]map[string]any, len(v.Queues))}
	for _, q := range v.Queues {
		name, ok := q["name"].(string)
		if !ok {
			t.Fatalf("a queue without a name: %v\n%s", q, raw)
		}
		st.Queues[name] = q
	}
	return st
}

// WithoutAge copies a queue object without stats.oldest_ready_age_ms, the
// one member that depends on when it is asked, so that two views of the
// same position compare equal.
func WithoutAge(q map[string]any) map[string]any {
	out := make(map[string]any, len(q))
	for k, v := range q {
		out[k] = v
	}
	if st, ok := q["stats"].(map[string]any); ok {
		c := make(map[string]any, len(st))
		for k, v := range st {
			if k != "oldest_ready_age_ms" {
				c[k] = v
			}
		}
		out["stats"] = c
	}
	return out
}

// apiTimeLayout is how the HTTP API writes times: UTC, three fractional
// digits.
const apiTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// NormalTimes copies a queue object with every top-level time in the HTTP
// API's layout: `ledgerq replay` prints Go's default, which drops trailing
// zeros of the milliseconds; the instants are what must agree.
func NormalTimes(q map[string]any) map[string]any {
	out := make(map[string]any, len(q))
	for k, v := range q {
		if s, ok := v.(string); ok {
			if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
				v = ts.UTC().Format(apiTimeLayout)
			}
		}
		out[k] = v
	}
	return out
}

// Stat returns one stats counter of a queue object (0 when absent).
func Stat(q map[string]any, name string) int64 {
	st, _ := q["stats"].(map[string]any)
	v, _ := st[name].(float64)
	return int64(v)
}

// WaitFor polls cond every 10 ms until it holds, and fails the test when
// within has passed first.
func WaitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
