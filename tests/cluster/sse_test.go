package cluster

import (
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// collect gathers, from message.updated events, the states each message id
// went through, until done reports true for the collection or the time is
// up.
func collect(t *testing.T, s *harness.Stream, within time.Duration, done func(map[string][]string) bool) map[string][]string {
	t.Helper()
	seen := map[string][]string{}
	deadline := time.After(within)
	for !done(seen) {
		select {
		case f, ok := <-s.Events:
			if !ok {
				t.Fatalf("event stream ended early")
			}
			if f.Event != "message.updated" {
				continue
			}
			id, _ := f.Data["id"].(string)
			st, _ := f.Data["state"].(string)
			seen[id] = append(seen[id], st)
		case <-deadline:
			t.Fatalf("event stream: after %s, %d messages seen", within, len(seen))
		}
	}
	return seen
}
