package evidence

import (
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// jwtSecret signs the tokens of every server these tests start.
const jwtSecret = "evidence-tests-hs256-secret-0123456789abcdef"

func TestMain(m *testing.M) { harness.Main(m) }

// startServer runs `ledgerq serve` on dataDir (created when missing) on a
// free port and waits until /readyz answers 200. A large log takes a while
// to rebuild from at start-up and to catch up with, hence the long bounds.
func startServer(t *testing.T, dataDir string) *harness.Server {
	t.Helper()
	return harness.Start(t, harness.Options{
		Data:           dataDir,
		JWTSecret:      jwtSecret,
		ReadyTimeout:   10 * time.Minute,
		RequestTimeout: 5 * time.Minute,
		CatchUpTimeout: 10 * time.Minute,
	})
}

// adminToken mints an admin token for jwtSecret.
func adminToken(s *harness.Server) string {
	return s.Token("evidence", "admin")
}

// queuesByName indexes the queues of a {queues: […]} document by name,
// each comparable with another view of the same position: without the
// clock-dependent stats.oldest_ready_age_ms and with its times in the
// API's layout.
func queuesByName(t *testing.T, raw []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for name, q := range harness.ParseState(t, raw).Queues {
		out[name] = harness.NormalTimes(harness.WithoutAge(q))
	}
	return out
}
