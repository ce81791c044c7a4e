package browser

import (
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// startServer runs `ledgerq serve` with extra flags on a free port with a
// fresh data directory and waits for /readyz; on failure the test log gets
// the end of the server's output.
func startServer(t *testing.T, extra ...string) *harness.Server {
	t.Helper()
	return harness.Start(t, harness.Options{Args: extra, LogFormat: "text", ReadyTimeout: 30 * time.Second})
}
